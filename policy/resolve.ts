/**
 * Resolution: validated resources in, the mesh state out. Pure: the controller calls it on
 * every change and publishes the difference; `ambit explain` and the tests call it directly.
 */
import type {
  AppProtocol, AuthorizationPolicyResource, EndpointPort, EndpointSliceResource, GatewayResource, GRPCRouteResource, HTTPRouteResource,
  NamespaceResource, NodeResource, ObjectRef, PeerAuthenticationResource, PodResource, Resource,
  ServicePort, ServiceResource, SliceEndpoint, TrafficPolicyResource
} from './resources.js'
import { AMBIENT_LABEL, AMBIENT_VALUE, SERVICE_NAME_LABEL, USE_WAYPOINT_LABEL, WAYPOINT_CLASS } from './resources.js'
import type {
  EndpointState, MeshConfig, MeshState, NodeState, ServicePortState, ServiceState, WaypointRef,
  WaypointState, WorkloadState
} from './state.js'
import { CLUSTER_DOMAIN } from './state.js'
import { selectorMatches } from './selector.js'
import { resolveMtls } from './peer-auth.js'
import { spiffeId } from './identity.js'

/** Pods opt out of (or into) the mesh with the same label as namespaces. */
const OPT_OUT_VALUE = 'none'
/** The label Gateway API implementations put on a Gateway's pods. */
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name'

export interface Resolution {
  readonly state: MeshState
  /** Things that resolved to nothing (a route to a missing Service...): reported, not fatal. */
  readonly warnings: readonly string[]
}

interface ByKind {
  namespaces: NamespaceResource[]
  nodes: NodeResource[]
  pods: PodResource[]
  services: ServiceResource[]
  endpointSlices: EndpointSliceResource[]
  gateways: GatewayResource[]
  httpRoutes: HTTPRouteResource[]
  grpcRoutes: GRPCRouteResource[]
  authorizationPolicies: AuthorizationPolicyResource[]
  peerAuthentications: PeerAuthenticationResource[]
  trafficPolicies: TrafficPolicyResource[]
}

type RunningPod = PodResource & { readonly podIP: string, readonly nodeName: string }

/** What a Service's endpoints are drawn from. */
interface EndpointSources {
  readonly podsByNamespace: ReadonlyMap<string, readonly RunningPod[]>
  readonly meshedKeys: ReadonlySet<string>
  /** Meshed pods by address, to recognise them among EndpointSlice addresses. */
  readonly meshedByIp: ReadonlyMap<string, RunningPod>
  /** 'namespace/service name' → the EndpointSlices labelled with it. */
  readonly slicesByService: ReadonlyMap<string, readonly EndpointSliceResource[]>
}

const keyOf = (r: { metadata: { namespace: string, name: string } }): string =>
  `${r.metadata.namespace}/${r.metadata.name}`

function groupByKind (resources: readonly Resource[]): ByKind {
  const groups: ByKind = {
    namespaces: [], nodes: [], pods: [], services: [], endpointSlices: [], gateways: [], httpRoutes: [], grpcRoutes: [],
    authorizationPolicies: [], peerAuthentications: [], trafficPolicies: []
  }
  for (const r of resources) {
    switch (r.kind) {
      case 'Namespace': groups.namespaces.push(r); break
      case 'Node': groups.nodes.push(r); break
      case 'Pod': groups.pods.push(r); break
      case 'Service': groups.services.push(r); break
      case 'EndpointSlice': groups.endpointSlices.push(r); break
      case 'Gateway': groups.gateways.push(r); break
      case 'HTTPRoute': groups.httpRoutes.push(r); break
      case 'GRPCRoute': groups.grpcRoutes.push(r); break
      case 'AuthorizationPolicy': groups.authorizationPolicies.push(r); break
      case 'PeerAuthentication': groups.peerAuthentications.push(r); break
      case 'TrafficPolicy': groups.trafficPolicies.push(r); break
    }
  }
  return groups
}

export function resolve (resources: readonly Resource[], mesh: MeshConfig): Resolution {
  return new Resolver(groupByKind(resources), mesh).run()
}

/** Holds the indexes of one resolution run; every method adds one part of the state. */
class Resolver {
  private readonly warnings: string[] = []
  private readonly namespaceLabels = new Map<string, Readonly<Record<string, string>>>()
  private readonly nodes: Record<string, NodeState> = {}
  private readonly waypointGateways = new Map<string, GatewayResource>()

  constructor (private readonly input: ByKind, private readonly mesh: MeshConfig) {
    for (const ns of input.namespaces) this.namespaceLabels.set(ns.metadata.name, ns.metadata.labels)
    for (const gw of input.gateways) {
      if (gw.gatewayClassName === WAYPOINT_CLASS) this.waypointGateways.set(keyOf(gw), gw)
    }
  }

  run (): Resolution {
    this.resolveNodes()
    const pods = sortByKey(this.input.pods).filter((p) => this.isRunning(p))
    const meshed = pods.filter((p) => this.isMeshed(p))
    const podsByNamespace = groupBy(pods, (p) => p.metadata.namespace)
    const waypoints = this.resolveWaypoints(podsByNamespace)
    const services = this.resolveServices({
      podsByNamespace,
      meshedKeys: new Set(meshed.map(keyOf)),
      meshedByIp: new Map(meshed.map((p) => [p.podIP, p])),
      slicesByService: this.slicesByService()
    })
    const workloads = this.resolveWorkloads(meshed, services)
    const state: MeshState = {
      mesh: this.mesh,
      nodes: this.nodes,
      workloads,
      services,
      waypoints,
      authorizationPolicies: byKey(this.input.authorizationPolicies),
      peerAuthentications: byKey(this.input.peerAuthentications),
      httpRoutes: byKey(this.input.httpRoutes),
      grpcRoutes: byKey(this.input.grpcRoutes),
      trafficPolicies: byKey(this.input.trafficPolicies)
    }
    return { state, warnings: this.warnings }
  }

  private resolveNodes (): void {
    for (const node of sortByKey(this.input.nodes)) {
      if (node.internalIP === undefined) {
        this.warnings.push(`Node/${node.metadata.name}: no InternalIP address; its ztunnel cannot be reached`)
        continue
      }
      this.nodes[node.metadata.name] = { name: node.metadata.name, address: node.internalIP }
    }
  }

  /** A pod takes part once it is scheduled, has an address and has not finished. */
  private isRunning (pod: PodResource): pod is RunningPod {
    return pod.podIP !== undefined && pod.nodeName !== undefined &&
      pod.phase !== 'Succeeded' && pod.phase !== 'Failed'
  }

  private isMeshed (pod: PodResource): boolean {
    const podMode = pod.metadata.labels[AMBIENT_LABEL]
    if (podMode !== undefined) return podMode === AMBIENT_VALUE
    return this.namespaceLabels.get(pod.metadata.namespace)?.[AMBIENT_LABEL] === AMBIENT_VALUE
  }

  private resolveWaypoints (podsByNamespace: ReadonlyMap<string, readonly RunningPod[]>): Record<string, WaypointState> {
    const waypoints: Record<string, WaypointState> = {}
    for (const [key, gw] of sortedEntries(this.waypointGateways)) {
      const { namespace, name } = gw.metadata
      const instances = (podsByNamespace.get(namespace) ?? [])
        .filter((p) => p.metadata.labels[GATEWAY_NAME_LABEL] === name)
        .map((p) => ({ ip: p.podIP, node: p.nodeName }))
      waypoints[key] = {
        key, name, namespace, instances, spiffeId: spiffeId(this.mesh.trustDomain, namespace, name)
      }
    }
    return waypoints
  }

  /** FQDN slices are left out: an endpoint is an address the ztunnel connects to. */
  private slicesByService (): Map<string, EndpointSliceResource[]> {
    const addressed = sortByKey(this.input.endpointSlices).filter((slice) => {
      if (slice.addressType !== 'FQDN') return true
      this.warnings.push(`EndpointSlice/${keyOf(slice)}: FQDN endpoints are not supported; ignored`)
      return false
    })
    return groupBy(addressed.filter((slice) => slice.metadata.labels[SERVICE_NAME_LABEL] !== undefined),
      (slice) => `${slice.metadata.namespace}/${slice.metadata.labels[SERVICE_NAME_LABEL]}`)
  }

  private resolveServices (sources: EndpointSources): Record<string, ServiceState> {
    const services: Record<string, ServiceState> = {}
    for (const svc of sortByKey(this.input.services)) {
      const key = keyOf(svc)
      const { namespace, name } = svc.metadata
      // As in Kubernetes: a selector's endpoints come from Pods, the others' from EndpointSlices someone else writes.
      const selectorless = svc.selector === undefined || Object.keys(svc.selector).length === 0
      const endpoints = selectorless
        ? sliceEndpoints(svc, sources.slicesByService.get(key) ?? [], sources.meshedByIp)
        : selectedEndpoints(svc, sources)
      const waypoint = this.waypointFor(svc)
      services[key] = {
        key,
        name,
        namespace,
        ...(svc.clusterIP !== undefined && { vip: svc.clusterIP }),
        hostnames: [`${name}.${namespace}.svc.${CLUSTER_DOMAIN}`, `${name}.${namespace}.svc`, `${name}.${namespace}`],
        ports: svc.ports.map(portState),
        endpoints,
        ...(waypoint !== undefined && { waypoint }),
        policies: this.attachedTo(this.input.authorizationPolicies, svc, (p) => p.targetRefs),
        routes: [
          ...this.routesFor(this.input.httpRoutes, svc, 'HTTPRoute'),
          ...this.routesFor(this.input.grpcRoutes, svc, 'GRPCRoute')
        ],
        ...this.trafficPolicyFor(svc)
      }
    }
    return services
  }

  /** The Service's own label wins over its namespace's; 'none' opts out. */
  private waypointFor (svc: ServiceResource): WaypointRef | undefined {
    const name = svc.metadata.labels[USE_WAYPOINT_LABEL] ??
      this.namespaceLabels.get(svc.metadata.namespace)?.[USE_WAYPOINT_LABEL]
    if (name === undefined || name === OPT_OUT_VALUE) return undefined
    const ref = { namespace: svc.metadata.namespace, name }
    if (!this.waypointGateways.has(`${ref.namespace}/${ref.name}`)) {
      // Keep the reference: the ztunnel then refuses the traffic rather than skip its L7 policy.
      this.warnings.push(`Service/${keyOf(svc)}: waypoint ${ref.name} does not exist (no Gateway of class ${WAYPOINT_CLASS}); its traffic is refused until it does`)
    }
    return ref
  }

  private attachedTo<T extends { metadata: { namespace: string, name: string } }> (
    candidates: readonly T[], svc: ServiceResource, refsOf: (candidate: T) => readonly ObjectRef[]
  ): string[] {
    return sortByKey(candidates.filter((c) => refsOf(c).some((ref) => refersToService(ref, c.metadata.namespace, svc)))).map(keyOf)
  }

  private routesFor (routes: readonly (HTTPRouteResource | GRPCRouteResource)[], svc: ServiceResource, kind: string): string[] {
    return this.attachedTo(routes, svc, (r) => r.parentRefs).map((key) => `${kind}/${key}`)
  }

  private trafficPolicyFor (svc: ServiceResource): { trafficPolicy?: string } {
    const attached = this.attachedTo(this.input.trafficPolicies, svc, (p) => p.targetRefs)
    if (attached.length > 1) {
      this.warnings.push(`Service/${keyOf(svc)}: several TrafficPolicies target it (${attached.join(', ')}); ${attached[0]} applies`)
    }
    return attached.length > 0 ? { trafficPolicy: attached[0]! } : {}
  }

  private resolveWorkloads (
    pods: readonly RunningPod[],
    services: Readonly<Record<string, ServiceState>>
  ): Record<string, WorkloadState> {
    const servicesOf = new Map<string, string[]>()
    for (const svc of Object.values(services)) {
      for (const ep of svc.endpoints) {
        const list = servicesOf.get(ep.workload) ?? []
        list.push(svc.key)
        servicesOf.set(ep.workload, list)
      }
    }
    const policiesByNamespace = groupBy(this.input.authorizationPolicies.filter((p) => p.targetRefs.length === 0),
      (p) => p.metadata.namespace)
    const peerAuths = groupBy(this.input.peerAuthentications, (p) => p.metadata.namespace)
    const workloads: Record<string, WorkloadState> = {}
    for (const pod of sortByKey(pods)) {
      if (this.nodes[pod.nodeName] === undefined) {
        this.warnings.push(`Pod/${keyOf(pod)}: node ${pod.nodeName} is unknown; the pod is not meshed`)
        continue
      }
      const key = keyOf(pod)
      const { namespace, name, labels } = pod.metadata
      const memberOf = servicesOf.get(key) ?? []
      workloads[key] = {
        key,
        name,
        namespace,
        node: pod.nodeName,
        ip: pod.podIP,
        serviceAccount: pod.serviceAccountName,
        spiffeId: spiffeId(this.mesh.trustDomain, namespace, pod.serviceAccountName),
        labels,
        services: memberOf,
        policies: this.enforcedPolicies(pod, policiesByNamespace, memberOf.map((s) => services[s]!)),
        mtls: resolveMtls({ namespace, labels }, [
          ...(peerAuths.get(namespace) ?? []),
          ...(namespace === this.mesh.rootNamespace ? [] : peerAuths.get(this.mesh.rootNamespace) ?? [])
        ], this.mesh.rootNamespace),
        namedPorts: pod.namedPorts
      }
    }
    return workloads
  }

  /**
   * The policies the ztunnel enforces for a pod: selector policies of its namespace and of the
   * root namespace, plus policies that target one of its Services when that Service has no
   * waypoint (Istio would ignore those; we enforce their L4 part rather than drop them).
   */
  private enforcedPolicies (
    pod: PodResource,
    policiesByNamespace: ReadonlyMap<string, readonly AuthorizationPolicyResource[]>,
    memberOf: readonly ServiceState[]
  ): string[] {
    const { namespace, labels } = pod.metadata
    const keys = new Set<string>()
    for (const ns of new Set([namespace, this.mesh.rootNamespace])) {
      for (const policy of policiesByNamespace.get(ns) ?? []) {
        if (selectorMatches(policy.selector, labels)) keys.add(keyOf(policy))
      }
    }
    for (const svc of memberOf) {
      if (svc.waypoint === undefined) for (const key of svc.policies) keys.add(key)
    }
    return [...keys].sort()
  }
}

function selectedEndpoints (svc: ServiceResource, sources: EndpointSources): EndpointState[] {
  const selected = (sources.podsByNamespace.get(svc.metadata.namespace) ?? [])
    .filter((p) => selectorMatches(svc.selector, p.metadata.labels))
  return selected.map((p) => ({
    workload: keyOf(p),
    meshed: sources.meshedKeys.has(keyOf(p)),
    ip: p.podIP,
    node: p.nodeName,
    ports: targetPorts(svc.ports, p)
  }))
}

/**
 * The ready addresses of a selector-less Service's slices (an absent condition counts as ready,
 * as kube-proxy reads it). An address listed by several slices, as during an update, counts once.
 */
function sliceEndpoints (
  svc: ServiceResource, slices: readonly EndpointSliceResource[], meshedByIp: ReadonlyMap<string, RunningPod>
): EndpointState[] {
  const endpoints = new Map<string, EndpointState>()
  for (const slice of slices) {
    const ports = slicePorts(svc.ports, slice.ports)
    for (const endpoint of slice.endpoints) {
      if (endpoint.conditions.ready === false) continue
      for (const ip of endpoint.addresses) {
        if (endpoints.has(ip)) continue
        const pod = meshedByIp.get(ip)
        endpoints.set(ip, {
          workload: pod === undefined ? unmeshedWorkload(endpoint, slice, ip) : keyOf(pod),
          meshed: pod !== undefined,
          ip,
          node: endpoint.nodeName ?? pod?.nodeName ?? '',
          ports
        })
      }
    }
  }
  return [...endpoints.values()]
}

/** The pod an address belongs to when the slice says so; otherwise the address itself names it. */
function unmeshedWorkload (endpoint: SliceEndpoint, slice: EndpointSliceResource, ip: string): string {
  const ref = endpoint.targetRef
  return ref?.kind === 'Pod' ? `${ref.namespace ?? slice.metadata.namespace}/${ref.name}` : ip
}

/**
 * Service port → the slice's port of the same name. A Service with one port may leave it
 * unnamed, and so does its slice: a lone unnamed slice port serves the Service's lone port.
 */
function slicePorts (servicePorts: readonly ServicePort[], ports: readonly EndpointPort[]): Record<string, number> {
  const result: Record<string, number> = {}
  const lone = servicePorts.length === 1 && ports.length === 1 && ports[0]!.name === undefined ? ports[0] : undefined
  for (const p of servicePorts) {
    const target = ports.find((candidate) => candidate.name === p.name) ?? lone
    if (target !== undefined) result[String(p.port)] = target.port
  }
  return result
}

function refersToService (ref: ObjectRef, fromNamespace: string, svc: ServiceResource): boolean {
  return ref.kind === 'Service' && (ref.group === '' || ref.group === 'core') &&
    ref.name === svc.metadata.name && (ref.namespace ?? fromNamespace) === svc.metadata.namespace
}

const PROTOCOL_PREFIXES: readonly [string, AppProtocol][] = [
  ['grpc', 'grpc'], ['http2', 'http2'], ['h2c', 'http2'], ['http', 'http'], ['tcp', 'tcp']
]

/** appProtocol first (as Kubernetes recommends), then Istio's port-name prefix convention. */
export function appProtocolOf (port: Pick<ServicePort, 'name' | 'appProtocol'>): AppProtocol {
  const declared = port.appProtocol?.toLowerCase()
  if (declared === 'kubernetes.io/h2c') return 'http2'
  for (const candidate of [declared, port.name?.toLowerCase()]) {
    if (candidate === undefined) continue
    const found = PROTOCOL_PREFIXES.find(([prefix]) => candidate === prefix || candidate.startsWith(`${prefix}-`))
    if (found !== undefined) return found[1]
  }
  return 'tcp'
}

function portState (port: ServicePort): ServicePortState {
  return {
    ...(port.name !== undefined && { name: port.name }),
    port: port.port,
    targetPort: port.targetPort,
    appProtocol: appProtocolOf(port)
  }
}

/** Service port → the pod's port; a named targetPort the pod does not declare is left out. */
function targetPorts (ports: readonly ServicePort[], pod: PodResource): Record<string, number> {
  const result: Record<string, number> = {}
  for (const p of ports) {
    const target = typeof p.targetPort === 'number' ? p.targetPort : pod.namedPorts[p.targetPort]
    if (target !== undefined) result[String(p.port)] = target
  }
  return result
}

function sortByKey<T extends { metadata: { namespace: string, name: string } }> (items: readonly T[]): T[] {
  return [...items].sort((a, b) => keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0)
}

function sortedEntries<V> (map: ReadonlyMap<string, V>): [string, V][] {
  return [...map.entries()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
}

function byKey<T extends { metadata: { namespace: string, name: string } }> (items: readonly T[]): Record<string, T> {
  return Object.fromEntries(sortByKey(items).map((item) => [keyOf(item), item]))
}

function groupBy<T> (items: readonly T[], keyFn: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>()
  for (const item of items) {
    const key = keyFn(item)
    const group = groups.get(key)
    if (group === undefined) groups.set(key, [item])
    else group.push(item)
  }
  return groups
}
