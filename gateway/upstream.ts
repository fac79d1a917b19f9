/**
 * How the waypoint reaches a chosen endpoint: through an HBONE tunnel to the endpoint's node
 * with the waypoint's own identity (or plain TCP for a pod outside the mesh). HTTP/1.1 goes
 * through a node http.Agent whose connections are such tunnels (reply-from drives it);
 * HTTP/2 and gRPC share one HTTP/2 session per endpoint, also on a tunnel.
 */
import http from 'node:http'
import http2 from 'node:http2'
import type { Duplex } from 'node:stream'

/** Opens a byte stream to ip:port (a pod), however the mesh requires. */
export type TunnelOpener = (ip: string, port: number) => Promise<Duplex>

/**
 * Node's http client expects socket methods an HTTP/2 stream lacks; they only tune TCP, which
 * the tunnel's own connection already handles, so they are no-ops here.
 */
function asSocket (stream: Duplex): Duplex {
  const socketLike = stream as Duplex & Record<string, unknown>
  for (const method of ['setKeepAlive', 'setNoDelay', 'ref', 'unref']) {
    if (typeof socketLike[method] !== 'function') socketLike[method] = () => stream
  }
  // Node's http client writes a request's head as a latin1 string, corked with the first body
  // chunk; an HTTP/2 stream's writev sends garbage for such string chunks (Node 20; the bug
  // HttpIngress's bufferWrites avoids on the other side). So only Buffers reach the stream.
  const write = stream.write.bind(stream) as (chunk: unknown, callback?: WriteCallback) => boolean
  const writeBuffers = (chunk: unknown, encoding?: BufferEncoding | WriteCallback, callback?: WriteCallback): boolean => {
    const done = typeof encoding === 'function' ? encoding : callback
    return write(typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8') : chunk, done)
  }
  ;(stream as unknown as { write: typeof writeBuffers }).write = writeBuffers
  // A socket closes when its peer ends it; an HTTP/2 stream stays half-open. Without this, when
  // a backend closes an idle connection the Agent keeps its tunnel as a free connection, and the
  // next request sent on it waits for an answer that never comes.
  stream.once('end', () => stream.destroy())
  return stream
}

type WriteCallback = (error?: Error | null) => void

/** An http.Agent whose connections are tunnels: keep-alive pools per endpoint ip:port. */
export class TunnelAgent extends http.Agent {
  constructor (private readonly open: TunnelOpener, options: http.AgentOptions = {}) {
    super({ keepAlive: true, maxSockets: 256, ...options })
  }

  override createConnection (options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | undefined {
    const host = options.host ?? options.hostname ?? ''
    const port = Number(options.port)
    this.open(host, port).then((stream) => callback?.(null, asSocket(stream)), (err: Error) => callback?.(err, undefined as unknown as Duplex))
    return undefined
  }
  // keepSocketAlive and reuseSocket are the base Agent's on purpose: reuseSocket removes the
  // 'error' listener the Agent adds to each socket it parks (an override that skips it leaks one
  // listener per reuse: MaxListenersExceededWarning on the tunnel streams), and keepSocketAlive
  // honours the backend's `Keep-Alive: timeout=N` hint, so an idle tunnel is dropped before the
  // backend closes it under a request. asSocket makes the socket calls they use no-ops.
}

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
