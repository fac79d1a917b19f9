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
import { Agent, type Dispatcher } from 'undici'

/** Opens a byte stream to ip:port (a pod), however the mesh requires. */
export type TunnelOpener = (ip: string, port: number) => Promise<Duplex>

/** How long a request may wait for its answer's headers, or between body chunks, unless the caller says. */
const DEFAULT_TIMEOUT_MS = 30_000
/** Keep-alive connections per endpoint ip:port. */
const CONNECTIONS_PER_ENDPOINT = 256

/**
 * An undici Agent whose connections are tunnels: keep-alive pools per endpoint ip:port.
 * undici reuses an idle connection only after checking that the backend has not closed it,
 * closes idle ones after a few seconds (or the backend's `Keep-Alive: timeout=N`), and drops
 * a connection its peer ends.
 */
export class TunnelDispatcher extends Agent {
  constructor (open: TunnelOpener) {
    super({
      connections: CONNECTIONS_PER_ENDPOINT,
      pipelining: 1,
      headersTimeout: DEFAULT_TIMEOUT_MS,
      bodyTimeout: DEFAULT_TIMEOUT_MS,
      connect: (options, callback) => {
        const port = Number(options.port) || (options.protocol === 'https:' ? 443 : 80)
        open(options.hostname, port).then((stream) => callback(null, asSocket(stream)), (err: Error) => callback(err, null))
      }
    })
  }

  override dispatch (options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return super.dispatch(withoutRefusedHeaders(options), handler)
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
