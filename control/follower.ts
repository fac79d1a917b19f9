/**
 * Keeps a reader's copy of one keyspace in step with the store: a snapshot first, then the
 * pushed commits in revision order. Pushes are best effort, so the follower checks every
 * revision: a commit that skips one means some were lost (a gap), and it catches up from the
 * change feed, or from a new snapshot when the feed no longer holds them. A periodic poll of
 * the store's revision finds a lost tail (the last commits, with nothing after them to reveal
 * the gap), and a reconnection triggers a catch-up at once.
 *
 * While the store cannot be reached the follower keeps its last entries (proxies keep serving
 * them) and says it is stale until it has caught up again.
 *
 *   const follower = new StateFollower(store, 'state')
 *   await follower.start()              // resolves once the first snapshot is loaded
 *   follower.on('update', (revision) => rebuild(follower.entries))
 */
import { EventEmitter } from 'node:events'
import { applyChanges, fromEntries } from '../policy/entries.js'
import type { MeshState } from '../policy/state.js'
import { StoreError } from '../policy/errors.js'
import type { Keyspace, Store, StoreChange, Unsubscribe } from './store.js'

export interface StateFollowerOptions {
  /** How often to compare revisions with the store, to find a lost tail (default 1000 ms). */
  readonly pollIntervalMs?: number
  /** How soon to try again after the store failed to answer (default 250 ms). */
  readonly retryDelayMs?: number
}

export interface StateFollowerEvents {
  /** The entries changed; they are now at this revision. */
  update: [revision: number]
  /** The follower was fresh and no longer is: the store stopped answering at this time. */
  stale: [since: Date]
  /** Caught up with a reachable store again. */
  fresh: []
}

/** Pushed changes kept while a catch-up runs; beyond this the catch-up itself will fetch them. */
const MAX_BUFFERED = 10_000

export class StateFollower extends EventEmitter<StateFollowerEvents> {
  /** Times the entries were replaced by a new snapshot (the first load not counted). */
  resyncs = 0
  /** Times a pushed change skipped revisions, meaning some pushes were lost. */
  gapsDetected = 0

  private current = new Map<string, unknown>()
  private currentRevision = 0
  private staleFrom: Date | undefined = new Date()
  private loaded = false
  private syncing = false
  private syncRequested = false
  private buffered: StoreChange[] = []
  private stopped = false
  private readonly detach: Unsubscribe[] = []
  private pollTimer: NodeJS.Timeout | undefined
  private retryTimer: NodeJS.Timeout | undefined
  private firstLoad: { resolve: () => void, reject: (error: Error) => void } | undefined
  private readonly pollIntervalMs: number
  private readonly retryDelayMs: number

  constructor (private readonly store: Store, private readonly space: Keyspace, options: StateFollowerOptions = {}) {
    super()
    this.pollIntervalMs = options.pollIntervalMs ?? 1000
    this.retryDelayMs = options.retryDelayMs ?? 250
  }

  /** The entries at `revision`. Read-only: the follower replaces or updates them in place. */
  get entries (): ReadonlyMap<string, unknown> {
    return this.current
  }

  get revision (): number {
    return this.currentRevision
  }

  /** True until the first load, and while the store is unreachable or not caught up with. */
  get stale (): boolean {
    return this.staleFrom !== undefined
  }

  get staleSince (): Date | undefined {
    return this.staleFrom
  }

  /** Resolves once the first snapshot is loaded, however long the store takes to answer. */
  start (): Promise<void> {
    if (this.firstLoad !== undefined || this.loaded || this.stopped) throw new StoreError('a follower can only be started once')
    const loaded = new Promise<void>((resolve, reject) => { this.firstLoad = { resolve, reject } })
    // Subscribed before the snapshot is read, so no commit can fall between the two.
    this.detach.push(this.store.subscribe(this.space, (change) => this.onPushed(change)))
    this.detach.push(this.store.onConnectionChange((connected) => {
      if (connected) this.requestSync()
      else this.markStale()
    }))
    this.pollTimer = setInterval(() => { void this.poll() }, this.pollIntervalMs)
    this.pollTimer.unref()
    this.requestSync()
    return loaded
  }

  /** Stops following (the store stays open: it is the caller's). */
  stop (): void {
    this.stopped = true
    for (const undo of this.detach.splice(0)) undo()
    clearInterval(this.pollTimer)
    clearTimeout(this.retryTimer)
    this.firstLoad?.reject(new StoreError(`stopped before the first snapshot of ${this.space} was loaded`))
    this.firstLoad = undefined
  }

  private onPushed (change: StoreChange): void {
    if (this.stopped) return
    if (!this.loaded || this.syncing) {
      // Applied after the catch-up, against the revision it reaches.
      this.buffered.push(change)
      if (this.buffered.length > MAX_BUFFERED) this.buffered = []
      return
    }
    this.applyPushed(change)
  }

  private applyPushed (change: StoreChange): void {
    if (change.revision <= this.currentRevision) return // already have it
    if (change.revision > this.currentRevision + 1) {
      this.gapsDetected += 1
      this.requestSync()
      return
    }
    applyChanges(this.current, change)
    this.currentRevision = change.revision
    this.tell('update', this.currentRevision)
  }

  /** Compares revisions with the store: a difference means a lost tail (or a reset store). */
  private async poll (): Promise<void> {
    if (!this.loaded || this.syncing || this.stopped) return
    try {
      const revision = await this.store.revision(this.space)
      if (this.syncing || this.stopped) return
      if (revision !== this.currentRevision) this.requestSync()
      else this.markFreshIfConnected()
    } catch {
      this.markStale()
    }
  }

  /** Runs catch-ups one at a time until none is wanted; a request during one queues another. */
  private requestSync (): void {
    if (this.stopped) return
    this.syncRequested = true
    if (!this.syncing) void this.runSyncs()
  }

  private async runSyncs (): Promise<void> {
    this.syncing = true
    clearTimeout(this.retryTimer)
    while (this.syncRequested && !this.stopped) {
      this.syncRequested = false
      let updated: boolean
      try {
        updated = await this.syncOnce()
      } catch {
        this.markStale()
        this.retryTimer = setTimeout(() => this.requestSync(), this.retryDelayMs)
        this.retryTimer.unref()
        break
      }
      if (updated) this.tell('update', this.currentRevision)
      this.markFreshIfConnected()
    }
    this.syncing = false
    if (this.loaded && !this.stopped) this.applyBuffered()
  }

  /** Brings the entries to the store's revision (from the feed if it can, else a snapshot); true if they changed. */
  private async syncOnce (): Promise<boolean> {
    if (!this.loaded) return await this.loadSnapshot()
    const changes = await this.store.changesSince(this.space, this.currentRevision)
    if (this.stopped) return false
    if (changes === undefined) {
      this.resyncs += 1
      return await this.loadSnapshot()
    }
    for (const change of changes) {
      applyChanges(this.current, change)
      this.currentRevision = change.revision
    }
    return changes.length > 0
  }

  private async loadSnapshot (): Promise<boolean> {
    const snapshot = await this.store.snapshot(this.space)
    if (this.stopped) return false
    this.current = snapshot.entries
    this.currentRevision = snapshot.revision
    this.loaded = true
    this.firstLoad?.resolve()
    this.firstLoad = undefined
    return true
  }

  private applyBuffered (): void {
    const buffered = this.buffered.sort((a, b) => a.revision - b.revision)
    this.buffered = []
    for (const change of buffered) this.applyPushed(change)
  }

  private markStale (): void {
    if (this.staleFrom !== undefined) return
    this.staleFrom = new Date()
    this.tell('stale', this.staleFrom)
  }

  /** Fresh only with a connected store: a store that lost its pub/sub connection pushes nothing. */
  private markFreshIfConnected (): void {
    if (this.staleFrom === undefined || !this.store.connected || !this.loaded) return
    this.staleFrom = undefined
    this.tell('fresh')
  }

  /**
   * Emits an event. A listener that throws is a bug to surface (as an uncaught exception), not
   * a store failure, and must not leave the follower half way through an update.
   */
  private tell<E extends keyof StateFollowerEvents> (event: E, ...args: StateFollowerEvents[E]): void {
    try {
      // `args` is the event's argument list; TypeScript cannot match it to emit's conditional type.
      const emit = this.emit as (event: keyof StateFollowerEvents, ...args: unknown[]) => boolean
      emit.call(this, event, ...args)
    } catch (error) {
      queueMicrotask(() => { throw error })
    }
  }
}

/** The first mesh state the follower holds (a fresh store may have none until the controller writes). */
export async function firstMeshState (follower: StateFollower): Promise<MeshState> {
  for (;;) {
    const state = fromEntries(follower.entries)
    if (state !== undefined) return state
    await new Promise((resolve) => follower.once('update', resolve))
  }
}
