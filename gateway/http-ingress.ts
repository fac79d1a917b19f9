/**
 * Turns HBONE tunnels into HTTP requests for fastify. Each tunnel carries one client
 * connection: HTTP/2 (the client's preface says so: HTTP/2 and gRPC) goes to an h2c server,
 * everything else to an HTTP/1.1 server. Both servers are fed connections by hand, never
 * listen on a port, and remember which tunnel (peer identity, Service) each request came on.
 */
import http from 'node:http'
import http2 from 'node:http2'
import { Duplex, Writable } from 'node:stream'
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
    const tunnel = bufferWrites(stream)
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
 * The HTTP server writes latin1 strings with writev; an HTTP/2 stream given such chunks sends
 * corrupted bytes (seen on Node 20). Everything written is turned into Buffers first.
 *
 * The server corks a response's head and body together, but Duplex.from hands them over one
 * chunk at a time; corking the tunnel until the next tick sends them in one write again (one
 * syscall, or one HTTP/2 DATA frame, instead of one per chunk: bench/l7 measured it).
 */
function bufferWrites (stream: Duplex): Duplex {
  const writer = new Writable({
    write (chunk: Buffer | string, encoding, callback) {
      if (stream.writableCorked === 0) {
        stream.cork()
        process.nextTick(() => stream.uncork())
      }
      // Not waiting for this write's callback lets the batch's next chunk join the corked write;
      // backpressure is kept through 'drain', and a failed write destroys the tunnel (readable side).
      if (stream.write(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk)) callback()
      else stream.once('drain', () => callback())
    },
    final (callback) {
      stream.end(callback)
    },
    destroy (err, callback) {
      // What was written just before (a 400 before the server drops a bad client) goes out first.
      if (stream.writableCorked > 0) stream.uncork()
      stream.destroy(err ?? undefined)
      callback(err)
    }
  })
  return Duplex.from({ readable: stream, writable: writer })
}

function startsWith (head: Buffer, prefix: Buffer): boolean {
  const length = Math.min(head.length, prefix.length)
  return head.subarray(0, length).equals(prefix.subarray(0, length)) && head.length >= 4
}
