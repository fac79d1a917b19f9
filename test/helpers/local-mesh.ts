/**
 * A local-mode mesh inside the test process, as `ambit up` wires it: the control plane
 * (controller and CA on a free port) over a MemoryStore loaded from a fixture directory, and
 * real Ztunnels for the chosen nodes, listening on their nodes' loopback addresses. Every log
 * record goes to `mesh.logs`, so a test can check what was logged and why.
 *
 *   const mesh = await startLocalMesh(t, fixtureDir, ['node-a', 'node-b'])
 *   mesh.nodeAddress('node-a')                       // its SOCKS5 is there on 15080
 *   const identity = await mesh.issue('node-a', 'demo', 'client')   // a real workload certificate
 */
import { pino, type Logger } from 'pino'
import { ControlPlane } from '../../control/control-plane.js'
import { MemoryStore } from '../../control/memory-store.js'
import { CaClient } from '../../policy/ca-client.js'
import type { TlsIdentity } from '../../policy/certs.js'
import { DEFAULT_ROOT_NAMESPACE, DEFAULT_TRUST_DOMAIN, type MeshState } from '../../policy/state.js'
import { Ztunnel, type ZtunnelOptions } from '../../ztunnel/ztunnel.js'
import type { Teardown } from './redis.js'

/** One pino record, parsed. */
export interface LogRecord {
  readonly level: number
  readonly msg: string
  readonly node?: string
  readonly [field: string]: unknown
}

export interface LocalMesh {
  readonly plane: ControlPlane
  /** The state the controller resolved from the fixture. */
  readonly state: MeshState
  readonly logs: readonly LogRecord[]
  readonly logger: Logger
  ztunnel (node: string): Ztunnel
  /** The node's InternalIP, where its ztunnel listens. */
  nodeAddress (node: string): string
  /** Starts (and tracks, for teardown) one more node's ztunnel; `overrides` replace the defaults. */
  startZtunnel (node: string, overrides?: Partial<ZtunnelOptions>): Promise<Ztunnel>
  /** The CA client a node's ztunnel uses (its node token, the mesh trust bundle). */
  caClient (node: string, url?: string): CaClient
  /** A certificate the mesh CA issues to `node` for namespace/serviceAccount. */
  issue (node: string, namespace: string, serviceAccount: string): Promise<TlsIdentity>
}

/** How long a test ztunnel's stop() waits for open connections before cutting them. */
const TEST_DRAIN_MS = 2_000

/** `defaults` apply to every ztunnel of the mesh (before startZtunnel's own overrides). */
export async function startLocalMesh (t: Teardown, fixtureDir: string, nodes: readonly string[], defaults: Partial<ZtunnelOptions> = {}): Promise<LocalMesh> {
  const logs: LogRecord[] = []
  const logger = pino({ level: 'info' }, { write: (line: string) => { logs.push(JSON.parse(line) as LogRecord) } })
  const store = new MemoryStore()
  const ztunnels = new Map<string, Ztunnel>()
  const started = await ControlPlane.start({
    store,
    files: [fixtureDir],
    trustDomain: DEFAULT_TRUST_DOMAIN,
    rootNamespace: DEFAULT_ROOT_NAMESPACE,
    logger,
    caPort: 0,
    watchFiles: false
  })
  t.teardown(async () => {
    await Promise.all([...ztunnels.values()].map((z) => z.stop()))
    await started.stop()
    await store.close()
  })
  const state = started.controller.state!

  const mesh: LocalMesh = {
    plane: started,
    state,
    logs,
    logger,
    ztunnel (node) {
      const ztunnel = ztunnels.get(node)
      if (ztunnel === undefined) throw new Error(`no ztunnel started for ${node}`)
      return ztunnel
    },
    nodeAddress (node) {
      const address = state.nodes[node]?.address
      if (address === undefined) throw new Error(`no node ${node} in the fixture`)
      return address
    },
    async startZtunnel (node, overrides = {}) {
      const ztunnel = await Ztunnel.start({
        node,
        store,
        certificateSource: () => mesh.caClient(node),
        logger,
        capture: false,
        drainMs: TEST_DRAIN_MS,
        ...defaults,
        ...overrides
      })
      ztunnels.set(node, ztunnel)
      return ztunnel
    },
    caClient (node, url = started.caServer.url) {
      return new CaClient({ url, token: started.nodeTokens.tokenFor(node), trustBundle: state.mesh.trustBundle })
    },
    issue (node, namespace, serviceAccount) {
      return mesh.caClient(node).requestCertificate(namespace, serviceAccount, state.mesh.trustDomain)
    }
  }
  for (const node of nodes) await mesh.startZtunnel(node)
  return mesh
}
