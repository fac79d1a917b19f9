/**
 * How the waypoint reaches a chosen endpoint: through an HBONE tunnel to the endpoint's node
 * with the waypoint's own identity (or plain TCP for a pod outside the mesh). HTTP/1.1 goes
 * through an undici Agent whose connections are such tunnels (reply-from drives it, as it
 * drives undici for any http:// target); HTTP/2 and gRPC share one HTTP/2 session per
 * endpoint, also on a tunnel.
 */
import http2 from 'node:http2'
import net from 'node:net'
import type { Duplex } from 'node:stream'
// The same major as reply-from's own undici (7), so the Agent is the kind reply-from expects.
import { Agent, Dispatcher } from 'undici'

/** Opens a byte stream to ip:port (a pod), however the mesh requires. */
export type TunnelOpener = (ip: string, port: number) => Promise<Duplex>

/** How long a request may wait for its answer's headers, or between body chunks, unless the caller says. */
const DEFAULT_TIMEOUT_MS = 30_000
/** Keep-alive connections per endpoint ip:port. */
const CONNECTIONS_PER_ENDPOINT = 256

/** A backend's connection pool limits (TrafficPolicy `circuitBreaker`). */
export interface PoolLimits {
  /** Connections per endpoint, as Istio's maxConnections ("to a destination host"); more requests wait. */
  readonly maxConnections?: number
  /** A connection is closed after this many requests. */
  readonly maxRequestsPerConnection?: number
}

/**
 * An undici Agent whose connections are tunnels: keep-alive pools per endpoint ip:port.
 * undici reuses an idle connection only after checking that the backend has not closed it,
 * closes idle ones after a few seconds (or the backend's `Keep-Alive: timeout=N`), and drops
 * a connection its peer ends.
 */
export class TunnelDispatcher extends Agent {
  /** Each request closes its connection after it (maxRequestsPerConnection 1). */
  private readonly oneRequestPerConnection: boolean

  constructor (open: TunnelOpener, limits: PoolLimits = {}) {
    const perConnection = limits.maxRequestsPerConnection
    super({
      connections: limits.maxConnections ?? CONNECTIONS_PER_ENDPOINT,
      // undici resets a connection once it has counted more requests than maxRequestsPerClient
      // (N + 1 in all), and reads 0 as no limit: N - 1 gives N; a limit of 1 is `reset` per request.
      ...(perConnection !== undefined && perConnection > 1 && { maxRequestsPerClient: perConnection - 1 }),
      pipelining: 1,
      headersTimeout: DEFAULT_TIMEOUT_MS,
      bodyTimeout: DEFAULT_TIMEOUT_MS,
      connect: (options, callback) => {
        const port = Number(options.port) || (options.protocol === 'https:' ? 443 : 80)
        open(options.hostname, port).then((stream) => callback(null, asSocket(stream)), (err: Error) => callback(err, null))
      }
    })
    this.oneRequestPerConnection = perConnection === 1
  }

  override dispatch (options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const sent = withoutRefusedHeaders(options)
    return super.dispatch(this.oneRequestPerConnection ? { ...sent, reset: true } : sent, handler)
  }
}

/**
 * The request header that names the backend pool a request goes through (reply-from passes
 * only headers on to the dispatcher). UpstreamPools removes it: it never leaves the waypoint.
 */
export const POOL_HEADER = 'x-ambit-upstream-pool'

/**
 * The waypoint's HTTP/1.1 upstreams: one shared pool, and a pool of its own for each backend
 * whose TrafficPolicy limits its connections, chosen per request by POOL_HEADER.
 */
export class UpstreamPools extends Dispatcher {
  readonly shared: TunnelDispatcher
  private readonly pools = new Map<string, TunnelDispatcher>()

  constructor (private readonly open: TunnelOpener) {
    super()
    this.shared = new TunnelDispatcher(open)
  }

  /** A new pool for `backend` with `limits`; the one it replaces finishes its requests, then closes. */
  replace (backend: string, limits: PoolLimits | undefined): void {
    void this.pools.get(backend)?.close()
    if (limits === undefined) this.pools.delete(backend)
    else this.pools.set(backend, new TunnelDispatcher(this.open, limits))
  }

  /** Requests of `backend`'s own pool waiting for a connection (0 without one). */
  queued (backend: string): number {
    const pool = this.pools.get(backend)
    if (pool === undefined) return 0
    let waiting = 0
    // undici keeps one Client per endpoint when a single connection is allowed, else a Pool.
    for (const stats of Object.values(pool.stats)) waiting += 'queued' in stats ? stats.queued : stats.pending
    return waiting
  }

  override dispatch (options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const headers = options.headers as Record<string, string | string[] | undefined> | null | undefined
    const name = headers?.[POOL_HEADER]
    if (typeof name !== 'string') return this.shared.dispatch(options, handler)
    const rest = { ...headers }
    delete rest[POOL_HEADER]
    return (this.pools.get(name) ?? this.shared).dispatch({ ...options, headers: rest }, handler)
  }

  override async close (): Promise<void> {
    await Promise.all([this.shared, ...this.pools.values()].map((pool) => pool.close()))
  }

  override async destroy (): Promise<void> {
    await Promise.all([this.shared, ...this.pools.values()].map((pool) => pool.destroy()))
  }
}

/**
 * Headers undici refuses to send (it throws) or reads as orders for its own connection:
 * hop-by-hop ones that describe the client's connection, and `expect`, which the waypoint's
 * HTTP server has already answered with 100 Continue. A proxy drops them anyway.
 */
const REFUSED_HEADERS = ['connection', 'transfer-encoding', 'keep-alive', 'upgrade', 'expect'] as const

function withoutRefusedHeaders (options: Dispatcher.DispatchOptions): Dispatcher.DispatchOptions {
  const headers = options.headers
  if (headers === null || headers === undefined || Array.isArray(headers) || typeof headers !== 'object' || Symbol.iterator in headers) return options
  const record = headers as Record<string, unknown>
  if (!REFUSED_HEADERS.some((name) => record[name] !== undefined)) return options
  const kept = { ...record }
  for (const name of REFUSED_HEADERS) delete kept[name]
  return { ...options, headers: kept as Dispatcher.DispatchOptions['headers'] }
}

/**
 * A tunnel made fit to be an HTTP client's socket. A TCP socket already is one. An HBONE
 * tunnel is an HTTP/2 stream: the client writes a request's head as a latin1 string, corked
 * with the first body chunk, and an HTTP/2 stream's writev sends garbage for such string
 * chunks (Node 20; the bug HttpIngress's bufferWrites avoids on the other side), so only
 * Buffers reach the stream. The socket-tuning calls a client may make (keep-alive, no-delay,
 * ref) concern the tunnel's own connection, and are no-ops here.
 */
function asSocket (stream: Duplex): net.Socket {
  if (stream instanceof net.Socket) return stream
  const socketLike = stream as Duplex & Record<string, unknown>
  for (const method of ['setKeepAlive', 'setNoDelay', 'ref', 'unref']) {
    if (typeof socketLike[method] !== 'function') socketLike[method] = () => stream
  }
  const write = stream.write.bind(stream) as (chunk: unknown, callback?: WriteCallback) => boolean
  const writeBuffers = (chunk: unknown, encoding?: BufferEncoding | WriteCallback, callback?: WriteCallback): boolean => {
    const done = typeof encoding === 'function' ? encoding : callback
    return write(typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8') : chunk, done)
  }
  ;(stream as unknown as { write: typeof writeBuffers }).write = writeBuffers
  // A socket closes when its peer ends it; an HTTP/2 stream stays half-open. Without this, a
  // tunnel whose backend closed an idle connection could stay in the pool, and the next
  // request sent on it would wait for an answer that never comes.
  stream.once('end', () => stream.destroy())
  // undici drives any Duplex through the net.Socket methods above; the type says socket.
  return stream as unknown as net.Socket
}

type WriteCallback = (error?: Error | null) => void

/** One HTTP/2 session per endpoint, opened on a tunnel and reused until it closes. */
export class Http2Sessions {
  private readonly sessions = new Map<string, Promise<http2.ClientHttp2Session>>()

  constructor (private readonly open: TunnelOpener) {}

  get (ip: string, port: number): Promise<http2.ClientHttp2Session> {
    const key = `${ip}:${port}`
    let session = this.sessions.get(key)
    if (session === undefined) {
      const opening = this.connect(ip, port)
      // Only this session's own end forgets it: a newer session under the same key stays.
      const forget = (): void => { if (this.sessions.get(key) === opening) this.sessions.delete(key) }
      opening.then((s) => {
        s.on('close', forget)
        s.on('goaway', forget)
        s.on('error', forget)
      }, forget)
      this.sessions.set(key, opening)
      session = opening
    }
    return session
  }

  close (): void {
    for (const session of this.sessions.values()) session.then((s) => s.close(), () => {})
    this.sessions.clear()
  }

  private async connect (ip: string, port: number): Promise<http2.ClientHttp2Session> {
    const tunnel = await this.open(ip, port)
    return http2.connect(`http://${ip.includes(':') ? `[${ip}]` : ip}:${port}`, { createConnection: () => tunnel })
  }
}
