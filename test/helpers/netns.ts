/**
 * Throwaway network topologies for tests that need real routing and iptables: network
 * namespaces ("hosts") joined by veth pairs, with addresses, routes and forwarding. Needs root.
 *
 *   const topo = await createTopology(t, {
 *     namespaces: ['node', 'pod'],
 *     links: [{ a: { ns: 'node', address: '10.201.0.1/24' }, b: { ns: 'pod', address: '10.201.0.2/24' } }],
 *     routes: [{ ns: 'pod', to: 'default', via: '10.201.0.1' }],
 *     forwarding: ['node']
 *   })
 *   await topo.exec('pod', 'curl', ['-s', 'http://10.201.0.1:8080/'])
 *   const server = topo.spawnNode('node', fixturePath, ['15001'])  // a TS fixture, like the test
 *   await server.waitForOutput('ready')
 *
 * Names get a random per-topology suffix, so tests running in parallel never collide. Cleanup
 * (kill the processes started here, delete the namespaces, which deletes their veths) is
 * registered with t.teardown before anything is created, and runs again on process exit for a
 * test that dies first. Namespace names also carry the test process's pid, so namespaces left
 * by a killed test process are deleted by the next createTopology() call.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import type { Teardown } from './redis.js'

const COMMAND_TIMEOUT_MS = 30_000
const NAMESPACE_PREFIX = 'ambit-test'
const OUTPUT_KEPT = 64 * 1024

/** One end of a veth pair: the namespace it lives in and, optionally, its address in CIDR form. */
export interface LinkEnd {
  readonly ns: string
  readonly address?: string
}

export interface LinkSpec {
  readonly a: LinkEnd
  readonly b: LinkEnd
}

/** An extra address, on `lo` unless `dev` says otherwise (e.g. a pod address local to a node). */
export interface AddressSpec {
  readonly ns: string
  readonly address: string
  readonly dev?: string
}

/** `ip route add TO [via VIA] [dev DEV] [src SRC]` in a namespace. */
export interface RouteSpec {
  readonly ns: string
  readonly to: string
  readonly via?: string
  readonly dev?: string
  readonly src?: string
}

export interface TopologySpec {
  /** Logical names, used everywhere else in the spec and the Topology's methods. */
  readonly namespaces: readonly string[]
  readonly links?: readonly LinkSpec[]
  readonly addresses?: readonly AddressSpec[]
  readonly routes?: readonly RouteSpec[]
  /** Namespaces that route IPv4 and IPv6 between their interfaces (nodes). */
  readonly forwarding?: readonly string[]
}

export interface CommandResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export interface RunOptions {
  readonly input?: string
  readonly timeoutMs?: number
}

/** A process running inside a namespace, killed by the topology's cleanup. */
export interface NetnsProcess {
  readonly child: ChildProcess
  /** stdout and stderr so far (the last 64 KiB). */
  output (): string
  /** Resolves once `text` appears in the output; rejects if the process exits first or on timeout. */
  waitForOutput (text: string, timeoutMs?: number): Promise<void>
  /** SIGKILL, then waits for the exit. */
  stop (): Promise<void>
}

export interface Topology {
  /** The random part of every name in this topology. */
  readonly suffix: string
  /** The real namespace name for a logical one. */
  netns (ns: string): string
  /** The interface name of one end of links[index] (at most 15 characters). */
  linkName (index: number, side: 'a' | 'b'): string
  /** Runs a command inside a namespace; resolves whatever its exit code. */
  run (ns: string, command: string, args: readonly string[], options?: RunOptions): Promise<CommandResult>
  /** Like run(), but resolves with stdout and rejects (with stderr) on a non-zero exit. */
  exec (ns: string, command: string, args: readonly string[], options?: RunOptions): Promise<string>
  /** Starts a long-running command inside a namespace. */
  spawn (ns: string, command: string, args: readonly string[]): NetnsProcess
  /**
   * Starts a Node script inside a namespace with this process's execArgv: under tap those carry
   * its TypeScript loader, so the script may be a .ts fixture importing project modules.
   */
  spawnNode (ns: string, script: string, args?: readonly string[]): NetnsProcess
  /** Kills the processes and deletes the namespaces. Idempotent. */
  destroy (): Promise<void>
}

/** Namespaces and processes of every live topology, for the exit hook. */
const liveNamespaces = new Set<string>()
const liveProcesses = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of liveProcesses) child.kill('SIGKILL')
  for (const name of liveNamespaces) {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' })
    } catch {
      // already gone
    }
  }
})

export async function createTopology (t: Teardown | undefined, spec: TopologySpec): Promise<Topology> {
  if (process.getuid?.() !== 0) {
    throw new Error('network namespace tests must run as root (they create namespaces, veths and iptables rules)')
  }
  await pruneLeftovers()
  const topology = new NetnsTopology(randomBytes(3).toString('hex'), spec)
  t?.teardown(() => topology.destroy())
  try {
    await topology.build()
  } catch (err) {
    await topology.destroy()
    throw err
  }
  return topology
}

let pruned = false

/** Deletes the namespaces of test processes that no longer run (killed before their cleanup). */
async function pruneLeftovers (): Promise<void> {
  if (pruned) return
  pruned = true
  const listed = await runProcess('ip', ['netns', 'list'], {})
  for (const line of listed.stdout.split('\n')) {
    const name = line.split(' ')[0]
    const owner = new RegExp(`^${NAMESPACE_PREFIX}-(\\d+)-`).exec(name)
    if (owner !== null && !isRunning(Number(owner[1]))) await ip(['netns', 'del', name]).catch(() => {})
  }
}

export function isRunning (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

class NetnsTopology implements Topology {
  private readonly created: string[] = []
  private readonly processes = new Set<NetnsProcess>()

  constructor (readonly suffix: string, private readonly spec: TopologySpec) {}

  netns (ns: string): string {
    if (!this.spec.namespaces.includes(ns)) throw new Error(`namespace '${ns}' is not in this topology`)
    return `${NAMESPACE_PREFIX}-${process.pid}-${this.suffix}-${ns}`
  }

  linkName (index: number, side: 'a' | 'b'): string {
    return `v${this.suffix}${index}${side}`
  }

  async build (): Promise<void> {
    const { namespaces, links = [], addresses = [], routes = [], forwarding = [] } = this.spec
    for (const ns of namespaces) {
      const name = this.netns(ns)
      await ip(['netns', 'add', name])
      this.created.push(name)
      liveNamespaces.add(name)
      await ip(['-n', name, 'link', 'set', 'lo', 'up'])
    }
    for (const [index, link] of links.entries()) {
      const a = this.linkName(index, 'a')
      const b = this.linkName(index, 'b')
      // Both ends are created straight inside their namespaces: nothing appears in ours.
      await ip(['link', 'add', a, 'netns', this.netns(link.a.ns), 'type', 'veth', 'peer', 'name', b, 'netns', this.netns(link.b.ns)])
      await this.configureEnd(link.a, a)
      await this.configureEnd(link.b, b)
    }
    for (const { ns, address, dev = 'lo' } of addresses) await this.addAddress(ns, dev, address)
    for (const ns of forwarding) {
      await this.exec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1'])
    }
    for (const route of routes) {
      const family = (route.via ?? route.to).includes(':') ? ['-6'] : []
      await ip([...family, '-n', this.netns(route.ns), 'route', 'add', route.to,
        ...(route.via === undefined ? [] : ['via', route.via]),
        ...(route.dev === undefined ? [] : ['dev', route.dev]),
        ...(route.src === undefined ? [] : ['src', route.src])])
    }
  }

  run (ns: string, command: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    return runProcess('ip', ['netns', 'exec', this.netns(ns), command, ...args], options)
  }

  async exec (ns: string, command: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
    const result = await this.run(ns, command, args, options)
    if (result.code !== 0) {
      throw new Error(`in ${ns}: ${command} ${args.join(' ')} exited ${result.code}: ${result.stderr.trim()}`)
    }
    return result.stdout
  }

  spawn (ns: string, command: string, args: readonly string[]): NetnsProcess {
    const child = spawn('ip', ['netns', 'exec', this.netns(ns), command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    const running = watchProcess(child, `${command} in ${ns}`)
    liveProcesses.add(child)
    this.processes.add(running)
    child.once('exit', () => liveProcesses.delete(child))
    return running
  }

  spawnNode (ns: string, script: string, args: readonly string[] = []): NetnsProcess {
    return this.spawn(ns, process.execPath, [...process.execArgv, script, ...args])
  }

  async destroy (): Promise<void> {
    await Promise.all([...this.processes].map((p) => p.stop()))
    this.processes.clear()
    for (const name of this.created.splice(0)) {
      await ip(['netns', 'del', name]).catch(() => {})
      liveNamespaces.delete(name)
    }
  }

  private async configureEnd (end: LinkEnd, dev: string): Promise<void> {
    if (end.address !== undefined) await this.addAddress(end.ns, dev, end.address)
    await ip(['-n', this.netns(end.ns), 'link', 'set', dev, 'up'])
  }

  private async addAddress (ns: string, dev: string, address: string): Promise<void> {
    // nodad: an IPv6 address is usable at once instead of after duplicate detection.
    const ipv6 = address.includes(':') ? ['nodad'] : []
    await ip(['-n', this.netns(ns), 'addr', 'add', address, 'dev', dev, ...ipv6])
  }
}

async function ip (args: readonly string[]): Promise<void> {
  const result = await runProcess('ip', args, {})
  if (result.code !== 0) throw new Error(`ip ${args.join(' ')} exited ${result.code}: ${result.stderr.trim()}`)
}

function runProcess (command: string, args: readonly string[], options: RunOptions): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? COMMAND_TIMEOUT_MS)
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    child.stdin.on('error', () => {}) // a command that does not read its input
    child.stdin.end(options.input)
  })
}

function watchProcess (child: ChildProcess, label: string): NetnsProcess {
  let output = ''
  let exit: string | undefined
  const waiters = new Set<() => void>()
  const onOutput = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-OUTPUT_KEPT)
    for (const check of waiters) check()
  }
  child.stdout?.on('data', onOutput)
  child.stderr?.on('data', onOutput)
  const exited = new Promise<void>((resolve) => child.once('exit', (code, signal) => {
    exit = `exited (${code ?? signal})`
    for (const check of waiters) check()
    resolve()
  }))

  return {
    child,
    output: () => output,
    waitForOutput: (text, timeoutMs = COMMAND_TIMEOUT_MS) => new Promise((resolve, reject) => {
      const check = (): void => {
        if (output.includes(text)) finish()
        else if (exit !== undefined) finish(new Error(`${label} ${exit} before printing '${text}':\n${output}`))
      }
      const finish = (error?: Error): void => {
        clearTimeout(timer)
        waiters.delete(check)
        if (error === undefined) resolve()
        else reject(error)
      }
      const timer = setTimeout(() => finish(new Error(`${label} did not print '${text}' within ${timeoutMs} ms:\n${output}`)), timeoutMs)
      waiters.add(check)
      check()
    }),
    stop: async () => {
      if (exit === undefined) child.kill('SIGKILL')
      await exited
    }
  }
}
