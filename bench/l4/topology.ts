/**
 * The bench's network: network namespaces for two nodes and their pods, joined by veth pairs,
 * as a small cluster would be. Needs root.
 *
 *   client      10.81.1.2 ─┐                                 ┌─ server      10.81.2.2 (mesh)
 *   peer-client 10.81.1.6 ─┴ node-a 10.77.0.1 ── 10.77.0.2 node-b ┴─ peer-server 10.81.2.6
 *
 * Each pod has a veth to its node (a /30 of its own) and a default route through it; each node
 * forwards, and routes the other node's pod subnet over the node link. `client` and `server`
 * are in the mesh (their node's ztunnel captures them); `peer-client` and `peer-server` are not,
 * and carry the direct, haproxy and stunnel runs over the same hops. Namespace names carry this
 * process's pid, so a run that was killed before its cleanup is cleaned up by the next one.
 */
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)
const PREFIX = 'ambit-l4'

export const NODE_IPS = { 'node-a': '10.77.0.1', 'node-b': '10.77.0.2' } as const
export type NodeName = keyof typeof NODE_IPS

interface PodSpec {
  readonly node: NodeName
  /** The node's end of the pod's veth, and the pod's, both in a /30. */
  readonly nodeEnd: string
  readonly podEnd: string
}

const PODS = {
  client: { node: 'node-a', nodeEnd: '10.81.1.1', podEnd: '10.81.1.2' },
  'peer-client': { node: 'node-a', nodeEnd: '10.81.1.5', podEnd: '10.81.1.6' },
  server: { node: 'node-b', nodeEnd: '10.81.2.1', podEnd: '10.81.2.2' },
  'peer-server': { node: 'node-b', nodeEnd: '10.81.2.5', podEnd: '10.81.2.6' }
} as const satisfies Record<string, PodSpec>
export type PodName = keyof typeof PODS
export type NamespaceName = NodeName | PodName

export const POD_IPS: Readonly<Record<PodName, string>> = Object.fromEntries(
  Object.entries(PODS).map(([pod, spec]) => [pod, spec.podEnd])) as Record<PodName, string>

/** The real namespace name of a node or pod of this run. */
export const netns = (name: NamespaceName): string => `${PREFIX}-${process.pid}-${name}`

/** `ip netns exec NS command args…`, as an argv: ip execs the command, which keeps ip's pid. */
export const inNamespace = (name: NamespaceName, command: string, args: readonly string[]): [string, string[]] =>
  ['ip', ['netns', 'exec', netns(name), command, ...args]]

export async function createTopology (): Promise<void> {
  await pruneLeftovers()
  const names = [...Object.keys(NODE_IPS), ...Object.keys(PODS)] as NamespaceName[]
  for (const name of names) {
    await ip(['netns', 'add', netns(name)])
    await ip(['-n', netns(name), 'link', 'set', 'lo', 'up'])
  }
  let index = 0
  const link = async (a: NamespaceName, aAddress: string, b: NamespaceName, bAddress: string): Promise<void> => {
    // At most 15 characters, unique per run; both ends are created straight in their namespaces.
    const end = (side: string): string => `l4${process.pid % 1e6}${index}${side}`
    await ip(['link', 'add', end('a'), 'netns', netns(a), 'type', 'veth', 'peer', 'name', end('b'), 'netns', netns(b)])
    for (const [ns, dev, address] of [[a, end('a'), aAddress], [b, end('b'), bAddress]] as const) {
      await ip(['-n', netns(ns), 'addr', 'add', address, 'dev', dev])
      await ip(['-n', netns(ns), 'link', 'set', dev, 'up'])
    }
    index++
  }
  await link('node-a', `${NODE_IPS['node-a']}/24`, 'node-b', `${NODE_IPS['node-b']}/24`)
  for (const [pod, spec] of Object.entries(PODS) as Array<[PodName, PodSpec]>) {
    await link(spec.node, `${spec.nodeEnd}/30`, pod, `${spec.podEnd}/30`)
    await ip(['-n', netns(pod), 'route', 'add', 'default', 'via', spec.nodeEnd])
  }
  await ip(['-n', netns('node-a'), 'route', 'add', '10.81.2.0/24', 'via', NODE_IPS['node-b']])
  await ip(['-n', netns('node-b'), 'route', 'add', '10.81.1.0/24', 'via', NODE_IPS['node-a']])
  for (const node of Object.keys(NODE_IPS) as NodeName[]) {
    await run(...inNamespace(node, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']))
  }
}

/** Deletes this run's namespaces, and with them their veths and iptables rules. Synchronous, for exit hooks. */
export function destroyTopology (): void {
  for (const name of [...Object.keys(NODE_IPS), ...Object.keys(PODS)] as NamespaceName[]) {
    try {
      execFileSync('ip', ['netns', 'del', netns(name)], { stdio: 'ignore' })
    } catch {
      // not created, or already gone
    }
  }
}

/** Namespaces of bench runs whose process no longer exists. */
async function pruneLeftovers (): Promise<void> {
  const { stdout } = await run('ip', ['netns', 'list'])
  for (const line of stdout.split('\n')) {
    const name = line.split(' ')[0] ?? ''
    const owner = new RegExp(`^${PREFIX}-(\\d+)-`).exec(name)
    if (owner !== null && !isRunning(Number(owner[1]))) await ip(['netns', 'del', name]).catch(() => {})
  }
}

function isRunning (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function ip (args: readonly string[]): Promise<void> {
  await run('ip', [...args])
}
