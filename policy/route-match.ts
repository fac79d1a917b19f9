/**
 * Which rule of a Service's HTTPRoutes / GRPCRoutes a request takes: the routes are compiled
 * once into a RouteTable (regular expressions included), and `match` runs per request.
 *
 * Every match of every rule of every route becomes one candidate; candidates are sorted once
 * by the Gateway API precedence, so a request takes the first candidate it satisfies.
 *
 * HTTPRoute ("Matching precedence" of the HTTPRouteRule spec), continuing on ties:
 *   1. Exact path, then PathPrefix (longest prefix first, counted without trailing slashes),
 *      then RegularExpression. Regex precedence is implementation-specific: like Istio, ambit
 *      ranks regex paths after every prefix (even "/"), longest pattern first.
 *   2. a method match; 3. most header matches; 4. most query param matches.
 * GRPCRoute: most characters in an Exact service, then in an Exact method (a regex counts 0),
 *   then most header matches.
 * Then, for both: the route ("oldest" in the spec, but resources carry no creation timestamp, so
 * the first by "namespace/name" alphabetically), the rule order in the route, the match order.
 *
 * Hostnames come before all of that: a route listing the request's exact host beats one with a
 * wildcard ("*.example.com", longer first), which beats one without hostnames. Routes attached to
 * a Service (GAMMA) usually have none, and then the host plays no part.
 *
 * Route types (GEP-1426): when GRPCRoutes and HTTPRoutes attach to the same Service port, only the
 * GRPCRoutes apply, the HTTPRoutes are "Conflicted" (listed in `conflicted`), and only gRPC
 * requests (POST, content-type application/grpc*) can match.
 *
 * Paths are matched as received (no percent-decoding or slash merging); query parameters are
 * percent-decoded, and a repeated parameter matches on its first value; a repeated header
 * matches on its values joined by ", " (as Node joins them).
 */
import {
  resourceKey, type GRPCRouteMatch, type GRPCRouteResource, type GRPCRouteRule, type HTTPHeaderMatch,
  type HTTPPathMatch, type HTTPRouteMatch, type HTTPRouteResource, type HTTPRouteRule, type StringMatchType
} from './resources.js'
import type { MeshState, ServiceState } from './state.js'

/** Node's header shape: lower-case names, repeated headers as arrays. */
export type HeaderMap = Readonly<Record<string, string | readonly string[] | undefined>>

export interface RouteRequest {
  readonly method: string
  /** The request target: path and query string. */
  readonly path: string
  readonly headers: HeaderMap
  /** The authority; the Host (or HTTP/2 :authority) header when absent. */
  readonly host?: string
}

export type AttachedRoute = HTTPRouteResource | GRPCRouteResource

/**
 * The rule a request takes. A route without rules, or a rule without matches, matches every
 * request: `rule` (and `match`) are then synthesized, with no filters and no backendRefs.
 */
export type RouteMatch =
  | { readonly kind: 'HTTPRoute', readonly route: string, readonly namespace: string, readonly ruleIndex: number, readonly rule: HTTPRouteRule, readonly match: HTTPRouteMatch }
  | { readonly kind: 'GRPCRoute', readonly route: string, readonly namespace: string, readonly ruleIndex: number, readonly rule: GRPCRouteRule, readonly match: GRPCRouteMatch }

/** The routes of `routes` that attach to port `port` of the Service `service` (a parentRef without port takes every port). */
export function routesForPort<R extends AttachedRoute> (
  routes: readonly R[], service: { readonly namespace: string, readonly name: string }, port: number
): R[] {
  return routes.filter((route) => route.parentRefs.some((ref) =>
    ref.kind === 'Service' && ref.group === '' && ref.name === service.name &&
    (ref.namespace ?? route.metadata.namespace) === service.namespace &&
    (ref.port === undefined || ref.port === port)))
}

/** A route by the 'HTTPRoute/ns/name' / 'GRPCRoute/ns/name' key ServiceState.routes and RouteMatch.route hold. */
export function routeResource (state: MeshState, ref: string): AttachedRoute | undefined {
  const slash = ref.indexOf('/')
  const key = ref.slice(slash + 1)
  return ref.slice(0, slash) === 'GRPCRoute' ? state.grpcRoutes[key] : state.httpRoutes[key]
}

/** The routes attached to one port of a Service. */
export function attachedRoutes (state: MeshState, service: ServiceState, port: number): AttachedRoute[] {
  return routesForPort(service.routes.map((ref) => routeResource(state, ref)).filter((r) => r !== undefined), service, port)
}

export function compileRoutes (routes: readonly AttachedRoute[]): RouteTable {
  const grpc = routes.filter((route): route is GRPCRouteResource => route.kind === 'GRPCRoute').sort(byNamespaceName)
  const http = routes.filter((route): route is HTTPRouteResource => route.kind === 'HTTPRoute').sort(byNamespaceName)
  if (grpc.length > 0) {
    return new RouteTable(grpc.flatMap(grpcCandidates).sort(byPrecedence), grpc.map(compileHostnames), true, http.map(resourceKey))
  }
  return new RouteTable(http.flatMap(httpCandidates).sort(byPrecedence), http.map(compileHostnames), false, [])
}

/** Built by compileRoutes. */
export class RouteTable {
  private readonly hostAware: boolean

  constructor (
    private readonly candidates: readonly Candidate[],
    private readonly hostnames: readonly HostnameRanker[],
    /** True when GRPCRoutes attach: only gRPC requests can match. */
    readonly grpc: boolean,
    /** Keys of the HTTPRoutes ignored because GRPCRoutes attach to the same Service port (GEP-1426). */
    readonly conflicted: readonly string[]
  ) {
    this.hostAware = hostnames.some((ranker) => ranker !== anyHost)
  }

  /** No route attaches: the caller routes to the Service itself (GEP-1426 "Route presence"), rather than answer 404. */
  get empty (): boolean {
    return this.candidates.length === 0
  }

  /** undefined: no rule matches (the waypoint answers 404). */
  match (request: RouteRequest): RouteMatch | undefined {
    if (this.grpc && !isGrpcRequest(request)) return undefined
    const view = new RequestView(request)
    if (!this.hostAware) return this.candidates.find((candidate) => candidate.test(view))?.result
    return this.matchByHostname(view, hostnameOf(requestAuthority(request)))
  }

  /** The first satisfied candidate of the routes with the most specific matching hostname. */
  private matchByHostname (view: RequestView, host: string | undefined): RouteMatch | undefined {
    const ranks = this.hostnames.map((rank) => rank(host))
    let best: Candidate | undefined
    let bestRank = NO_MATCH
    for (const candidate of this.candidates) {
      const rank = ranks[candidate.routeIndex]
      if (rank > bestRank && candidate.test(view)) {
        best = candidate
        bestRank = rank
      }
    }
    return best?.result
  }
}

/** gRPC is HTTP/2 POST with content-type application/grpc (or application/grpc+proto...). */
export function isGrpcRequest (request: Pick<RouteRequest, 'method' | 'headers'>): boolean {
  return request.method === 'POST' && (headerValue(request.headers, 'content-type')?.startsWith('application/grpc') ?? false)
}

/** One header's value; repeated values joined by ", " as Node joins them. */
export function headerValue (headers: HeaderMap, name: string): string | undefined {
  const value = headers[name]
  return typeof value === 'string' || value === undefined ? value : value.join(', ')
}

/** The authority a request addressed: `host`, else the Host header, else HTTP/2's :authority. */
export function requestAuthority (request: Pick<RouteRequest, 'host' | 'headers'>): string | undefined {
  return request.host ?? headerValue(request.headers, 'host') ?? headerValue(request.headers, ':authority')
}

/** "example.com:8080" → { hostname: "example.com", port: 8080 }; IPv6 keeps its brackets ("[::1]"). */
export function splitAuthority (authority: string): { hostname: string, port?: number } {
  const colon = authority.lastIndexOf(':')
  if (colon < 0 || colon < authority.lastIndexOf(']')) return { hostname: authority }
  const port = Number(authority.slice(colon + 1))
  return Number.isInteger(port) && port > 0 ? { hostname: authority.slice(0, colon), port } : { hostname: authority.slice(0, colon) }
}

/** A request target split at "?": the query keeps its "?" ('' when there is none). */
export function splitTarget (target: string): { path: string, query: string } {
  const mark = target.indexOf('?')
  return mark < 0 ? { path: target, query: '' } : { path: target.slice(0, mark), query: target.slice(mark) }
}

/** A PathPrefix value as it matches: trailing slashes ignored ("/foo/" is "/foo", "/" is ""). */
export function normalizePrefix (value: string): string {
  let end = value.length
  while (end > 0 && value[end - 1] === '/') end--
  return value.slice(0, end)
}

/** Element-wise prefix match: "/foo" matches "/foo", "/foo/" and "/foo/bar", not "/foobar". `prefix` is normalized. */
export function hasPathPrefix (path: string, prefix: string): boolean {
  return prefix === '' || path === prefix || (path.startsWith(prefix) && path[prefix.length] === '/')
}

// ---- The request, as matching reads it ----

/** Per request: the parts every candidate reads, computed once (the query only if a candidate asks). */
class RequestView {
  readonly method: string
  readonly path: string
  private readonly rawQuery: string
  private query: Map<string, string> | undefined
  private grpcPath: { service: string, method: string } | null | undefined

  constructor (private readonly request: RouteRequest) {
    this.method = request.method
    const { path, query } = splitTarget(request.path)
    this.path = path
    this.rawQuery = query.slice(1)
  }

  header (name: string): string | undefined {
    return headerValue(this.request.headers, name)
  }

  queryParam (name: string): string | undefined {
    this.query ??= parseQuery(this.rawQuery)
    return this.query.get(name)
  }

  /** "/pkg.Service/Method" → its service and method; undefined for any other path. */
  grpcService (): string | undefined {
    return this.grpc()?.service
  }

  grpcMethod (): string | undefined {
    return this.grpc()?.method
  }

  private grpc (): { service: string, method: string } | null {
    if (this.grpcPath !== undefined) return this.grpcPath
    const slash = this.path.indexOf('/', 1)
    const valid = this.path.startsWith('/') && slash > 1 && slash < this.path.length - 1 && this.path.indexOf('/', slash + 1) < 0
    this.grpcPath = valid ? { service: this.path.slice(1, slash), method: this.path.slice(slash + 1) } : null
    return this.grpcPath
  }
}

/** Names and values percent-decoded; the first value of a repeated name wins. */
function parseQuery (raw: string): Map<string, string> {
  const params = new Map<string, string>()
  if (raw === '') return params
  for (const pair of raw.split('&')) {
    const equals = pair.indexOf('=')
    const name = decode(equals < 0 ? pair : pair.slice(0, equals))
    if (!params.has(name)) params.set(name, equals < 0 ? '' : decode(pair.slice(equals + 1)))
  }
  return params
}

/** A malformed escape ("%zz") is kept as written rather than failing the request. */
function decode (text: string): string {
  if (!text.includes('%')) return text
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

// ---- Candidates ----

type Test = (request: RequestView) => boolean

interface Candidate {
  /** Index of the route in namespace/name order. */
  readonly routeIndex: number
  /** The spec's criteria, compared largest first. */
  readonly precedence: readonly number[]
  /** [routeIndex, ruleIndex, matchIndex]: the tie-breakers, smallest first. */
  readonly position: readonly number[]
  readonly test: Test
  readonly result: RouteMatch
}

function byNamespaceName (a: AttachedRoute, b: AttachedRoute): number {
  const left = `${a.metadata.namespace}/${a.metadata.name}`
  const right = `${b.metadata.namespace}/${b.metadata.name}`
  return left < right ? -1 : left > right ? 1 : 0
}

function byPrecedence (a: Candidate, b: Candidate): number {
  return compareLists(b.precedence, a.precedence) || compareLists(a.position, b.position)
}

function compareLists (a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] - b[i]
  }
  return 0
}

const EVERY_PATH: HTTPPathMatch = { type: 'PathPrefix', value: '/' }
const MATCH_ALL_HTTP: HTTPRouteMatch = { path: EVERY_PATH, headers: [], queryParams: [] }
const MATCH_ALL_GRPC: GRPCRouteMatch = { headers: [] }
const EMPTY_HTTP_RULE: HTTPRouteRule = { matches: [], filters: [], backendRefs: [] }
const EMPTY_GRPC_RULE: GRPCRouteRule = { matches: [], filters: [], backendRefs: [] }

/** An empty list means "everything": the one `fallback` element. */
function orDefault<T> (list: readonly T[], fallback: T): readonly T[] {
  return list.length > 0 ? list : [fallback]
}

function httpCandidates (route: HTTPRouteResource, routeIndex: number): Candidate[] {
  const key = resourceKey(route)
  return orDefault(route.rules, EMPTY_HTTP_RULE).flatMap((rule, ruleIndex) =>
    orDefault(rule.matches, MATCH_ALL_HTTP).map((match, matchIndex): Candidate => ({
      routeIndex,
      precedence: httpPrecedence(match),
      position: [routeIndex, ruleIndex, matchIndex],
      test: allOf(httpTests(match)),
      result: { kind: 'HTTPRoute', route: key, namespace: route.metadata.namespace, ruleIndex, rule, match }
    })))
}

function grpcCandidates (route: GRPCRouteResource, routeIndex: number): Candidate[] {
  const key = resourceKey(route)
  return orDefault(route.rules, EMPTY_GRPC_RULE).flatMap((rule, ruleIndex) =>
    orDefault(rule.matches, MATCH_ALL_GRPC).map((match, matchIndex): Candidate => ({
      routeIndex,
      precedence: grpcPrecedence(match),
      position: [routeIndex, ruleIndex, matchIndex],
      test: allOf(grpcTests(match)),
      result: { kind: 'GRPCRoute', route: key, namespace: route.metadata.namespace, ruleIndex, rule, match }
    })))
}

const PATH_TYPE_RANK: Readonly<Record<HTTPPathMatch['type'], number>> = { Exact: 2, PathPrefix: 1, RegularExpression: 0 }

function httpPrecedence (match: HTTPRouteMatch): number[] {
  const path = match.path ?? EVERY_PATH
  const length = path.type === 'PathPrefix' ? normalizePrefix(path.value).length : path.value.length
  return [
    PATH_TYPE_RANK[path.type], length, match.method === undefined ? 0 : 1,
    firstOfEachName(match.headers, true).length, firstOfEachName(match.queryParams, false).length
  ]
}

function grpcPrecedence (match: GRPCRouteMatch): number[] {
  const exact = match.method?.type === 'Exact'
  return [
    exact ? match.method?.service?.length ?? 0 : 0,
    exact ? match.method?.method?.length ?? 0 : 0,
    firstOfEachName(match.headers, true).length
  ]
}

function httpTests (match: HTTPRouteMatch): Test[] {
  const tests: Test[] = []
  const path = pathTest(match.path ?? EVERY_PATH)
  if (path !== undefined) tests.push(path)
  const method = match.method
  if (method !== undefined) tests.push((request) => request.method === method)
  tests.push(...headerTests(match.headers))
  for (const param of firstOfEachName(match.queryParams, false)) {
    tests.push(stringTest(param.type, param.value, (request) => request.queryParam(param.name)))
  }
  return tests
}

function grpcTests (match: GRPCRouteMatch): Test[] {
  const tests: Test[] = []
  const { type, service, method } = match.method ?? {}
  if (type !== undefined && service !== undefined) tests.push(stringTest(type, service, (request) => request.grpcService()))
  if (type !== undefined && method !== undefined) tests.push(stringTest(type, method, (request) => request.grpcMethod()))
  tests.push(...headerTests(match.headers))
  return tests
}

function headerTests (headers: readonly HTTPHeaderMatch[]): Test[] {
  return firstOfEachName(headers, true).map((header) => {
    const name = header.name.toLowerCase()
    return stringTest(header.type, header.value, (request) => request.header(name))
  })
}

/** Undefined when the path cannot fail (a "/" prefix). */
function pathTest (path: HTTPPathMatch): Test | undefined {
  switch (path.type) {
    case 'Exact': return (request) => request.path === path.value
    case 'PathPrefix': {
      const prefix = normalizePrefix(path.value)
      return prefix === '' ? undefined : (request) => hasPathPrefix(request.path, prefix)
    }
    case 'RegularExpression': {
      const regex = anchored(path.value)
      return (request) => regex.test(request.path)
    }
  }
}

/** An absent value never matches. */
function stringTest (type: StringMatchType, expected: string, read: (request: RequestView) => string | undefined): Test {
  if (type === 'Exact') return (request) => read(request) === expected
  const regex = anchored(expected)
  return (request) => {
    const value = read(request)
    return value !== undefined && regex.test(value)
  }
}

/** Route regexes match the whole value, as Envoy's (RE2) matchers do. */
function anchored (pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`)
}

/** The spec: of entries naming the same header (case-insensitively) or query param (exactly), only the first counts. */
function firstOfEachName (matches: readonly HTTPHeaderMatch[], ignoreCase: boolean): HTTPHeaderMatch[] {
  const seen = new Set<string>()
  return matches.filter((match) => {
    const name = ignoreCase ? match.name.toLowerCase() : match.name
    if (seen.has(name)) return false
    seen.add(name)
    return true
  })
}

function allOf (tests: readonly Test[]): Test {
  if (tests.length === 0) return () => true
  return (request) => tests.every((test) => test(request))
}

// ---- Hostnames ----

/** How specifically a route's hostnames match a request host: NO_MATCH, or higher is more specific. */
type HostnameRanker = (host: string | undefined) => number

const NO_MATCH = -1
/** An exact hostname outranks every wildcard (hostnames are at most 253 characters). */
const PRECISE = 1000

const anyHost: HostnameRanker = () => 0

function compileHostnames (route: AttachedRoute): HostnameRanker {
  if (route.hostnames.length === 0) return anyHost
  const patterns = route.hostnames
  return (host) => host === undefined ? NO_MATCH : Math.max(...patterns.map((pattern) => hostnameRank(pattern, host)))
}

/** "*.example.com" matches one or more labels before ".example.com" (not "example.com" itself). */
function hostnameRank (pattern: string, host: string): number {
  if (!pattern.startsWith('*.')) return host === pattern ? PRECISE + pattern.length : NO_MATCH
  const suffix = pattern.slice(1)
  return host.length > suffix.length && host.endsWith(suffix) ? pattern.length : NO_MATCH
}

/** The host a route's hostnames match: port dropped (as the spec requires), lower-case, no trailing dot. */
function hostnameOf (authority: string | undefined): string | undefined {
  if (authority === undefined) return undefined
  const { hostname } = splitAuthority(authority)
  return (hostname.endsWith('.') ? hostname.slice(0, -1) : hostname).toLowerCase()
}
