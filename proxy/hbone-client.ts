/**
 * The client side of HBONE, one connection at a time (pool.ts decides which connection a stream
 * uses): a mutual-TLS connection that presents the source workload's certificate and accepts
 * only a server that proves the expected SPIFFE id, then CONNECT streams over it.
 *
 * Every failure becomes an error with a stable code that says whose fault it was:
 * PeerCertificateError (the server is not who we expected), HboneRefusedError (it answered the
 * CONNECT with a non-200 status), HboneConnectError (network, timeout, or the server rejected
 * us, with the reason it gave in its GOAWAY when it gave one).
 */
import http2, { constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import {
  HboneConnectError, HboneRefusedError, PeerCertificateError, type PeerCertificateProblem
} from '../policy/errors.js'
import {
  DEFAULT_CONNECTION_WINDOW_BYTES, DEFAULT_SESSION_MEMORY_MB, DEFAULT_STREAM_WINDOW_BYTES, HBONE_ALPN, connectRequestHeaders,
  formatAuthority, serverNameFor, type HboneHeaders, type SocketAddress
} from './hbone-protocol.js'
import { peerSpiffeId, secureContextFor, type TlsIdentity } from './hbone-tls.js'

export interface HboneSessionOptions {
  /** The peer ztunnel's (or waypoint's) address and HBONE port. */
  readonly address: string
  readonly port: number
  /** Presented to the server. */
  readonly identity: TlsIdentity
  /** The SPIFFE id the server's certificate must carry. */
  readonly expectedPeer: string
  /** The pod the first stream goes to: the server picks its certificate from it (SNI hint). */
  readonly destinationIp: string
  /** For TCP connect plus TLS handshake. */
  readonly timeoutMs: number
  readonly streamWindowBytes?: number
  readonly connectionWindowBytes?: number
}

// Why a session went away, kept so that the streams failing with it can say so.
const sessionFailures = new WeakMap<ClientHttp2Session, Error>()

/** Opens one authenticated HTTP/2 session to an HBONE server. */
export async function connectHboneSession (options: HboneSessionOptions): Promise<ClientHttp2Session> {
  const socket = await connectTls(options)
  const session = http2.connect(`https://${formatAuthority({ ip: options.address, port: options.port })}`, {
    createConnection: () => socket,
    maxSessionMemory: DEFAULT_SESSION_MEMORY_MB,
    settings: { enablePush: false, initialWindowSize: options.streamWindowBytes ?? DEFAULT_STREAM_WINDOW_BYTES }
  })
  session.on('error', (error) => {
    if (!sessionFailures.has(session)) sessionFailures.set(session, describeNetworkError(error, options))
  })
  session.on('goaway', (code: number, _lastStreamId: number, debug?: Buffer) => {
    if (code !== h2.NGHTTP2_NO_ERROR) sessionFailures.set(session, rejectedByPeer(code, debug, options))
  })
  session.once('connect', () => session.setLocalWindowSize(options.connectionWindowBytes ?? DEFAULT_CONNECTION_WINDOW_BYTES))
  return session
}

/**
 * Sends CONNECT for `destination` and resolves with the tunnel once the server answers 200.
 * Rejects with HboneRefusedError on any other status; the stream is then closed.
 */
export async function openTunnel (
  session: ClientHttp2Session, destination: SocketAddress, headers: HboneHeaders | undefined, timeoutMs: number
): Promise<ClientHttp2Stream> {
  const authority = formatAuthority(destination)
  let stream: ClientHttp2Stream
  try {
    stream = session.request(connectRequestHeaders(destination, headers), { endStream: false })
  } catch (error) {
    throw sessionFailures.get(session) ??
      new HboneConnectError('session-closed', `cannot open a stream to ${authority}: the session is closing`, { cause: error })
  }
  // Errors after the tunnel is handed over belong to whoever pipes it; never let one crash us.
  stream.on('error', () => {})
  return await new Promise((resolve, reject) => {
    let settled = false
    const settle = (error?: Error): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (error === undefined) {
        resolve(stream)
        return
      }
      if (!stream.destroyed) stream.close(h2.NGHTTP2_CANCEL)
      reject(error)
    }
    const timer = setTimeout(() => {
      settle(new HboneConnectError('timeout', `no answer to CONNECT ${authority} within ${timeoutMs} ms`))
    }, timeoutMs)
    stream.once('response', (responseHeaders) => {
      const status = Number(responseHeaders[':status'])
      settle(status === h2.HTTP_STATUS_OK
        ? undefined
        : new HboneRefusedError(status, `HBONE server refused CONNECT ${authority} with status ${status}`))
    })
    stream.once('close', () => {
      // Usually the tunnel was handed over long ago and has simply ended: build no error then.
      if (settled) return
      settle(sessionFailures.get(session) ?? new HboneConnectError('stream-reset',
        `CONNECT ${authority} was reset before an answer (HTTP/2 code ${http2ErrorName(stream.rstCode)})`))
    })
  })
}

/** TCP + TLS, then the SPIFFE check that replaces hostname verification. */
async function connectTls (options: HboneSessionOptions): Promise<TLSSocket> {
  const socket = tlsConnect({
    host: options.address,
    port: options.port,
    servername: serverNameFor(options.destinationIp),
    secureContext: secureContextFor(options.identity),
    ALPNProtocols: [HBONE_ALPN],
    rejectUnauthorized: true, // the chain must lead to the trust bundle
    checkServerIdentity: () => undefined // SPIFFE ids, not host names: checked below
  })
  return await new Promise((resolve, reject) => {
    const fail = (error: Error): void => {
      clearTimeout(timer)
      socket.destroy()
      reject(error)
    }
    const timer = setTimeout(() => {
      fail(new HboneConnectError('timeout',
        `no TLS session with ${options.address}:${options.port} within ${options.timeoutMs} ms`))
    }, options.timeoutMs)
    socket.once('error', (error) => fail(describeNetworkError(error, options)))
    socket.once('secureConnect', () => {
      clearTimeout(timer)
      const problem = serverProblem(socket, options)
      if (problem !== undefined) {
        fail(problem)
        return
      }
      socket.removeAllListeners('error')
      resolve(socket)
    })
  })
}

/** Why a verified TLS server is still not the one we want, or undefined when it is. */
function serverProblem (socket: TLSSocket, options: HboneSessionOptions): Error | undefined {
  if (socket.alpnProtocol !== HBONE_ALPN) {
    return new HboneConnectError('alpn-mismatch',
      `${options.address}:${options.port} did not negotiate ${HBONE_ALPN} (got ${String(socket.alpnProtocol)})`)
  }
  const presented = peerSpiffeId(socket)
  if (presented === undefined) {
    return new PeerCertificateError('no-identity',
      `${options.address}:${options.port} presented a certificate without a SPIFFE id (expected ${options.expectedPeer})`)
  }
  if (presented !== options.expectedPeer) {
    return new PeerCertificateError('unexpected-identity',
      `${options.address}:${options.port} presented ${presented}, expected ${options.expectedPeer}`)
  }
  return undefined
}

// OpenSSL's verification results, as Node reports them, for a server chain we refuse.
const CHAIN_PROBLEMS: Readonly<Record<string, PeerCertificateProblem>> = {
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not-yet-valid',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'untrusted',
  UNABLE_TO_GET_ISSUER_CERT: 'untrusted',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'untrusted',
  SELF_SIGNED_CERT_IN_CHAIN: 'untrusted',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'untrusted',
  CERT_SIGNATURE_FAILURE: 'untrusted',
  CERT_UNTRUSTED: 'untrusted'
}

function describeNetworkError (error: Error & { code?: string }, options: HboneSessionOptions): Error {
  const where = `${options.address}:${options.port}`
  const chainProblem = error.code === undefined ? undefined : CHAIN_PROBLEMS[error.code]
  if (chainProblem !== undefined) {
    return new PeerCertificateError(chainProblem,
      `${where} presented a certificate chain we do not accept (${String(error.code)})`, { cause: error })
  }
  if (error.code?.startsWith('ERR_SSL_') === true && error.code.includes('ALERT')) {
    return new HboneConnectError('rejected-by-peer', `${where} refused the TLS handshake (${error.code})`, { cause: error })
  }
  return new HboneConnectError('network', `connection to ${where} failed: ${error.message}`, { cause: error })
}

function rejectedByPeer (code: number, debug: Buffer | undefined, options: HboneSessionOptions): HboneConnectError {
  const said = debug !== undefined && debug.length > 0 ? `: ${debug.toString('utf8')}` : ''
  return new HboneConnectError('rejected-by-peer',
    `${options.address}:${options.port} closed the session (${http2ErrorName(code)})${said}`)
}

function http2ErrorName (code: number | undefined): string {
  const names: Readonly<Record<number, string>> = {
    [h2.NGHTTP2_NO_ERROR]: 'NO_ERROR',
    [h2.NGHTTP2_PROTOCOL_ERROR]: 'PROTOCOL_ERROR',
    [h2.NGHTTP2_INTERNAL_ERROR]: 'INTERNAL_ERROR',
    [h2.NGHTTP2_REFUSED_STREAM]: 'REFUSED_STREAM',
    [h2.NGHTTP2_CANCEL]: 'CANCEL',
    [h2.NGHTTP2_ENHANCE_YOUR_CALM]: 'ENHANCE_YOUR_CALM',
    [h2.NGHTTP2_INADEQUATE_SECURITY]: 'INADEQUATE_SECURITY'
  }
  return code === undefined ? 'unknown' : names[code] ?? String(code)
}
