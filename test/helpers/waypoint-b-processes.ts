/**
 * A mesh made of separate `ambit` processes sharing one Redis, as a cluster runs it: the
 * controller (`--store redis://… --credentials-dir DIR`, CA on a free port), one `ambit ztunnel
 * --no-capture` per node, and one `ambit waypoint` per waypoint pod, each listening on its pod's
 * address with its node's token. Resolves once every proxy answers ready; every process is
 * killed at teardown.
 *
 *   const mesh = await startProcessMesh(t, { fixture, store: redis.url, nodes: [{ name: 'node-a', address: '127.0.7.52' }],
 *     waypoint: { namespace: 'ns', name: 'waypoint', instances: [{ ip: '127.0.7.55', node: 'node-a' }] } })
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startCli, type LongRunning } from './cli.js'
import { waitFor } from './wait.js'
import type { Teardown } from './redis.js'

export interface WaypointInstance {
  /** The waypoint pod's address (HBONE, metrics and readiness listen there). */
  readonly ip: string
  /** The node the pod runs on: its token gets the waypoint's certificate. */
  readonly node: string
}

export interface ProcessMeshOptions {
  readonly fixture: string
  /** A redis:// URL: the state store, and the waypoints' rate-limit counters. */
  readonly store: string
  /** Nodes whose ztunnels to run; each listens on its InternalIP from the fixture, given here too. */
  readonly nodes: readonly { readonly name: string, readonly address: string }[]
  readonly waypoint: { readonly namespace: string, readonly name: string, readonly instances: readonly WaypointInstance[] }
}

export interface ProcessMesh {
  readonly caUrl: string
  readonly controller: LongRunning
  readonly ztunnels: readonly LongRunning[]
  readonly waypoints: readonly LongRunning[]
}

const START_TIMEOUT_MS = 45_000

export async function startProcessMesh (t: Teardown, options: ProcessMeshOptions): Promise<ProcessMesh> {
  const credentials = await mkdtemp(join(tmpdir(), 'ambit-wpb-credentials-'))
  t.teardown(() => rm(credentials, { recursive: true, force: true }))
  const controller = startCli(t, ['controller', '--store', options.store, '-f', options.fixture, '--ca-port', '0', '--status-port', '0', '--credentials-dir', credentials])
  const caUrl = /CA at (https:\/\/\S+)/.exec(await controller.waitFor(/CA at https:\/\/\S+/, START_TIMEOUT_MS))![1]!
  const common = ['--store', options.store, '--ca', caUrl]
  const tokenOf = (node: string): string[] => ['--token-file', join(credentials, `${node}.token`)]
  const ztunnels = options.nodes.map((node) => startCli(t, ['ztunnel', '--node', node.name, ...common, ...tokenOf(node.name), '--no-capture', '--drain-timeout', '1']))
  const { namespace, name, instances } = options.waypoint
  const waypoints = instances.map((instance) => startCli(t, [
    'waypoint', '--name', name, '--namespace', namespace, ...common, ...tokenOf(instance.node),
    '--listen-address', instance.ip, '--no-access-log', '--drain-timeout', '1'
  ]))
  await Promise.all([
    ...ztunnels.map((z) => z.waitFor(/ambit ztunnel: node/, START_TIMEOUT_MS)),
    ...waypoints.map((w) => w.waitFor(/ambit waypoint: .* serving HBONE/, START_TIMEOUT_MS))
  ])
  const readiness = [...options.nodes.map((node) => node.address), ...instances.map((i) => i.ip)]
  await Promise.all(readiness.map((address) => waitFor(`${address}:15021 ready`, async () => await isReady(address), START_TIMEOUT_MS)))
  return { caUrl, controller, ztunnels, waypoints }
}

async function isReady (address: string): Promise<boolean> {
  try {
    return (await fetch(`http://${address}:15021/healthz/ready`)).status === 200
  } catch {
    return false
  }
}
