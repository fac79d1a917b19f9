/**
 * The controller: the only writer of the resolved mesh state. It merges the resources of its
 * sources (YAML files, any extra source such as a Kubernetes API server, then those `ambit
 * apply` put in the store), resolves them, and commits the difference to the 'state'
 * keyspace. A bad file never replaces the last good one.
 */
import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import type { Store } from './store.js'
import { AppliedSource } from './applied-source.js'
import { FileSource } from './file-source.js'
import type { ResourceSource } from './resource-source.js'
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
  /**
   * More origins of resources (a Kubernetes API server), merged after the files and before the
   * applied resources: a later source's resource replaces an earlier one of the same key.
   */
  readonly sources?: readonly ResourceSource[]
}

interface ControllerEvents {
  /** A new state was committed. */
  state: [MeshState, number]
  /** The resources were resolved, taking this many seconds (for the controller's metrics). */
  resolved: [number]
}

const RETRY_MS = 500

export class Controller extends EventEmitter<ControllerEvents> {
  /** In merge order: files, the extra sources, applied resources. */
  private readonly sources: readonly ResourceSource[]
  private committed: Entries = new Map()
  private current: MeshState | undefined
  private revision = 0
  private timer: NodeJS.Timeout | undefined
  private reconciling: Promise<void> = Promise.resolve()
  private stopped = false
  private warned = new Set<string>()

  constructor (private readonly options: ControllerOptions) {
    super()
    const files = new FileSource({
      files: options.files,
      logger: options.logger,
      ...(options.watchFiles !== undefined && { watchFiles: options.watchFiles })
    })
    this.sources = [files, ...(options.sources ?? []), new AppliedSource(options.store)]
  }

  /** The last committed state (undefined before start() resolves). */
  get state (): MeshState | undefined { return this.current }

  /** Starts every source (throws on a bad file), then commits the first state. */
  async start (): Promise<void> {
    try {
      for (const source of this.sources) {
        await source.start()
        source.on('update', () => this.schedule())
      }
    } catch (err) {
      await this.stop()
      throw err
    }
    this.committed = (await this.options.store.snapshot('state')).entries
    this.options.store.onConnectionChange((connected) => { if (connected) void this.checkForReset() })
    await this.reconcile()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await Promise.all(this.sources.map((source) => source.stop()))
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
    // A later source's resource overrides an earlier one of the same kind, namespace and name.
    const merged = new Map<string, Resource>()
    for (const source of this.sources) {
      for (const resource of source.resources()) merged.set(resourceKey(resource), resource)
    }
    return [...merged.values()]
  }

  private async reconcileOnce (): Promise<void> {
    if (this.stopped) return
    const started = performance.now()
    const { state, warnings } = resolve(this.resources(), this.options.mesh)
    this.emit('resolved', (performance.now() - started) / 1000)
    // Sources may change often (a cluster's pods): say each warning once, not on every resolution.
    for (const warning of warnings) {
      if (!this.warned.has(warning)) this.options.logger.warn({ warning }, 'resolution warning')
    }
    this.warned = new Set(warnings)
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
    if (this.current === undefined) return
    for (const source of this.sources) source.committed?.(this.current)
    this.emit('state', this.current, this.revision)
  }
}
