/**
 * One request through the waypoint, in the order Envoy applies the same features:
 * L7 authorization → route match → redirect / rewrite → fault injection → rate limits →
 * backend choice → circuit breaker → endpoint choice (load balancer, outlier detection) →
 * forwarding with retries and timeouts → response filters, metrics and an access log line.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Readable } from 'node:stream'
import type { MeshRegistry } from '../policy/registry.js'
import type { EndpointState, MeshState, ServiceState, WorkloadState } from '../policy/state.js'
import type { HTTPRouteFilter } from '../policy/resources.js'
import type { HttpIngress, TunnelContext } from './http-ingress.js'
import type { ServiceRuntimes, BackendRuntime } from './service-runtime.js'
import { routeResource, type RouteMatch } from '../policy/route-match.js'
import { applyRequestFilters, applyResponseFilters, type HeaderRecord } from './filters.js'
import { chooseBackend } from './backends.js'
import { decideFault, type FaultDecision } from './faults.js'
import { IDEMPOTENT_METHODS, rulePolicy, shouldRetry, timeouts, tryTimeoutMs, type RetryPolicy, type RuleTimeouts, type TryError } from './retry.js'
import { replayable, type ReplayableBody } from './replay-body.js'
import { formatTraceparent, nextHop, type TraceContext } from './trace.js'
import type { HttpLabels, WaypointMetrics } from './metrics.js'
import { POOL_HEADER, type Http2Sessions, type UpstreamPools } from './upstream.js'
import { forwardHttp2 } from './forward-http2.js'
import { endToEndHeaders, relayBody } from './relay.js'
import { allowedAtWaypoint } from './l7-authz.js'
import { mirrorRequest } from './mirror.js'

export interface PipelineDeps {
  registry (): MeshRegistry
  readonly runtimes: ServiceRuntimes
  readonly ingress: HttpIngress
  readonly h2: Http2Sessions
  /** HTTP/1.1 connection pools over tunnels (mirrored copies use the shared one). */
  readonly upstream: UpstreamPools
  readonly metrics: WaypointMetrics
  /** One JSON line per request; undefined turns the access log off. */
  readonly accessLog?: AccessLog
}

/**
 * Where access log records go: pino's `info(record, msg)`, so a pino Logger is one (tests
 * capture lines with one); cli/log.ts's createAccessLogger is a cheaper writer of the same lines.
 */
export interface AccessLog {
  info (record: object, msg: string): void
}

/** Envoy's response flags for what the waypoint itself decided. */
export const Flags = {
  none: '-', denied: 'UAEX', noRoute: 'NR', noHealthyUpstream: 'UH', overflow: 'UO', faultAbort: 'FI',
  delayInjected: 'DI', rateLimited: 'RL', timeout: 'UT', connectFailure: 'UF', reset: 'UC', retryLimit: 'URX'
} as const

const FAILURE_FLAGS: Readonly<Record<TryError, string>> = { timeout: Flags.timeout, 'connect-failure': Flags.connectFailure, reset: Flags.reset }
const FAILURE_BODIES: Readonly<Record<TryError, string>> = {
  timeout: 'upstream request timeout\n',
  'connect-failure': 'upstream connect error or disconnect/reset before headers. reset reason: connection failure\n',
  reset: 'upstream connect error or disconnect/reset before headers. reset reason: connection termination\n'
}

/** Everything known about one request as it moves through the steps. */
interface Exchange {
  readonly request: FastifyRequest
  readonly reply: FastifyReply
  readonly tunnel: TunnelContext
  readonly started: number
  readonly trace: TraceContext
  readonly grpc: boolean
  source?: WorkloadState
  backend?: ServiceState
  endpoint?: EndpointState
  /** 'ip:port' the request was sent to (the endpoint's port for the backend Service port). */
  upstream?: string
  flags: string[]
  requestBytes: number
  responseBytes: number
  grpcStatus?: string
  /** The circuit breaker's request slot, given back when the request ends. */
  release?: () => void
  /** The request timeout's timer, cleared when the request ends. */
  deadlineTimer?: NodeJS.Timeout
}

/** What every try of one request shares. */
interface ForwardPlan {
  readonly runtime: BackendRuntime
  readonly backend: ServiceState
  /** The backend Service's port (each endpoint maps it to its own target port). */
  readonly port: number
  readonly match: RouteMatch | undefined
  /** The request's headers after the route's filters; each protocol's forwarding adds the rest. */
  readonly headers: HeaderRecord
  readonly path: string
  readonly filters: readonly HTTPRouteFilter[]
  readonly ruleTimeouts: RuleTimeouts
  /** When the whole request times out (Date.now() clock), retries included. */
  readonly deadline: number | undefined
}

/** What decides whether a request's failed try is sent again. */
interface Retries {
  readonly policy: RetryPolicy
  readonly nonIdempotentAllowed: boolean
  /** The body kept for a replay; undefined for a request without one. */
  readonly body: ReplayableBody | undefined
}

const NO_ENDPOINTS: ReadonlySet<string> = new Set()
/** What reply-from is left to set on the reply itself: relayAnswer writes the answer's headers. */
const NO_HEADERS: HeaderRecord = Object.freeze({})
/** A request no route matched (a Service without routes) gets the implicit retry policy. */
const NO_RULE = { matches: [], filters: [], backendRefs: [] }
const IMPLICIT_POLICY = rulePolicy(NO_RULE)
const DENIED_BODY = 'RBAC: access denied\n'
const DEFAULT_TRY_TIMEOUT_MS = 30_000

export class RequestPipeline {
  constructor (private readonly deps: PipelineDeps) {}

  async handle (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const tunnel = this.deps.ingress.contextOf(request.raw)
    if (tunnel === undefined) {
      await reply.code(500).send('no tunnel context\n')
      return
    }
    const exchange: Exchange = {
      request, reply,
      tunnel: withCurrentService(tunnel, this.deps.registry()),
      started: performance.now(),
      trace: nextHop(headerString(request.headers.traceparent)),
      grpc: (request.headers['content-type'] ?? '').startsWith('application/grpc'),
      flags: [],
      requestBytes: 0,
      responseBytes: 0
    }
    // One listener does all the request's end-of-life work (metrics, log, breaker, timer).
    reply.raw.once('close', () => this.finish(exchange))
    await this.route(exchange)
  }

  private async route (x: Exchange): Promise<void> {
    const registry = this.deps.registry()
    const state = registry.state
    x.source = sourceWorkload(registry, x.tunnel)
    const frontend = this.deps.runtimes.frontend(state, x.tunnel.service, x.tunnel.port.port)
    const request = routeRequest(x)
    if (!allowedAtWaypoint(frontend.policies, x.tunnel, request, this.deps.metrics.ruleHits)) return this.local(x, 403, Flags.denied, DENIED_BODY)
    const match = frontend.routes === undefined || frontend.routes.empty ? undefined : frontend.routes.match(request)
    if (frontend.routes !== undefined && !frontend.routes.empty && match === undefined) return this.local(x, 404, Flags.noRoute, 'no route\n')
    const filters = match?.rule.filters ?? []
    const filtered = applyRequestFilters(filters, { path: x.request.url, headers: x.request.headers, port: x.tunnel.port.port }, match?.kind === 'HTTPRoute' ? match.match.path : undefined)
    if (filtered.redirect !== undefined) {
      x.reply.header('location', filtered.redirect.location)
      return this.local(x, filtered.redirect.status, Flags.none, '')
    }
    const { backend, port } = chooseBackendService(registry, match, x.tunnel.service, x.tunnel.port.port)
    if (backend === undefined) return this.local(x, 500, Flags.noHealthyUpstream, 'no backend\n')
    x.backend = backend
    if (filtered.mirrors.length > 0 && !hasBody(x.request)) {
      mirrorRequest(this.deps.upstream.shared, registry, filtered.mirrors, match?.namespace ?? x.tunnel.service.namespace, { method: x.request.method, path: filtered.path, headers: filtered.headers })
    }
    const runtime = this.deps.runtimes.backend(state, backend)
    // Most requests meet no delay and no global limit: they pass without waiting for a promise.
    const passes = this.passesFaultsAndLimits(x, runtime)
    if (passes === false || (passes !== true && !(await passes))) return
    const release = runtime.breaker.tryAcquire('request')
    if (release === undefined) return this.local(x, 503, Flags.overflow, 'upstream overflow\n')
    x.release = release
    const ruleTimeouts = match === undefined ? {} : timeouts(match.rule)
    return this.forward(x, {
      runtime, backend, match, filters, ruleTimeouts, port,
      headers: filtered.headers,
      path: filtered.path,
      deadline: ruleTimeouts.requestMs === undefined ? undefined : Date.now() + ruleTimeouts.requestMs
    })
  }

  /**
   * Fault injection, then rate limits: false once one of them has answered the request. A
   * promise only when something must be waited for (an injected delay, the global limit's store).
   */
  private passesFaultsAndLimits (x: Exchange, runtime: BackendRuntime): boolean | Promise<boolean> {
    const fault = decideFault(runtime.spec.faultInjection)
    if (fault.delayMs !== undefined || runtime.globalLimit !== undefined) return this.passesAfterWaiting(x, runtime, fault)
    return this.passesAtOnce(x, runtime, fault)
  }

  private async passesAfterWaiting (x: Exchange, runtime: BackendRuntime, fault: FaultDecision): Promise<boolean> {
    if (fault.delayMs !== undefined) {
      x.flags.push(Flags.delayInjected)
      await new Promise((resolve) => setTimeout(resolve, fault.delayMs))
    }
    if (!this.passesAtOnce(x, runtime, fault)) return false
    if (runtime.globalLimit !== undefined && !(await runtime.globalLimit.tryTake()).allowed) {
      this.local(x, 429, Flags.rateLimited, 'rate limited\n')
      return false
    }
    return true
  }

  private passesAtOnce (x: Exchange, runtime: BackendRuntime, fault: FaultDecision): boolean {
    if (fault.abort !== undefined) {
      this.local(x, fault.abort, Flags.faultAbort, 'fault filter abort\n')
      return false
    }
    if (runtime.localLimit !== undefined && !runtime.localLimit.tryTake().allowed) {
      this.local(x, 429, Flags.rateLimited, 'local rate limited\n')
      return false
    }
    return true
  }

  /**
   * An endpoint of the backend serving `port`: healthy (outlier detection), chosen by the load
   * balancer, and for a retry one not tried yet when there is one (Envoy's previous_hosts).
   */
  private pickEndpoint (x: Exchange, plan: ForwardPlan, tried: ReadonlySet<string> = NO_ENDPOINTS): EndpointState | undefined {
    const serving = endpointsServing(plan.backend, plan.port)
    const healthy = plan.runtime.outlier?.healthy(serving) ?? serving
    const untried = tried.size === 0 ? healthy : healthy.filter((e) => !tried.has(e.ip))
    return plan.runtime.balancer.pick(untried.length > 0 ? untried : healthy, { headers: x.request.headers })
  }

  /** Starts a try on `endpoint`: the exchange records it, the load balancer counts it; returns the URL. */
  private startTry (x: Exchange, plan: ForwardPlan, endpoint: EndpointState): string {
    x.endpoint = endpoint
    const targetPort = endpoint.ports[String(plan.port)]!
    x.upstream = `${endpoint.ip}:${targetPort}`
    plan.runtime.balancer.onStart(endpoint)
    const host = endpoint.ip.includes(':') ? `[${endpoint.ip}]` : endpoint.ip
    return `http://${host}:${targetPort}${plan.path}`
  }

  /** Ends a try: outlier detection hears how it went, the load balancer that it is over. */
  private endTry (plan: ForwardPlan, endpoint: EndpointState, outcome: { status?: number, error?: TryError }): void {
    this.reportToOutlierDetection(plan.runtime, plan.backend, endpoint, outcome)
    plan.runtime.balancer.onEnd(endpoint)
  }

  /** HTTP/1.1 upstreams are driven by reply-from's callbacks; HTTP/2 ones by a loop of tries (a promise). */
  private forward (x: Exchange, plan: ForwardPlan): Promise<void> | undefined {
    const endpoint = this.pickEndpoint(x, plan)
    if (endpoint === undefined) {
      this.local(x, 503, Flags.noHealthyUpstream, 'no healthy upstream\n')
      return
    }
    if (plan.deadline !== undefined) this.enforceDeadline(x, plan.deadline)
    if (x.request.raw.httpVersionMajor === 2 && upstreamSpeaksHttp2(plan.backend, plan.port, x.grpc)) return this.forwardHttp2(x, plan, endpoint)
    this.forwardHttp1(x, plan, endpoint)
  }

  /**
   * The retry rules of this request: its route's policy, whether its method may be retried, its
   * body kept for a replay. (The route's annotation matters only to a method that is not
   * idempotent: others are retried whatever it says, so it is not looked up for them.)
   */
  private retries (x: Exchange, plan: ForwardPlan, body: ReplayableBody | undefined): Retries {
    const nonIdempotentAllowed = !IDEMPOTENT_METHODS.has(x.request.method) && retriesNonIdempotent(this.deps.registry().state, plan.match)
    return { policy: policyOf(plan.match), nonIdempotentAllowed, body }
  }

  /**
   * How long to wait before retrying a failed try, or undefined for no retry: the route's policy
   * must allow it, the body (if any) must be whole in hand, and the circuit breaker must grant a
   * retry slot (held through the backoff).
   */
  private retryDelay (x: Exchange, plan: ForwardPlan, retries: Retries, attempt: number, outcome: { status?: number, error?: TryError }): number | undefined {
    const decision = shouldRetry({
      attempt, method: x.request.method, policy: retries.policy, now: Date.now(), nonIdempotentAllowed: retries.nonIdempotentAllowed,
      ...(plan.deadline !== undefined && { deadline: plan.deadline }), ...outcome
    })
    if (!decision.retry) return undefined
    if (retries.body !== undefined && retries.body.replay() === undefined) return undefined
    const slot = plan.runtime.breaker.tryAcquire('retry')
    if (slot === undefined) return undefined
    setTimeout(slot, decision.delayMs)
    return decision.delayMs
  }

  /** The next endpoint after a failed try on `previous`: another one not tried yet when there is one. */
  private nextEndpoint (x: Exchange, plan: ForwardPlan, tried: Set<string>, previous: EndpointState): EndpointState {
    const next = this.pickEndpoint(x, plan, tried) ?? previous
    tried.add(next.ip)
    return next
  }

  /** HTTP/2 and gRPC: tries in a loop, each on the endpoint's shared HTTP/2 session. */
  private async forwardHttp2 (x: Exchange, plan: ForwardPlan, first: EndpointState): Promise<void> {
    const body = replayable(x.request.raw as unknown as Readable, (n) => { x.requestBytes += n })
    const retries = this.retries(x, plan, body)
    // forwardHttp2 drops pseudo and hop-by-hop headers itself; this hop adds its traceparent.
    const headers: HeaderRecord = { ...plan.headers, traceparent: formatTraceparent(x.trace) }
    const tried = new Set([first.ip])
    let endpoint = first
    for (let attempt = 1; ; attempt++) {
      this.startTry(x, plan, endpoint)
      let delayMs = 0
      const result = await forwardHttp2(this.deps.h2, x.request, x.reply, {
        ip: endpoint.ip, port: endpoint.ports[String(plan.port)]!, path: plan.path, headers,
        timeoutMs: tryTimeoutMs(plan.ruleTimeouts, plan.deadline, Date.now()) ?? DEFAULT_TRY_TIMEOUT_MS,
        body: attempt === 1 ? body : body.replay()!,
        rewriteResponseHeaders: (h) => applyResponseFilters(plan.filters, h),
        retry: (outcome) => {
          const delay = this.retryDelay(x, plan, retries, attempt, outcome)
          if (delay !== undefined) delayMs = delay
          return delay !== undefined
        }
      })
      x.responseBytes += result.responseBytes
      this.endTry(plan, endpoint, result)
      if (result.retried !== true) {
        if (result.grpcStatus !== undefined) x.grpcStatus = result.grpcStatus
        if (result.flag !== undefined) x.flags.push(result.flag)
        return
      }
      await new Promise((resolve) => setTimeout(resolve, delayMs))
      endpoint = this.nextEndpoint(x, plan, tried, endpoint)
    }
  }

  /**
   * HTTP/1.1 through reply-from. Each retry goes to another endpoint when the backend has one:
   * reply-from hands the retry hook the request it is about to send again, and the hook points
   * it at the new endpoint, with what is left of the request timeout and the body replayed.
   */
  private forwardHttp1 (x: Exchange, plan: ForwardPlan, first: EndpointState): void {
    const headers = http1Headers(plan.headers, x.trace)
    if (plan.runtime.ownPool) {
      const maxPending = plan.runtime.spec.circuitBreaker?.maxPendingRequests
      if (maxPending !== undefined && this.deps.upstream.queued(plan.backend.key) >= maxPending) return this.local(x, 503, Flags.overflow, 'upstream overflow\n')
      headers[POOL_HEADER] = plan.backend.key
    }
    const source = x.request.body as Readable | undefined
    // reply-from refuses a stream given as `body` ("not supported yet") but streams request.body.
    const body = source === undefined ? undefined : replayable(source, (n) => { x.requestBytes += n })
    if (body !== undefined) x.request.body = body
    const retries = this.retries(x, plan, body)
    let endpoint = first
    let answerHeaders: HeaderRecord = {}
    // Endpoints tried so far, made on the first retry (most requests have none).
    let tried: Set<string> | undefined
    // A try ends once: reply-from may call onError and then onResponse for one answer (a status
    // fastify refuses), and an answer may come after the request timeout has answered the client.
    let tryOpen = true
    const endCurrentTry = (outcome: { status?: number, error?: TryError }): void => {
      if (!tryOpen) return
      tryOpen = false
      this.endTry(plan, endpoint, outcome)
    }
    void x.reply.from(this.startTry(x, plan, first), {
      timeout: tryTimeoutMs(plan.ruleTimeouts, plan.deadline, Date.now()) ?? DEFAULT_TRY_TIMEOUT_MS,
      rewriteRequestHeaders: () => headers,
      // The answer's headers (after the route's filters; without filters, as they came) are kept
      // for relayAnswer's one writeHead, and none are set on the reply one by one.
      rewriteHeaders: (h) => {
        answerHeaders = plan.filters.length > 0 ? applyResponseFilters(plan.filters, h) : h
        return NO_HEADERS
      },
      retryDelay: ({ err, req, res, attempt }) => {
        const status = res?.statusCode
        // reply-from asks after every try: an answer whose status the policy does not retry
        // (nearly all of them) needs no more thought.
        if ((err === undefined || err === null) && (status === undefined || !retries.policy.codes.has(status))) return null
        const error = err === undefined || err === null ? undefined : tryErrorOf(err as NodeJS.ErrnoException)
        const outcome = { ...(status !== undefined && { status }), ...(error !== undefined && { error }) }
        const delayMs = this.retryDelay(x, plan, retries, attempt + 1, outcome)
        // No retry: onResponse / onError report the final outcome.
        if (delayMs === undefined) return null
        // The failed answer is not passed on: read it away so its connection goes back to the pool.
        discardAnswer(res)
        endCurrentTry(outcome)
        tried ??= new Set([first.ip])
        endpoint = this.nextEndpoint(x, plan, tried, endpoint)
        tryOpen = true
        const replay = body?.replay()
        retarget(req as unknown as RetriedRequest, {
          url: this.startTry(x, plan, endpoint),
          timeoutMs: tryTimeoutMs(plan.ruleTimeouts, plan.deadline, Date.now() + delayMs) ?? DEFAULT_TRY_TIMEOUT_MS,
          ...(replay !== undefined && { body: replay })
        })
        return Math.max(1, delayMs)
      },
      onResponse: (_request, _reply, res) => {
        endCurrentTry({ status: res.statusCode })
        // Answered already: by onError (a status fastify refuses, say 999), or the request timeout.
        if (x.reply.sent) return discardAnswer(res)
        relayAnswer(x, res.statusCode, answerHeaders, res.stream as unknown as Readable)
      },
      onError: (reply, { error }) => {
        // reply-from's own status says little (a refused tunnel comes back as a 500): the try's
        // error, its cause, says what happened. Envoy answers 504 to a timeout, else 503.
        const failure = (error as { statusCode?: number }).statusCode === 504 ? 'timeout' : tryErrorOf(((error as { cause?: unknown }).cause ?? error) as NodeJS.ErrnoException)
        x.flags.push(FAILURE_FLAGS[failure])
        endCurrentTry({ error: failure })
        if (!reply.sent) void reply.code(failure === 'timeout' ? 504 : 503).send(FAILURE_BODIES[failure])
      }
    })
  }

  /** Feeds outlier detection; an ejection it decides is counted in ambit_outlier_ejections_total. */
  private reportToOutlierDetection (runtime: BackendRuntime, backend: ServiceState, endpoint: EndpointState, outcome: { status?: number, error?: TryError }): void {
    const detector = runtime.outlier
    if (detector === undefined) return
    const before = detector.ejections
    detector.report(endpoint.ip, { ...(outcome.status !== undefined && { status: outcome.status }), connectFailure: outcome.error === 'connect-failure' })
    if (detector.ejections > before) this.deps.metrics.outlierEjections.inc({ destination_service: backend.hostnames[0] ?? backend.key })
  }

  /** A request timeout covers every try: when it passes, the client gets 504 at once. */
  private enforceDeadline (x: Exchange, deadline: number): void {
    x.deadlineTimer = setTimeout(() => {
      if (x.reply.sent || x.reply.raw.headersSent) return
      this.local(x, 504, Flags.timeout, 'upstream request timeout\n')
    }, Math.max(0, deadline - Date.now()))
  }

  /** An answer the waypoint gives itself (denied, no route, fault, limit...). */
  private local (x: Exchange, status: number, flag: string, body: string): void {
    if (flag !== Flags.none) x.flags.push(flag)
    if (x.reply.sent) return
    if (x.grpc && status >= 400) {
      x.grpcStatus = grpcStatusFor(status)
      // A trailers-only answer: status and message in the one HEADERS frame that ends the
      // stream. fastify would send its headers first and end the stream apart, and gRPC clients
      // then read grpc-status as metadata and fail the call with INTERNAL instead.
      x.reply.hijack()
      const raw = x.reply.raw
      raw.statusCode = 200
      raw.setHeader('content-type', 'application/grpc')
      raw.setHeader('grpc-status', x.grpcStatus)
      raw.setHeader('grpc-message', body.trim())
      raw.end()
      return
    }
    void x.reply.code(status).header('content-type', 'text/plain').send(body)
  }

  private finish (x: Exchange): void {
    x.release?.()
    clearTimeout(x.deadlineTimer)
    const duration = performance.now() - x.started
    const status = x.reply.raw.statusCode
    const labels = this.labels(x, status)
    this.deps.metrics.request(labels, duration, x.requestBytes + headerBytes(x.request.raw.rawHeaders), x.responseBytes)
    this.deps.accessLog?.info({
      method: x.request.method,
      authority: headerString(x.request.headers.host) ?? headerString(x.request.headers[':authority']),
      path: x.request.url,
      status,
      flags: labels.response_flags,
      upstream: x.upstream,
      duration: Math.round(duration * 1000) / 1000,
      traceId: x.trace.traceId,
      source: labels.source_principal,
      service: labels.destination_service
    }, 'access')
  }

  private labels (x: Exchange, status: number): HttpLabels {
    const destination = x.endpoint === undefined ? undefined : this.deps.registry().workloadByIp(x.endpoint.ip)
    const service = x.backend ?? x.tunnel.service
    return {
      reporter: 'waypoint',
      source_workload: x.source?.name ?? 'unknown',
      source_workload_namespace: x.source?.namespace ?? 'unknown',
      source_principal: x.tunnel.peerSpiffeId,
      destination_workload: destination?.name ?? 'unknown',
      destination_workload_namespace: destination?.namespace ?? 'unknown',
      destination_principal: destination?.spiffeId ?? 'unknown',
      destination_service: service.hostnames[0] ?? 'unknown',
      request_protocol: x.grpc ? 'grpc' : 'http',
      response_code: String(status),
      grpc_response_status: x.grpcStatus ?? '',
      response_flags: x.flags.length === 0 ? Flags.none : x.flags.join(','),
      connection_security_policy: 'mutual_tls'
    }
  }
}

/**
 * A keep-alive tunnel outlives state updates, and its context holds the Service as it was when
 * the tunnel opened: each request looks it up again, so new routes and policies apply at once.
 */
function withCurrentService (tunnel: TunnelContext, registry: MeshRegistry): TunnelContext {
  const service = registry.service(tunnel.service.key)
  return service === undefined || service === tunnel.service ? tunnel : { ...tunnel, service }
}

function sourceWorkload (registry: MeshRegistry, tunnel: TunnelContext): WorkloadState | undefined {
  const workload = registry.workloadByIp(tunnel.sourceIp)
  return workload?.spiffeId === tunnel.peerSpiffeId ? workload : undefined
}

function routeRequest (x: Exchange): { method: string, path: string, headers: FastifyRequest['headers'] } {
  return { method: x.request.method, path: x.request.url, headers: x.request.headers }
}

/**
 * The backend a request goes to, and its port: a weighted pick among the rule's backendRefs (one
 * without a namespace is in its route's), or the addressed Service itself on the addressed port.
 */
export function chooseBackendService (registry: MeshRegistry, match: RouteMatch | undefined, addressed: ServiceState, addressedPort: number): { backend?: ServiceState, port: number } {
  if (match === undefined || match.rule.backendRefs.length === 0) return { backend: registry.service(addressed.key), port: addressedPort }
  const backendRef = chooseBackend(match.rule.backendRefs)
  if (backendRef === undefined) return { port: addressedPort }
  return { backend: registry.service(`${backendRef.namespace ?? match.namespace}/${backendRef.name}`), port: backendRef.port ?? addressedPort }
}

/**
 * Whether to speak HTTP/2 to the endpoint: when its Service port says so (appProtocol http2 or
 * grpc) or the request is gRPC. Otherwise HTTP/1.1, whatever the client spoke: Envoy too picks
 * the upstream protocol from the destination, and an h2c client must not break an HTTP/1.1 pod.
 */
function upstreamSpeaksHttp2 (backend: ServiceState, port: number, grpc: boolean): boolean {
  const protocol = backend.ports.find((p) => p.port === port)?.appProtocol
  return grpc || protocol === 'http2' || protocol === 'grpc'
}

/**
 * The request's headers as they go upstream over HTTP/1.1, built in one pass (this runs on every
 * request): this hop's traceparent, no Connection, no HTTP/2 pseudo-headers; :authority becomes Host.
 */
function http1Headers (filtered: HeaderRecord, trace: TraceContext): HeaderRecord {
  const out: HeaderRecord = {}
  for (const name in filtered) {
    if (name.charCodeAt(0) !== COLON && name !== 'connection') out[name] = filtered[name]
  }
  out.traceparent = formatTraceparent(trace)
  out.host ??= filtered[':authority']
  return out
}

const COLON = 0x3a

/** Each Service's endpoints serving each of its ports, found once per Service state (a state update brings new ones). */
const serving = new WeakMap<ServiceState, Map<number, readonly EndpointState[]>>()

export function endpointsServing (backend: ServiceState, port: number): readonly EndpointState[] {
  let byPort = serving.get(backend)
  if (byPort === undefined) {
    byPort = new Map()
    serving.set(backend, byPort)
  }
  let endpoints = byPort.get(port)
  if (endpoints === undefined) {
    const key = String(port)
    endpoints = backend.endpoints.filter((e) => e.ports[key] !== undefined)
    byPort.set(port, endpoints)
  }
  return endpoints
}

/** Each rule's retry policy, made once, not per request (rules are immutable: a state update brings new ones). */
const policies = new WeakMap<RouteMatch['rule'], RetryPolicy>()

function policyOf (match: RouteMatch | undefined): RetryPolicy {
  if (match === undefined) return IMPLICIT_POLICY
  let policy = policies.get(match.rule)
  if (policy === undefined) {
    policy = rulePolicy(match.rule)
    policies.set(match.rule, policy)
  }
  return policy
}

/**
 * Gateway API retries have no field for it (GEP-1731), so an HTTPRoute opts in to retrying
 * non-idempotent methods (POST, PATCH...) with this annotation. A request's body is replayed
 * only when it was whole within REPLAY_LIMIT_BYTES (replay-body.ts).
 */
export const RETRY_NON_IDEMPOTENT_ANNOTATION = 'ambit.dev/retry-non-idempotent'

function retriesNonIdempotent (state: MeshState, match: RouteMatch | undefined): boolean {
  if (match?.kind !== 'HTTPRoute') return false
  return routeResource(state, match.route)?.metadata.annotations[RETRY_NON_IDEMPOTENT_ANNOTATION] === 'true'
}

function hasBody (request: FastifyRequest): boolean {
  const length = request.headers['content-length']
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

function headerString (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

/** The request's header lines as received ("name: value\r\n"), from Node's flat name, value list. */
function headerBytes (rawHeaders: readonly string[]): number {
  let total = 0
  for (const part of rawHeaders) total += part.length + 2
  return total
}

/**
 * Sends an upstream answer on to the client: status, end-to-end headers, then the body.
 * Written out rather than `reply.send(stream)`: fastify's stream path sets each header apart
 * and puts two end-of-stream watches and a pipe (a dozen listeners) on every response; this is
 * one writeHead and four listeners, with the same backpressure, and an answer cut short either
 * way cuts the other side short too.
 */
function relayAnswer (x: Exchange, status: number, upstreamHeaders: HeaderRecord, body: Readable): void {
  const { reply, request } = x
  reply.hijack()
  const raw = reply.raw
  const headers = endToEndHeaders(upstreamHeaders)
  // An HTTP/1.1 connection is not reused while the request's body is still coming (as reply-from does).
  if (request.raw.httpVersionMajor === 1 && !request.raw.complete) headers.connection = 'close'
  try {
    raw.writeHead(status, headers)
  } catch {
    // A header the client's protocol cannot carry: the answer is unusable. (Node keeps the
    // headers it took before the throw; they go, or the 502 would throw too.)
    body.destroy()
    for (const name of raw.getHeaderNames()) raw.removeHeader(name)
    raw.writeHead(502, { 'content-type': 'text/plain' }).end('upstream sent a header that cannot be passed on\n')
    return
  }
  relayBody(body, raw, (n) => { x.responseBytes += n })
  body.once('end', () => raw.end())
  body.once('error', () => raw.destroy())
  raw.once('close', () => { if (!body.readableEnded) body.destroy() })
}

/** The request reply-from sends again on a retry (its `retryDelay` hook gets it typed as a request). */
interface RetriedRequest { url: URL, timeout: number, body: unknown }

/**
 * Points a retry at another endpoint, with a fresh try timeout and the body replayed as one
 * Buffer (undici frames it with its length; TunnelDispatcher drops a client's Transfer-Encoding).
 */
function retarget (req: RetriedRequest, next: { url: string, timeoutMs: number, body?: Buffer }): void {
  req.url = new URL(next.url)
  req.timeout = next.timeoutMs
  if (next.body !== undefined) req.body = next.body
}

/** reply-from types a try's answer as a FastifyReply; it is really { statusCode, headers, stream }. */
function discardAnswer (answer: unknown): void {
  (answer as { stream?: Readable } | undefined)?.stream?.resume()
}

function tryErrorOf (err: NodeJS.ErrnoException): TryError {
  if (err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || /HBONE|tunnel|connect/i.test(err.message)) return 'connect-failure'
  // A try's timeout comes back from undici as "Headers Timeout Error" (or reply-from's 504).
  if (err.code === 'ETIMEDOUT' || /timeout|timed out/i.test(err.message)) return 'timeout'
  return 'reset'
}

/** HTTP status → gRPC status, as Envoy maps them for gRPC clients. */
function grpcStatusFor (status: number): string {
  switch (status) {
    case 400: return '13'
    case 401: return '16'
    case 403: return '7'
    case 404: return '12'
    case 429: return '14'
    case 502: case 503: case 504: return '14'
    default: return '2'
  }
}
