/**
 * Which endpoint of a Service gets the next request (TrafficPolicy `loadBalancer`):
 *
 *   RoundRobin      each endpoint in turn
 *   LeastRequest    Envoy's "power of two choices": of two endpoints drawn at random, the one
 *                   with fewer requests in flight (the caller reports onStart/onEnd)
 *   ConsistentHash  the same header or cookie value always reaches the same endpoint, through a
 *                   hash ring with virtual nodes; requests without the value go round robin
 *
 * The caller passes only the endpoints it may use: `OutlierDetector.healthy(endpoints)` drops
 * the ejected ones. An empty list picks nothing (the waypoint answers 503, Envoy's flag 'UH').
 */
import { createHash } from 'node:crypto'
import type { TrafficPolicySpec } from '../policy/resources.js'
import { randomIndex, type Random } from './random.js'

/** One upstream endpoint (a pod); its `ip` identifies it. */
export interface Endpoint {
  readonly ip: string
}

/** Node's header shape: lower-case names, repeated headers as arrays. */
export type RequestHeaders = Readonly<Record<string, string | readonly string[] | undefined>>

/** The part of a request the balancers look at. */
export interface BalancerRequest {
  readonly headers: RequestHeaders
  /** Parsed cookies, when the caller has them; otherwise the Cookie header is read. */
  readonly cookies?: Readonly<Record<string, string | undefined>>
}

export interface LoadBalancer {
  pick<E extends Endpoint> (endpoints: readonly E[], request: BalancerRequest): E | undefined
  /** A request to `endpoint` started; only LeastRequest cares, the others ignore it. */
  onStart (endpoint: Endpoint): void
  /** That request finished (successfully or not). */
  onEnd (endpoint: Endpoint): void
}

type LoadBalancerSpec = TrafficPolicySpec['loadBalancer']
type HashKeySource = NonNullable<NonNullable<LoadBalancerSpec>['consistentHash']>

/** The balancer a TrafficPolicy asks for; round robin without one (as Envoy's default). */
export function createLoadBalancer (spec?: LoadBalancerSpec, random: Random = Math.random): LoadBalancer {
  switch (spec?.type) {
    case 'LeastRequest': return new LeastRequestBalancer(random)
    // The validator guarantees consistentHash with this type; `?? {}` only keeps the type checker calm.
    case 'ConsistentHash': return new ConsistentHashBalancer(spec.consistentHash ?? {})
    default: return new RoundRobinBalancer()
  }
}

/** Balancers that do not track requests in flight. */
abstract class StatelessBalancer implements LoadBalancer {
  abstract pick<E extends Endpoint> (endpoints: readonly E[], request: BalancerRequest): E | undefined
  onStart (): void {}
  onEnd (): void {}
}

export class RoundRobinBalancer extends StatelessBalancer {
  private next = 0

  pick<E extends Endpoint> (endpoints: readonly E[]): E | undefined {
    if (endpoints.length === 0) return undefined
    // The counter outlives endpoint changes; modulo keeps it in range of the current list.
    const endpoint = endpoints[this.next % endpoints.length]
    this.next = (this.next + 1) % Number.MAX_SAFE_INTEGER
    return endpoint
  }
}

export class LeastRequestBalancer implements LoadBalancer {
  private readonly active = new Map<string, number>()

  constructor (private readonly random: Random = Math.random) {}

  /**
   * Two distinct endpoints at random, the less busy one wins (the first on a tie). Envoy may draw
   * the same endpoint twice; drawing distinct ones is never worse.
   */
  pick<E extends Endpoint> (endpoints: readonly E[]): E | undefined {
    if (endpoints.length <= 1) return endpoints[0]
    const first = randomIndex(this.random, endpoints.length)
    const other = randomIndex(this.random, endpoints.length - 1)
    const second = other >= first ? other + 1 : other
    const [a, b] = [endpoints[first], endpoints[second]]
    return this.activeRequests(b) < this.activeRequests(a) ? b : a
  }

  onStart (endpoint: Endpoint): void {
    this.active.set(endpoint.ip, this.activeRequests(endpoint) + 1)
  }

  onEnd (endpoint: Endpoint): void {
    const remaining = this.activeRequests(endpoint) - 1
    // Deleting at zero keeps the map as small as the set of busy endpoints.
    if (remaining > 0) this.active.set(endpoint.ip, remaining)
    else this.active.delete(endpoint.ip)
  }

  activeRequests (endpoint: Endpoint): number {
    return this.active.get(endpoint.ip) ?? 0
  }
}

export class ConsistentHashBalancer extends StatelessBalancer {
  private readonly fallback = new RoundRobinBalancer()
  private ring: HashRing | undefined
  private ringMembers = ''

  constructor (private readonly source: HashKeySource) {
    super()
  }

  pick<E extends Endpoint> (endpoints: readonly E[], request: BalancerRequest): E | undefined {
    if (endpoints.length === 0) return undefined
    const key = hashKey(request, this.source)
    if (key === undefined) return this.fallback.pick(endpoints)
    const ip = this.ringFor(endpoints).lookup(key)
    return endpoints.find((endpoint) => endpoint.ip === ip)
  }

  /** Building a ring costs a few thousand hashes: reuse it while the endpoints stay the same. */
  private ringFor (endpoints: readonly Endpoint[]): HashRing {
    const members = endpoints.map((endpoint) => endpoint.ip).join(',')
    if (this.ring === undefined || members !== this.ringMembers) {
      this.ring = new HashRing(endpoints.map((endpoint) => endpoint.ip))
      this.ringMembers = members
    }
    return this.ring
  }
}

/** The request's value of the configured header or cookie; undefined when it has none. */
export function hashKey (request: BalancerRequest, source: HashKeySource): string | undefined {
  if (source.header !== undefined) return joinHeader(request.headers[source.header.toLowerCase()], ',')
  if (source.cookie !== undefined) {
    return request.cookies?.[source.cookie] ?? parseCookies(joinHeader(request.headers.cookie, '; '))[source.cookie]
  }
  return undefined
}

function joinHeader (value: string | readonly string[] | undefined, separator: string): string | undefined {
  return typeof value === 'string' || value === undefined ? value : value.join(separator)
}

/** `a=1; b="2"` → { a: '1', b: '2' } (the first of repeated names wins, as browsers send them). */
export function parseCookies (header: string | undefined): Readonly<Record<string, string>> {
  const cookies: Record<string, string> = {}
  for (const pair of (header ?? '').split(';')) {
    const equals = pair.indexOf('=')
    if (equals < 0) continue
    const name = pair.slice(0, equals).trim()
    const value = pair.slice(equals + 1).trim().replace(/^"(.*)"$/, '$1')
    if (name !== '' && !(name in cookies)) cookies[name] = value
  }
  return cookies
}

/** Points per endpoint: enough that ten endpoints get shares within a few percent of each other. */
const POINTS_PER_ENDPOINT = 160

/**
 * A hash ring (ketama): every endpoint owns many points on a 32-bit circle, and a key belongs to
 * the first point at or after its own hash. Removing an endpoint only hands its points' keys to
 * their neighbours; every other key keeps its endpoint.
 */
export class HashRing {
  private readonly points: Uint32Array
  private readonly owners: readonly string[]

  constructor (ids: readonly string[]) {
    const entries = ids.flatMap((id) => endpointPoints(id).map((point) => ({ point, id })))
    // Ties broken by id, so the ring does not depend on the order the endpoints came in.
    entries.sort((a, b) => a.point - b.point || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    this.points = Uint32Array.from(entries, (entry) => entry.point)
    this.owners = entries.map((entry) => entry.id)
  }

  /** The id owning `key`; undefined only for an empty ring. */
  lookup (key: string): string | undefined {
    if (this.owners.length === 0) return undefined
    const index = this.firstPointAtOrAfter(md5(key).readUInt32BE(0))
    return this.owners[index === this.points.length ? 0 : index]
  }

  private firstPointAtOrAfter (hash: number): number {
    let low = 0
    let high = this.points.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (this.points[middle] < hash) low = middle + 1
      else high = middle
    }
    return low
  }
}

/** As ketama: each MD5 digest of `id-n` gives four 32-bit points. */
function endpointPoints (id: string): number[] {
  const points: number[] = []
  for (let n = 0; points.length < POINTS_PER_ENDPOINT; n++) {
    const digest = md5(`${id}-${n}`)
    for (let offset = 0; offset < 16; offset += 4) points.push(digest.readUInt32BE(offset))
  }
  return points
}

// MD5 only spreads keys evenly here; nothing relies on it being hard to reverse.
function md5 (text: string): Buffer {
  return createHash('md5').update(text).digest()
}
