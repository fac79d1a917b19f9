/**
 * Opens a Store from the URL given on the command line (`--store URL`):
 *
 *   memory                                          the in-process store
 *   redis://[[user]:password@]host[:port][/db]      standalone Redis (default port 6379)
 *   rediss://...                                    the same over TLS
 *   redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/masterName[/db]
 *                                                   Sentinel: the sentinels' addresses (default
 *                                                   port 26379) and the monitored master's name;
 *                                                   the credentials are the Redis nodes', not the
 *                                                   sentinels'
 *   redis+cluster://[[user]:password@]host[:port][,host[:port]...]
 *                                                   Cluster: a few seed nodes (default port 6379)
 *
 * Every Redis client reconnects forever (backoff from 50 ms to 1 s) and fails a command at
 * once while disconnected, so callers see a StoreError instead of waiting.
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { Logger } from 'pino'
import { ConfigError } from '../policy/errors.js'
import { MemoryStore } from './memory-store.js'
import { RedisStore, type RedisClient } from './redis-store.js'
import type { Store } from './store.js'

export interface OpenStoreOptions {
  /** Prefix of every Redis key and channel (default 'ambit:'). */
  readonly keyPrefix?: string
  /** About how many commits the Redis change feed keeps (default 10000). */
  readonly feedLength?: number
  /** A command with no answer after this long fails (default 5000 ms). */
  readonly commandTimeoutMs?: number
  /**
   * How long openStore waits for the first connection (default 5000 ms). It returns the store
   * even if Redis is not there yet: the store keeps trying and its commands fail until then.
   */
  readonly connectWaitMs?: number
  readonly logger?: Logger
}

export interface Address {
  readonly host: string
  readonly port: number
}

/** A parsed Redis store URL. */
export interface RedisLocation {
  readonly kind: 'standalone' | 'sentinel' | 'cluster'
  readonly tls: boolean
  readonly addresses: readonly Address[]
  readonly username: string | undefined
  readonly password: string | undefined
  readonly db: number
  readonly masterName: string | undefined
}

const SCHEMES: Readonly<Record<string, { kind: RedisLocation['kind'], tls: boolean, defaultPort: number }>> = {
  'redis:': { kind: 'standalone', tls: false, defaultPort: 6379 },
  'rediss:': { kind: 'standalone', tls: true, defaultPort: 6379 },
  'redis+sentinel:': { kind: 'sentinel', tls: false, defaultPort: 26379 },
  'redis+cluster:': { kind: 'cluster', tls: false, defaultPort: 6379 }
}

const MIN_RETRY_DELAY_MS = 50
const MAX_RETRY_DELAY_MS = 1000

export async function openStore (url: string, options: OpenStoreOptions = {}): Promise<Store> {
  if (url === 'memory') return new MemoryStore()
  const location = parseStoreUrl(url)
  const store = new RedisStore((role) => createClient(location, role, options), {
    description: describe(location),
    keyPrefix: options.keyPrefix,
    feedLength: options.feedLength,
    logger: options.logger
  })
  await waitForConnection(store, options.connectWaitMs ?? 5000)
  return store
}

/** Reads a store URL (see the top of this file); throws ConfigError on anything else. */
export function parseStoreUrl (url: string): RedisLocation {
  const match = /^([a-z+]+:)\/\/(?:([^@/]*)@)?([^/?#]*)(\/[^?#]*)?$/i.exec(url)
  const scheme = match === null ? undefined : SCHEMES[match[1]!.toLowerCase()]
  if (match === null || scheme === undefined) {
    throw new ConfigError(`unsupported store URL ${redactUrl(url)}: use memory, redis://, rediss://, redis+sentinel:// or redis+cluster://`)
  }
  const [, , userinfo, hostList, path = ''] = match
  const addresses = hostList!.split(',').map((hostPort) => parseAddress(hostPort, scheme.defaultPort, url))
  if (scheme.kind === 'standalone' && addresses.length !== 1) {
    throw new ConfigError(`store URL ${redactUrl(url)} must name exactly one host (use redis+cluster:// or redis+sentinel:// for several)`)
  }
  const segments = path.split('/').filter((segment) => segment !== '').map((segment) => decode(segment, url))
  const masterName = scheme.kind === 'sentinel' ? segments.shift() : undefined
  if (scheme.kind === 'sentinel' && masterName === undefined) {
    throw new ConfigError(`store URL ${redactUrl(url)} must name the master: redis+sentinel://host:port/masterName`)
  }
  const db = segments.length === 0 ? 0 : Number(segments[0])
  if (segments.length > 1 || !Number.isInteger(db) || db < 0 || (scheme.kind === 'cluster' && db !== 0)) {
    throw new ConfigError(`store URL ${redactUrl(url)} has an invalid database (a Cluster has only database 0)`)
  }
  const { username, password } = parseUserinfo(userinfo, url)
  return { kind: scheme.kind, tls: scheme.tls, addresses, username, password, db, masterName }
}

/** The URL with any credentials replaced, for messages. */
export function redactUrl (url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@')
}

function parseAddress (hostPort: string, defaultPort: number, url: string): Address {
  // [v6 address]:port, or host:port, or host alone
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d+))?$/.exec(hostPort)
  const port = match?.[3] === undefined ? defaultPort : Number(match[3])
  if (match === null || port < 1 || port > 65535) throw new ConfigError(`store URL ${redactUrl(url)} has an invalid address '${hostPort}'`)
  return { host: (match[1] ?? match[2])!, port }
}

function parseUserinfo (userinfo: string | undefined, url: string): { username: string | undefined, password: string | undefined } {
  if (userinfo === undefined) return { username: undefined, password: undefined }
  const colon = userinfo.indexOf(':')
  const username = decode(colon < 0 ? userinfo : userinfo.slice(0, colon), url)
  const password = colon < 0 ? undefined : decode(userinfo.slice(colon + 1), url)
  // redis://:secret@host is the usual form for a password alone (the 'default' user).
  return { username: username === '' ? undefined : username, password }
}

function decode (component: string, url: string): string {
  try {
    return decodeURIComponent(component)
  } catch {
    throw new ConfigError(`store URL ${redactUrl(url)} has an invalid %-escape`)
  }
}

/** The URL without credentials: safe for logs and for Store.description. */
function describe (location: RedisLocation): string {
  const scheme = Object.entries(SCHEMES).find(([, s]) => s.kind === location.kind && s.tls === location.tls)![0]
  const hosts = location.addresses.map(({ host, port }) => `${host.includes(':') ? `[${host}]` : host}:${port}`).join(',')
  const path = [location.masterName, location.kind === 'cluster' ? undefined : String(location.db)]
    .filter((segment) => segment !== undefined).join('/')
  return `${scheme}//${hosts}${path === '' ? '' : `/${path}`}`
}

function retryDelay (attempt: number): number {
  return Math.min(MIN_RETRY_DELAY_MS * 2 ** Math.min(attempt - 1, 10), MAX_RETRY_DELAY_MS)
}

function createClient (location: RedisLocation, role: 'commands' | 'subscriber', options: OpenStoreOptions): RedisClient {
  const connection: RedisOptions = {
    username: location.username,
    password: location.password,
    tls: location.tls ? {} : undefined,
    connectTimeout: 5000,
    // The pub/sub connection's SUBSCRIBEs may wait out a disconnection: no timeout there.
    commandTimeout: role === 'subscriber' ? undefined : options.commandTimeoutMs ?? 5000,
    // A command fails at once while disconnected, and one in flight when the connection drops
    // fails at the first reconnection attempt: the caller decides whether to retry. The pub/sub
    // connection is the exception: its SUBSCRIBEs must wait for the connection, never fail.
    maxRetriesPerRequest: role === 'subscriber' ? null : 0,
    // A replica promoted away from under us (Sentinel failover) answers READONLY: reconnect,
    // which asks the sentinels for the new master.
    reconnectOnError: (error) => error.message.startsWith('READONLY')
  }
  const enableOfflineQueue = role === 'subscriber'
  switch (location.kind) {
    case 'standalone':
      return new Redis({ ...connection, ...location.addresses[0], db: location.db, enableOfflineQueue, retryStrategy: retryDelay })
    case 'sentinel':
      return new Redis({
        ...connection,
        sentinels: [...location.addresses],
        name: location.masterName,
        db: location.db,
        enableOfflineQueue,
        retryStrategy: retryDelay,
        sentinelRetryStrategy: retryDelay
      })
    case 'cluster': {
      const clusterOptions: ClusterOptions = { redisOptions: connection, enableOfflineQueue, clusterRetryStrategy: retryDelay }
      return new Cluster([...location.addresses], clusterOptions)
    }
  }
}

/** Resolves once the store is connected or after `timeoutMs`, whichever comes first. */
function waitForConnection (store: Store, timeoutMs: number): Promise<void> {
  if (store.connected) return Promise.resolve()
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer)
      unsubscribe()
      resolve()
    }
    const timer = setTimeout(done, timeoutMs)
    const unsubscribe = store.onConnectionChange((connected) => { if (connected) done() })
  })
}
