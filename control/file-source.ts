/**
 * Resources from YAML files and directories (local mode's stand-in for the API server),
 * re-read when they change. A bad file fails start(); later, a bad edit is logged and the
 * last good resources stay.
 */
import { EventEmitter } from 'node:events'
import { watch, type FSWatcher } from 'node:fs'
import type { Logger } from 'pino'
import type { ResourceSource, ResourceSourceEvents } from './resource-source.js'
import { loadResourceFiles, STDIN_PATH } from '../policy/load.js'
import { InvalidResourcesError } from '../policy/errors.js'
import type { Resource } from '../policy/resources.js'

export interface FileSourceOptions {
  readonly files: readonly string[]
  readonly logger: Logger
  /** Re-read the files when they change (default true). */
  readonly watchFiles?: boolean
}

/** Editors write a file in several steps: wait for them to finish. */
const RELOAD_DELAY_MS = 100

export class FileSource extends EventEmitter<ResourceSourceEvents> implements ResourceSource {
  private current: readonly Resource[] = []
  private readonly watchers: FSWatcher[] = []
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly options: FileSourceOptions) {
    super()
  }

  async start (): Promise<void> {
    this.current = await this.read()
    if (this.options.watchFiles !== false) this.watch()
  }

  async stop (): Promise<void> {
    clearTimeout(this.timer)
    for (const w of this.watchers) w.close()
  }

  resources (): Iterable<Resource> {
    return this.current
  }

  private async read (): Promise<Resource[]> {
    if (this.options.files.length === 0) return []
    const { resources, errors } = await loadResourceFiles([...this.options.files])
    if (errors.length > 0) throw new InvalidResourcesError(errors)
    return resources
  }

  private watch (): void {
    for (const path of this.options.files) {
      if (path === STDIN_PATH) continue
      try {
        const watcher = watch(path, { recursive: false }, () => this.reload())
        watcher.on('error', () => watcher.close())
        this.watchers.push(watcher)
      } catch (err) {
        this.options.logger.warn({ path, err: (err as Error).message }, 'cannot watch; changes need a restart')
      }
    }
  }

  private reload (): void {
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.read().then((resources) => {
        this.current = resources
        this.emit('update')
      }, (err: Error) => {
        this.options.logger.error({ err: err.message }, 'resource files rejected; keeping the last good ones')
      })
    }, RELOAD_DELAY_MS)
  }
}
