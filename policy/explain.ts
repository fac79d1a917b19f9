/**
 * `ambit explain`: for a source workload and a destination, what the mesh would do and why:
 * identities, mTLS mode, every policy's verdict with the deciding rule, the waypoint.
 * Pure: it reads a registry and returns a structure; the CLI renders it.
 */
import type { MeshRegistry } from './registry.js'
import type { EndpointState, ServicePortState, ServiceState, WaypointState, WorkloadState } from './state.js'
import type { Decision, HttpAttributes } from './authz.js'
import type { MtlsMode } from './resources.js'
import { principalOf } from './identity.js'
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
  readonly decision?: Decision
}

export interface Explanation {
  readonly source: WorkloadState
  readonly service?: ServiceState
  readonly port: ServicePortState | { readonly port: number }
  readonly waypoint?: { readonly name: string, readonly namespace: string, readonly state?: WaypointState }
  readonly endpoints: readonly EndpointVerdict[]
  /** True when every endpoint would accept the connection. */
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
  const verdict = judge(registry, source, endpoint, port, query)
  return { source, port: { port }, endpoints: [verdict], allowed: verdict.decision?.allowed !== false }
}

function explainService (
  registry: MeshRegistry, source: WorkloadState, service: ServiceState, port: number | undefined, query: ExplainQuery
): Explanation {
  const servicePort = port === undefined ? service.ports[0] : service.ports.find((p) => p.port === port)
  if (servicePort === undefined) {
    throw new NotFoundError(`Service ${service.key} has no port ${port ?? ''}; its ports: ${service.ports.map((p) => p.port).join(', ') || 'none'}`)
  }
  const endpoints = service.endpoints
    .filter((ep) => ep.ports[String(servicePort.port)] !== undefined)
    .map((ep) => judge(registry, source, ep, ep.ports[String(servicePort.port)]!, query))
  const waypoint = service.waypoint === undefined
    ? undefined
    : { ...service.waypoint, ...optional('state', registry.waypoint(service.waypoint.namespace, service.waypoint.name)) }
  return {
    source, service, port: servicePort, endpoints,
    ...optional('waypoint', waypoint),
    allowed: endpoints.length > 0 && endpoints.every((e) => e.decision?.allowed !== false)
  }
}

function judge (registry: MeshRegistry, source: WorkloadState, endpoint: EndpointState, targetPort: number, query: ExplainQuery): EndpointVerdict {
  const workload = registry.workloadByIp(endpoint.ip)
  if (workload === undefined) return { endpoint, targetPort, mtls: 'none (outside the mesh)' }
  const decision = registry.authorize(workload, {
    source: { principal: principalOf(source.spiffeId), namespace: source.namespace, ip: source.ip },
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
