/**
 * Envoy's circuit breaker for one Service (TrafficPolicy `circuitBreaker`): caps on what may be
 * in flight at once. It never "opens" on a timer: a request over a cap fails at once (the
 * waypoint answers 503 with response flag 'UO', upstream overflow) and the next one succeeds as
 * soon as something finished and released its slot.
 *
 *   request     requests in flight               (maxParallelRequests)
 *   retry       retries in flight, backoff included (maxParallelRetries)
 *
 * The connection caps live in the Service's own connection pool (upstream.ts UpstreamPools):
 * maxConnections per endpoint and maxRequestsPerConnection; maxPendingRequests caps the requests
 * waiting there for a connection (the pipeline checks it before sending). A limit left unset is
 * unlimited, as Istio configures Envoy (Envoy's own defaults, 1024 and 3 retries, would surprise).
 */
import type { TrafficPolicySpec } from '../policy/resources.js'

export type CircuitKind = 'request' | 'retry'

export const CIRCUIT_KINDS: readonly CircuitKind[] = ['request', 'retry']

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
  private readonly limits: Readonly<Record<CircuitKind, Limit>>

  constructor (spec: CircuitBreakerSpec = {}) {
    this.limits = {
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
