/**
 * One node's ztunnel: follows the mesh state, holds the certificates of the node's
 * workloads, and runs the listeners of DESIGN §4 (15001 capture, 15006 plaintext inbound,
 * 15008 HBONE, 15080 SOCKS5, 15020 metrics, 15021 readiness, 15000 admin), plus the capture
 * rules when asked. stop() drains: unready first, stop accepting, let connections finish.
 */
import net from 'node:net'
import { once } from 'node:events'
import type { Logger } from 'pino'
import type { Store } from '../control/store.js'
import { StateFollower, firstMeshState } from '../control/follower.js'
import { fromEntries } from '../policy/entries.js'
import { MeshRegistry } from '../policy/registry.js'
import type { MeshState } from '../policy/state.js'
import { ConfigError } from '../policy/errors.js'
import { WorkloadCertificates, type CertificateSource } from '../proxy/certificates.js'
import { ResponseFlags, ZtunnelMetrics, type ResponseFlag } from './metrics.js'
import { HbonePool } from '../proxy/pool.js'
import { DEFAULT_DRAIN_MS, startHboneServer, type HboneServer, type HboneServerLimits, type TlsFailureReason } from '../proxy/hbone-server.js'
import { ConnectionTracker, tcpLabels, type ZtunnelContext } from './context.js'
import { connectTcp } from '../proxy/connect.js'
import { trackState } from '../proxy/state-metrics.js'
import { Inbound } from './inbound.js'
import { Outbound } from './outbound.js'
import { startAdmin, DEFAULT_ADMIN_PORTS, type AdminPorts, type AdminServers } from '../proxy/admin.js'
import { CaptureRules, ZTUNNEL_MARK } from './capture.js'
import { markedSocket } from './sockopt.js'

const LISTEN_BACKLOG = 4096

export interface ZtunnelPorts extends AdminPorts {
  readonly outbound: number
  readonly inboundPlaintext: number
  readonly hbone: number
  readonly socks5: number
}

export const DEFAULT_ZTUNNEL_PORTS: ZtunnelPorts = {
  ...DEFAULT_ADMIN_PORTS, outbound: 15001, inboundPlaintext: 15006, hbone: 15008, socks5: 15080
}

export interface ZtunnelOptions {
  readonly node: string
  readonly store: Store
  /** Makes the CA client once the trust bundle is known (it comes with the mesh state). */
  readonly certificateSource: (trustBundle: readonly string[]) => CertificateSource
  readonly logger: Logger
  /** Where the listeners bind; default: the Node's InternalIP from the mesh state. */
  readonly listenAddress?: string
  /** Where the admin port binds; default 127.0.0.1, or the listen address when that is loopback. */
  readonly adminAddress?: string
  readonly ports?: Partial<ZtunnelPorts>
  /** Install iptables capture rules in this network namespace (needs root). */
  readonly capture?: boolean
  /** How long stop() waits for in-flight connections. */
  readonly drainMs?: number
  /** How long start() waits for the first certificates before listening anyway (unready). */
  readonly certificateWaitMs?: number
  /** Overrides of the HBONE server's limits (timeouts, stream caps, keepalive). */
  readonly hboneLimits?: Partial<HboneServerLimits>
}

export class Ztunnel {
  private current!: MeshRegistry
  private readonly servers: net.Server[] = []
  private hbone: HboneServer | undefined
  private admin: AdminServers | undefined
  private capture: CaptureRules | undefined
  private draining = false
  private boundPorts: ZtunnelPorts = DEFAULT_ZTUNNEL_PORTS

  private readonly context: ZtunnelContext

  private constructor (
    private readonly options: ZtunnelOptions,
    private readonly follower: StateFollower,
    private readonly certificates: WorkloadCertificates,
    logger: Logger
  ) {
    this.context = {
      node: options.node,
      registry: () => this.current,
      certificates,
      pool: new HbonePool(),
      metrics: new ZtunnelMetrics(options.node),
      logger,
      connections: new ConnectionTracker(),
      connectTcp: (ip, port) => connectTcp(ip, port, options.capture === true
        ? { createSocket: () => halfOpen(markedSocket(ZTUNNEL_MARK, ip.includes(':') ? 6 : 4)) }
        : {})
    }
  }

  static async start (options: ZtunnelOptions): Promise<Ztunnel> {
    const logger = options.logger.child({ node: options.node })
    const follower = new StateFollower(options.store, 'state')
    await follower.start()
    const state = await firstMeshState(follower)
    const certificates = new WorkloadCertificates(options.certificateSource(state.mesh.trustBundle), state.mesh.trustDomain, logger)
    const ztunnel = new Ztunnel(options, follower, certificates, logger)
    await ztunnel.run(state)
    return ztunnel
  }

  /** The ports actually bound (they differ from the defaults when 0 was asked). */
  get ports (): ZtunnelPorts { return this.boundPorts }

  get registry (): MeshRegistry { return this.current }

  /** Its TCP metrics, for in-process readers (the `ambit up --demo` summary). */
  get metrics (): ZtunnelMetrics { return this.context.metrics }

  /** undefined when ready to serve; else why not. */
  notReadyReason (): string | undefined {
    if (this.draining) return 'draining'
    if (!this.certificates.ready) return 'waiting for workload certificates'
    return undefined
  }

  async stop (): Promise<void> {
    this.draining = true
    for (const server of this.servers) server.close()
    await Promise.all([
      this.hbone?.close(this.options.drainMs ?? DEFAULT_DRAIN_MS),
      this.context.connections.drain(this.options.drainMs ?? DEFAULT_DRAIN_MS)
    ])
    this.follower.stop()
    this.certificates.stop()
    await this.context.pool.close()
    await this.capture?.uninstall()
    await this.admin?.close()
  }

  private async run (state: MeshState): Promise<void> {
    this.apply(state)
    const node = state.nodes[this.options.node]
    const host = this.options.listenAddress ?? node?.address
    if (host === undefined) throw new ConfigError(`node ${this.options.node} is not in the mesh state (no Node with an InternalIP); give --listen-address`)
    const ports = { ...DEFAULT_ZTUNNEL_PORTS, ...this.options.ports }
    await this.waitForCertificates()
    const inbound = new Inbound(this.context)
    const outbound = new Outbound(this.context, inbound)
    const captureHost = this.options.capture === true ? '0.0.0.0' : host
    this.hbone = await startHboneServer({
      host,
      port: ports.hbone,
      identityFor: (ip) => this.identityFor(ip),
      onStream: (request) => inbound.onHboneStream(request),
      ...(this.options.hboneLimits !== undefined && { limits: this.options.hboneLimits }),
      onTlsError: (reason, remote, detail) => {
        this.context.metrics.refused(tcpLabels({ reporter: 'destination', mtls: true, flags: TLS_FAILURE_FLAGS[reason] }))
        this.context.logger.info({ reason, remote, detail }, 'HBONE connection refused')
      },
      // A rapid-reset flood or a protocol error ends that session only; say why it ended.
      onSessionError: (reason, remote, detail) => this.context.logger.info({ reason, remote, detail }, 'HBONE session ended'),
      onStreamRefused: (r) => this.context.logger.debug({ status: r.status, reason: r.reason, peer: r.peerSpiffeId }, 'HBONE stream refused')
    })
    const outboundPort = await this.listen(captureHost, ports.outbound, (s) => outbound.onCaptured(s))
    const plaintextPort = await this.listen(captureHost, ports.inboundPlaintext, (s) => inbound.onPlaintext(s))
    const socksPort = await this.listen(host, ports.socks5, (s) => outbound.onSocks5(s))
    this.admin = await startAdmin({
      metrics: this.context.metrics.registry,
      notReadyReason: () => this.notReadyReason(),
      readinessDetail: () => ({ stale: this.follower.stale, revision: this.follower.revision }),
      documents: {
        config_dump: () => ({ node: this.options.node, revision: this.follower.revision, stale: this.follower.stale, state: this.current.state }),
        workloads: () => this.current.workloadsOnNode(this.options.node),
        certificates: () => this.certificates.status()
      }
    }, { host, adminHost: this.options.adminAddress ?? (isLoopback(host) ? host : '127.0.0.1'), ports })
    this.boundPorts = { ...ports, ...this.admin.ports, hbone: this.hbone.port, outbound: outboundPort, inboundPlaintext: plaintextPort, socks5: socksPort }
    if (this.options.capture === true) {
      this.capture = new CaptureRules({ outboundPort, inboundPort: plaintextPort, inboundExcludedPorts: [this.hbone.port] })
      await this.capture.install()
      await this.syncCapture()
    }
    this.follower.on('update', () => {
      const next = fromEntries(this.follower.entries)
      if (next !== undefined) this.apply(next)
      void this.syncCapture()
    })
    trackState(this.follower, this.context.metrics.state)
  }

  private apply (state: MeshState): void {
    this.current = new MeshRegistry(state, this.follower.revision)
    const local = this.current.workloadsOnNode(this.options.node)
    this.certificates.sync(local.map((w) => ({ namespace: w.namespace, serviceAccount: w.serviceAccount })))
    this.context.metrics.certificates.labels('wanted').set(new Set(local.map((w) => w.spiffeId)).size)
  }

  private async syncCapture (): Promise<void> {
    if (this.capture === undefined) return
    // Capture rules are IPv4 (iptables); an IPv6 pod must not stop the others' updates.
    const ips = new Set(this.current.workloadsOnNode(this.options.node).map((w) => w.ip).filter((ip) => !ip.includes(':')))
    try {
      await this.capture.syncPods(ips)
    } catch (err) {
      this.context.logger.error({ err: (err as Error).message }, 'cannot update capture rules')
    }
  }

  /** The certificate of the local workload at `ip`: what the HBONE server presents for it. */
  private identityFor (ip: string): ReturnType<WorkloadCertificates['get']> {
    const workload = this.current.workloadByIp(ip)
    if (workload === undefined || workload.node !== this.options.node) return undefined
    return this.certificates.get(workload.namespace, workload.serviceAccount)
  }

  private async waitForCertificates (): Promise<void> {
    if (this.certificates.ready) return
    const timeout = this.options.certificateWaitMs ?? 10_000
    await Promise.race([once(this.certificates, 'ready'), new Promise((resolve) => setTimeout(resolve, timeout).unref())])
  }

  private async listen (host: string, port: number, handler: (socket: net.Socket) => Promise<void>): Promise<number> {
    // noDelay: a proxy must not hold back a pod's small writes (Nagle); the HBONE side has it too.
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false, noDelay: true }, (socket) => {
      handler(socket).catch((err: Error) => {
        this.context.logger.error({ err: err.message }, 'connection handler failed')
        socket.destroy()
      })
    })
    server.on('error', (err) => this.context.logger.error({ err: err.message }, 'listener error'))
    // A node's pods open connections in bursts; Node's default backlog (511) drops SYNs early.
    server.listen({ port, host, backlog: LISTEN_BACKLOG })
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => { throw err })])
    this.servers.push(server)
    return (server.address() as net.AddressInfo).port
  }
}

/** Each TLS refusal on 15008 gets its own response flag, so they can be told apart. */
const TLS_FAILURE_FLAGS: Readonly<Record<TlsFailureReason, ResponseFlag>> = {
  'no-server-identity': ResponseFlags.noRoute,
  'handshake-timeout': ResponseFlags.tlsHandshakeFailure,
  'handshake-failed': ResponseFlags.tlsHandshakeFailure,
  'alpn-mismatch': ResponseFlags.protocolError,
  'no-client-certificate': ResponseFlags.tlsNoClientCertificate,
  'untrusted-client-certificate': ResponseFlags.tlsUntrustedCertificate,
  'no-spiffe-id': ResponseFlags.peerIdentityMismatch
}

function halfOpen (socket: net.Socket): net.Socket {
  socket.allowHalfOpen = true
  return socket
}

function isLoopback (host: string): boolean {
  return host.startsWith('127.') || host === '::1' || host === 'localhost'
}
