/**
 * A hand-made HBONE client for tests of a ztunnel's port 15008: TLS 1.3 with ALPN h2 and the
 * SNI hint naming the destination pod, presenting whatever client certificate the test wants
 * (the mesh's, another CA's, none), then raw HTTP/2 so a test can send what a well-behaved
 * client never would.
 *
 *   const session = await openHboneSession({ address: NODE_B, destinationIp: POD, trustBundle })
 *   const outcome = await hboneConnect(session, { ip: POD, port: 8080 })   // {kind:'response', status:200} ...
 */
import { once } from 'node:events'
import http2, { constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { serverNameFor } from '../../proxy/hbone-protocol.js'

export interface HboneProbeOptions {
  /** The ztunnel's address. */
  readonly address: string
  readonly port?: number
  /** The pod the SNI hint names (the server presents that pod's certificate). */
  readonly destinationIp: string
  /** Roots the server's certificate must chain to. */
  readonly trustBundle: readonly string[]
  /** The client certificate to present; none when absent. */
  readonly client?: { readonly key: string, readonly certChain: string }
  readonly timeoutMs?: number
}

/** A TLS connection to an HBONE port, handshake done (the server verifies us only afterwards). */
export async function connectHboneTls (options: HboneProbeOptions): Promise<TLSSocket> {
  const socket = tlsConnect({
    host: options.address,
    port: options.port ?? 15008,
    servername: serverNameFor(options.destinationIp),
    ALPNProtocols: ['h2'],
    minVersion: 'TLSv1.3',
    ca: [...options.trustBundle],
    checkServerIdentity: () => undefined, // SPIFFE ids, not host names
    ...(options.client !== undefined && { key: options.client.key, cert: options.client.certChain })
  })
  socket.on('error', () => {}) // failures surface through the events awaited below
  const timer = setTimeout(() => socket.destroy(new Error('TLS handshake timed out')), options.timeoutMs ?? 10_000)
  try {
    await Promise.race([once(socket, 'secureConnect'), once(socket, 'error').then(([err]) => { throw err })])
  } finally {
    clearTimeout(timer)
  }
  return socket
}

export interface ProbeSession {
  readonly session: ClientHttp2Session
  /** The GOAWAY the server sent, once it did. */
  goaway (): { readonly code: number, readonly debug: string } | undefined
}

/** An HTTP/2 session over connectHboneTls; the caller closes it (or the server does). */
export async function openHboneSession (options: HboneProbeOptions): Promise<ProbeSession> {
  const socket = await connectHboneTls(options)
  const session = http2.connect(`https://${options.address}`, { createConnection: () => socket })
  let goaway: { code: number, debug: string } | undefined
  session.on('error', () => {})
  session.on('goaway', (code: number, _last: number, debug?: Buffer) => { goaway = { code, debug: debug?.toString() ?? '' } })
  return { session, goaway: () => goaway }
}

export type HboneOutcome =
  | { readonly kind: 'response', readonly status: number, readonly stream: ClientHttp2Stream }
  /** The session was ended by the server before an answer. */
  | { readonly kind: 'goaway', readonly code: number, readonly debug: string }
  | { readonly kind: 'reset', readonly rstCode: number }

/** Sends CONNECT ip:port and waits for what comes back. On 200 the stream is the tunnel. */
export async function hboneConnect (probe: ProbeSession, destination: { ip: string, port: number }, timeoutMs = 10_000): Promise<HboneOutcome> {
  const stream = probe.session.request({ ':method': 'CONNECT', ':authority': `${destination.ip}:${destination.port}` }, { endStream: false })
  stream.on('error', () => {})
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer to CONNECT ${destination.ip}:${destination.port} within ${timeoutMs} ms`)), timeoutMs)
    stream.once('response', (headers) => {
      clearTimeout(timer)
      resolve({ kind: 'response', status: Number(headers[':status']), stream })
    })
    stream.once('close', () => {
      clearTimeout(timer)
      const goaway = probe.goaway()
      resolve(goaway !== undefined ? { kind: 'goaway', ...goaway } : { kind: 'reset', rstCode: stream.rstCode ?? h2.NGHTTP2_NO_ERROR })
    })
  })
}
