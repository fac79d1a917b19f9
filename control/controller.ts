/**
 * The controller: the only writer of the resolved mesh state. It merges the resources from its
 * YAML files with those `ambit apply` put in the store, resolves them, and commits the
 * difference to the 'state' keyspace. A bad file never replaces the last good one.
 */
import { EventEmitter } from 'node:events'
import { watch, type FSWatcher } from 'node:fs'
import type { Logger } from 'pino'
import type { Store } from './store.js'
import { StateFollower } from './follower.js'
import { loadResourceFiles } from '../policy/load.js'
import { InvalidResourcesError } from '../policy/errors.js'
import { resolve } from '../policy/resolve.js'
import { diffEntries, fromEntries, toEntries, type Entries } from '../policy/entries.js'
import { resourceKey, type Resource } from '../policy/resources.js'
import type { MeshConfig, MeshState } from '../policy/state.js'

export interface ControllerOptions {
  readonly store: Store
  readonly files: readonly string[]
  readonly mesh: MeshConfig
  readonly logger: Logger
  /** Re-read the files when they change (default true). */
  readonly watchFiles?: boolean
  /** How long to gather changes before resolving (ms). */
  readonly debounceMs?: number
}

interface ControllerEvents {
  /** A new state was committed. */
  state: [MeshState, number]
}

const RETRY_MS = 500

export class Controller extends EventEmitter<ControllerEvents> {
  private fileResources = new Map<string, Resource>()
  private readonly applied: StateFollower
  private committed: Entries = new Map()
  private current: MeshState | undefined
  private revision = 0
  private readonly watchers: FSWatcher[] = []
  private timer: NodeJS.Timeout | undefined
  private reconciling: Promise<void> = Promise.resolve()
  private stopped = false

  constructor (private readonly options: ControllerOptions) {
    super()
    this.applied = new StateFollower(options.store, 'resources')
  }

  /** The last committed state (undefined before start() resolves). */
  get state (): MeshState | undefined { return this.current }

  /** Loads the files (throws on a bad one), follows applied resources, commits the first state. */
  async start (): Promise<void> {
    this.fileResources = await this.readFiles()
    await this.applied.start()
    this.committed = (await this.options.store.snapshot('state')).entries
    this.applied.on('update', () => this.schedule())
    this.options.store.onConnectionChange((connected) => { if (connected) void this.checkForReset() })
    if (this.options.watchFiles !== false) this.watchFiles()
    await this.reconcile()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    for (const w of this.watchers) w.close()
    this.applied.stop()
    await this.reconciling
  }

  /** Resolve now and commit what changed; retries while the store is unreachable. */
  reconcile (): Promise<void> {
    this.reconciling = this.reconciling.then(() => this.reconcileOnce())
    return this.reconciling
  }

  /**
   * A store that came back behind our last commit lost data (Redis restarted without
   * persistence): write the whole state again instead of a diff against what is gone.
   */
  private async checkForReset (): Promise<void> {
    try {
      if (await this.options.store.revision('state') >= this.revision) return
    } catch {
      return // still unreachable; the next reconnection checks again
    }
    this.options.logger.warn({ revision: this.revision }, 'the store lost the mesh state; writing it again')
    this.committed = new Map()
    this.current = undefined
    void this.reconcile()
  }

  private schedule (): void {
    if (this.stopped) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { void this.reconcile() }, this.options.debounceMs ?? 20)
  }

  private resources (): Resource[] {
    // Applied resources override file resources of the same kind, namespace and name.
    const merged = new Map(this.fileResources)
    for (const [key, value] of this.applied.entries) merged.set(key, value as Resource)
    return [...merged.values()]
  }

  private async reconcileOnce (): Promise<void> {
    if (this.stopped) return
    const { state, warnings } = resolve(this.resources(), this.options.mesh)
    for (const warning of warnings) this.options.logger.warn({ warning }, 'resolution warning')
    const entries = toEntries(state)
    const changes = diffEntries(this.committed, entries)
    if (changes.upserts.size === 0 && changes.deletes.length === 0 && this.current !== undefined) return
    try {
      this.revision = await this.options.store.commit('state', changes)
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message }, 'store unreachable; will retry the commit')
      clearTimeout(this.timer)
      this.timer = setTimeout(() => { void this.reconcile() }, RETRY_MS)
      return
    }
    this.committed = entries
    this.current = fromEntries(entries)
    this.options.logger.info({ revision: this.revision, upserts: changes.upserts.size, deletes: changes.deletes.length }, 'state committed')
    if (this.current !== undefined) this.emit('state', this.current, this.revision)
  }

  private async readFiles (): Promise<Map<string, Resource>> {
    const { resources, errors } = await loadResourceFiles([...this.options.files])
    if (errors.length > 0) throw new InvalidResourcesError(errors)
    return new Map(resources.map((r) => [resourceKey(r), r]))
  }

  private watchFiles (): void {
    for (const path of this.options.files) {
      if (path === '-') continue
      try {
        const watcher = watch(path, { recursive: false }, () => this.reloadFiles())
        watcher.on('error', () => watcher.close())
        this.watchers.push(watcher)
      } catch (err) {
        this.options.logger.warn({ path, err: (err as Error).message }, 'cannot watch; changes need a restart')
      }
    }
  }

  private reloadFiles (): void {
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.readFiles().then((resources) => {
        this.fileResources = resources
        void this.reconcile()
      }, (err: Error) => {
        this.options.logger.error({ err: err.message }, 'resource files rejected; keeping the last good ones')
      })
    }, 100)
  }
}
