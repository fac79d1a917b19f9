/**
 * Turns HBONE tunnels into HTTP requests for fastify. Each tunnel carries one client
 * connection: HTTP/2 (the client's preface says so: HTTP/2 and gRPC) goes to an h2c server,
 * everything else to an HTTP/1.1 server. Both servers are fed connections by hand, never
 * listen on a port, and remember which tunnel (peer identity, Service) each request came on.
 */
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import { Duplex } from 'node:stream'
import type { ServicePortState, ServiceState } from '../policy/state.js'

export interface TunnelContext {
  /** The verified SPIFFE id of the client side (its ztunnel presents the client's certificate). */
  readonly peerSpiffeId: string
  /** The original client's address (from the HBONE `forwarded` header). */
  readonly sourceIp: string
  readonly service: ServiceState
  readonly port: ServicePortState
}

const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n')

/** Limits that keep a hostile client from holding the waypoint (slowloris, header floods). */
export interface HttpLimits {
  /** A request's headers must all arrive within this long (slowloris). */
  readonly headersTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  readonly maxHeaderSize: number
  readonly maxHeadersCount: number
}

export const HTTP_LIMITS: HttpLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  keepAliveTimeoutMs: 60_000,
  maxHeaderSize: 16 * 1024,
  maxHeadersCount: 200
}

/** How often the HTTP/1.1 server looks for requests past headersTimeout / requestTimeout. */
const TIMEOUT_CHECK_INTERVAL_MS = 1_000

export class HttpIngress {
  readonly http1: http.Server
  readonly http2: http2.Http2Server
  private readonly byConnection = new WeakMap<object, TunnelContext>()
  private pendingSession: TunnelContext | undefined

  constructor (
    http1Handler: http.RequestListener,
    http2Handler: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
    limits: HttpLimits = HTTP_LIMITS
  ) {
    this.http1 = http.createServer({
      maxHeaderSize: limits.maxHeaderSize, requireHostHeader: false, connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS
    }, http1Handler)
    this.http1.headersTimeout = limits.headersTimeoutMs
    this.http1.requestTimeout = limits.requestTimeoutMs
    this.http1.keepAliveTimeout = limits.keepAliveTimeoutMs
    this.http1.maxHeadersCount = limits.maxHeadersCount
    // Node enforces headersTimeout and requestTimeout with a periodic check that it starts on
    // 'listening'. This server never listens (connections are handed to it), so without this a
    // client sending its headers a byte at a time (slowloris) would hold its tunnel forever.
    this.http1.emit('listening')
    this.http2 = http2.createServer({ maxHeaderListPairs: limits.maxHeadersCount, maxSessionMemory: 32, settings: { maxHeaderListSize: limits.maxHeaderSize } }, http2Handler)
    this.http2.on('session', (session) => {
      if (this.pendingSession !== undefined) this.byConnection.set(session, this.pendingSession)
      session.on('error', () => session.destroy())
    })
  }

  /** Hands one tunnel to the right server, once its first bytes say which protocol it speaks. */
  accept (stream: Duplex, context: TunnelContext): void {
    const tunnel = asConnection(stream)
    tunnel.on('error', () => tunnel.destroy())
    const onReadable = (): void => {
      const head = tunnel.read() as Buffer | null
      if (head === null) return
      tunnel.off('readable', onReadable)
      tunnel.unshift(head)
      if (startsWith(head, HTTP2_PREFACE)) {
        // The h2 server's 'session' event fires synchronously inside emit('connection').
        this.pendingSession = context
        this.http2.emit('connection', tunnel)
        this.pendingSession = undefined
      } else {
        this.byConnection.set(tunnel, context)
        this.http1.emit('connection', tunnel)
      }
    }
    tunnel.on('readable', onReadable)
  }

  /** The tunnel a request arrived on. */
  contextOf (raw: http.IncomingMessage | http2.Http2ServerRequest): TunnelContext | undefined {
    if ('stream' in raw && raw.stream !== undefined) return this.byConnection.get(raw.stream.session as object)
    return this.byConnection.get(raw.socket)
  }

  close (): void {
    this.http1.closeAllConnections()
    this.http1.close()
    this.http2.close()
  }
}

/**
 * What the HTTP servers are handed for one tunnel. A TCP socket (plain HTTP: benchmarks and
 * tests) is used as it is, so Node's HTTP/1 parser reads it straight from its handle. An HBONE
 * tunnel is an HTTP/2 stream, which needs TunnelSocket.
 */
function asConnection (stream: Duplex): Duplex {
  return stream instanceof net.Socket ? stream : new TunnelSocket(stream)
}

/**
 * An HTTP/2 stream (an HBONE tunnel) made fit to be an HTTP server's socket.
 *
 * The HTTP server writes latin1 strings with writev; an HTTP/2 stream given such chunks sends
 * corrupted bytes (seen on Node 20), so everything is turned into Buffers first. The server
 * corks a response's head and body together: _writev gets them as one batch and writes them as
 * one Buffer (one HTTP/2 DATA frame instead of one per chunk: bench/l7 measured it).
 *
 * Reading, it passes the tunnel's chunks on, pausing the tunnel while its own buffer is full.
 * A write completes when the tunnel's write does, so the server sees the tunnel's backpressure.
 */
class TunnelSocket extends Duplex {
  constructor (private readonly tunnel: Duplex) {
    super()
    tunnel.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) tunnel.pause()
    })
    tunnel.once('end', () => this.push(null))
    tunnel.once('error', (err) => this.destroy(err))
    // A tunnel reset or closed under us leaves nothing to read or write.
    tunnel.once('close', () => this.destroy())
  }

  override _read (): void {
    this.tunnel.resume()
  }

  override _write (chunk: Buffer | string, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.tunnel.write(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk, callback)
  }

  override _writev (chunks: { chunk: Buffer | string, encoding: BufferEncoding }[], callback: (error?: Error | null) => void): void {
    const buffers = chunks.map(({ chunk, encoding }) => typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk)
    this.tunnel.write(buffers.length === 1 ? buffers[0] : Buffer.concat(buffers), callback)
  }

  override _final (callback: (error?: Error | null) => void): void {
    this.tunnel.end(callback)
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    // What was written just before (a 400 before the server drops a bad client) is already in
    // the tunnel's queue, and goes out before the reset.
    this.tunnel.destroy(err ?? undefined)
    callback(err)
  }
}

function startsWith (head: Buffer, prefix: Buffer): boolean {
  const length = Math.min(head.length, prefix.length)
  return head.subarray(0, length).equals(prefix.subarray(0, length)) && head.length >= 4
}
