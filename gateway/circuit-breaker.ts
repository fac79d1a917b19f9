/**
 * Envoy's circuit breaker for one Service (TrafficPolicy `circuitBreaker`): caps on what may be
 * in flight at once. It never "opens" on a timer: a request over a cap fails at once (the
 * waypoint answers 503 with response flag 'UO', upstream overflow) and the next one succeeds as
 * soon as something finished and released its slot.
 *
 *   connection  open upstream connections        (maxConnections)
 *   pending     requests waiting for a connection (maxPendingRequests)
 *   request     requests in flight               (maxParallelRequests)
 *   retry       retries in flight                (maxParallelRetries)
 *
 * As in Envoy, a retry takes a 'retry' slot *and* a 'request' slot. A limit left unset is
 * unlimited, as Istio configures Envoy (Envoy's own defaults, 1024 and 3 retries, would surprise).
 */
import type { TrafficPolicySpec } from '../policy/resources.js'

export type CircuitKind = 'connection' | 'pending' | 'request' | 'retry'

export const CIRCUIT_KINDS: readonly CircuitKind[] = ['connection', 'pending', 'request', 'retry']

/** Gives the slot back; calling it more than once has no further effect. */
export type Release = () => void

/** For metrics: what is in flight, the cap, and how many acquisitions the cap refused so far. */
export interface CircuitStats {
  readonly active: number
  readonly limit: number
  readonly overflows: number
}

type CircuitBreakerSpec = NonNullable<TrafficPolicySpec['circuitBreaker']>

export class CircuitBreaker {
  /** For the connection pool: close a connection after this many requests (undefined: never). */
  readonly maxRequestsPerConnection: number | undefined
  private readonly limits: Readonly<Record<CircuitKind, Limit>>

  constructor (spec: CircuitBreakerSpec = {}) {
    this.maxRequestsPerConnection = spec.maxRequestsPerConnection
    this.limits = {
      connection: new Limit(spec.maxConnections),
      pending: new Limit(spec.maxPendingRequests),
      request: new Limit(spec.maxParallelRequests),
      retry: new Limit(spec.maxParallelRetries)
    }
  }

  /** A slot of `kind`, or undefined when that cap is reached (overflow). */
  tryAcquire (kind: CircuitKind): Release | undefined {
    return this.limits[kind].tryAcquire()
  }

  stats (kind: CircuitKind): CircuitStats {
    const { active, limit, overflows } = this.limits[kind]
    return { active, limit, overflows }
  }
}

/** One counted resource with a cap. */
class Limit {
  active = 0
  overflows = 0
  readonly limit: number

  constructor (limit: number | undefined) {
    this.limit = limit ?? Number.POSITIVE_INFINITY
  }

  tryAcquire (): Release | undefined {
    if (this.active >= this.limit) {
      this.overflows++
      return undefined
    }
    this.active++
    let released = false
    return () => {
      // A double release (say, from both an 'error' and a 'close' handler) must not free a slot twice.
      if (released) return
      released = true
      this.active--
    }
  }
}
