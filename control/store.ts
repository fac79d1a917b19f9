/**
 * The Store: where mesh state lives between processes. Two keyspaces:
 *  - 'resources': the validated input resources (written by `ambit apply`, read by the controller)
 *  - 'state': the resolved mesh state (written only by the controller, followed by every proxy)
 *
 * Each keyspace is a map of entries with a revision that grows by one per commit, plus a
 * change feed. Readers take a snapshot, then follow the feed (see follower.ts).
 */
import type { EntryChanges } from '../policy/entries.js'

export type Keyspace = 'resources' | 'state'

export interface StoreSnapshot {
  readonly revision: number
  readonly entries: Map<string, unknown>
}

/** One commit as seen in the change feed. */
export interface StoreChange extends EntryChanges {
  readonly revision: number
}

export type Unsubscribe = () => void

export interface Store {
  /** Human-readable location ('memory', 'redis://host:port/db'), never including secrets. */
  readonly description: string
  /**
   * Atomically applies the changes and returns the new revision. A commit with nothing in it
   * writes nothing and returns the current revision.
   */
  commit (space: Keyspace, changes: EntryChanges): Promise<number>
  /** The whole keyspace at one revision. */
  snapshot (space: Keyspace): Promise<StoreSnapshot>
  /** The current revision only (cheap; used to notice a missed tail of the feed). */
  revision (space: Keyspace): Promise<number>
  /**
   * The commits after `revision`, oldest first; undefined when the feed no longer holds all of
   * them (the reader must resync from a snapshot).
   */
  changesSince (space: Keyspace, revision: number): Promise<StoreChange[] | undefined>
  /**
   * Best-effort push of new commits. May drop some (pub/sub, reconnects): readers check revisions.
   */
  subscribe (space: Keyspace, listener: (change: StoreChange) => void): Unsubscribe
  /** Connection state changes (always true for the in-memory store). */
  onConnectionChange (listener: (connected: boolean) => void): Unsubscribe
  readonly connected: boolean
  close (): Promise<void>
}
