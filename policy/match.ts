/**
 * The value matchers of Istio's AuthorizationPolicy, compiled once from a policy's
 * strings so that checking a connection only compares numbers and strings.
 *
 * https://istio.io/latest/docs/reference/config/security/authorization-policy/
 */

/** A compiled test of one request value. An absent value (undefined) never matches. */
export type Matcher<T> = (value: T | undefined) => boolean

/**
 * Istio's string match, used by principals, namespaces, hosts, paths, header values and
 * most `when` keys: "abc" exact, "abc*" prefix, "*abc" suffix, and "*" any non-empty
 * value. Checked in the same order as istiod ("*abc*" is a suffix match on "abc*").
 */
export function compileStringMatch (pattern: string): Matcher<string> {
  if (pattern === '*') return (value) => value !== undefined && value !== ''
  if (pattern.startsWith('*')) {
    const suffix = pattern.slice(1)
    return (value) => value !== undefined && value.endsWith(suffix)
  }
  if (pattern.endsWith('*')) {
    const prefix = pattern.slice(0, -1)
    return (value) => value !== undefined && value.startsWith(prefix)
  }
  return (value) => value === pattern
}

/** Exact, case-sensitive equality (HTTP methods). */
export function compileExactMatch (pattern: string): Matcher<string> {
  return (value) => value === pattern
}

/**
 * Istio's `hosts`: a string match, case-insensitive. The caller lower-cases the request's
 * host once. The Host header keeps its port ("example.com:8080"), so, as Istio's security
 * best practices advise, a policy lists "example.com:*" to cover every port.
 */
export function compileHostMatch (pattern: string): Matcher<string> {
  return compileStringMatch(pattern.toLowerCase())
}

/**
 * Istio's `paths`: a string match, or a path template where "{*}" is exactly one path
 * segment and "{**}" (last, once) is the rest of the path. Returns undefined for a
 * template Istio rejects. Query strings are stripped by the caller.
 */
export function compilePathMatch (pattern: string): Matcher<string> | undefined {
  if (!pattern.includes('{')) return compileStringMatch(pattern)
  const template = compilePathTemplate(pattern)
  if (template === undefined) return undefined
  return (value) => value !== undefined && template.test(value)
}

const SEGMENT_OPERATORS: Readonly<Record<string, string>> = { '{*}': '[^/]+', '{**}': '.*' }

function compilePathTemplate (pattern: string): RegExp | undefined {
  const segments = pattern.split('/')
  const parts: string[] = []
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]
    const operator = SEGMENT_OPERATORS[segment]
    if (operator !== undefined) {
      if (segment === '{**}' && i !== segments.length - 1) return undefined
      parts.push(operator)
    } else if (segment.includes('{') || segment.includes('}') || segment.includes('*')) {
      return undefined // operators must be whole segments; no mixing with wildcards
    } else {
      parts.push(escapeRegExp(segment))
    }
  }
  // Built once per policy at compile time, never per request.
  return new RegExp(`^${parts.join('/')}$`)
}

function escapeRegExp (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** A TCP port given as a string ("8080"); undefined when it is not one. */
export function compilePortMatch (pattern: string): Matcher<number> | undefined {
  const port = parseDecimal(pattern, 65535)
  if (port === undefined) return undefined
  return (value) => value === port
}

// ---- IP addresses and CIDR blocks ----

/**
 * An address as 32-bit words: one word for IPv4, four for IPv6. IPv4-mapped IPv6
 * addresses ("::ffff:10.0.0.1", what a dual-stack Node socket reports for an IPv4 peer)
 * are IPv4 here, so "10.0.0.0/8" matches them as a user expects.
 */
export interface IpAddress {
  readonly family: 4 | 6
  readonly words: readonly number[]
}

/** An address block: an address whose host bits are cleared, and the mask per word. */
export interface CidrBlock {
  readonly family: 4 | 6
  readonly base: readonly number[]
  readonly mask: readonly number[]
}

export function parseIp (text: string): IpAddress | undefined {
  const v4 = parseIpv4(text)
  if (v4 !== undefined) return { family: 4, words: [v4] }
  const v6 = parseIpv6(text)
  if (v6 === undefined) return undefined
  return isIpv4Mapped(v6) ? { family: 4, words: [v6[3]] } : { family: 6, words: v6 }
}

/** "10.0.0.0/8", "2001:db8::/32", or a single address (a /32 or /128). */
export function parseCidr (text: string): CidrBlock | undefined {
  const slash = text.indexOf('/')
  const addressText = slash < 0 ? text : text.slice(0, slash)
  const v4 = parseIpv4(addressText)
  const words = v4 !== undefined ? [v4] : parseIpv6(addressText)
  if (words === undefined) return undefined
  const maxBits = words.length * 32
  const bits = slash < 0 ? maxBits : parseDecimal(text.slice(slash + 1), maxBits)
  if (bits === undefined) return undefined
  // An IPv4-mapped block covers IPv4 addresses, which parseIp reports as IPv4.
  if (words.length === 4 && isIpv4Mapped(words) && bits >= 96) return cidrBlock([words[3]], bits - 96)
  return cidrBlock(words, bits)
}

export function cidrContains (block: CidrBlock, address: IpAddress): boolean {
  if (block.family !== address.family) return false
  for (let i = 0; i < block.base.length; i++) {
    if (((address.words[i] & block.mask[i]) >>> 0) !== block.base[i]) return false
  }
  return true
}

/** An ipBlocks entry as a matcher; undefined when it is not an address or CIDR. */
export function compileIpMatch (pattern: string): Matcher<IpAddress> | undefined {
  const block = parseCidr(pattern)
  if (block === undefined) return undefined
  return (value) => value !== undefined && cidrContains(block, value)
}

function cidrBlock (words: readonly number[], bits: number): CidrBlock {
  const mask = words.map((_, i) => wordMask(bits - 32 * i))
  return {
    family: words.length === 1 ? 4 : 6,
    base: words.map((word, i) => (word & mask[i]) >>> 0),
    mask
  }
}

/** The mask of one 32-bit word when `bits` prefix bits remain from its start. */
function wordMask (bits: number): number {
  if (bits >= 32) return 0xffffffff
  if (bits <= 0) return 0
  return (0xffffffff << (32 - bits)) >>> 0
}

function isIpv4Mapped (words: readonly number[]): boolean {
  return words.length === 4 && words[0] === 0 && words[1] === 0 && words[2] === 0xffff
}

/**
 * Dotted-quad IPv4 as an unsigned 32-bit number. A hand-written loop: it runs for every
 * connection, and splitting strings would allocate. Leading zeros are refused (they
 * read as octal in some parsers), as Go's netip does for istiod.
 */
function parseIpv4 (text: string): number | undefined {
  let value = 0
  let octet = 0
  let digits = 0
  let dots = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x2e /* . */) {
      if (digits === 0 || dots === 3) return undefined
      value = value * 256 + octet
      octet = 0
      digits = 0
      dots++
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && octet === 0) return undefined
      octet = octet * 10 + (c - 0x30)
      digits++
      if (octet > 255) return undefined
    } else {
      return undefined
    }
  }
  if (dots !== 3 || digits === 0) return undefined
  return value * 256 + octet
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/

/** RFC 4291 text form (with "::" and a dotted-quad tail) as four 32-bit words. */
function parseIpv6 (text: string): number[] | undefined {
  const zone = text.indexOf('%')
  const address = zone < 0 ? text : text.slice(0, zone)
  const gap = address.indexOf('::')
  if (gap >= 0 && address.indexOf('::', gap + 1) >= 0) return undefined
  const head = parseHexGroups(gap < 0 ? address : address.slice(0, gap), gap < 0)
  const tail = gap < 0 ? [] : parseHexGroups(address.slice(gap + 2), true)
  if (head === undefined || tail === undefined) return undefined
  const missing = 8 - head.length - tail.length
  if (gap < 0 ? missing !== 0 : missing < 1) return undefined
  const groups = [...head, ...new Array<number>(gap < 0 ? 0 : missing).fill(0), ...tail]
  return [0, 1, 2, 3].map((i) => (groups[2 * i] * 0x10000 + groups[2 * i + 1]))
}

/** "a:b:c" as 16-bit numbers; the last group may be a dotted quad when `ipv4Tail`. */
function parseHexGroups (text: string, ipv4Tail: boolean): number[] | undefined {
  if (text === '') return []
  const parts = text.split(':')
  const groups: number[] = []
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]
    if (ipv4Tail && i === parts.length - 1 && part.includes('.')) {
      const v4 = parseIpv4(part)
      if (v4 === undefined) return undefined
      groups.push(Math.floor(v4 / 0x10000), v4 % 0x10000)
    } else if (HEX_GROUP.test(part)) {
      groups.push(parseInt(part, 16))
    } else {
      return undefined
    }
  }
  return groups
}

/** A plain non-negative decimal no larger than `max` ("08" and "+8" are refused). */
const DECIMAL = /^(0|[1-9][0-9]*)$/

function parseDecimal (text: string, max: number): number | undefined {
  if (!DECIMAL.test(text)) return undefined
  const value = Number(text)
  return value <= max ? value : undefined
}
