/**
 * A two-node mesh of real processes in network namespaces, as test/fixtures/netns-mesh/mesh.yaml
 * describes it: Redis and `ambit controller` in the root namespace, one `ambit ztunnel` (with
 * iptables capture) in each node's namespace, pods in namespaces of their own routed through
 * their node, and a real HTTP server in the server pod. Needs root.
 *
 *   root ns: Redis, controller (CA) on 10.250.R.1 ── node-a, and 10.250.R.5 ── node-b
 *   node-a 10.78.0.1 ── 10.78.0.2 node-b          (the node network: InternalIPs, HBONE)
 *   node-a: client 10.80.1.2, newcomer 10.80.1.6, outsider 10.80.1.10   (pods: 10.80.1.0/24)
 *   node-b: server 10.80.2.2, HTTP on 8080                              (pods: 10.80.2.0/24)
 *
 * Each pod has a veth to its node (a /30 of its own) and a default route through it; each node
 * forwards and routes the other node's pod subnet over the node network. Everything started here
 * is stopped by t.teardown; deleting the namespaces removes their veths and iptables rules.
 */
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startCli, runCli } from './cli.js'
import { CLI } from './mesh.js'
import { createTopology, type CommandResult, type NetnsProcess, type Topology } from './netns.js'
import { startRedis, type Teardown } from './redis.js'
import { linkToRoot } from './root-link.js'
import { waitFor } from './wait.js'

export const MESH_FIXTURES = fileURLToPath(new URL('../fixtures/netns-mesh/', import.meta.url))
const CAPTURE_LISTENER = fileURLToPath(new URL('../fixtures/capture-listener.ts', import.meta.url))

/** Addresses of mesh.yaml (and newcomer.yaml): keep both in step. */
export const NODE_IPS = { 'node-a': '10.78.0.1', 'node-b': '10.78.0.2' } as const
export const POD_IPS = { client: '10.80.1.2', newcomer: '10.80.1.6', outsider: '10.80.1.10', server: '10.80.2.2' } as const
export const SERVER_PORT = 8080
/** The echo Service's ClusterIP and port. */
export const SERVICE = { ip: '10.96.7.10', port: 80 } as const

export type NodeName = keyof typeof NODE_IPS
export type PodName = keyof typeof POD_IPS
export const NODES = Object.keys(NODE_IPS) as NodeName[]

const PODS: ReadonlyArray<{ pod: PodName, node: NodeName, nodeEnd: string, podEnd: string }> = [
  { pod: 'client', node: 'node-a', nodeEnd: '10.80.1.1/30', podEnd: '10.80.1.2/30' },
  { pod: 'newcomer', node: 'node-a', nodeEnd: '10.80.1.5/30', podEnd: '10.80.1.6/30' },
  { pod: 'outsider', node: 'node-a', nodeEnd: '10.80.1.9/30', podEnd: '10.80.1.10/30' },
  { pod: 'server', node: 'node-b', nodeEnd: '10.80.2.1/30', podEnd: '10.80.2.2/30' }
]

const STARTUP_TIMEOUT_MS = 30_000

export interface NatSaves {
  readonly nft: string
  readonly legacy: string
}

export interface NetnsMesh {
  readonly topo: Topology
  /** redis://… as the node namespaces reach it. */
  readonly storeUrl: string
  readonly ztunnels: Readonly<Record<NodeName, NetnsProcess>>
  /** `curl -sS URL` inside a namespace, giving up after `timeoutSeconds`. */
  curl (ns: PodName | NodeName, url: string, timeoutSeconds?: number): Promise<CommandResult>
  /** A node's ztunnel's /metrics, fetched from inside the node's namespace. */
  metrics (node: NodeName): Promise<string>
  /** `iptables-save -t nat` of both backends in a node's namespace. */
  natSaves (node: NodeName): Promise<NatSaves>
  /** `ambit apply -f FILE` (a file of MESH_FIXTURES) from the root namespace; rejects unless it exits 0. */
  apply (file: string): Promise<void>
  /** Sends SIGTERM to a node's ztunnel and resolves with its exit code. */
  terminate (node: NodeName): Promise<number | null>
  /** Everything the mesh's processes printed, for failure diagnostics. */
  logs (): string
}

export async function startNetnsMesh (t: Teardown): Promise<NetnsMesh> {
  const topo = await createTopology(t, {
    namespaces: [...NODES, ...PODS.map((p) => p.pod)],
    links: [
      { a: { ns: 'node-a', address: `${NODE_IPS['node-a']}/24` }, b: { ns: 'node-b', address: `${NODE_IPS['node-b']}/24` } },
      ...PODS.map((p) => ({ a: { ns: p.node, address: p.nodeEnd }, b: { ns: p.pod, address: p.podEnd } }))
    ],
    routes: [
      ...PODS.map((p) => ({ ns: p.pod, to: 'default', via: p.nodeEnd.split('/')[0] })),
      { ns: 'node-a', to: '10.80.2.0/24', via: NODE_IPS['node-b'] },
      { ns: 'node-b', to: '10.80.1.0/24', via: NODE_IPS['node-a'] }
    ],
    forwarding: [...NODES]
  })

  // The root namespace's address for Redis and the CA, in a /30 per node. Random, so that
  // two runs at once (or another test's addresses) do not collide in the shared root namespace.
  const subnet = `10.250.${Math.floor(Math.random() * 256)}`
  const rootAddress = `${subnet}.1`
  await linkToRoot(t, topo, 'node-a', { root: `${rootAddress}/30`, peer: `${subnet}.2/30` })
  await linkToRoot(t, topo, 'node-b', { root: `${subnet}.5/30`, peer: `${subnet}.6/30` })
  await topo.exec('node-b', 'ip', ['route', 'add', `${rootAddress}/32`, 'via', `${subnet}.5`])

  const redis = await startRedis(t, { args: ['--bind', '127.0.0.1', rootAddress, '--protected-mode', 'no'] })
  const storeUrl = `redis://${rootAddress}:${redis.port}`
  const credentials = await mkdtemp(join(tmpdir(), 'ambit-netns-mesh-'))
  t.teardown(() => rm(credentials, { recursive: true, force: true }))

  const controller = startCli(t, ['controller', '--store', storeUrl, '-f', join(MESH_FIXTURES, 'mesh.yaml'),
    '--ca-address', rootAddress, '--ca-port', '0', '--status-port', '0', '--credentials-dir', credentials])
  const started = await controller.waitFor(/CA at (https:\/\/\S+)/, STARTUP_TIMEOUT_MS)
  const caUrl = /CA at (https:\/\/\S+)/.exec(started)![1]!

  const server = topo.spawnNode('server', CAPTURE_LISTENER, [String(SERVER_PORT)])
  await server.waitForOutput('ready', STARTUP_TIMEOUT_MS)

  const startZtunnel = (node: NodeName): NetnsProcess => topo.spawn(node, process.execPath, [CLI, 'ztunnel',
    '--node', node, '--store', storeUrl, '--ca', caUrl, '--token-file', join(credentials, `${node}.token`),
    // Connections of the test are short; a SIGTERM need not wait the default 10 s for stragglers.
    '--drain-timeout', '3',
    // Refusals are logged at info, with their reason: what a failing test needs to show.
    '--log-level', 'info'])
  const ztunnels = { 'node-a': startZtunnel('node-a'), 'node-b': startZtunnel('node-b') }
  await Promise.all(NODES.map((node) => ztunnels[node].waitForOutput(`node ${node} serving`, STARTUP_TIMEOUT_MS)))

  const curl = (ns: PodName | NodeName, url: string, timeoutSeconds = 5): Promise<CommandResult> =>
    topo.run(ns, 'curl', ['-sS', '-m', String(timeoutSeconds), url])
  await Promise.all(NODES.map((node) => waitFor(`the ztunnel of ${node} to be ready`, async () =>
    (await curl(node, `http://${NODE_IPS[node]}:15021/healthz/ready`, 2)).stdout.includes('"ready": true'), STARTUP_TIMEOUT_MS)))

  return {
    topo,
    storeUrl,
    ztunnels,
    curl,
    async metrics (node) {
      return await topo.exec(node, 'curl', ['-sS', '-m', '5', `http://${NODE_IPS[node]}:15020/metrics`])
    },
    async natSaves (node) {
      const [nft, legacy] = await Promise.all([
        topo.exec(node, 'iptables-nft-save', ['-t', 'nat']),
        topo.exec(node, 'iptables-legacy-save', ['-t', 'nat'])
      ])
      return { nft, legacy }
    },
    async apply (file) {
      const result = await runCli(['apply', '-f', join(MESH_FIXTURES, file), '--store', storeUrl])
      if (result.code !== 0) throw new Error(`ambit apply -f ${file} exited ${result.code}: ${result.stderr}`)
    },
    async terminate (node) {
      const { child } = ztunnels[node]
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      const exited = once(child, 'exit') as Promise<[number | null]>
      child.kill('SIGTERM')
      const [code] = await exited
      return code
    },
    logs: () => [
      `--- controller\n${controller.output()}`,
      ...NODES.map((node) => `--- ztunnel ${node}\n${ztunnels[node].output()}`),
      `--- server\n${server.output()}`
    ].join('\n')
  }
}
