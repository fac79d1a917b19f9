/**
 * `ambit explain`: for a source workload and a destination, what the mesh would do and why:
 * identities, mTLS mode, every policy's verdict with the deciding rule, the waypoint with its
 * L7 verdict, the route and backend weights, and the TrafficPolicy in force.
 * Pure: it reads a registry and returns a structure; the CLI renders it.
 */
import type { MeshRegistry } from './registry.js'
import type { EndpointState, ServicePortState, ServiceState, WaypointState, WorkloadState } from './state.js'
import { compilePolicy, evaluatePolicies, type Decision, type HttpAttributes } from './authz.js'
import { attachedRoutes, compileRoutes } from './route-match.js'
import type { MtlsMode } from './resources.js'
import { parseSpiffeId, principalOf } from './identity.js'
import { NotFoundError } from './errors.js'

export interface ExplainQuery {
  /** 'namespace/name', a pod name unique in the mesh, or a pod IP. */
  readonly from: string
  /** 'service[.namespace...][:port]', 'namespace/service[:port]', or 'ip:port'. */
  readonly to: string
  readonly http?: Pick<HttpAttributes, 'method' | 'path'>
}

export interface EndpointVerdict {
  readonly endpoint: EndpointState
  readonly workload?: WorkloadState
  readonly targetPort: number
  readonly mtls: MtlsMode | 'none (outside the mesh)'
  /** The destination ztunnel's L4 decision (for the waypoint's identity when there is one). */
  readonly decision?: Decision
}

export interface WaypointVerdict {
  readonly name: string
  readonly namespace: string
  readonly state?: WaypointState
  /** The waypoint's decision on the policies attached to the Service (L7 when a method/path is given). */
  readonly decision?: Decision
}

export interface RouteVerdict {
  /** Routes attached to this Service port. */
  readonly attached: readonly string[]
  /** The rule a request with the given method/path takes; absent without --method/--path. */
  readonly matched?: { readonly route: string, readonly rule: number, readonly backends: readonly { readonly name: string, readonly port?: number, readonly weight: number }[] }
  /** True when routes are attached but none matches (the waypoint answers 404). */
  readonly noMatch: boolean
}

export interface Explanation {
  readonly source: WorkloadState
  readonly service?: ServiceState
  readonly port: ServicePortState | { readonly port: number }
  readonly waypoint?: WaypointVerdict
  readonly routing?: RouteVerdict
  readonly trafficPolicy?: string
  readonly endpoints: readonly EndpointVerdict[]
  /** True when the waypoint (if any) and every endpoint would accept the traffic. */
  readonly allowed: boolean
}

export function explain (registry: MeshRegistry, query: ExplainQuery): Explanation {
  const source = findWorkload(registry, query.from)
  const { host, port } = splitHostPort(query.to)
  const service = host.includes('/')
    ? registry.service(host)
    : registry.serviceByHost(host, source.namespace) ?? registry.serviceByVip(host)
  if (service !== undefined) return explainService(registry, source, service, port, query)
  const workload = registry.workloadByIp(host)
  if (workload === undefined || port === undefined) {
    throw new NotFoundError(`no Service or meshed workload "${query.to}"${port === undefined && workload !== undefined ? ' (give a port)' : ''}`)
  }
  const endpoint: EndpointState = { workload: workload.key, meshed: true, ip: workload.ip, node: workload.node, ports: { [port]: port } }
  const verdict = judge(registry, source.spiffeId, source, endpoint, port, query)
  return { source, port: { port }, endpoints: [verdict], allowed: verdict.decision?.allowed !== false }
}

function explainService (
  registry: MeshRegistry, source: WorkloadState, service: ServiceState, port: number | undefined, query: ExplainQuery
): Explanation {
  const servicePort = port === undefined ? service.ports[0] : service.ports.find((p) => p.port === port)
  if (servicePort === undefined) {
    throw new NotFoundError(`Service ${service.key} has no port ${port ?? ''}; its ports: ${service.ports.map((p) => p.port).join(', ') || 'none'}`)
  }
  const waypoint = service.waypoint === undefined ? undefined : waypointVerdict(registry, source, service, servicePort, query)
  // Behind a waypoint, the destination ztunnel sees the waypoint's identity, not the client's.
  const caller = waypoint?.state === undefined ? source.spiffeId : waypoint.state.spiffeId
  const endpoints = service.endpoints
    .filter((ep) => ep.ports[String(servicePort.port)] !== undefined)
    .map((ep) => judge(registry, caller, source, ep, ep.ports[String(servicePort.port)]!, query))
  return {
    source, service, port: servicePort, endpoints,
    ...optional('waypoint', waypoint),
    ...optional('routing', service.waypoint === undefined ? undefined : routing(registry, service, servicePort.port, query)),
    ...optional('trafficPolicy', service.trafficPolicy),
    allowed: endpoints.length > 0 && endpoints.every((e) => e.decision?.allowed !== false) &&
      (waypoint === undefined || (waypoint.state !== undefined && waypoint.decision?.allowed !== false))
  }
}

function waypointVerdict (registry: MeshRegistry, source: WorkloadState, service: ServiceState, port: ServicePortState, query: ExplainQuery): WaypointVerdict {
  const ref = service.waypoint!
  const state = registry.waypoint(ref.namespace, ref.name)
  const policies = service.policies
    .map((key) => registry.state.authorizationPolicies[key])
    .filter((p) => p !== undefined)
    .map((p) => compilePolicy(`${p.metadata.namespace}/${p.metadata.name}`, p))
  const decision = evaluatePolicies(policies, {
    source: { principal: principalOf(source.spiffeId), namespace: source.namespace, ip: source.ip },
    destination: { ip: service.vip ?? '', port: port.port },
    ...(query.http !== undefined && { http: { ...query.http, host: service.hostnames[0] ?? '', headers: {} } })
  })
  return { ...ref, ...optional('state', state), decision }
}

function routing (registry: MeshRegistry, service: ServiceState, port: number, query: ExplainQuery): RouteVerdict {
  const attached = attachedRoutes(registry.state, service, port)
  const names = attached.map((r) => `${r.kind}/${r.metadata.namespace}/${r.metadata.name}`)
  if (attached.length === 0 || query.http === undefined) return { attached: names, noMatch: false }
  const match = compileRoutes(attached).match({ method: query.http.method, path: query.http.path, headers: {}, host: service.hostnames[0] ?? '' })
  if (match === undefined) return { attached: names, noMatch: true }
  const backends = match.rule.backendRefs.length === 0
    ? [{ name: service.name, port, weight: 1 }]
    : match.rule.backendRefs.map((b) => ({ name: b.name, ...optional('port', b.port), weight: b.weight }))
  return { attached: names, noMatch: false, matched: { route: match.route, rule: match.ruleIndex, backends } }
}

/** The destination ztunnel's view: `callerId` is who connects (the client, or its waypoint). */
function judge (registry: MeshRegistry, callerId: string, source: WorkloadState, endpoint: EndpointState, targetPort: number, query: ExplainQuery): EndpointVerdict {
  const workload = registry.workloadByIp(endpoint.ip)
  if (workload === undefined) return { endpoint, targetPort, mtls: 'none (outside the mesh)' }
  const decision = registry.authorize(workload, {
    source: { principal: principalOf(callerId), namespace: parseSpiffeId(callerId).namespace, ip: source.ip },
    destination: { ip: endpoint.ip, port: targetPort },
    ...(query.http !== undefined && { http: { ...query.http, host: '', headers: {} } })
  })
  return { endpoint, workload, targetPort, mtls: registry.mtlsMode(workload, targetPort), decision }
}

function findWorkload (registry: MeshRegistry, from: string): WorkloadState {
  const byIp = registry.workloadByIp(from)
  if (byIp !== undefined) return byIp
  const workloads = Object.values(registry.state.workloads)
  const matches = from.includes('/') ? workloads.filter((w) => w.key === from) : workloads.filter((w) => w.name === from)
  if (matches.length === 1) return matches[0]!
  if (matches.length > 1) throw new NotFoundError(`"${from}" names ${matches.length} workloads (${matches.map((w) => w.key).join(', ')}); give namespace/name`)
  throw new NotFoundError(`no meshed workload "${from}" (give namespace/name, a pod name or a pod IP)`)
}

function splitHostPort (to: string): { host: string, port?: number } {
  const match = /^(.*):(\d{1,5})$/.exec(to)
  if (match === null) return { host: to }
  return { host: match[1]!, port: Number(match[2]) }
}

/** `{ [name]: value }` when value is defined, `{}` otherwise (keeps optional fields absent). */
function optional<K extends string, V> (name: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [name]: value }) as { [P in K]?: V }
}
