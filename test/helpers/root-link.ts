/**
 * A veth pair between the root network namespace (where this test process, Redis and the
 * controller run) and one namespace of a test topology: how processes inside the namespaces
 * reach services of the root namespace.
 *
 *   await linkToRoot(t, topo, 'node', { root: '10.250.7.1/30', peer: '10.250.7.2/30' })
 *   // in 'node': 10.250.7.1 answers; in the root namespace: 10.250.7.2 does
 *
 * Nothing else of the root namespace changes. Deleting the topology's namespace deletes the
 * peer end and with it the root end, so even a killed test leaves nothing behind; t.teardown
 * also deletes the root end explicitly.
 */
import { spawn } from 'node:child_process'
import type { Topology } from './netns.js'
import type { Teardown } from './redis.js'

export interface RootLinkAddresses {
  /** The root namespace's end, in CIDR form. */
  readonly root: string
  /** The topology namespace's end, in CIDR form. */
  readonly peer: string
}

let links = 0

/** Creates the pair, addresses both ends and brings them up; returns the root end's name. */
export async function linkToRoot (t: Teardown, topo: Topology, ns: string, addresses: RootLinkAddresses): Promise<string> {
  const index = links++
  // Interface names: at most 15 characters, unique per topology and per link.
  const rootEnd = `r${topo.suffix}${index}`
  const peerEnd = `p${topo.suffix}${index}`
  t.teardown(() => ip(['link', 'del', rootEnd]).catch(() => {}))
  await ip(['link', 'add', rootEnd, 'type', 'veth', 'peer', 'name', peerEnd, 'netns', topo.netns(ns)])
  await ip(['addr', 'add', addresses.root, 'dev', rootEnd])
  await ip(['link', 'set', rootEnd, 'up'])
  await ip(['-n', topo.netns(ns), 'addr', 'add', addresses.peer, 'dev', peerEnd])
  await ip(['-n', topo.netns(ns), 'link', 'set', peerEnd, 'up'])
  return rootEnd
}

function ip (args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', [...args], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    child.once('error', reject)
    child.once('close', (code) => {
      if (code === 0) resolve()
      else reject(new Error(`ip ${args.join(' ')} exited ${code}: ${stderr.trim()}`))
    })
  })
}
