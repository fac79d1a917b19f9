/**
 * The registry: a read-only view of one mesh state with the O(1) lookups a proxy makes per
 * connection (by IP, by VIP:port, by hostname) and precompiled authorization policies.
 * Built once per state revision; every lookup after that is a Map get.
 */
import type { MeshState, ServicePortState, ServiceState, WaypointState, WorkloadState } from './state.js'
import { CLUSTER_DOMAIN } from './state.js'
import { compilePolicy, evaluatePolicies, type AuthzRequest, type CompiledPolicy, type Decision } from './authz.js'
import { mtlsModeForPort } from './peer-auth.js'
import type { MtlsMode } from './resources.js'

/** Where a connection to an address or name goes, as far as the mesh knows. */
export type Target =
  | { readonly kind: 'service', readonly service: ServiceState, readonly port: ServicePortState }
  | { readonly kind: 'workload', readonly workload: WorkloadState, readonly port: number }
  /** Not in the mesh: passed through as plain TCP. */
  | { readonly kind: 'passthrough', readonly ip: string, readonly port: number }

export class MeshRegistry {
  private readonly workloadsByIp = new Map<string, WorkloadState>()
  private readonly servicesByVip = new Map<string, ServiceState>()
  private readonly servicesByHost = new Map<string, ServiceState>()
  private readonly workloadsByNode = new Map<string, WorkloadState[]>()
  private readonly compiled = new Map<string, CompiledPolicy>()
  private readonly policyLists = new Map<string, CompiledPolicy[]>()
  private readonly servingServices = new Map<string, readonly ServiceState[]>()

  constructor (readonly state: MeshState, readonly revision = 0) {
    for (const w of Object.values(state.workloads)) {
      this.workloadsByIp.set(w.ip, w)
      const onNode = this.workloadsByNode.get(w.node)
      if (onNode === undefined) this.workloadsByNode.set(w.node, [w])
      else onNode.push(w)
    }
    for (const svc of Object.values(state.services)) {
      if (svc.vip !== undefined) this.servicesByVip.set(svc.vip, svc)
      for (const host of svc.hostnames) this.servicesByHost.set(host, svc)
    }
    for (const [key, policy] of Object.entries(state.authorizationPolicies)) {
      this.compiled.set(key, compilePolicy(key, policy))
    }
  }

  workloadByIp (ip: string): WorkloadState | undefined {
    return this.workloadsByIp.get(ip)
  }

  workloadsOnNode (node: string): readonly WorkloadState[] {
    return this.workloadsByNode.get(node) ?? []
  }

  serviceByVip (ip: string): ServiceState | undefined {
    return this.servicesByVip.get(ip)
  }

  /**
   * 'name.ns.svc.cluster.local', 'name.ns.svc', 'name.ns', or a bare 'name' looked up in the
   * caller's namespace, as Kubernetes DNS search paths do.
   */
  serviceByHost (host: string, fromNamespace?: string): ServiceState | undefined {
    const name = host.toLowerCase().replace(/\.$/, '')
    return this.servicesByHost.get(name) ??
      (fromNamespace !== undefined && !name.includes('.') ? this.servicesByHost.get(`${name}.${fromNamespace}`) : undefined)
  }

  /**
   * The Service a connection to workload:targetPort most likely addressed (one whose endpoint
   * is that workload on that port): the first of servicesServing.
   */
  serviceServing (workload: WorkloadState, targetPort: number): ServiceState | undefined {
    return this.servicesServing(workload, targetPort)[0]
  }

  /** Every Service whose endpoint is workload:targetPort, remembered per registry: inbound asks on every connection. */
  servicesServing (workload: WorkloadState, targetPort: number): readonly ServiceState[] {
    const key = `${workload.key}:${targetPort}`
    let found = this.servingServices.get(key)
    if (found === undefined) {
      found = workload.services.map((s) => this.state.services[s])
        .filter((s) => s !== undefined && s.endpoints.some((e) => e.workload === workload.key && Object.values(e.ports).includes(targetPort))) as ServiceState[]
      this.servingServices.set(key, found)
    }
    return found
  }

  service (key: string): ServiceState | undefined {
    return this.state.services[key]
  }

  waypoint (namespace: string, name: string): WaypointState | undefined {
    return this.state.waypoints[`${namespace}/${name}`]
  }

  /** Resolves an address (IPv4/IPv6) or hostname and port; undefined for an unknown hostname. */
  resolve (hostOrIp: string, port: number, fromNamespace?: string): Target | undefined {
    const svc = this.servicesByVip.get(hostOrIp) ?? this.serviceByHost(hostOrIp, fromNamespace)
    if (svc !== undefined) {
      const servicePort = svc.ports.find((p) => p.port === port)
      // A port the Service does not declare is not part of the Service: nothing to route to.
      return servicePort === undefined ? undefined : { kind: 'service', service: svc, port: servicePort }
    }
    const workload = this.workloadsByIp.get(hostOrIp)
    if (workload !== undefined) return { kind: 'workload', workload, port }
    if (isIpLiteral(hostOrIp)) return { kind: 'passthrough', ip: hostOrIp, port }
    return undefined
  }

  /** The compiled policies the ztunnel enforces for a workload (cached per workload). */
  policiesFor (workload: WorkloadState): readonly CompiledPolicy[] {
    let list = this.policyLists.get(workload.key)
    if (list === undefined) {
      list = workload.policies.map((key) => this.compiled.get(key)).filter((p): p is CompiledPolicy => p !== undefined)
      this.policyLists.set(workload.key, list)
    }
    return list
  }

  policy (key: string): CompiledPolicy | undefined {
    return this.compiled.get(key)
  }

  /** L4 authorization of a connection to `workload` (L7 when request.http is given). */
  authorize (workload: WorkloadState, request: AuthzRequest): Decision {
    return evaluatePolicies(this.policiesFor(workload), request)
  }

  mtlsMode (workload: WorkloadState, port: number): MtlsMode {
    return mtlsModeForPort(workload.mtls, port)
  }
}

function isIpLiteral (host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(':')
}

export const SERVICE_DOMAIN_SUFFIX = `.svc.${CLUSTER_DOMAIN}`
