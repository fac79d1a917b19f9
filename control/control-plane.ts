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
import { NodeTokens, startCaServer, type CaAuthorizer, type CaServer } from './ca-server.js'
import type { ResourceSource } from './resource-source.js'
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
  readonly caHost?: string
  /** Default 15012; 0 picks a free port. */
  readonly caPort?: number
  /** Where to write each node's token (mode 0600) and the root certificate, for ztunnels in other processes. */
  readonly credentialsDir?: string
  /** Shared with the ztunnels' processes so they derive the same tokens (random otherwise). */
  readonly nodeTokenSecret?: string
  readonly watchFiles?: boolean
  /** More origins of resources than the files and the applied ones (a Kubernetes API server). */
  readonly sources?: readonly ResourceSource[]
  /** Who a CA caller is (a TokenReview in a cluster); the local node tokens when absent. */
  readonly authenticateCaller?: CaAuthorizer['authenticate']
}

export class ControlPlane {
  private constructor (
    readonly controller: Controller,
    readonly ca: CertificateAuthority,
    readonly caServer: CaServer,
    readonly nodeTokens: NodeTokens,
    private readonly options: ControlPlaneOptions
  ) {}

  static async start (options: ControlPlaneOptions): Promise<ControlPlane> {
    const ca = options.caFiles === undefined
      ? await CertificateAuthority.create({ trustDomain: options.trustDomain })
      : await CertificateAuthority.load({ ...options.caFiles, trustDomain: options.trustDomain })
    const controller = new Controller({
      store: options.store,
      files: options.files,
      mesh: { trustDomain: options.trustDomain, rootNamespace: options.rootNamespace, trustBundle: ca.trustBundle },
      logger: options.logger.child({ component: 'controller' }),
      ...(options.watchFiles !== undefined && { watchFiles: options.watchFiles }),
      ...(options.sources !== undefined && { sources: options.sources })
    })
    await controller.start()
    const nodeTokens = new NodeTokens(options.nodeTokenSecret)
    const caServer = await startCaServer({
      ca,
      authorizer: {
        authenticate: options.authenticateCaller ?? ((token) => nodeTokens.authenticate(token)),
        mayIssue: (node, namespace, serviceAccount) => runsServiceAccount(controller.state, node, namespace, serviceAccount)
      },
      host: options.caHost ?? '127.0.0.1',
      port: options.caPort ?? 15012,
      logger: options.logger.child({ component: 'ca' })
    })
    const plane = new ControlPlane(controller, ca, caServer, nodeTokens, options)
    if (options.credentialsDir !== undefined) {
      await plane.writeCredentials(options.credentialsDir)
      controller.on('state', () => { void plane.writeCredentials(options.credentialsDir!) })
    }
    return plane
  }

  async stop (): Promise<void> {
    await this.caServer.close()
    await this.controller.stop()
  }

  /** ca-root.pem and NODE.token per node, for `ambit ztunnel --token-file` in another process. */
  private async writeCredentials (dir: string): Promise<void> {
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      await writeFile(join(dir, 'ca-root.pem'), this.ca.trustBundle.join(''))
      for (const node of Object.keys(this.controller.state?.nodes ?? {})) {
        const file = join(dir, `${node}.token`)
        await writeFile(file, this.nodeTokens.tokenFor(node), { mode: 0o600 })
        await chmod(file, 0o600)
      }
    } catch (err) {
      this.options.logger.error({ dir, err: (err as Error).message }, 'cannot write node credentials')
    }
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
