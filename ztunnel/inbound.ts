/**
 * Inbound: traffic to the pods of this node. Whether it arrives over HBONE (15008), as
 * plaintext from outside the mesh (15006), or from a pod of this same node (the fast path),
 * it goes through one admission: the destination must be a local workload, PeerAuthentication
 * must allow the transport, AuthorizationPolicy must allow the source; then the pod is dialled.
 */
import type net from 'node:net'
import type { HboneRequest } from '../proxy/hbone-server.js'
import type { ServiceState, WorkloadState } from '../policy/state.js'
import type { MeshRegistry } from '../policy/registry.js'
import { parseSpiffeId, principalOf } from '../policy/identity.js'
import { ResponseFlags, type ResponseFlag } from './metrics.js'
import { proxy, tcpLabels, type LabelParts, type ZtunnelContext } from './context.js'
import { redirectedDestination } from './original-dst.js'

export interface InboundAttempt {
  /** The verified SPIFFE id of the peer; absent for plaintext. */
  readonly peerSpiffeId?: string
  readonly sourceIp: string
  readonly destination: { readonly ip: string, readonly port: number }
}

export type Admission =
  | { readonly admitted: true, readonly upstream: net.Socket, readonly labels: LabelParts }
  | { readonly admitted: false, readonly status: number, readonly flag: ResponseFlag, readonly reason: string, readonly labels: LabelParts }

export class Inbound {
  constructor (private readonly context: ZtunnelContext) {}

  /** Decides, then dials the pod. Every refusal is counted in the TCP metrics with its flag. */
  async admit (attempt: InboundAttempt): Promise<Admission> {
    const registry = this.context.registry()
    const mtls = attempt.peerSpiffeId !== undefined
    const destination = registry.workloadByIp(attempt.destination.ip)
    const source = this.sourceWorkload(attempt)
    const base = { reporter: 'destination' as const, mtls, ...(source !== undefined && { source }), ...(attempt.peerSpiffeId !== undefined && { sourceSpiffeId: attempt.peerSpiffeId }) }
    if (destination === undefined || destination.node !== this.context.node) {
      return this.refuse(404, ResponseFlags.noRoute, `no workload ${attempt.destination.ip} on node ${this.context.node}`, base)
    }
    const service = registry.serviceServing(destination, attempt.destination.port)
    const parts: LabelParts = { ...base, destination, ...(service !== undefined && { service }) }
    if (!mtls && registry.mtlsMode(destination, attempt.destination.port) === 'STRICT') {
      return this.refuse(403, ResponseFlags.mtlsRequired, `${destination.key} requires mutual TLS (PeerAuthentication STRICT)`, parts)
    }
    let peer: { principal: string, namespace: string } | undefined
    if (attempt.peerSpiffeId !== undefined) {
      try {
        peer = { principal: principalOf(attempt.peerSpiffeId), namespace: parseSpiffeId(attempt.peerSpiffeId).namespace }
      } catch {
        return this.refuse(401, ResponseFlags.peerIdentityMismatch, `peer identity ${attempt.peerSpiffeId} is not a workload identity`, parts)
      }
    }
    const waypoints = requiredWaypoints(registry, registry.servicesServing(destination, attempt.destination.port))
    if (waypoints !== undefined && !waypoints.some((w) => w.spiffeId === attempt.peerSpiffeId)) {
      const names = waypoints.map((w) => w.key).join(', ')
      return this.refuse(403, ResponseFlags.denied, `${destination.key}:${attempt.destination.port} is served through waypoint ${names}; traffic must come from it`, parts)
    }
    const decision = registry.authorize(destination, {
      source: { ...peer, ip: attempt.sourceIp },
      destination: attempt.destination
    })
    this.context.metrics.ruleHits.record(decision)
    if (!decision.allowed) return this.refuse(403, ResponseFlags.denied, decision.reason, parts)
    try {
      const upstream = await this.context.connectTcp(attempt.destination.ip, attempt.destination.port)
      return { admitted: true, upstream, labels: parts }
    } catch (err) {
      return this.refuse(503, ResponseFlags.upstreamConnectFailure, `cannot reach ${destination.key} at ${attempt.destination.ip}:${attempt.destination.port}: ${(err as Error).message}`, parts)
    }
  }

  /** The HBONE server's stream handler (15008). */
  async onHboneStream (request: HboneRequest): Promise<void> {
    const admission = await this.admit({
      peerSpiffeId: request.peerSpiffeId,
      sourceIp: request.headers.forwardedFor ?? request.remoteAddress,
      destination: request.destination
    })
    if (!admission.admitted) {
      request.refuse(admission.status, admission.reason)
      return
    }
    if (request.signal.aborted) {
      admission.upstream.destroy()
      request.refuse(499, 'client cancelled')
      return
    }
    void proxy(this.context, request.accept(), admission.upstream, tcpLabels(admission.labels), 'inbound')
  }

  /** A plaintext connection redirected to 15006 by the capture rules. */
  async onPlaintext (socket: net.Socket): Promise<void> {
    socket.on('error', () => socket.destroy())
    const destination = redirectedDestination(socket)
    if (destination === undefined) {
      socket.destroy()
      return
    }
    const admission = await this.admit({ sourceIp: stripMapped(socket.remoteAddress ?? ''), destination })
    if (!admission.admitted) {
      socket.destroy()
      return
    }
    void proxy(this.context, socket, admission.upstream, tcpLabels(admission.labels), 'inbound')
  }

  /** The source workload, when the address it claims belongs to the identity it proved. */
  private sourceWorkload (attempt: InboundAttempt): WorkloadState | undefined {
    const workload = this.context.registry().workloadByIp(attempt.sourceIp)
    if (workload === undefined) return undefined
    if (attempt.peerSpiffeId !== undefined && workload.spiffeId !== attempt.peerSpiffeId) return undefined
    return workload
  }

  private refuse (status: number, flag: ResponseFlag, reason: string, labels: LabelParts): Admission {
    const withFlag = { ...labels, flags: flag }
    this.context.metrics.refused(tcpLabels(withFlag))
    this.context.logger.info({ flag, reason, destination: labels.destination?.key, source: labels.source?.key ?? labels.sourceSpiffeId }, 'inbound connection refused')
    return { admitted: false, status, flag, reason, labels: withFlag }
  }
}

/**
 * The waypoints a connection must come from: when every Service that reaches this pod port
 * sends its traffic through one (their L7 policy would be skipped otherwise). The pod port
 * cannot tell which Service a caller addressed, so one also reached through a Service without
 * a waypoint (catalog-v1 beside a canary-split catalog) takes direct calls, as Istio ambient
 * does for Service-attached waypoints. A waypoint that does not exist still fails closed: its
 * identity is '', which no peer has.
 */
function requiredWaypoints (registry: MeshRegistry, services: readonly ServiceState[]): Array<{ key: string, spiffeId: string }> | undefined {
  const required: Array<{ key: string, spiffeId: string }> = []
  for (const { waypoint } of services) {
    if (waypoint === undefined) return undefined
    required.push({ key: `${waypoint.namespace}/${waypoint.name}`, spiffeId: registry.waypoint(waypoint.namespace, waypoint.name)?.spiffeId ?? '' })
  }
  return required.length === 0 ? undefined : required
}

/** '::ffff:10.0.0.1' → '10.0.0.1' (a dual-stack listener reports IPv4 peers that way). */
export function stripMapped (ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip
}
