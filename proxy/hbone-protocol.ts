/**
 * The pure parts of HBONE (Istio's tunnel: HTTP/2 CONNECT over mutual TLS): the port, the
 * `:authority` form, the TLS server-name hint, and the few headers a tunnel carries.
 * No I/O here, so the server, the client and their tests share one definition.
 *
 * Why a server-name hint: the server must present the DESTINATION workload's certificate, but
 * the destination (the CONNECT `:authority`) is only known once TLS is up. Istio's ztunnel knows
 * it earlier because the client dials the pod IP itself; ours dials the node's ztunnel, so the
 * client names the destination pod in TLS SNI, encoded as a DNS-safe name under the reserved
 * `.invalid` TLD (RFC 6761: never resolvable, so it cannot be mistaken for a real host). SNI
 * may not carry an IP literal (RFC 6066), hence the encoding. The server checks every CONNECT
 * against the identity it presented (421 Misdirected Request when they differ), so one pooled
 * connection can carry streams to every pod that shares the presented identity.
 */
import { isIP, isIPv4, isIPv6 } from 'node:net'
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2'

export const HBONE_PORT = 15008
export const HBONE_ALPN = 'h2'

/**
 * HTTP/2 flow-control windows both ends advertise. The protocol default (64 KiB) caps a tunnel
 * at one window per round trip, which an event loop under load makes slow; larger windows buy
 * throughput at the price of memory per paused tunnel, hence bounded ones.
 */
export const DEFAULT_STREAM_WINDOW_BYTES = 1024 * 1024
export const DEFAULT_CONNECTION_WINDOW_BYTES = 8 * 1024 * 1024
/** Node's per-session memory cap (its default, 10 MB, is less than a full connection window's worth of streams). */
export const DEFAULT_SESSION_MEMORY_MB = 32

export interface SocketAddress {
  readonly ip: string
  readonly port: number
}

/** Headers an HBONE stream carries besides the authority. */
export interface HboneHeaders {
  /** The original client's address (sent as `forwarded: for=...`). */
  readonly forwardedFor?: string
  /** W3C trace context, passed through untouched. */
  readonly traceparent?: string
  readonly baggage?: string
}

/** `10.0.0.5:8080` or `[fd00::5]:8080`. */
export function formatAuthority (address: SocketAddress): string {
  return isIPv6(address.ip) ? `[${address.ip}]:${address.port}` : `${address.ip}:${address.port}`
}

/** The CONNECT target, or undefined unless it is exactly an IP literal and a port 1-65535. */
export function parseAuthority (authority: string | undefined): SocketAddress | undefined {
  if (authority === undefined) return undefined
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(authority)
  if (match === null) return undefined
  const ip = match[1] ?? match[2] ?? ''
  const port = Number(match[3])
  const ipMatchesBrackets = match[1] !== undefined ? isIPv6(ip) : isIPv4(ip)
  if (!ipMatchesBrackets || port < 1 || port > 65535) return undefined
  return { ip, port }
}

const SERVER_NAME_SUFFIX = { 4: '.ipv4.hbone.invalid', 6: '.ipv6.hbone.invalid' } as const

/** The SNI hint naming the destination pod: `10-0-0-5.ipv4.hbone.invalid`, `fd00--5.ipv6.hbone.invalid`. */
export function serverNameFor (destinationIp: string): string {
  const family = isIP(destinationIp)
  if (family !== 4 && family !== 6) throw new TypeError(`not an IP address: ${destinationIp}`)
  const label = destinationIp.replaceAll(family === 4 ? '.' : ':', '-')
  return label + SERVER_NAME_SUFFIX[family]
}

/** The destination IP a server name hint encodes, or undefined for any other name. */
export function ipFromServerName (serverName: string): string | undefined {
  for (const [family, suffix] of [[4, SERVER_NAME_SUFFIX[4]], [6, SERVER_NAME_SUFFIX[6]]] as const) {
    if (!serverName.endsWith(suffix)) continue
    const ip = serverName.slice(0, -suffix.length).replaceAll('-', family === 4 ? '.' : ':')
    return isIP(ip) === family ? ip : undefined
  }
  return undefined
}

/** RFC 7239: IPv6 nodes are bracketed and quoted. */
export function formatForwarded (ip: string): string {
  return isIPv6(ip) ? `for="[${ip}]"` : `for=${ip}`
}

/** The first `for=` node of a Forwarded header when it is an IP address; undefined otherwise. */
export function parseForwardedFor (value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  const firstElement = value.split(',')[0] ?? ''
  for (const pair of firstElement.split(';')) {
    const [name, raw] = pair.split('=', 2).map((part) => part.trim())
    if (name?.toLowerCase() !== 'for' || raw === undefined) continue
    const node = raw.replace(/^"(.*)"$/, '$1').replace(/^\[(.*)\]$/, '$1')
    return isIP(node) !== 0 ? node : undefined
  }
  return undefined
}

/** The request headers of a CONNECT stream to `destination`. */
export function connectRequestHeaders (destination: SocketAddress, headers: HboneHeaders = {}): OutgoingHttpHeaders {
  const request: OutgoingHttpHeaders = { ':method': 'CONNECT', ':authority': formatAuthority(destination) }
  if (headers.forwardedFor !== undefined) request.forwarded = formatForwarded(headers.forwardedFor)
  if (headers.traceparent !== undefined) request.traceparent = headers.traceparent
  if (headers.baggage !== undefined) request.baggage = headers.baggage
  return request
}

/** The HBONE headers of an incoming CONNECT (a repeated header keeps its first value). */
export function readHboneHeaders (headers: IncomingHttpHeaders): HboneHeaders {
  const first = (name: string): string | undefined => {
    const value = headers[name]
    return Array.isArray(value) ? value[0] : value
  }
  const result: { forwardedFor?: string, traceparent?: string, baggage?: string } = {}
  const forwardedFor = parseForwardedFor(first('forwarded'))
  const traceparent = first('traceparent')
  const baggage = first('baggage')
  if (forwardedFor !== undefined) result.forwardedFor = forwardedFor
  if (traceparent !== undefined) result.traceparent = traceparent
  if (baggage !== undefined) result.baggage = baggage
  return result
}
