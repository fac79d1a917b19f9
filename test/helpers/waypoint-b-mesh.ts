/**
 * A local-mode mesh with waypoints, inside the test process, wired as `ambit up` wires it: the
 * control plane (controller and CA on a free port) over a MemoryStore loaded from a fixture
 * directory, one real Ztunnel per Node, and one real Waypoint per waypoint pod, each on its own
 * loopback address. Traffic takes the real path: client → ztunnel → waypoint → ztunnel → pod.
 * Every log record goes to `mesh.logs`.
 *
 *   const mesh = await startWaypointMesh(t, fixtureDir)
 *   mesh.socks('node-a')                 // { host, port: 15080 } of node-a's ztunnel
 *   mesh.waypoint('127.0.7.5').ports     // its metrics are on 127.0.7.5:15020
 */
import { pino, type Logger } from 'pino'
import { ControlPlane } from '../../control/control-plane.js'
import { MemoryStore } from '../../control/memory-store.js'
import { CaClient } from '../../policy/ca-client.js'
import { DEFAULT_ROOT_NAMESPACE, DEFAULT_TRUST_DOMAIN, type MeshState } from '../../policy/state.js'
import { Ztunnel } from '../../ztunnel/ztunnel.js'
import { Waypoint, type WaypointOptions } from '../../gateway/waypoint.js'
import type { LogRecord } from './local-mesh.js'
import { waitFor } from './wait.js'
import type { SocketAddress } from './socks5-client.js'
import type { Teardown } from './redis.js'

export interface WaypointMesh {
  readonly state: MeshState
  readonly logs: readonly LogRecord[]
  /** Where a node's ztunnel serves SOCKS5. */
  socks (node: string): SocketAddress
  /** The waypoint instance listening on `ip` (its pod's address). */
  waypoint (ip: string): Waypoint
  /** http://IP:15020/metrics of the waypoint instance on `ip`. */
  waypointMetricsUrl (ip: string): string
}

export interface WaypointMeshOptions {
  /** Extra options for every waypoint (e.g. lower HTTP limits for a slowloris test). */
  readonly waypoint?: Partial<Pick<WaypointOptions, 'httpLimits' | 'drainMs'>>
}

const TEST_DRAIN_MS = 2_000

export async function startWaypointMesh (t: Teardown, fixtureDir: string, options: WaypointMeshOptions = {}): Promise<WaypointMesh> {
  const logs: LogRecord[] = []
  const logger: Logger = pino({ level: 'info' }, { write: (line: string) => { logs.push(JSON.parse(line) as LogRecord) } })
  const store = new MemoryStore()
  const ztunnels: Ztunnel[] = []
  const waypoints = new Map<string, Waypoint>()
  const plane = await ControlPlane.start({
    store, files: [fixtureDir], trustDomain: DEFAULT_TRUST_DOMAIN, rootNamespace: DEFAULT_ROOT_NAMESPACE, logger, caPort: 0, watchFiles: false
  })
  t.teardown(async () => {
    await Promise.all([...ztunnels, ...waypoints.values()].map((proxy) => proxy.stop()))
    await plane.stop()
    await store.close()
  })
  const state = plane.controller.state!
  const caClient = (node: string): CaClient =>
    new CaClient({ url: plane.caServer.url, token: plane.nodeTokens.tokenFor(node), trustBundle: state.mesh.trustBundle })

  for (const node of Object.keys(state.nodes)) {
    ztunnels.push(await Ztunnel.start({ node, store, certificateSource: () => caClient(node), logger, capture: false, drainMs: TEST_DRAIN_MS }))
  }
  for (const wp of Object.values(state.waypoints)) {
    for (const instance of wp.instances) {
      waypoints.set(instance.ip, await Waypoint.start({
        name: wp.name,
        namespace: wp.namespace,
        store,
        listenAddress: instance.ip,
        certificateSource: () => caClient(instance.node),
        logger,
        drainMs: TEST_DRAIN_MS,
        ...options.waypoint
      }))
    }
  }
  // A waypoint whose certificate is slow to come listens anyway, unready: tests start once all are ready.
  await waitFor('every waypoint ready', () => [...waypoints.values()].every((w) => w.notReadyReason() === undefined), 20_000)

  const waypointOn = (ip: string): Waypoint => {
    const waypoint = waypoints.get(ip)
    if (waypoint === undefined) throw new Error(`no waypoint instance on ${ip}`)
    return waypoint
  }

  return {
    state,
    logs,
    socks (node) {
      const address = state.nodes[node]?.address
      if (address === undefined) throw new Error(`no node ${node} in the fixture`)
      return { host: address, port: 15080 }
    },
    waypoint: waypointOn,
    waypointMetricsUrl: (ip) => `http://${ip}:${waypointOn(ip).ports.metrics}/metrics`
  }
}
