/**
 * The server side of a SOCKS5 handshake (RFC 1928), for the ztunnel's explicit outbound port:
 * "no authentication" only, CONNECT only, to an IPv4, IPv6 or domain-name destination.
 *
 * The first half is a pure parser over Buffers (parseGreeting, parseRequest, encodeReply); the
 * second half, acceptSocks5, drives it on a socket. The caller resolves and connects the
 * destination, then answers with reply():
 *
 *   const { destination, reply } = await acceptSocks5(socket, { timeoutMs: 5000 })
 *   const upstream = await dial(destination)  // on failure: reply(Socks5Reply.hostUnreachable)
 *   reply(Socks5Reply.succeeded)
 *   socket.pipe(upstream).pipe(socket)
 */
import type net from 'node:net'
import { isIP } from 'node:net'
import { Socks5Error } from '../policy/errors.js'
import { ipFromBytes, ipToBytes } from './ip-address.js'

const VERSION = 0x05
const NO_AUTHENTICATION = 0x00
const NO_ACCEPTABLE_METHOD = 0xff
const CONNECT = 0x01
const ADDRESS_IPV4 = 0x01
const ADDRESS_DOMAIN = 0x03
const ADDRESS_IPV6 = 0x04
/** The longest greeting (2 + 255 methods) plus the longest request (4 + 1 + 255 + 2). */
const MAX_HANDSHAKE_BYTES = 257 + 262
const DEFAULT_TIMEOUT_MS = 10_000
/** How long a refused client may take to read our reply and close before we cut it off. */
const LINGER_MS = 1000

/** The REP field of a reply (RFC 1928 section 6). */
export const Socks5Reply = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowedByRuleset: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08
} as const

export interface Socks5Destination {
  /** Dotted IPv4, RFC 5952 IPv6, or the domain name exactly as the client sent it. */
  readonly host: string
  readonly port: number
  readonly kind: 'ipv4' | 'ipv6' | 'domain'
}

/** What a parser made of the bytes received so far. */
export type Parsed<T> =
  | { readonly status: 'incomplete' }
  | { readonly status: 'complete', readonly value: T, readonly length: number }
  /** `response`: the bytes to send before closing, when the protocol has a way to say no. */
  | { readonly status: 'invalid', readonly reason: string, readonly response: Buffer | undefined }

const INCOMPLETE = { status: 'incomplete' } as const

/**
 * The client's greeting: VER, NMETHODS, METHODS. Complete means the client offered "no
 * authentication", the only method we accept; a client that did not is refused with 0xFF.
 */
export function parseGreeting (bytes: Buffer): Parsed<{ readonly methods: readonly number[] }> {
  if (bytes.length < 1) return INCOMPLETE
  // Not SOCKS5 (a SOCKS4 client, an HTTP request...): there is no reply it would understand.
  if (bytes[0] !== VERSION) return invalid(`not a SOCKS5 greeting (version byte ${bytes[0]})`, undefined)
  if (bytes.length < 2) return INCOMPLETE
  const length = 2 + bytes[1]
  if (bytes.length < length) return INCOMPLETE
  const methods = Array.from(bytes.subarray(2, length))
  if (!methods.includes(NO_AUTHENTICATION)) {
    return invalid('client offers no acceptable authentication method', Buffer.from([VERSION, NO_ACCEPTABLE_METHOD]))
  }
  return { status: 'complete', value: { methods }, length }
}

/** The answer to an accepted greeting: "no authentication". */
export const METHOD_SELECTED = Buffer.from([VERSION, NO_AUTHENTICATION])

/**
 * The request: VER, CMD, RSV, ATYP, DST.ADDR, DST.PORT. Each field is checked as soon as it
 * arrives, so garbage is refused without waiting for more of it.
 */
export function parseRequest (bytes: Buffer): Parsed<Socks5Destination> {
  if (bytes.length >= 1 && bytes[0] !== VERSION) return refuse(Socks5Reply.generalFailure, `request version byte ${bytes[0]}`)
  if (bytes.length >= 2 && bytes[1] !== CONNECT) return refuse(Socks5Reply.commandNotSupported, `command ${bytes[1]} is not CONNECT`)
  if (bytes.length >= 3 && bytes[2] !== 0) return refuse(Socks5Reply.generalFailure, `reserved byte ${bytes[2]} is not 0`)
  if (bytes.length < 4) return INCOMPLETE
  switch (bytes[3]) {
    case ADDRESS_IPV4: return parseAddressAndPort(bytes, 4, 4, 'ipv4')
    case ADDRESS_IPV6: return parseAddressAndPort(bytes, 4, 16, 'ipv6')
    case ADDRESS_DOMAIN:
      if (bytes.length < 5) return INCOMPLETE
      if (bytes[4] === 0) return refuse(Socks5Reply.generalFailure, 'empty domain name')
      return parseAddressAndPort(bytes, 5, bytes[4], 'domain')
    default:
      return refuse(Socks5Reply.addressTypeNotSupported, `address type ${bytes[3]}`)
  }
}

function parseAddressAndPort (bytes: Buffer, start: number, size: number, kind: Socks5Destination['kind']): Parsed<Socks5Destination> {
  const length = start + size + 2
  if (bytes.length < length) return INCOMPLETE
  const address = bytes.subarray(start, start + size)
  const port = bytes.readUInt16BE(start + size)
  if (kind !== 'domain') return { status: 'complete', value: { host: ipFromBytes(address), port, kind }, length }
  const host = address.toString('latin1')
  // Printable ASCII only: a name with spaces or control bytes resolves nowhere and would garble logs.
  if (!/^[\x21-\x7e]+$/.test(host)) return refuse(Socks5Reply.generalFailure, 'domain name with non-printable bytes')
  return { status: 'complete', value: { host, port, kind }, length }
}

/** A reply: VER, REP, RSV, ATYP, BND.ADDR, BND.PORT. Without a bound address, 0.0.0.0:0. */
export function encodeReply (code: number, boundAddress: { readonly host: string, readonly port: number } = { host: '0.0.0.0', port: 0 }): Buffer {
  if (isIP(boundAddress.host) === 0) throw new TypeError(`bound address must be an IP, not ${boundAddress.host}`)
  const address = ipToBytes(boundAddress.host)
  const port = Buffer.alloc(2)
  port.writeUInt16BE(boundAddress.port)
  return Buffer.concat([Buffer.from([VERSION, code, 0, address.length === 4 ? ADDRESS_IPV4 : ADDRESS_IPV6]), address, port])
}

function invalid (reason: string, response: Buffer | undefined): Parsed<never> {
  return { status: 'invalid', reason, response }
}

function refuse (code: number, reason: string): Parsed<never> {
  return invalid(reason, encodeReply(code))
}

// ---------------------------------------------------------------------------------------------
// Socket glue

export interface Socks5Handshake {
  readonly destination: Socks5Destination
  /**
   * Answers the request, once. Socks5Reply.succeeded leaves the socket open for the caller to
   * pipe; any other code also ends the socket.
   */
  reply (code: number, boundAddress?: { readonly host: string, readonly port: number }): void
}

export interface AcceptSocks5Options {
  /** The whole handshake (greeting and request) must arrive within this time. Default 10 s. */
  readonly timeoutMs?: number
}

/**
 * Runs the handshake on a freshly accepted socket and resolves with the requested destination.
 * Bytes the client sent after its request stay readable on the socket. On a protocol error,
 * timeout or disconnect, the socket is closed (after the proper refusal when SOCKS5 has one) and
 * the promise rejects with Socks5Error. Once it resolves, the socket's errors are the caller's:
 * add an 'error' listener right away.
 */
export function acceptSocks5 (socket: net.Socket, options: AcceptSocks5Options = {}): Promise<Socks5Handshake> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  if (socket.destroyed) return Promise.reject(new Socks5Error('socket closed before the SOCKS5 handshake'))
  return new Promise((resolve, reject) => {
    let phase: 'greeting' | 'request' = 'greeting'
    let received = Buffer.alloc(0)

    const stopListening = (): void => {
      clearTimeout(timer)
      socket.off('readable', onReadable)
      socket.off('end', onEnd)
      socket.off('close', onEnd)
      socket.off('error', onError)
    }
    const fail = (error: Socks5Error, response?: Buffer): void => {
      stopListening()
      closeSocket(socket, response)
      reject(error)
    }
    const succeed = (destination: Socks5Destination, rest: Buffer): void => {
      stopListening()
      if (rest.length > 0) socket.unshift(rest)
      resolve({ destination, reply: replyOnce(socket) })
    }

    /** Moves the handshake forward with what was received; true once it is over either way. */
    const advance = (): boolean => {
      if (phase === 'greeting') {
        const greeting = parseGreeting(received)
        if (greeting.status === 'incomplete') return false
        if (greeting.status === 'invalid') {
          fail(new Socks5Error(greeting.reason), greeting.response)
          return true
        }
        socket.write(METHOD_SELECTED)
        received = received.subarray(greeting.length)
        phase = 'request'
      }
      const request = parseRequest(received)
      if (request.status === 'incomplete') return false
      if (request.status === 'invalid') fail(new Socks5Error(request.reason), request.response)
      else succeed(request.value, received.subarray(request.length))
      return true
    }

    // read() rather than 'data' events: reading stops exactly when the handshake ends, and the
    // stream is left neither flowing nor paused, so the caller's pipe() or 'data' starts it.
    const onReadable = (): void => {
      try {
        let chunk: Buffer | null
        while ((chunk = socket.read() as Buffer | null) !== null) {
          received = Buffer.concat([received, chunk])
          if (advance()) return
          if (received.length > MAX_HANDSHAKE_BYTES) return fail(new Socks5Error('handshake too long'))
        }
      } catch (err) {
        fail(new Socks5Error('handshake failed', { cause: err }))
      }
    }
    const onEnd = (): void => fail(new Socks5Error(`client left during the SOCKS5 ${phase}`))
    const onError = (err: Error): void => fail(new Socks5Error(`socket error during the SOCKS5 ${phase}: ${err.message}`, { cause: err }))
    const timer = setTimeout(() => fail(new Socks5Error(`SOCKS5 ${phase} not received within ${timeoutMs} ms`)), timeoutMs)

    socket.on('readable', onReadable)
    socket.on('end', onEnd)
    socket.on('close', onEnd)
    socket.on('error', onError)
  })
}

function replyOnce (socket: net.Socket): Socks5Handshake['reply'] {
  let replied = false
  return (code, boundAddress) => {
    if (replied) throw new Socks5Error('reply() may be called only once')
    replied = true
    const bytes = encodeReply(code, boundAddress)
    if (code === Socks5Reply.succeeded) socket.write(bytes)
    else closeSocket(socket, bytes)
  }
}

/**
 * Ends the socket after `response`, or at once without one. A late error (the client reset the
 * connection) is expected here and ignored; a client that never closes its side is cut off.
 */
function closeSocket (socket: net.Socket, response: Buffer | undefined): void {
  socket.on('error', () => {})
  if (socket.destroyed) return
  if (response === undefined) {
    socket.destroy()
    return
  }
  socket.end(response)
  const linger = setTimeout(() => socket.destroy(), LINGER_MS)
  linger.unref()
  socket.once('close', () => clearTimeout(linger))
}
