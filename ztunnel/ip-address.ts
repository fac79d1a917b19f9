/**
 * IP addresses as the wire carries them (4 or 16 bytes, network order) and as text.
 * SOCKS5 requests and replies and the kernel's sockaddr structures use the bytes; everything
 * else in ambit uses the text Node prints (dotted IPv4, RFC 5952 IPv6).
 */
import { isIPv4, isIPv6 } from 'node:net'

/** The 4 (IPv4) or 16 (IPv6) bytes of an address in text form. Throws on anything else. */
export function ipToBytes (ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number))
  if (isIPv6(ip)) return ipv6ToBytes(ip)
  throw new TypeError(`not an IP address: ${ip}`)
}

/** The text form of 4 or 16 address bytes. */
export function ipFromBytes (bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.')
  if (bytes.length === 16) return ipv6FromBytes(bytes)
  throw new TypeError(`an IP address has 4 or 16 bytes, not ${bytes.length}`)
}

/** '::ffff:10.0.0.1' (how a dual-stack socket shows an IPv4 peer) becomes '10.0.0.1'. */
export function unmapIPv4 (address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  return mapped === null ? address : mapped[1]
}

function ipv6ToBytes (ip: string): Buffer {
  let text = ip.split('%')[0] // a zone ('fe80::1%eth0') is not part of the address
  // An embedded IPv4 tail ('::ffff:1.2.3.4') stands for the last two 16-bit groups.
  const lastColon = text.lastIndexOf(':')
  const tail = text.slice(lastColon + 1)
  if (isIPv4(tail)) {
    const [a, b, c, d] = tail.split('.').map(Number)
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head, rest] = text.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':')
  const zeros: string[] = rest === undefined ? [] : new Array<string>(8 - headGroups.length - restGroups.length).fill('0')
  const bytes = Buffer.alloc(16)
  ;[...headGroups, ...zeros, ...restGroups].forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), i * 2))
  return bytes
}

function ipv6FromBytes (bytes: Uint8Array): string {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const isIPv4Mapped = view.subarray(0, 10).every((b) => b === 0) && view.readUInt16BE(10) === 0xffff
  if (isIPv4Mapped) return `::ffff:${ipFromBytes(view.subarray(12))}`
  const groups = Array.from({ length: 8 }, (_, i) => view.readUInt16BE(i * 2).toString(16))
  const run = longestZeroRun(groups)
  // RFC 5952: only a run of two or more zero groups is shortened to '::'.
  if (run.length < 2) return groups.join(':')
  return `${groups.slice(0, run.start).join(':')}::${groups.slice(run.start + run.length).join(':')}`
}

/** The first longest run of '0' groups. */
function longestZeroRun (groups: readonly string[]): { start: number, length: number } {
  let best = { start: 0, length: 0 }
  let start = -1
  groups.forEach((group, i) => {
    if (group !== '0') {
      start = -1
      return
    }
    if (start < 0) start = i
    if (i - start + 1 > best.length) best = { start, length: i - start + 1 }
  })
  return best
}
