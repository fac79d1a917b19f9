/**
 * The Redis store (standalone, Sentinel or Cluster; open-store.ts builds the clients).
 *
 * Each keyspace is four Redis names sharing one hash tag, so that a Cluster keeps them in one
 * slot (a Lua script and a MULTI may only touch keys of one slot):
 *
 *   ambit:{state}:revision   STRING  the revision of the last commit (absent = 0)
 *   ambit:{state}:entries    HASH    entry key → JSON value
 *   ambit:{state}:feed       STREAM  one message per commit, id `<revision>-0`, fields
 *                                    `revision` and `change` (the commit's JSON), trimmed to
 *                                    about `feedLength` messages
 *   ambit:{state}:notify     pub/sub channel: the revision of each commit, nothing else
 *
 * Giving each feed message the id `<revision>-0` lets changesSince read "everything after
 * revision r" with a plain XRANGE from `<r+1>-0`, and makes a second writer that raced on the
 * same revision fail instead of writing it twice. Nothing here ever scans keys.
 */
import { createHash } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { EntryChanges } from '../policy/entries.js'
import { StoreError } from '../policy/errors.js'
import { decodeChange, decodeValue, encodeChanges, isEmpty } from './entry-json.js'
import type { Keyspace, Store, StoreChange, StoreSnapshot, Unsubscribe } from './store.js'

export type RedisClient = Redis | Cluster

/** Makes a client; called once for commands and, on the first subscribe, once for pub/sub. */
export type RedisClientFactory = (role: 'commands' | 'subscriber') => RedisClient

export interface RedisStoreOptions {
  /** Where the store lives, for messages; must not contain secrets. */
  readonly description: string
  /** Prepended to every key and channel (default 'ambit:'). */
  readonly keyPrefix?: string
  /** About how many commits the feed keeps for changesSince (default 10000). */
  readonly feedLength?: number
  readonly logger?: Logger
}

export const DEFAULT_KEY_PREFIX = 'ambit:'
const DEFAULT_FEED_LENGTH = 10_000

interface KeyspaceKeys {
  readonly revision: string
  readonly entries: string
  readonly feed: string
  readonly notify: string
}

function keyspaceKeys (prefix: string, space: Keyspace): KeyspaceKeys {
  const base = `${prefix}{${space}}`
  return {
    revision: `${base}:revision`,
    entries: `${base}:entries`,
    feed: `${base}:feed`,
    notify: `${base}:notify`
  }
}

/**
 * One commit, atomically (no other command runs while a script does).
 * KEYS: 1 revision, 2 entries, 3 feed.
 * ARGV: 1 notify channel, 2 feed length, 3 the commit's JSON, 4 the number N of upserts,
 *       then N key/JSON pairs, then the keys to delete.
 */
const COMMIT_LUA = `
local revision = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
-- Redis does not undo a script's earlier writes when a later command fails, so the one
-- command that can refuse (XADD, if the feed already holds this revision) goes first.
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], revision .. '-0',
  'revision', revision, 'change', ARGV[3])
redis.call('SET', KEYS[1], revision)
local firstDelete = 5 + 2 * tonumber(ARGV[4])
-- Deletes before upserts, as applyChanges does: a key in both ends up upserted.
for i = firstDelete, #ARGV do
  redis.call('HDEL', KEYS[2], ARGV[i])
end
for i = 5, firstDelete - 1, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
-- Only the revision: every subscriber reads the change from the feed, so a big commit is not
-- pushed through pub/sub to every proxy.
redis.call('PUBLISH', ARGV[1], revision)
return revision
`
const COMMIT_SHA = createHash('sha1').update(COMMIT_LUA).digest('hex')

type ChangeListener = (change: StoreChange) => void

export class RedisStore implements Store {
  readonly description: string
  private readonly prefix: string
  private readonly feedLength: number
  private readonly logger: Logger | undefined
  private readonly client: RedisClient
  private subscriber: RedisClient | undefined
  private readonly listeners = new Map<Keyspace, Set<ChangeListener>>()
  /** Per keyspace, the fetches of pushed changes, chained so listeners see them in order. */
  private readonly deliveries = new Map<Keyspace, Promise<void>>()
  private readonly connectionListeners = new Set<(connected: boolean) => void>()
  private subscriptionsLive = false
  private wasConnected = false
  private closed = false

  constructor (private readonly connect: RedisClientFactory, options: RedisStoreOptions) {
    this.description = options.description
    this.prefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX
    this.feedLength = options.feedLength ?? DEFAULT_FEED_LENGTH
    this.logger = options.logger
    this.client = connect('commands')
    this.client.on('ready', () => this.reportConnection())
    this.client.on('close', () => this.reportConnection())
    this.quietErrors(this.client, 'commands')
  }

  /** The commands connection is ready and, once something subscribed, its subscriptions are live. */
  get connected (): boolean {
    return this.client.status === 'ready' && (this.subscriber === undefined || this.subscriptionsLive)
  }

  async commit (space: Keyspace, changes: EntryChanges): Promise<number> {
    if (isEmpty(changes)) return await this.revision(space)
    const encoded = encodeChanges(changes)
    const keys = this.keys(space)
    const args = [
      keys.notify,
      String(this.feedLength),
      encoded.json,
      String(encoded.upserts.length),
      ...encoded.upserts.flat(),
      ...encoded.deletes
    ]
    const revision = await this.run('commit', () => this.runCommitScript([keys.revision, keys.entries, keys.feed], args))
    return Number(revision)
  }

  async snapshot (space: Keyspace): Promise<StoreSnapshot> {
    const keys = this.keys(space)
    // One MULTI: the revision and the entries are read with no commit in between.
    const [revision, hash] = await this.run('snapshot', () =>
      this.transaction(this.client.multi().get(keys.revision).hgetall(keys.entries)))
    const entries = new Map<string, unknown>()
    for (const [key, json] of Object.entries(hash as Record<string, string>)) entries.set(key, decodeValue(key, json))
    return { revision: parseRevision(revision), entries }
  }

  async revision (space: Keyspace): Promise<number> {
    const keys = this.keys(space)
    return parseRevision(await this.run('revision', () => this.client.get(keys.revision)))
  }

  async changesSince (space: Keyspace, revision: number): Promise<StoreChange[] | undefined> {
    if (!Number.isSafeInteger(revision) || revision < 0) throw new StoreError(`invalid revision ${revision}`)
    const keys = this.keys(space)
    // A reader further behind than the feed's length resyncs from a snapshot anyway.
    const [current, messages] = await this.run('changesSince', () => this.transaction(this.client.multi()
      .get(keys.revision)
      .xrange(keys.feed, `${revision + 1}-0`, '+', 'COUNT', this.feedLength)))
    const latest = parseRevision(current)
    // A reader ahead of the store follows another history (the store was reset): resync.
    if (latest < revision) return undefined
    const changes = (messages as FeedMessage[]).map(parseFeedMessage)
    const complete = changes.length === latest - revision &&
      changes.every((change, index) => change.revision === revision + 1 + index)
    return complete ? changes : undefined
  }

  subscribe (space: Keyspace, listener: ChangeListener): Unsubscribe {
    this.assertOpen()
    let listeners = this.listeners.get(space)
    if (listeners === undefined) {
      listeners = new Set()
      this.listeners.set(space, listeners)
      this.ensureSubscriber().subscribe(this.keys(space).notify).catch((error: unknown) => {
        this.logger?.warn({ err: error, store: this.description }, 'subscribing to store notifications failed')
      })
    }
    listeners.add(listener)
    return () => this.unsubscribe(space, listener)
  }

  onConnectionChange (listener: (connected: boolean) => void): Unsubscribe {
    this.connectionListeners.add(listener)
    return () => { this.connectionListeners.delete(listener) }
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.listeners.clear()
    this.connectionListeners.clear()
    await Promise.all([this.client, this.subscriber].map(async (client) => {
      if (client === undefined) return
      if (client.status === 'ready') await client.quit().catch(() => {})
      client.disconnect() // also stops reconnecting if it was not connected
    }))
  }

  private keys (space: Keyspace): KeyspaceKeys {
    return keyspaceKeys(this.prefix, space)
  }

  /** EVALSHA, falling back to EVAL (which also caches it) the first time a server sees the script. */
  private async runCommitScript (keys: string[], args: string[]): Promise<unknown> {
    try {
      return await this.client.evalsha(COMMIT_SHA, keys.length, ...keys, ...args)
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
      return await this.client.eval(COMMIT_LUA, keys.length, ...keys, ...args)
    }
  }

  /** Executes a MULTI and returns each command's result, or throws the first command error. */
  private async transaction (multi: ReturnType<RedisClient['multi']>): Promise<unknown[]> {
    const results = await multi.exec()
    if (results === null) throw new Error('transaction aborted')
    return results.map(([error, result]) => {
      if (error !== null) throw error
      return result
    })
  }

  /** Runs a command, turning any failure (disconnected, timeout, server error) into a StoreError. */
  private async run<T> (operation: string, command: () => Promise<T>): Promise<T> {
    this.assertOpen()
    try {
      return await command()
    } catch (error) {
      if (error instanceof StoreError) throw error
      const reason = error instanceof Error ? error.message : String(error)
      throw new StoreError(`${operation} on ${this.description} failed: ${reason}`, { cause: error })
    }
  }

  private assertOpen (): void {
    if (this.closed) throw new StoreError(`the store ${this.description} is closed`)
  }

  /**
   * The pub/sub connection, made on the first subscribe. Until its subscriptions are confirmed
   * the store reports itself disconnected, so that a reader, told it is connected again,
   * catches up on whatever was committed while notifications could not reach it.
   */
  private ensureSubscriber (): RedisClient {
    if (this.subscriber !== undefined) return this.subscriber
    const subscriber = this.connect('subscriber')
    this.subscriber = subscriber
    subscriber.on('message', (channel: string, message: string) => this.onNotification(channel, message))
    // ioredis emits 'ready' just before it sends the (re)subscriptions, hence the setImmediate.
    subscriber.on('ready', () => setImmediate(() => { void this.confirmSubscriptions(subscriber) }))
    subscriber.on('close', () => {
      this.subscriptionsLive = false
      this.reportConnection()
    })
    this.quietErrors(subscriber, 'subscriber')
    this.reportConnection()
    return subscriber
  }

  /** A PING answered on the pub/sub connection comes after the replies to the SUBSCRIBEs sent before it. */
  private async confirmSubscriptions (subscriber: RedisClient): Promise<void> {
    try {
      await subscriber.ping()
    } catch {
      return // dropped again: the next 'ready' tries again
    }
    if (subscriber.status !== 'ready') return
    this.subscriptionsLive = true
    this.reportConnection()
  }

  private unsubscribe (space: Keyspace, listener: ChangeListener): void {
    const listeners = this.listeners.get(space)
    if (listeners === undefined || !listeners.delete(listener) || listeners.size > 0) return
    this.listeners.delete(space)
    this.subscriber?.unsubscribe(this.keys(space).notify).catch(() => {}) // gone with the connection anyway
  }

  private onNotification (channel: string, message: string): void {
    const space = (['resources', 'state'] as const).find((s) => this.keys(s).notify === channel)
    const revision = Number(message)
    if (space === undefined || !Number.isSafeInteger(revision)) return
    const previous = this.deliveries.get(space) ?? Promise.resolve()
    const next = previous.then(() => this.deliverPushed(space, revision))
    this.deliveries.set(space, next)
    void next.finally(() => {
      if (this.deliveries.get(space) === next) this.deliveries.delete(space)
    })
  }

  /** Reads the notified commit from the feed and hands it to the listeners; on failure drops it (readers notice the gap). */
  private async deliverPushed (space: Keyspace, revision: number): Promise<void> {
    const id = `${revision}-0`
    let change: StoreChange | undefined
    try {
      const messages = await this.client.xrange(this.keys(space).feed, id, id)
      change = messages.length === 1 ? parseFeedMessage(messages[0] as FeedMessage) : undefined
    } catch (error) {
      this.logger?.debug({ err: error, revision }, 'dropped a pushed change')
    }
    if (change === undefined) return
    for (const listener of this.listeners.get(space) ?? []) {
      // A listener that throws is a bug to surface (as an EventEmitter would), without
      // breaking the chain of deliveries or keeping the other listeners from their change.
      try {
        listener(change)
      } catch (error) {
        queueMicrotask(() => { throw error })
      }
    }
  }

  /** Tells the listeners when the overall state (see `connected`) has changed. */
  private reportConnection (): void {
    const connected = this.connected
    if (connected === this.wasConnected || this.closed) return
    this.wasConnected = connected
    this.logger?.info({ store: this.description, connected }, connected ? 'store connected' : 'store disconnected')
    for (const listener of this.connectionListeners) listener(connected)
  }

  private quietErrors (client: RedisClient, role: string): void {
    // Without an 'error' listener ioredis prints every failed reconnection attempt.
    client.on('error', (error: Error) => this.logger?.debug({ err: error, role }, 'store connection error'))
  }
}

type FeedMessage = [id: string, fields: string[]]

function parseFeedMessage ([id, fields]: FeedMessage): StoreChange {
  const field = (name: string): string | undefined => {
    const index = fields.findIndex((value, i) => i % 2 === 0 && value === name)
    return index < 0 ? undefined : fields[index + 1]
  }
  const revision = Number(field('revision'))
  const json = field('change')
  if (!Number.isSafeInteger(revision) || json === undefined) throw new StoreError(`change feed message ${id} is malformed`)
  return decodeChange(revision, json)
}

function parseRevision (value: unknown): number {
  if (value === null || value === undefined) return 0
  const revision = Number(value)
  if (!Number.isSafeInteger(revision) || revision < 0) throw new StoreError(`stored revision ${String(value)} is not a revision`)
  return revision
}
