/**
 * The control plane of one mesh: the controller (resources → resolved state in the store) and
 * the CA with its signing server, wired together so that a node may only obtain certificates
 * for the service accounts of pods the current state schedules on it.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { Controller } from './controller.js'
import { CertificateAuthority } from './ca.js'
import { NodeTokens, startCaServer, type CaAuthorizer, type CaServer, type CaSigner } from './ca-server.js'
import type { ResourceSource } from './resource-source.js'
import { controllerMetrics } from './controller-metrics.js'
import { startStatusServer, type StatusServer } from './status-server.js'
import { Dashboard } from './dashboard.js'
import { IssuedCertificates } from './issued-certificates.js'
import { scrapeSourcesOf, type MetricsSource } from './metrics-sources.js'
import type { Store } from './store.js'
import type { MeshState } from '../policy/state.js'

export interface ControlPlaneOptions {
  readonly store: Store
  readonly files: readonly string[]
  readonly trustDomain: string
  readonly rootNamespace: string
  readonly logger: Logger
  /** Load the root from these files; generate a fresh one otherwise. */
  readonly caFiles?: { readonly certFile: string, readonly keyFile: string }
  /** Where the root comes from when there are no caFiles (a Kubernetes Secret in a cluster). */
  readonly caRoot?: () => Promise<CaRoot>
  readonly caHost?: string
  /** Default 15012; 0 picks a free port. */
  readonly caPort?: number
  /** More DNS names for the CA's serving certificate (its Service's names in a cluster). */
  readonly caServerNames?: readonly string[]
  /** Where to write each node's token (mode 0600) and the root certificate, for ztunnels in other processes. */
  readonly credentialsDir?: string
  /** Shared with the ztunnels' processes so they derive the same tokens (random otherwise). */
  readonly nodeTokenSecret?: string
  readonly watchFiles?: boolean
  /** More origins of resources than the files and the applied ones (a Kubernetes API server). */
  readonly sources?: readonly ResourceSource[]
  /** Who a CA caller is (a TokenReview in a cluster); the local node tokens when absent. */
  readonly authenticateCaller?: CaAuthorizer['authenticate']
  /** Serve /healthz/ready and /metrics there (15014 in a cluster; 0 picks a free port); none when absent. */
  readonly statusPort?: number
  /** Default 127.0.0.1. */
  readonly statusHost?: string
  /**
   * Where the dashboard reads the proxies' metrics, asked at every refresh: by default each
   * node's ztunnel and each waypoint instance of the state, scraped on port 15020.
   */
  readonly metricsSources?: () => readonly MetricsSource[]
}

/** The signing CA and more roots to trust alongside its own (while a root is being rotated). */
export interface CaRoot {
  readonly ca: CertificateAuthority
  readonly extraRoots: readonly string[]
}

export class ControlPlane {
  private constructor (
    readonly controller: Controller,
    readonly ca: CertificateAuthority,
    readonly caServer: CaServer,
    readonly nodeTokens: NodeTokens,
    /** The monitoring port, when statusPort was given and it could listen. */
    readonly statusServer: StatusServer | undefined,
    private readonly dashboard: Dashboard,
    private readonly options: ControlPlaneOptions
  ) {}

  static async start (options: ControlPlaneOptions): Promise<ControlPlane> {
    const root = await loadCaRoot(options)
    const trustBundle = trustBundleOf(root)
    const ca = root.ca
    const controller = new Controller({
      store: options.store,
      files: options.files,
      mesh: { trustDomain: options.trustDomain, rootNamespace: options.rootNamespace, trustBundle },
      logger: options.logger.child({ component: 'controller' }),
      ...(options.watchFiles !== undefined && { watchFiles: options.watchFiles }),
      ...(options.sources !== undefined && { sources: options.sources })
    })
    const certificates = new IssuedCertificates()
    const dashboard = dashboardOf(controller, certificates, options)
    // Before the first state, so that probes see "not ready" rather than a closed port meanwhile.
    const statusServer = await startStatus(controller, dashboard, options)
    try {
      await controller.start()
    } catch (err) {
      await statusServer?.close()
      throw err
    }
    if (statusServer !== undefined) dashboard.start()
    const nodeTokens = new NodeTokens(options.nodeTokenSecret)
    const caServer = await startCaServer({
      ca: withTrustBundle(ca, trustBundle),
      authorizer: {
        authenticate: options.authenticateCaller ?? ((token) => nodeTokens.authenticate(token)),
        mayIssue: (node, namespace, serviceAccount) => runsServiceAccount(controller.state, node, namespace, serviceAccount)
      },
      host: options.caHost ?? '127.0.0.1',
      port: options.caPort ?? 15012,
      ...(options.caServerNames !== undefined && { serverNames: options.caServerNames }),
      logger: options.logger.child({ component: 'ca' }),
      onIssued: (issued) => certificates.record(issued)
    })
    const plane = new ControlPlane(controller, ca, caServer, nodeTokens, statusServer, dashboard, options)
    if (options.credentialsDir !== undefined) {
      await plane.writeCredentials(options.credentialsDir)
      controller.on('state', () => { void plane.writeCredentials(options.credentialsDir!) })
    }
    return plane
  }

  async stop (): Promise<void> {
    await this.caServer.close()
    await this.controller.stop()
    this.dashboard.stop()
    await this.statusServer?.close()
  }

  /** What writeCredentials last wrote, so a state commit rewrites only what changed. */
  private readonly written = { bundle: '', nodes: new Set<string>() }

  /** ca-root.pem and NODE.token per node, for `ambit ztunnel --token-file` in another process. */
  private async writeCredentials (dir: string): Promise<void> {
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      const bundle = (this.controller.state?.mesh.trustBundle ?? this.ca.trustBundle).join('')
      if (bundle !== this.written.bundle) {
        await writeFile(join(dir, 'ca-root.pem'), bundle)
        this.written.bundle = bundle
      }
      for (const node of Object.keys(this.controller.state?.nodes ?? {})) {
        if (this.written.nodes.has(node)) continue
        const file = join(dir, `${node}.token`)
        await writeFile(file, this.nodeTokens.tokenFor(node), { mode: 0o600 })
        await chmod(file, 0o600)
        this.written.nodes.add(node)
      }
    } catch (err) {
      this.options.logger.error({ dir, err: (err as Error).message }, 'cannot write node credentials')
    }
  }
}

/**
 * The monitoring port. A port already in use is logged, not fatal: the control plane still
 * works, and in a cluster the failing readiness probe makes it visible.
 */
async function startStatus (controller: Controller, dashboard: Dashboard, options: ControlPlaneOptions): Promise<StatusServer | undefined> {
  if (options.statusPort === undefined) return undefined
  const host = options.statusHost ?? '127.0.0.1'
  try {
    const server = await startStatusServer({
      metrics: controllerMetrics(controller),
      notReadyReason: () => controller.state === undefined ? 'no mesh state committed yet' : undefined,
      host,
      port: options.statusPort,
      dashboard
    })
    options.logger.info({ url: server.url }, 'status server listening')
    return server
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
    options.logger.error({ host, port: options.statusPort }, 'status port in use; serving no health or metrics')
    return undefined
  }
}

/** The dashboard of this control plane's mesh, following the controller's commits. */
function dashboardOf (controller: Controller, certificates: IssuedCertificates, options: ControlPlaneOptions): Dashboard {
  let revision = 0
  controller.on('state', (_state: MeshState, committed: number) => { revision = committed })
  return new Dashboard({
    state: () => controller.state,
    revision: () => revision,
    sources: options.metricsSources ?? (() => scrapeSourcesOf(controller.state)),
    certificates,
    logger: options.logger.child({ component: 'dashboard' })
  })
}

async function loadCaRoot (options: ControlPlaneOptions): Promise<CaRoot> {
  const { trustDomain } = options
  // An operator's own files win over the cluster's Secret.
  if (options.caFiles !== undefined) return { ca: await CertificateAuthority.load({ ...options.caFiles, trustDomain }), extraRoots: [] }
  if (options.caRoot !== undefined) return await options.caRoot()
  return { ca: await CertificateAuthority.create({ trustDomain }), extraRoots: [] }
}

/** The roots every proxy trusts: the CA's own, then the extra ones, each once. */
export function trustBundleOf (root: CaRoot): string[] {
  const seen = new Set<string>()
  return [...root.ca.trustBundle, ...root.extraRoots].filter((pem) => {
    const normalized = pem.trim()
    if (seen.has(normalized)) return false
    seen.add(normalized)
    return true
  })
}

/** The CA as its server sees it, publishing the whole trust bundle rather than its own root only. */
function withTrustBundle (ca: CertificateAuthority, trustBundle: readonly string[]): CaSigner {
  return {
    trustDomain: ca.trustDomain,
    trustBundle,
    sign: (...args) => ca.sign(...args),
    issueServingCertificate: (...args) => ca.issueServingCertificate(...args)
  }
}

/** The CA's rule: a node gets certificates only for service accounts of pods scheduled on it. */
export function runsServiceAccount (state: MeshState | undefined, node: string, namespace: string, serviceAccount: string): boolean {
  if (state === undefined) return false
  const runsWorkload = Object.values(state.workloads).some((w) =>
    w.node === node && w.namespace === namespace && w.serviceAccount === serviceAccount)
  // A waypoint's identity is its Gateway's name; it may run on any node that hosts one of its instances.
  const runsWaypoint = Object.values(state.waypoints).some((wp) =>
    wp.namespace === namespace && wp.name === serviceAccount && wp.instances.some((i) => i.node === node))
  return runsWorkload || runsWaypoint
}
