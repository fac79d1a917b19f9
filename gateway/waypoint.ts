/**
 * One waypoint: terminates HBONE from ztunnels (accepting only mesh identities), runs the
 * inner HTTP/1.1 or HTTP/2 through fastify and the request pipeline, and forwards to the
 * chosen endpoint over HBONE with its own identity. Plain TCP ports pass through untouched.
 */
import type http from 'node:http'
import type http2 from 'node:http2'
import type { Duplex } from 'node:stream'
import { once } from 'node:events'
import type { Logger } from 'pino'
import Fastify, { type FastifyInstance } from 'fastify'
import replyFrom from '@fastify/reply-from'
import type { Redis, Cluster } from 'ioredis'
import type { Store } from '../control/store.js'
import { StateFollower, firstMeshState } from '../control/follower.js'
import { fromEntries } from '../policy/entries.js'
import { MeshRegistry } from '../policy/registry.js'
import type { MeshState, ServiceState } from '../policy/state.js'
import { ConfigError } from '../policy/errors.js'
import { WorkloadCertificates, type CertificateSource } from '../proxy/certificates.js'
import { HbonePool } from '../proxy/pool.js'
import { DEFAULT_DRAIN_MS, startHboneServer, type HboneRequest, type HboneServer } from '../proxy/hbone-server.js'
import { pipeBidirectional } from '../proxy/pipe.js'
import { connectTcp } from '../proxy/connect.js'
import { trackState } from '../proxy/state-metrics.js'
import { startAdmin, DEFAULT_ADMIN_PORTS, type AdminPorts, type AdminServers } from '../proxy/admin.js'
import { HTTP_LIMITS, HttpIngress, type HttpLimits, type TunnelContext } from './http-ingress.js'
import { RequestPipeline, type AccessLog } from './pipeline.js'
import { passUpgrade } from './upgrade.js'
import { ServiceRuntimes } from './service-runtime.js'
import { WaypointMetrics } from './metrics.js'
import { Http2Sessions, UpstreamPools, type TunnelOpener } from './upstream.js'

/** How long start() waits for the waypoint's certificate before listening anyway (unready). */
const CERTIFICATE_WAIT_MS = 10_000

export interface WaypointPorts extends AdminPorts {
  readonly hbone: number
}

export interface WaypointOptions {
  readonly name: string
  readonly namespace: string
  readonly store: Store
  readonly certificateSource: (trustBundle: readonly string[]) => CertificateSource
  readonly logger: Logger
  /** One JSON line per request (off when undefined). */
  readonly accessLog?: AccessLog
  /** Where HBONE listens; default: the waypoint's only instance address in the mesh state. */
  readonly listenAddress?: string
  readonly adminAddress?: string
  readonly ports?: Partial<WaypointPorts>
  /** Shared counters for global rate limits (without it, global limits are not enforced). */
  readonly redis?: Redis | Cluster
  readonly drainMs?: number
  /** Overrides of the inner HTTP servers' limits (HTTP_LIMITS), e.g. a shorter headers timeout. */
  readonly httpLimits?: Partial<HttpLimits>
}

export class Waypoint {
  private current!: MeshRegistry
  private hbone: HboneServer | undefined
  private admin: AdminServers | undefined
  private apps: FastifyInstance[] = []
  private draining = false
  private readonly pool = new HbonePool()
  /** Its HTTP metrics; read in-process by `ambit up`'s dashboard. */
  readonly metrics: WaypointMetrics
  private readonly ingress: HttpIngress
  private readonly h2: Http2Sessions
  private readonly upstream: UpstreamPools
  private readonly pipeline: RequestPipeline
  private readonly runtimes: ServiceRuntimes
  private boundPorts: WaypointPorts = { ...DEFAULT_ADMIN_PORTS, hbone: 15008 }

  private constructor (
    private readonly options: WaypointOptions,
    private readonly follower: StateFollower,
    private readonly certificates: WorkloadCertificates
  ) {
    this.metrics = new WaypointMetrics(`${options.namespace}/${options.name}`)
    const open: TunnelOpener = (ip, port) => this.openTunnel(ip, port)
    this.h2 = new Http2Sessions(open)
    this.upstream = new UpstreamPools(open)
    this.runtimes = new ServiceRuntimes({
      pools: this.upstream,
      waypoint: { namespace: options.namespace, name: options.name },
      ...(options.redis !== undefined && { redis: options.redis }),
      onRateLimitFailOpen: (service) => this.metrics.rateLimitFailOpen.inc({ destination_service: service })
    })
    this.ingress = new HttpIngress((req, res) => this.handlers.http1?.(req, res), (req, res) => this.handlers.http2?.(req, res), { ...HTTP_LIMITS, ...options.httpLimits })
    this.ingress.http1.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      void passUpgrade({ registry: () => this.current, runtimes: this.runtimes, ingress: this.ingress, open, ruleHits: this.metrics.ruleHits }, request, socket, head)
    })
    this.pipeline = new RequestPipeline({
      registry: () => this.current,
      runtimes: this.runtimes,
      ingress: this.ingress,
      h2: this.h2,
      upstream: this.upstream,
      metrics: this.metrics,
      ...(options.accessLog !== undefined && { accessLog: options.accessLog })
    })
  }

  /** fastify's request handlers, captured by serverFactory; HttpIngress calls them. */
  private readonly handlers: {
    http1?: (req: http.IncomingMessage, res: http.ServerResponse) => void
    http2?: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void
  } = {}

  static async start (options: WaypointOptions): Promise<Waypoint> {
    const logger = options.logger.child({ waypoint: `${options.namespace}/${options.name}` })
    const follower = new StateFollower(options.store, 'state')
    await follower.start()
    const state = await firstMeshState(follower)
    const certificates = new WorkloadCertificates(options.certificateSource(state.mesh.trustBundle), state.mesh.trustDomain, logger)
    const waypoint = new Waypoint({ ...options, logger }, follower, certificates)
    await waypoint.run(state)
    return waypoint
  }

  get ports (): WaypointPorts { return this.boundPorts }

  /**
   * Serves one plain-TCP HTTP connection through the same fastify pipeline as an HBONE tunnel,
   * as if it had arrived from `context`. Production traffic always comes over HBONE; this is
   * for benchmarks and tests that measure the L7 pipeline without mTLS in front of it.
   */
  acceptPlainHttp (connection: Duplex, context: TunnelContext): void {
    this.ingress.accept(connection, context)
  }

  notReadyReason (): string | undefined {
    if (this.draining) return 'draining'
    if (!this.certificates.ready) return 'waiting for the waypoint certificate'
    return undefined
  }

  async stop (): Promise<void> {
    this.draining = true
    await this.hbone?.close(this.options.drainMs ?? DEFAULT_DRAIN_MS)
    this.ingress.close()
    await Promise.all(this.apps.map((a) => a.close()))
    this.follower.stop()
    this.certificates.stop()
    this.h2.close()
    await this.upstream.destroy()
    await this.pool.close()
    await this.admin?.close()
  }

  private async run (state: MeshState): Promise<void> {
    this.apply(state)
    const self = this.current.waypoint(this.options.namespace, this.options.name)
    if (self === undefined) throw new ConfigError(`no Gateway ${this.options.namespace}/${this.options.name} of class ambit-waypoint in the mesh state`)
    const host = this.options.listenAddress ?? (self.instances.length === 1 ? self.instances[0]!.ip : undefined)
    if (host === undefined) throw new ConfigError(`waypoint ${this.options.namespace}/${this.options.name} has ${self.instances.length} instances; give --listen-address`)
    this.apps = [await this.buildApp(false), await this.buildApp(true)]
    await this.waitForCertificate()
    const ports = { ...this.boundPorts, ...this.options.ports }
    this.hbone = await startHboneServer({
      host,
      port: ports.hbone,
      identityFor: () => this.certificates.get(this.options.namespace, this.options.name),
      onStream: (request) => this.onStream(request),
      onTlsError: (reason, remote, detail) => this.options.logger.info({ reason, remote, detail }, 'HBONE connection refused')
    })
    this.admin = await startAdmin({
      metrics: this.metrics.registry,
      notReadyReason: () => this.notReadyReason(),
      readinessDetail: () => ({ stale: this.follower.stale, revision: this.follower.revision }),
      documents: {
        config_dump: () => ({ waypoint: `${this.options.namespace}/${this.options.name}`, revision: this.follower.revision, services: this.servedServices() }),
        certificates: () => this.certificates.status()
      }
    }, { host, adminHost: this.options.adminAddress ?? (host.startsWith('127.') ? host : '127.0.0.1'), ports })
    this.boundPorts = { ...this.admin.ports, hbone: this.hbone.port }
    this.follower.on('update', () => {
      const next = fromEntries(this.follower.entries)
      if (next !== undefined) this.apply(next)
    })
    trackState(this.follower, this.metrics.state)
  }

  /**
   * As the ztunnel does: HBONE listens once the waypoint's certificate is there (or, after a
   * while, without it and unready), so the first callers are not refused for want of one.
   */
  private async waitForCertificate (): Promise<void> {
    if (this.certificates.ready) return
    await Promise.race([once(this.certificates, 'ready'), new Promise((resolve) => setTimeout(resolve, CERTIFICATE_WAIT_MS).unref())])
  }

  private apply (state: MeshState): void {
    this.current = new MeshRegistry(state, this.follower.revision)
    this.certificates.sync([{ namespace: this.options.namespace, serviceAccount: this.options.name }])
  }

  private servedServices (): string[] {
    return Object.values(this.current.state.services).filter((s) => this.serves(s)).map((s) => s.key)
  }

  private serves (service: ServiceState): boolean {
    return service.waypoint?.namespace === this.options.namespace && service.waypoint.name === this.options.name
  }

  /** A CONNECT to a Service VIP:port this waypoint serves. */
  private async onStream (request: HboneRequest): Promise<void> {
    const service = this.current.serviceByVip(request.destination.ip)
    const port = service?.ports.find((p) => p.port === request.destination.port)
    if (service === undefined || port === undefined || !this.serves(service)) {
      request.refuse(404, `this waypoint does not serve ${request.destination.ip}:${request.destination.port}`)
      return
    }
    const context: TunnelContext = { peerSpiffeId: request.peerSpiffeId, sourceIp: request.headers.forwardedFor ?? request.remoteAddress, service, port }
    if (port.appProtocol === 'tcp') {
      await this.passThrough(request, service, port.port)
      return
    }
    this.ingress.accept(request.accept(), context)
  }

  /** TCP ports are not HTTP: pick an endpoint and copy bytes, untouched. */
  private async passThrough (request: HboneRequest, service: ServiceState, port: number): Promise<void> {
    const endpoints = service.endpoints.filter((e) => e.ports[String(port)] !== undefined)
    const endpoint = endpoints[Math.floor(Math.random() * endpoints.length)]
    if (endpoint === undefined) {
      request.refuse(503, `${service.key} has no endpoint for port ${port}`)
      return
    }
    let upstream: Duplex
    try {
      upstream = await this.openTunnel(endpoint.ip, endpoint.ports[String(port)]!)
    } catch (err) {
      request.refuse(503, `cannot reach ${endpoint.ip}: ${(err as Error).message}`)
      return
    }
    void pipeBidirectional(request.accept(), upstream)
  }

  /** To a pod: HBONE to its node's ztunnel with the waypoint's identity, or plain TCP outside the mesh. */
  private async openTunnel (ip: string, port: number): Promise<Duplex> {
    const workload = this.current.workloadByIp(ip)
    const identity = this.certificates.get(this.options.namespace, this.options.name)
    const node = workload === undefined ? undefined : this.current.state.nodes[workload.node]
    if (workload === undefined || node === undefined) return await connectTcp(ip, port)
    if (identity === undefined) throw new Error('the waypoint has no certificate yet')
    return await this.pool.open({ sourceIdentity: identity, expectedPeer: workload.spiffeId, address: node.address, destination: { ip, port } })
  }

  private async buildApp (useHttp2: boolean): Promise<FastifyInstance> {
    const app = Fastify({
      // fastify's types tie serverFactory's shape to `http2`; one function serves both here.
      http2: useHttp2 as false,
      serverFactory: (handler) => {
        // The server never listens: HttpIngress hands it connections.
        if (useHttp2) this.handlers.http2 = handler as unknown as NonNullable<typeof this.handlers.http2>
        else this.handlers.http1 = handler
        return (useHttp2 ? this.ingress.http2 : this.ingress.http1) as unknown as http.Server
      },
      logger: false,
      bodyLimit: 64 * 1024 * 1024,
      return503OnClosing: true
    })
    // Bodies are streamed to the backend as they are, never parsed.
    app.removeAllContentTypeParsers()
    app.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
    // Upstreams are plain http inside tunnels, through undici (as reply-from's default for http://).
    // fastify's logger is off here; reply-from would still build two log records per request.
    await app.register(replyFrom, { undici: this.upstream, disableRequestLogging: true })
    // The handler returns nothing, so fastify leaves the answer to whoever sends it later
    // (reply-from or the pipeline). Returning the reply (or a promise of it) would have fastify
    // wait on it, adding end-of-stream listeners to every response. A failure in the pipeline
    // still becomes fastify's error answer, as a rejected handler's would.
    app.all('/*', (request, reply) => {
      this.pipeline.handle(request, reply).catch((err: unknown) => reply.send(err))
    })
    await app.ready()
    return app
  }
}

