/**
 * Where a redirected connection was going before iptables REDIRECT sent it to the ztunnel:
 * netfilter's conntrack remembers it and answers getsockopt(SO_ORIGINAL_DST) on the accepted
 * socket (IP6T_SO_ORIGINAL_DST for IPv6).
 */
import type net from 'node:net'
import { endianness } from 'node:os'
import { SocketOptionError } from '../policy/errors.js'
import { ipFromBytes, unmapIPv4 } from './ip-address.js'
import { getSocketOption } from './sockopt.js'

/** <linux/netfilter_ipv4.h>, <linux/netfilter_ipv6/ip6_tables.h>, <netinet/in.h>. */
const SOL_IP = 0
const SOL_IPV6 = 41
const SO_ORIGINAL_DST = 80
const IP6T_SO_ORIGINAL_DST = 80
const AF_INET = 2
const AF_INET6 = 10
const SOCKADDR_IN_SIZE = 16
const SOCKADDR_IN6_SIZE = 28

export interface OriginalDestination {
  /** '10.0.0.5' or 'fd00::5' (never IPv4-mapped). */
  readonly ip: string
  readonly port: number
}

/**
 * The destination the client originally asked for. For a connection that was not redirected
 * (someone connected to the port directly), the kernel answers with the socket's own local
 * address when conntrack tracks the connection (see wasRedirected), and with ENOENT (thrown as
 * SocketOptionError, errnoName 'ENOENT') when it does not. An IPv4 client on a dual-stack ('::')
 * listener is asked about with the IPv4 option, which is what the kernel tracks for it.
 */
export function originalDestination (socket: net.Socket): OriginalDestination {
  const local = socket.localAddress
  if (local === undefined) throw new SocketOptionError('socket is not connected', 'ENOTCONN')
  const isIPv6Connection = local.includes(':') && !local.toLowerCase().startsWith('::ffff:')
  return isIPv6Connection
    ? decodeSockaddrIn6(getSocketOption(socket, SOL_IPV6, IP6T_SO_ORIGINAL_DST, SOCKADDR_IN6_SIZE))
    : decodeSockaddrIn(getSocketOption(socket, SOL_IP, SO_ORIGINAL_DST, SOCKADDR_IN_SIZE))
}

/**
 * False when `original` is just the listener's own address: the client connected directly. A
 * capture listener must refuse such connections, or it would connect to itself forever.
 */
export function wasRedirected (socket: net.Socket, original: OriginalDestination): boolean {
  return !(original.port === socket.localPort && original.ip === unmapIPv4(socket.localAddress ?? ''))
}

/** struct sockaddr_in: family (host order), port (network order), 4 address bytes, padding. */
export function decodeSockaddrIn (bytes: Buffer): OriginalDestination {
  if (bytes.length < 8 || addressFamily(bytes) !== AF_INET) {
    throw new SocketOptionError(`SO_ORIGINAL_DST returned no sockaddr_in (${bytes.toString('hex')})`, 'EINVAL')
  }
  return { ip: ipFromBytes(bytes.subarray(4, 8)), port: bytes.readUInt16BE(2) }
}

/** struct sockaddr_in6: family, port (network order), flowinfo, 16 address bytes, scope id. */
export function decodeSockaddrIn6 (bytes: Buffer): OriginalDestination {
  if (bytes.length < 24 || addressFamily(bytes) !== AF_INET6) {
    throw new SocketOptionError(`IP6T_SO_ORIGINAL_DST returned no sockaddr_in6 (${bytes.toString('hex')})`, 'EINVAL')
  }
  return { ip: ipFromBytes(bytes.subarray(8, 24)), port: bytes.readUInt16BE(2) }
}

/** sa_family_t is in host byte order, unlike the port. */
function addressFamily (sockaddr: Buffer): number {
  return endianness() === 'LE' ? sockaddr.readUInt16LE(0) : sockaddr.readUInt16BE(0)
}

/**
 * Where a captured connection was going, or undefined when it was not redirected at all
 * (someone dialled 15001/15006 directly): proxying that would connect the ztunnel to itself.
 */
export function redirectedDestination (socket: net.Socket): OriginalDestination | undefined {
  try {
    const original = originalDestination(socket)
    return wasRedirected(socket, original) ? original : undefined
  } catch {
    return undefined
  }
}
