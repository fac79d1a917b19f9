/**
 * Outbound: a local pod's connection, received by SOCKS5 (15080) or transparent capture
 * (15001). The source must be a meshed pod of this node (known by its address); the
 * destination (a Service VIP or hostname, or a pod IP) is resolved through the mesh registry
 * and reached over HBONE with the source's certificate: to the destination node's ztunnel, to
 * the Service's waypoint, or straight to the local inbound when both pods share this node.
 * Destinations outside the mesh are passed through as plain TCP.
 */
import type net from 'node:net'
import type { Duplex } from 'node:stream'
import type { ServiceState, WorkloadState } from '../policy/state.js'
import type { TlsIdentity } from '../policy/certs.js'
import { HboneConnectError, HboneRefusedError, PeerCertificateError } from '../policy/errors.js'
import { HBONE_PORT } from '../proxy/hbone-protocol.js'
import { EndpointPicker } from './endpoints.js'
import type { Inbound } from './inbound.js'
import { ResponseFlags, type ResponseFlag } from './metrics.js'
import { proxy, tcpLabels, type LabelParts, type ZtunnelContext } from './context.js'
import { Socks5Reply, acceptSocks5 } from './socks5.js'
import { redirectedDestination } from './original-dst.js'
import { stripMapped } from './inbound.js'

export interface OutboundRequest {
  readonly sourceIp: string
  /** An IP literal or a hostname. */
  readonly host: string
  readonly port: number
  readonly traceparent?: string
}

export type Routed =
  | { readonly ok: true, readonly upstream: Duplex, readonly labels: readonly LabelParts[] }
  | { readonly ok: false, readonly flag: ResponseFlag, readonly reason: string, readonly socksReply: number }

const SOCKS_REPLY: Readonly<Partial<Record<ResponseFlag, number>>> = {
  [ResponseFlags.denied]: Socks5Reply.notAllowedByRuleset,
  [ResponseFlags.mtlsRequired]: Socks5Reply.notAllowedByRuleset,
  [ResponseFlags.noRoute]: Socks5Reply.hostUnreachable,
  [ResponseFlags.noHealthyUpstream]: Socks5Reply.hostUnreachable,
  [ResponseFlags.upstreamConnectFailure]: Socks5Reply.connectionRefused
}

export class Outbound {
  private readonly picker = new EndpointPicker()

  constructor (private readonly context: ZtunnelContext, private readonly inbound: Inbound) {}

  /** Routes and connects; never throws: failures come back as a refusal with a flag. */
  async connect (request: OutboundRequest): Promise<Routed> {
    const registry = this.context.registry()
    const source = registry.workloadByIp(request.sourceIp)
    if (source === undefined || source.node !== this.context.node) {
      return this.refuse(ResponseFlags.denied, `source ${request.sourceIp} is not a meshed pod of node ${this.context.node}`, { reporter: 'source', mtls: false })
    }
    const base: LabelParts = { reporter: 'source', source, mtls: true }
    const target = registry.resolve(request.host, request.port, source.namespace)
    if (target === undefined) return this.refuse(ResponseFlags.noRoute, `${request.host}:${request.port} is not a known service or address`, base)
    if (target.kind === 'passthrough') return this.passthrough(target.ip, target.port, { ...base, mtls: false })
    const identity = this.context.certificates.get(source.namespace, source.serviceAccount)
    if (identity === undefined) return this.refuse(ResponseFlags.upstreamConnectFailure, `no certificate yet for ${source.spiffeId}`, base)
    if (target.kind === 'workload') return this.tunnel(source, identity, target.workload, target.port, undefined, request)
    const service = target.service
    if (service.waypoint !== undefined) return this.viaWaypoint(source, identity, service, target.port.port, request)
    const endpoint = this.picker.pick(service, target.port.port)
    if (endpoint === undefined) return this.refuse(ResponseFlags.noHealthyUpstream, `${service.key} has no endpoint for port ${target.port.port}`, { ...base, service })
    const targetPort = endpoint.ports[String(target.port.port)]!
    const destination = endpoint.meshed ? registry.workloadByIp(endpoint.ip) : undefined
    if (destination === undefined) return this.passthrough(endpoint.ip, targetPort, { ...base, service, mtls: false })
    return this.tunnel(source, identity, destination, targetPort, service, request)
  }

  /** SOCKS5 on 15080: the destination comes from the SOCKS request. */
  async onSocks5 (socket: net.Socket): Promise<void> {
    socket.on('error', () => socket.destroy())
    let handshake
    try {
      handshake = await acceptSocks5(socket)
    } catch {
      return // acceptSocks5 has answered and closed the socket
    }
    const { host, port } = handshake.destination
    const routed = await this.connect({ sourceIp: stripMapped(socket.remoteAddress ?? ''), host, port })
    if (!routed.ok) {
      handshake.reply(routed.socksReply)
      return
    }
    handshake.reply(Socks5Reply.succeeded)
    void proxy(this.context, socket, routed.upstream, routed.labels.map(tcpLabels), 'outbound')
  }

  /** Transparent capture on 15001: the destination is the one the pod dialled. */
  async onCaptured (socket: net.Socket): Promise<void> {
    socket.on('error', () => socket.destroy())
    const original = redirectedDestination(socket)
    if (original === undefined) {
      socket.destroy()
      return
    }
    const routed = await this.connect({ sourceIp: stripMapped(socket.remoteAddress ?? ''), host: original.ip, port: original.port })
    if (!routed.ok) {
      socket.resetAndDestroy()
      return
    }
    void proxy(this.context, socket, routed.upstream, routed.labels.map(tcpLabels), 'outbound')
  }

  private async tunnel (
    source: WorkloadState, identity: TlsIdentity, destination: WorkloadState, port: number,
    service: ServiceState | undefined, request: OutboundRequest
  ): Promise<Routed> {
    const parts: LabelParts = { reporter: 'source', source, destination, mtls: true, ...(service !== undefined && { service }) }
    if (destination.node === this.context.node) {
      // Same node: no TLS hop, but the same identity, PeerAuthentication and policy checks.
      const admission = await this.inbound.admit({ peerSpiffeId: source.spiffeId, sourceIp: source.ip, destination: { ip: destination.ip, port } })
      if (!admission.admitted) return this.refuse(admission.flag, admission.reason, parts, false)
      return { ok: true, upstream: admission.upstream, labels: [parts, { ...admission.labels, ...(service !== undefined && { service }) }] }
    }
    const node = this.context.registry().state.nodes[destination.node]
    if (node === undefined) return this.refuse(ResponseFlags.noHealthyUpstream, `node ${destination.node} of ${destination.key} has no address`, parts)
    return this.openHbone(parts, identity, destination.spiffeId, node.address, { ip: destination.ip, port }, request)
  }

  private async viaWaypoint (source: WorkloadState, identity: TlsIdentity, service: ServiceState, port: number, request: OutboundRequest): Promise<Routed> {
    const parts: LabelParts = { reporter: 'source', source, service, mtls: true }
    const ref = service.waypoint!
    const waypoint = this.context.registry().waypoint(ref.namespace, ref.name)
    // No waypoint instance: refuse rather than skip the L7 policy it would apply.
    const instance = waypoint?.instances[Math.floor(Math.random() * (waypoint?.instances.length ?? 0))]
    if (waypoint === undefined || instance === undefined || service.vip === undefined) {
      return this.refuse(ResponseFlags.noHealthyUpstream, `waypoint ${ref.namespace}/${ref.name} of ${service.key} is not available`, parts)
    }
    return this.openHbone(parts, identity, waypoint.spiffeId, instance.ip, { ip: service.vip, port }, request)
  }

  private async openHbone (
    parts: LabelParts, identity: TlsIdentity, expectedPeer: string, address: string,
    destination: { ip: string, port: number }, request: OutboundRequest
  ): Promise<Routed> {
    try {
      const upstream = await this.context.pool.open({
        sourceIdentity: identity,
        expectedPeer,
        address,
        port: HBONE_PORT,
        destination,
        headers: { forwardedFor: request.sourceIp, ...(request.traceparent !== undefined && { traceparent: request.traceparent }) }
      })
      this.picker.markHealthy(destination.ip)
      return { ok: true, upstream, labels: [parts] }
    } catch (err) {
      if (err instanceof HboneRefusedError) {
        const flag = err.status === 403 || err.status === 401 ? ResponseFlags.denied : ResponseFlags.upstreamConnectFailure
        return this.refuse(flag, `${expectedPeer} refused the tunnel (${err.status})`, parts)
      }
      this.picker.markFailed(destination.ip)
      const flag = err instanceof PeerCertificateError ? ResponseFlags.peerIdentityMismatch : ResponseFlags.upstreamConnectFailure
      const detail = err instanceof HboneConnectError || err instanceof PeerCertificateError ? err.message : String(err)
      return this.refuse(flag, `cannot tunnel to ${expectedPeer} via ${address}: ${detail}`, parts)
    }
  }

  private async passthrough (ip: string, port: number, parts: LabelParts): Promise<Routed> {
    try {
      const upstream = await this.context.connectTcp(ip, port)
      return { ok: true, upstream, labels: [parts] }
    } catch (err) {
      return this.refuse(ResponseFlags.upstreamConnectFailure, `cannot reach ${ip}:${port}: ${(err as Error).message}`, parts)
    }
  }

  private refuse (flag: ResponseFlag, reason: string, parts: LabelParts, count = true): Routed {
    // The same-node path's refusals were already counted by the inbound admission.
    if (count) this.context.metrics.refused(tcpLabels({ ...parts, flags: flag }))
    this.context.logger.info({ flag, reason, source: parts.source?.key }, 'outbound connection refused')
    return { ok: false, flag, reason, socksReply: SOCKS_REPLY[flag] ?? Socks5Reply.generalFailure }
  }
}
