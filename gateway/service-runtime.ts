/**
 * What the waypoint keeps per Service between requests: its compiled routes and L7 policies
 * (as the addressed Service), and its TrafficPolicy machinery (as a backend): load balancer,
 * circuit breaker, outlier detector, rate limiters. Rebuilt only when the inputs change, so
 * counters and ejections survive unrelated state updates.
 */
import type { Redis, Cluster } from 'ioredis'
import type { MeshState, ServiceState } from '../policy/state.js'
import type { TrafficPolicySpec } from '../policy/resources.js'
import { compilePolicy, type CompiledPolicy } from '../policy/authz.js'
import { attachedRoutes, compileRoutes, type RouteTable } from '../policy/route-match.js'
import { createLoadBalancer, type LoadBalancer } from './load-balancer.js'
import { CircuitBreaker } from './circuit-breaker.js'
import { OutlierDetector } from './outlier.js'
import { GlobalRateLimiter, LocalRateLimiter } from './rate-limit.js'
import type { PoolLimits } from './upstream.js'

/** The Service a request addressed: how to route it and who may call it. */
export interface FrontendRuntime {
  readonly routes: RouteTable | undefined
  readonly policies: readonly CompiledPolicy[]
}

/** A Service requests are sent to: how to pick and protect its endpoints. */
export interface BackendRuntime {
  readonly spec: TrafficPolicySpec
  readonly balancer: LoadBalancer
  readonly breaker: CircuitBreaker
  readonly outlier: OutlierDetector | undefined
  readonly localLimit: LocalRateLimiter | undefined
  readonly globalLimit: GlobalRateLimiter | undefined
  /** Whether its HTTP/1.1 requests go through a connection pool of its own (its TrafficPolicy limits one). */
  readonly ownPool: boolean
}

/** Where backends with connection limits get their own pools (UpstreamPools). */
export interface BackendPools {
  replace (backend: string, limits: PoolLimits | undefined): void
}

/** Valid for `state`; for a newer state it is reused when its inputs print the same. */
interface Cached<T> { state: MeshState, readonly fingerprint: string, readonly value: T }

export interface RuntimeOptions {
  /** Where global rate-limit counters live; without it global limits are not enforced. */
  readonly redis?: Redis | Cluster
  readonly keyPrefix?: string
  readonly onRateLimitFailOpen?: (service: string) => void
  /** The waypoint's own 'namespace/name', for policies that target the Gateway itself. */
  readonly waypoint: { readonly namespace: string, readonly name: string }
  readonly pools?: BackendPools
}

export class ServiceRuntimes {
  private readonly frontends = new Map<string, Cached<FrontendRuntime>>()
  private readonly backends = new Map<string, Cached<BackendRuntime>>()

  constructor (private readonly options: RuntimeOptions) {}

  /** The addressed Service on one of its ports (a route's parentRef may name a port). */
  frontend (state: MeshState, service: ServiceState, port: number): FrontendRuntime {
    const inputs = (): FrontendInputs => ({
      routes: attachedRoutes(state, service, port),
      policies: [...service.policies, ...this.gatewayPolicies(state)]
        .map((key) => state.authorizationPolicies[key]).filter((p) => p !== undefined)
    })
    return this.cached(this.frontends, `${service.key}:${port}`, state, inputs, ({ routes, policies }) => ({
      routes: routes.length > 0 ? compileRoutes(routes) : undefined,
      policies: policies.map((p) => compilePolicy(`${p.metadata.namespace}/${p.metadata.name}`, p))
    }))
  }

  backend (state: MeshState, service: ServiceState): BackendRuntime {
    const inputs = (): TrafficPolicySpec =>
      service.trafficPolicy === undefined ? {} : state.trafficPolicies[service.trafficPolicy]?.spec ?? {}
    return this.cached(this.backends, service.key, state, inputs, (spec) => {
      const global = spec.rateLimit?.global
      const limits = poolLimits(spec.circuitBreaker)
      this.options.pools?.replace(service.key, limits)
      return {
        ownPool: limits !== undefined && this.options.pools !== undefined,
        spec,
        balancer: createLoadBalancer(spec.loadBalancer),
        breaker: new CircuitBreaker(spec.circuitBreaker),
        outlier: spec.outlierDetection === undefined ? undefined : new OutlierDetector(spec.outlierDetection),
        localLimit: spec.rateLimit?.local === undefined ? undefined : new LocalRateLimiter(spec.rateLimit.local),
        globalLimit: global === undefined || this.options.redis === undefined
          ? undefined
          : new GlobalRateLimiter({
            redis: this.options.redis,
            keyPrefix: this.options.keyPrefix ?? 'ambit:',
            name: service.key,
            requests: global.requests,
            interval: global.interval,
            // Labelled like istio_requests_total's destination_service: the Service's hostname.
            onFailOpen: () => this.options.onRateLimitFailOpen?.(service.hostnames[0] ?? service.key)
          })
      }
    })
  }

  /** Policies in the waypoint's namespace whose targetRefs name the waypoint's Gateway. */
  private gatewayPolicies (state: MeshState): string[] {
    const { namespace, name } = this.options.waypoint
    return Object.entries(state.authorizationPolicies)
      .filter(([, p]) => p.metadata.namespace === namespace && p.targetRefs.some((r) => r.kind === 'Gateway' && r.name === name))
      .map(([key]) => key)
  }

  private cached<I, T> (cache: Map<string, Cached<T>>, key: string, state: MeshState, inputs: () => I, build: (inputs: I) => T): T {
    const hit = cache.get(key)
    if (hit?.state === state) return hit.value
    const current = inputs()
    const fingerprint = JSON.stringify(current)
    if (hit?.fingerprint === fingerprint) {
      hit.state = state
      return hit.value
    }
    const value = build(current)
    cache.set(key, { state, fingerprint, value })
    return value
  }
}

/** The pool limits a circuit breaker sets; undefined when it sets none (the shared pool serves). */
function poolLimits (breaker: TrafficPolicySpec['circuitBreaker']): PoolLimits | undefined {
  if (breaker === undefined) return undefined
  const { maxConnections, maxRequestsPerConnection, maxPendingRequests } = breaker
  if (maxConnections === undefined && maxRequestsPerConnection === undefined && maxPendingRequests === undefined) return undefined
  return { ...(maxConnections !== undefined && { maxConnections }), ...(maxRequestsPerConnection !== undefined && { maxRequestsPerConnection }) }
}

interface FrontendInputs {
  readonly routes: (MeshState['httpRoutes'][string] | MeshState['grpcRoutes'][string])[]
  readonly policies: MeshState['authorizationPolicies'][string][]
}

