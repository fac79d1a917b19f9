/**
 * The HBONE server (port 15008): terminates mutual TLS, checks that the peer is a mesh workload,
 * and hands every well-formed CONNECT stream to `onStream`, which decides. This file is thin
 * I/O: no policy here, only the protocol and the hardening every internet-facing HTTP/2 server
 * needs (stream and header limits, a rapid-reset guard, handshake and idle timeouts).
 *
 * Which certificate: the client names the destination pod in SNI (see hbone-protocol.ts); the
 * server presents `identityFor(thatIp)` and later answers 421 to any CONNECT whose destination
 * has a different identity. A handshake without a usable SNI hint fails ('no-server-identity').
 *
 * Why TLS accepts unverified clients: `rejectUnauthorized` would drop a bad client silently
 * after its handshake (TLS 1.3 clients finish first), leaving it with a bare connection reset.
 * Instead the server verifies in its 'session' handler, reports the reason, and tells the client
 * why in a GOAWAY (INADEQUATE_SECURITY) before closing; no stream of such a session ever runs.
 */
import http2, {
  constants as h2, type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Session,
  type ServerHttp2Stream
} from 'node:http2'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import {
  DEFAULT_CONNECTION_WINDOW_BYTES, DEFAULT_SESSION_MEMORY_MB, DEFAULT_STREAM_WINDOW_BYTES, ipFromServerName, parseAuthority,
  readHboneHeaders, type HboneHeaders, type SocketAddress
} from './hbone-protocol.js'
import { HBONE_MIN_TLS_VERSION, localSpiffeId, peerSpiffeId, secureContextFor, type TlsIdentity } from './hbone-tls.js'

/** Why a connection never became a usable HBONE session. */
export type TlsFailureReason =
  | 'no-server-identity' // SNI missing, or naming no destination we hold a certificate for
  | 'handshake-timeout'
  | 'handshake-failed' // not TLS, no common version or cipher, aborted mid-handshake
  | 'alpn-mismatch' // TLS is up but the client did not choose h2
  | 'no-client-certificate'
  | 'untrusted-client-certificate'
  | 'no-spiffe-id' // a trusted certificate that carries no single spiffe:// URI SAN

/** Why an established session was ended or failed. */
export type SessionFailureReason = 'rapid-reset' | 'protocol-error' | 'connection-error' | 'unresponsive'

/** One CONNECT stream waiting for a decision. */
export interface HboneRequest {
  /** The client workload's SPIFFE id (from its verified certificate). */
  readonly peerSpiffeId: string
  /** The SPIFFE id this server presented on the connection. */
  readonly localSpiffeId: string
  readonly destination: SocketAddress
  readonly headers: HboneHeaders
  /** Address of the peer (its ztunnel or waypoint), not of the original client. */
  readonly remoteAddress: string
  /** Aborted when the stream closes, e.g. the client cancels it while the handler decides. */
  readonly signal: AbortSignal
  /** Answers 200 and returns the tunnel. On a stream the client already cancelled, the Duplex is destroyed. */
  accept (): Duplex
  /** Answers `status` (4xx/5xx) and ends the stream; `reason` goes to onStreamRefused only. */
  refuse (status: number, reason: string): void
}

export interface StreamRefusal {
  readonly status: number
  readonly reason: string
  readonly peerSpiffeId: string
  readonly remoteAddress: string
  /** Absent when the authority did not parse. */
  readonly destination?: SocketAddress
}

export interface HboneServerLimits {
  /** Streams one session may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
  readonly maxConcurrentStreams: number
  /** Node's per-session memory cap, in megabytes. */
  readonly maxSessionMemoryMb: number
  /** SETTINGS_MAX_HEADER_LIST_SIZE, in bytes. */
  readonly maxHeaderListSize: number
  /** Streams a peer may cancel before their response, per session per second (CVE-2023-44487). */
  readonly maxPrematureResetsPerSecond: number
  /** A TCP connection that has not finished its TLS handshake by then is closed. */
  readonly handshakeTimeoutMs: number
  /** A session without streams for this long is closed. */
  readonly idleSessionTimeoutMs: number
  /** Every session is pinged this often... */
  readonly keepaliveIntervalMs: number
  /** ...and closed when the answer takes longer than this (see startKeepalive). */
  readonly keepaliveTimeoutMs: number
  readonly streamWindowBytes: number
  readonly connectionWindowBytes: number
}

export const DEFAULT_SERVER_LIMITS: HboneServerLimits = {
  maxConcurrentStreams: 100,
  maxSessionMemoryMb: DEFAULT_SESSION_MEMORY_MB,
  maxHeaderListSize: 16 * 1024,
  maxPrematureResetsPerSecond: 200,
  handshakeTimeoutMs: 10_000,
  idleSessionTimeoutMs: 300_000,
  keepaliveIntervalMs: 30_000,
  keepaliveTimeoutMs: 10_000,
  streamWindowBytes: DEFAULT_STREAM_WINDOW_BYTES,
  connectionWindowBytes: DEFAULT_CONNECTION_WINDOW_BYTES
}

export interface HboneServerOptions {
  readonly host: string
  readonly port: number
  /** The identity to present for a destination pod, or undefined when we serve no such pod. */
  identityFor (destinationIp: string): TlsIdentity | undefined
  /**
   * Decides one stream: call `accept()` or `refuse()` before the returned promise settles.
   * A handler that throws, or settles without deciding, gets the stream refused with 500.
   */
  onStream (request: HboneRequest): void | Promise<void>
  onTlsError?: (reason: TlsFailureReason, remoteAddress: string | undefined, detail: string) => void
  onSessionError?: (reason: SessionFailureReason, remoteAddress: string | undefined, detail: string) => void
  /** Every stream answered with something other than 200, by the server or by onStream. */
  onStreamRefused?: (refusal: StreamRefusal) => void
  readonly limits?: Partial<HboneServerLimits>
}

/** How long a stopping proxy lets open connections finish, unless told otherwise. */
export const DEFAULT_DRAIN_MS = 10_000

export interface HboneServer {
  readonly port: number
  /** The underlying server, for observation (e.g. counting 'secureConnection'). */
  readonly server: Http2SecureServer
  /** Sessions currently open. */
  readonly sessionCount: number
  /** Stops accepting, lets open streams finish for up to `graceMs`, then cuts the rest. */
  close (graceMs?: number): Promise<void>
}

/** Counts events in fixed one-second windows. */
export class RateWindow {
  private windowStart = 0
  private count = 0
  constructor (private readonly limit: number) {}

  /** Records one event at `now` (ms); true once the window holds more than the limit. */
  record (now: number): boolean {
    if (now - this.windowStart >= 1000) {
      this.windowStart = now
      this.count = 0
    }
    this.count++
    return this.count > this.limit
  }
}

/** What the server knows about one authenticated session. */
interface SessionContext {
  readonly session: ServerHttp2Session
  readonly peerSpiffeId: string
  readonly localSpiffeId: string
  readonly remoteAddress: string
  readonly prematureResets: RateWindow
  activeStreams: number
  idleTimer: NodeJS.Timeout | undefined
  /** Set by the rapid-reset guard: new streams are refused until the session is gone. */
  condemned: boolean
}

class NoServerIdentityError extends Error {
  readonly code = 'ERR_HBONE_NO_SERVER_IDENTITY'
}

export async function startHboneServer (options: HboneServerOptions): Promise<HboneServer> {
  const limits: HboneServerLimits = { ...DEFAULT_SERVER_LIMITS, ...options.limits }
  const sessions = new Set<ServerHttp2Session>()

  const server = http2.createSecureServer({
    // No certificate of its own: every handshake gets one from SNICallback.
    SNICallback: (serverName, done) => {
      try {
        const ip = ipFromServerName(serverName)
        const identity = ip === undefined ? undefined : options.identityFor(ip)
        if (identity === undefined) throw new Error('no destination served here')
        done(null, secureContextFor(identity))
      } catch (error) {
        done(new NoServerIdentityError(`server name '${serverName}': ${(error as Error).message}`))
      }
    },
    minVersion: HBONE_MIN_TLS_VERSION,
    requestCert: true,
    rejectUnauthorized: false, // verified in onSession (see the file comment)
    allowHTTP1: false,
    handshakeTimeout: limits.handshakeTimeoutMs,
    maxSessionMemory: limits.maxSessionMemoryMb,
    maxHeaderListPairs: 64, // a CONNECT carries a handful; Node's default is 128
    settings: {
      maxConcurrentStreams: limits.maxConcurrentStreams,
      maxHeaderListSize: limits.maxHeaderListSize,
      initialWindowSize: limits.streamWindowBytes,
      enablePush: false
    }
  })

  server.on('tlsClientError', (error: Error & { code?: string }, socket: TLSSocket) => {
    options.onTlsError?.(handshakeFailureReason(error, socket), socket.remoteAddress, error.message)
  })
  server.on('unknownProtocol', (socket: TLSSocket) => {
    options.onTlsError?.('alpn-mismatch', socket.remoteAddress, `client negotiated ${String(socket.alpnProtocol)}, not h2`)
    socket.destroy()
  })
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
    onSession(session, options, limits)
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  // After listening, an 'error' is a broken accept; never let it crash the process.
  server.on('error', (error) => options.onSessionError?.('connection-error', undefined, error.message))

  const address = server.address()
  return {
    port: typeof address === 'object' && address !== null ? address.port : options.port,
    server,
    get sessionCount () { return sessions.size },
    close: (graceMs = 5000) => closeServer(server, sessions, graceMs)
  }
}

function handshakeFailureReason (error: Error & { code?: string }, socket: TLSSocket): TlsFailureReason {
  if (error instanceof NoServerIdentityError) return 'no-server-identity'
  if (error.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'handshake-timeout'
  // Without SNI there is no certificate to present, which OpenSSL reports as a cipher problem.
  const noCertificateToPresent = error.code === 'ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM' ||
    error.code === 'ERR_SSL_NO_SHARED_CIPHER'
  const sniSent = typeof socket.servername === 'string' && socket.servername !== ''
  if (noCertificateToPresent && !sniSent) return 'no-server-identity'
  return 'handshake-failed'
}

/** Why the client of a TLS socket is not a mesh workload, or undefined when it is one. */
function clientCertificateProblem (socket: TLSSocket): { reason: TlsFailureReason, detail: string } | undefined {
  if (socket.getPeerX509Certificate() === undefined) {
    return { reason: 'no-client-certificate', detail: 'client certificate required' }
  }
  if (!socket.authorized) {
    return { reason: 'untrusted-client-certificate', detail: `client certificate not trusted: ${String(socket.authorizationError)}` }
  }
  if (peerSpiffeId(socket) === undefined) {
    return { reason: 'no-spiffe-id', detail: 'client certificate carries no SPIFFE id' }
  }
  return undefined
}

function onSession (session: ServerHttp2Session, options: HboneServerOptions, limits: HboneServerLimits): void {
  // session.socket is Node's documented TLS-socket proxy for this session.
  const socket = session.socket as TLSSocket
  const remoteAddress = socket.remoteAddress ?? 'unknown'
  session.on('error', (error: Error & { code?: string }) => {
    const reason = error.code?.startsWith('ERR_HTTP2') === true ? 'protocol-error' : 'connection-error'
    options.onSessionError?.(reason, remoteAddress, error.message)
  })

  const problem = clientCertificateProblem(socket)
  if (problem !== undefined) {
    options.onTlsError?.(problem.reason, remoteAddress, problem.detail)
    rejectSession(session, problem.detail)
    return
  }

  const context: SessionContext = {
    session,
    peerSpiffeId: peerSpiffeId(socket) ?? '',
    localSpiffeId: localSpiffeId(socket) ?? '',
    remoteAddress,
    prematureResets: new RateWindow(limits.maxPrematureResetsPerSecond),
    activeStreams: 0,
    idleTimer: undefined,
    condemned: false
  }
  session.setLocalWindowSize(limits.connectionWindowBytes)
  session.once('close', () => clearTimeout(context.idleTimer))
  armIdleTimer(context, limits.idleSessionTimeoutMs)
  startKeepalive(context, limits, options)
  session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    onStream(context, stream, headers, options, limits)
  })
}

/** Tells an unauthenticated client why in a GOAWAY, then closes; it never gets a stream. */
function rejectSession (session: ServerHttp2Session, detail: string): void {
  session.goaway(h2.NGHTTP2_INADEQUATE_SECURITY, 0, Buffer.from(detail))
  session.close()
  // A client that ignores the GOAWAY must not hold the socket.
  setTimeout(() => session.destroy(), 1000).unref()
}

/**
 * Pings the peer every keepaliveIntervalMs; no answer within keepaliveTimeoutMs closes the
 * session. That finds dead peers, and also the sessions Node leaves open after it sent GOAWAY
 * for a peer's protocol error (RFC 9113 §5.4.1 says close the connection; Node only stops
 * reading, so a garbage-sending peer would otherwise hold the socket and its streams).
 */
function startKeepalive (context: SessionContext, limits: HboneServerLimits, options: HboneServerOptions): void {
  const { session } = context
  const interval = setInterval(() => {
    if (session.destroyed) return
    const deadline = setTimeout(() => {
      options.onSessionError?.('unresponsive', context.remoteAddress, `no answer to a PING within ${limits.keepaliveTimeoutMs} ms`)
      session.destroy()
    }, limits.keepaliveTimeoutMs).unref()
    // The callback also runs (with an error) when the session goes away first.
    if (!session.ping(() => clearTimeout(deadline))) clearTimeout(deadline)
  }, limits.keepaliveIntervalMs).unref()
  session.once('close', () => clearInterval(interval))
}

function armIdleTimer (context: SessionContext, idleMs: number): void {
  clearTimeout(context.idleTimer)
  context.idleTimer = setTimeout(() => context.session.close(), idleMs).unref()
}

function onStream (
  context: SessionContext, stream: ServerHttp2Stream, headers: IncomingHttpHeaders,
  options: HboneServerOptions, limits: HboneServerLimits
): void {
  stream.on('error', () => { /* the tunnel's owner sees errors through its own listeners */ })
  if (context.condemned) {
    stream.close(h2.NGHTTP2_REFUSED_STREAM)
    return
  }
  context.activeStreams++
  clearTimeout(context.idleTimer)
  stream.once('close', () => {
    if (--context.activeStreams === 0 && !context.session.closed) armIdleTimer(context, limits.idleSessionTimeoutMs)
  })
  // A peer that opens streams and cancels them before any answer makes us do work for
  // nothing (the HTTP/2 rapid reset attack): past the limit the whole session goes.
  stream.on('aborted', () => {
    if (!stream.headersSent && context.prematureResets.record(Date.now())) condemn(context, options)
  })

  const refuse = (status: number, reason: string, destination?: SocketAddress): void => {
    answerRefusal(stream, status)
    options.onStreamRefused?.({
      status, reason, peerSpiffeId: context.peerSpiffeId, remoteAddress: context.remoteAddress,
      ...(destination === undefined ? {} : { destination })
    })
  }

  if (headers[':method'] !== 'CONNECT') {
    refuse(h2.HTTP_STATUS_METHOD_NOT_ALLOWED, `method ${String(headers[':method'])} is not CONNECT`)
    return
  }
  const destination = parseAuthority(headers[':authority'])
  if (destination === undefined) {
    refuse(h2.HTTP_STATUS_BAD_REQUEST, `authority '${String(headers[':authority'])}' is not ip:port`)
    return
  }
  let destinationIdentity: string | undefined
  try {
    destinationIdentity = options.identityFor(destination.ip)?.spiffeId
  } catch (error) {
    refuse(h2.HTTP_STATUS_INTERNAL_SERVER_ERROR, `identity lookup failed: ${(error as Error).message}`, destination)
    return
  }
  if (destinationIdentity !== context.localSpiffeId) {
    refuse(h2.HTTP_STATUS_MISDIRECTED_REQUEST,
      `destination ${destination.ip} is ${destinationIdentity ?? 'not served here'}, connection presented ${context.localSpiffeId}`,
      destination)
    return
  }
  void decide(context, stream, destination, readHboneHeaders(headers), options.onStream, refuse)
}

/** Runs the handler; a stream it leaves undecided is refused, so no stream hangs. */
async function decide (
  context: SessionContext, stream: ServerHttp2Stream, destination: SocketAddress, headers: HboneHeaders,
  handler: HboneServerOptions['onStream'], refuse: (status: number, reason: string, destination?: SocketAddress) => void
): Promise<void> {
  let decided = false
  const aborter = new AbortController()
  stream.once('close', () => aborter.abort())
  const decideOnce = (): void => {
    if (decided) throw new Error('this HBONE stream was already accepted or refused')
    decided = true
  }
  const request: HboneRequest = {
    peerSpiffeId: context.peerSpiffeId,
    localSpiffeId: context.localSpiffeId,
    destination,
    headers,
    remoteAddress: context.remoteAddress,
    signal: aborter.signal,
    accept () {
      decideOnce()
      if (!stream.closed && !stream.destroyed) stream.respond({ ':status': h2.HTTP_STATUS_OK })
      return stream
    },
    refuse (status, reason) {
      if (status < 400 || status > 599) throw new RangeError(`refusal status must be 4xx or 5xx, got ${status}`)
      decideOnce()
      refuse(status, reason, destination)
    }
  }
  try {
    await handler(request)
    // A stream the client cancelled while the handler worked needs no answer.
    if (!decided && !stream.closed) request.refuse(h2.HTTP_STATUS_INTERNAL_SERVER_ERROR, 'handler settled without accepting or refusing')
  } catch (error) {
    if (!decided && !stream.closed) request.refuse(h2.HTTP_STATUS_INTERNAL_SERVER_ERROR, `handler failed: ${(error as Error).message}`)
  }
}

function answerRefusal (stream: ServerHttp2Stream, status: number): void {
  if (stream.closed || stream.destroyed || stream.headersSent) return
  stream.respond({ ':status': status }, { endStream: true })
  // Discard anything the client still sends, so its flow-control window never stalls the session.
  stream.resume()
}

function condemn (context: SessionContext, options: HboneServerOptions): void {
  if (context.condemned) return
  context.condemned = true
  options.onSessionError?.('rapid-reset', context.remoteAddress,
    'too many streams cancelled before their response; closing the session')
  // GOAWAY first so the peer learns why; close() then lets it flush, and the timer makes sure
  // a peer that keeps the connection open anyway loses it.
  context.session.goaway(h2.NGHTTP2_ENHANCE_YOUR_CALM)
  context.session.close()
  setTimeout(() => context.session.destroy(), 1000).unref()
}

async function closeServer (server: Http2SecureServer, sessions: Set<ServerHttp2Session>, graceMs: number): Promise<void> {
  const listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()))
  const sessionsClosed = [...sessions].map(async (session) => {
    await new Promise<void>((resolve) => session.once('close', () => resolve()))
  })
  for (const session of sessions) session.close()
  const cutoff = setTimeout(() => {
    for (const session of sessions) session.destroy()
  }, graceMs)
  await Promise.all([listenerClosed, ...sessionsClosed])
  clearTimeout(cutoff)
}
