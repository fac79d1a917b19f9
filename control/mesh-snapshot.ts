/**
 * What the dashboard shows, as one JSON document: the mesh's topology with live traffic, the
 * golden signals per Service with a short history, the policies with their hit counts,
 * waypoints, routes and certificate expiry. Pure: built from the mesh state and readings the
 * caller gathered, so it is tested without any proxy.
 */
import type { MeshState, ServiceState } from '../policy/state.js'
import type { BackendRef } from '../policy/resources.js'
import type { EdgeRate, ServiceRate } from './traffic.js'
import type { IssuedCertificates } from './issued-certificates.js'
import { ruleId } from './policy-hits.js'

/** One point of a Service's history. */
export interface ServicePoint {
  /** Milliseconds since the epoch. */
  readonly t: number
  readonly rps: number
  readonly successRate?: number
  readonly p99Ms?: number
}

/** Whether one metrics source answered its last read. */
export interface SourceStatus {
  readonly name: string
  readonly stale: boolean
  /** When it last answered, ms since the epoch. */
  readonly lastSuccess?: number
  readonly error?: string
}

export interface SnapshotInput {
  readonly state: MeshState
  readonly revision: number
  readonly edges: readonly EdgeRate[]
  readonly services: ReadonlyMap<string, ServiceRate>
  readonly history: ReadonlyMap<string, readonly ServicePoint[]>
  /** Hits per AuthorizationPolicy rule, keyed by ruleId (policy-hits.ts). */
  readonly ruleHits: ReadonlyMap<string, number>
  readonly certificates: IssuedCertificates
  readonly sources: readonly SourceStatus[]
  readonly now: number
  /** Counts snapshots, so the page can tell a new one from the last. */
  readonly sequence: number
}

export interface GraphNode {
  /** 'service:ns/name', 'workload:ns/name' or 'waypoint:ns/name'. */
  readonly id: string
  readonly kind: 'service' | 'workload' | 'waypoint' | 'unknown'
  readonly key: string
  readonly name: string
  readonly namespace: string
  /** Left-to-right column for the layout: hops from a node nothing calls. */
  readonly column: number
}

export interface GraphEdge {
  readonly from: string
  readonly to: string
  /** 'traffic': calls measured by the proxies; 'endpoint': a Service's backing workload. */
  readonly kind: 'traffic' | 'endpoint'
  readonly rps: number
  readonly errorRate: number
  readonly mtlsShare: number
}

export interface ServiceSummary {
  readonly key: string
  readonly name: string
  readonly namespace: string
  readonly vip?: string
  readonly ports: readonly string[]
  readonly endpoints: readonly string[]
  readonly waypoint?: string
  readonly layer?: 'http' | 'tcp'
  readonly rps: number
  readonly successRate?: number
  readonly p99Ms?: number
  readonly mtlsShare: number
  readonly history: readonly ServicePoint[]
}

export interface PolicySummary {
  readonly key: string
  readonly action: string
  readonly appliesTo: string
  readonly rules: readonly { readonly index: number, readonly hits: number }[]
}

export interface RouteSummary {
  readonly key: string
  readonly kind: 'HTTPRoute' | 'GRPCRoute'
  readonly parents: readonly string[]
  readonly rules: readonly { readonly index: number, readonly backends: readonly { readonly name: string, readonly weight: number, readonly percent: number }[] }[]
}

export interface CertificateSummary {
  readonly workload: string
  readonly node: string
  readonly spiffeId: string
  readonly notAfter?: string
  readonly expiresInSeconds?: number
}

export interface MeshSnapshot {
  readonly sequence: number
  readonly time: string
  readonly revision: number
  readonly totals: { readonly rps: number, readonly services: number, readonly workloads: number }
  readonly graph: { readonly nodes: readonly GraphNode[], readonly edges: readonly GraphEdge[] }
  readonly services: readonly ServiceSummary[]
  readonly policies: readonly PolicySummary[]
  readonly waypoints: readonly { readonly key: string, readonly spiffeId: string, readonly instances: readonly string[], readonly services: readonly string[] }[]
  readonly routes: readonly RouteSummary[]
  readonly certificates: readonly CertificateSummary[]
  readonly sources: readonly SourceStatus[]
}

export function buildSnapshot (input: SnapshotInput): MeshSnapshot {
  const { state } = input
  const services = Object.values(state.services).sort(byKey).map((s) => serviceSummary(s, input))
  return {
    sequence: input.sequence,
    time: new Date(input.now).toISOString(),
    revision: input.revision,
    totals: {
      rps: round(services.reduce((sum, s) => sum + s.rps, 0)),
      services: services.length,
      workloads: Object.keys(state.workloads).length
    },
    graph: graphOf(input),
    services,
    policies: policySummaries(input),
    waypoints: Object.values(state.waypoints).sort(byKey).map((wp) => ({
      key: wp.key,
      spiffeId: wp.spiffeId,
      instances: wp.instances.map((i) => `${i.ip} on ${i.node}`),
      services: Object.values(state.services).filter((s) => s.waypoint?.namespace === wp.namespace && s.waypoint.name === wp.name).map((s) => s.key)
    })),
    routes: routeSummaries(state),
    certificates: certificateSummaries(input),
    sources: input.sources
  }
}

function serviceSummary (service: ServiceState, input: SnapshotInput): ServiceSummary {
  const rate = input.services.get(service.key)
  return {
    key: service.key,
    name: service.name,
    namespace: service.namespace,
    ...(service.vip !== undefined && { vip: service.vip }),
    ports: service.ports.map((p) => `${p.port}/${p.appProtocol}`),
    endpoints: service.endpoints.map((e) => e.workload),
    ...(service.waypoint !== undefined && { waypoint: `${service.waypoint.namespace}/${service.waypoint.name}` }),
    ...(rate !== undefined && { layer: rate.layer }),
    rps: round(rate?.rps ?? 0),
    ...(rate?.successRate !== undefined && { successRate: round(rate.successRate, 4) }),
    ...(rate?.p99Ms !== undefined && { p99Ms: round(rate.p99Ms) }),
    mtlsShare: round(rate?.mtlsShare ?? 1, 4),
    history: input.history.get(service.key) ?? []
  }
}

function graphOf (input: SnapshotInput): MeshSnapshot['graph'] {
  const { state } = input
  const nodes = new Map<string, Omit<GraphNode, 'column'>>()
  const add = (kind: GraphNode['kind'], key: string): string => {
    const id = `${kind}:${key}`
    const [namespace = '', name = key] = key.split('/')
    if (!nodes.has(id)) nodes.set(id, { id, kind, key, name, namespace })
    return id
  }
  for (const key of Object.keys(state.workloads)) add('workload', key)
  for (const key of Object.keys(state.services)) add('service', key)
  const edges: GraphEdge[] = []
  for (const service of Object.values(state.services)) {
    for (const endpoint of service.endpoints) {
      if (state.workloads[endpoint.workload] === undefined) continue
      edges.push({ from: `service:${service.key}`, to: `workload:${endpoint.workload}`, kind: 'endpoint', rps: 0, errorRate: 0, mtlsShare: 1 })
    }
  }
  for (const edge of shownTrafficEdges(input)) {
    const from = add(callerKind(state, edge.source), edge.source)
    edges.push({ from, to: `service:${edge.service}`, kind: 'traffic', rps: round(edge.rps), errorRate: round(edge.errorRate, 4), mtlsShare: round(edge.mtlsShare, 4) })
  }
  const columns = columnsOf([...nodes.keys()], edges)
  return {
    nodes: [...nodes.values()].map((n) => ({ ...n, column: columns.get(n.id) ?? 0 })).sort((a, b) => a.column - b.column || a.id.localeCompare(b.id)),
    edges
  }
}

/** A Service's calls as its serviceRates counted them: at L7 when a waypoint measured any. */
function shownTrafficEdges (input: SnapshotInput): EdgeRate[] {
  return input.edges.filter((e) => input.services.get(e.service)?.layer === e.layer && input.state.services[e.service] !== undefined)
}

function callerKind (state: MeshState, key: string): GraphNode['kind'] {
  if (state.workloads[key] !== undefined) return 'workload'
  if (state.waypoints[key] !== undefined) return 'waypoint'
  return 'unknown'
}

/** Breadth-first hops from the nodes nothing points at (every node of a cycle without such a node starts at 0). */
function columnsOf (ids: readonly string[], edges: readonly GraphEdge[]): Map<string, number> {
  const targets = new Set(edges.map((e) => e.to))
  const columns = new Map<string, number>()
  let frontier = ids.filter((id) => !targets.has(id))
  for (let column = 0; frontier.length > 0; column++) {
    for (const id of frontier) columns.set(id, column)
    frontier = [...new Set(edges.filter((e) => frontier.includes(e.from) && !columns.has(e.to)).map((e) => e.to))]
  }
  for (const id of ids) if (!columns.has(id)) columns.set(id, 0)
  return columns
}

function policySummaries (input: SnapshotInput): PolicySummary[] {
  const hits = input.ruleHits
  return Object.entries(input.state.authorizationPolicies).sort(([a], [b]) => a.localeCompare(b)).map(([key, policy]) => ({
    key,
    action: policy.action,
    appliesTo: policy.targetRefs.length > 0
      ? policy.targetRefs.map((r) => `${r.kind} ${r.name}`).join(', ')
      : policy.selector !== undefined ? Object.entries(policy.selector).map(([k, v]) => `${k}=${v}`).join(',') : 'whole namespace',
    rules: policy.rules.map((_rule, index) => ({ index, hits: hits.get(ruleId(key, index)) ?? 0 }))
  }))
}

function routeSummaries (state: MeshState): RouteSummary[] {
  const routes = [...Object.values(state.httpRoutes), ...Object.values(state.grpcRoutes)]
  return routes.map((route) => ({
    key: `${route.metadata.namespace}/${route.metadata.name}`,
    kind: route.kind,
    parents: route.parentRefs.map((p) => `${p.kind} ${p.name}`),
    rules: route.rules.map((rule, index) => ({ index, backends: backendShares(rule.backendRefs) }))
  })).sort(byKey)
}

function backendShares (refs: readonly BackendRef[]): RouteSummary['rules'][number]['backends'] {
  const total = refs.reduce((sum, r) => sum + r.weight, 0)
  return refs.map((r) => ({ name: r.port === undefined ? r.name : `${r.name}:${r.port}`, weight: r.weight, percent: total > 0 ? round(100 * r.weight / total) : 0 }))
}

function certificateSummaries (input: SnapshotInput): CertificateSummary[] {
  const holders = [
    ...Object.values(input.state.workloads).map((w) => ({ key: w.key, nodes: [w.node], spiffeId: w.spiffeId })),
    ...Object.values(input.state.waypoints).map((wp) => ({ key: wp.key, nodes: wp.instances.map((i) => i.node), spiffeId: wp.spiffeId }))
  ]
  return holders.flatMap((h) => h.nodes.map((node) => {
    const issued = input.certificates.find(node, h.spiffeId)
    return {
      workload: h.key,
      node,
      spiffeId: h.spiffeId,
      ...(issued !== undefined && {
        notAfter: issued.notAfter.toISOString(),
        expiresInSeconds: Math.round((issued.notAfter.getTime() - input.now) / 1000)
      })
    }
  })).sort((a, b) => a.workload.localeCompare(b.workload) || a.node.localeCompare(b.node))
}

function byKey (a: { readonly key: string }, b: { readonly key: string }): number {
  return a.key.localeCompare(b.key)
}

function round (value: number, digits = 2): number {
  const scale = 10 ** digits
  return Math.round(value * scale) / scale
}
