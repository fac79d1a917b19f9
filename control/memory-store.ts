/**
 * The in-process store: the embedded default for a single-process local mesh (`ambit up`).
 * Every operation takes effect synchronously; the methods are async only to fit the Store
 * interface. It keeps a bounded history of commits for changesSince, like the Redis feed.
 */
import type { EntryChanges } from '../policy/entries.js'
import { StoreError } from '../policy/errors.js'
import { decodeChange, decodeValue, encodeChanges, isEmpty } from './entry-json.js'
import type { Keyspace, Store, StoreChange, StoreSnapshot, Unsubscribe } from './store.js'

export interface MemoryStoreOptions {
  /** How many recent commits changesSince can return; older ones need a snapshot. */
  readonly historyLength?: number
}

const DEFAULT_HISTORY_LENGTH = 1000

interface CommitRecord {
  readonly revision: number
  readonly json: string
}

class MemoryKeyspace {
  revision = 0
  /** Entry key → JSON text (decoded afresh for every reader). */
  readonly entries = new Map<string, string>()
  /** The most recent commits, oldest first. */
  readonly history: CommitRecord[] = []
  readonly listeners = new Set<(change: StoreChange) => void>()
}

export class MemoryStore implements Store {
  readonly description = 'memory'
  readonly connected = true
  private readonly historyLength: number
  private readonly spaces: Record<Keyspace, MemoryKeyspace> = {
    resources: new MemoryKeyspace(),
    state: new MemoryKeyspace()
  }

  private closed = false

  constructor (options: MemoryStoreOptions = {}) {
    this.historyLength = options.historyLength ?? DEFAULT_HISTORY_LENGTH
  }

  async commit (space: Keyspace, changes: EntryChanges): Promise<number> {
    const keyspace = this.open(space)
    if (isEmpty(changes)) return keyspace.revision
    const encoded = encodeChanges(changes) // may throw: then nothing is written
    keyspace.revision += 1
    for (const key of encoded.deletes) keyspace.entries.delete(key)
    for (const [key, json] of encoded.upserts) keyspace.entries.set(key, json)
    const record = { revision: keyspace.revision, json: encoded.json }
    keyspace.history.push(record)
    if (keyspace.history.length > this.historyLength) keyspace.history.shift()
    this.deliver(keyspace, record)
    return keyspace.revision
  }

  async snapshot (space: Keyspace): Promise<StoreSnapshot> {
    const keyspace = this.open(space)
    const entries = new Map<string, unknown>()
    for (const [key, json] of keyspace.entries) entries.set(key, decodeValue(key, json))
    return { revision: keyspace.revision, entries }
  }

  async revision (space: Keyspace): Promise<number> {
    return this.open(space).revision
  }

  async changesSince (space: Keyspace, revision: number): Promise<StoreChange[] | undefined> {
    const keyspace = this.open(space)
    // A reader ahead of the store follows another history (the store was reset): resync.
    if (revision > keyspace.revision) return undefined
    const oldestKept = keyspace.history[0]?.revision ?? keyspace.revision + 1
    if (oldestKept > revision + 1) return undefined
    return keyspace.history
      .filter((record) => record.revision > revision)
      .map((record) => decodeChange(record.revision, record.json))
  }

  subscribe (space: Keyspace, listener: (change: StoreChange) => void): Unsubscribe {
    const listeners = this.open(space).listeners
    listeners.add(listener)
    return () => { listeners.delete(listener) }
  }

  onConnectionChange (_listener: (connected: boolean) => void): Unsubscribe {
    return () => {} // always connected: nothing will ever change
  }

  async close (): Promise<void> {
    this.closed = true
    for (const keyspace of Object.values(this.spaces)) keyspace.listeners.clear()
  }

  private open (space: Keyspace): MemoryKeyspace {
    if (this.closed) throw new StoreError('the memory store is closed')
    return this.spaces[space]
  }

  /**
   * Listeners run once the commit is complete (in a microtask, in commit order) so that a
   * listener that throws cannot make a commit that happened look like it failed.
   */
  private deliver (keyspace: MemoryKeyspace, record: CommitRecord): void {
    for (const listener of keyspace.listeners) {
      queueMicrotask(() => listener(decodeChange(record.revision, record.json)))
    }
  }
}
