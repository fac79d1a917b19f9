/**
 * bench/l4: what ambit's L4 path costs next to the usual mTLS TCP proxies, side by side in one
 * run. Two nodes and their pods are network namespaces (bench/l4/topology.ts), as in a small
 * cluster, and an HTTP server (nginx, one worker, `return 200`) is loaded with wrk from a pod:
 *
 *   direct   wrk (peer-client pod) → node-a → node-b → nginx (peer-server pod), routed only
 *   ambit    wrk (client pod) → Service ClusterIP, captured by iptables on node-a → ztunnel A
 *            ═HBONE mTLS═ ztunnel B (node-b) → nginx (server pod)
 *   haproxy  wrk (peer-client) → haproxy A (node-a) ═TLS 1.3 mTLS═ haproxy B (node-b) → nginx (peer-server)
 *   stunnel  wrk (peer-client) → stunnel A (node-a) ═TLS 1.3 mTLS═ stunnel B (node-b) → nginx (peer-server)
 *
 * ambit runs as in production: Redis and `ambit controller` (the CA) on node-a, one
 * `ambit ztunnel` process per node capturing its pods' traffic. The peer pairs' pods are outside
 * the mesh, so nothing of ambit touches their traffic. Each setup runs with 32 keep-alive
 * connections, with a new connection per request, and at a fixed rate (a pacing wrk Lua
 * script). CPU per request is utime + stime of the proxy processes over the run, from /proc,
 * divided by the requests wrk completed. Needs root (namespaces, iptables).
 *
 *   npm run build && node dist/bench/l4.js [--duration 10] [--rate 1000] [--only ambit,haproxy]
 *     [--modes keep-alive,close,rate] [--profile] [--verbose]
 */
import { existsSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { execFile } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { ProcessSet, cpuTimeOf, memoryOf, type Child, type CpuTime } from './l4/processes.js'
import { runWrk, writePacingScript, type WrkOptions } from './l4/wrk.js'
import { makeTlsFiles } from './l4/certificates.js'
import {
  haproxyClientConfig, haproxyServerConfig, hostPort, meshYaml, nginxConfig, stunnelClientConfig, stunnelServerConfig,
  type Address, type PairAddresses
} from './l4/configs.js'
import {
  fixedRateTable, goalsTable, memoryTable, throughputTable, formatCpu, formatMicros, type Measurement, type MemoryRow, type Mode, type Row, type Setup
} from './l4/report.js'
import { hotFiles, hotFunctions, readProfile } from './l4/profile.js'
import { cliNodeFlags } from './lib/node-flags.js'
import { NODE_IPS, POD_IPS, createTopology, destroyTopology, inNamespace, netns, type NamespaceName, type NodeName } from './l4/topology.js'

const run = promisify(execFile)

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    'rate-duration': { type: 'string', default: '10' },
    rate: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '32' },
    only: { type: 'string' },
    modes: { type: 'string' },
    profile: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false }
  }
})
const options = {
  durationSeconds: Number(values.duration),
  rateDurationSeconds: Number(values['rate-duration']),
  rate: Number(values.rate),
  connections: Number(values.connections),
  only: values.only?.split(',').map((s) => s.trim()),
  modes: values.modes?.split(',').map((s) => s.trim()),
  profile: values.profile === true,
  /** Print what each server and proxy wrote, at the end. */
  verbose: values.verbose === true
}

const HTTP_PORT = 8080
const MESH_SERVER: Address = { host: POD_IPS.server, port: HTTP_PORT }
const PEER_SERVER: Address = { host: POD_IPS['peer-server'], port: HTTP_PORT }
/** The mesh server's Service: routed nowhere, so only capture makes it work. */
const SERVICE: Address = { host: '10.96.77.10', port: 80 }
/** Redis runs in node-a's namespace, which is the bench's own: no other Redis can hold this port. */
const REDIS: Address = { host: NODE_IPS['node-a'], port: 16379 }
const READINESS_PORT = 15021
const HAPROXY: PairAddresses = { entry: { host: NODE_IPS['node-a'], port: 18100 }, tunnel: { host: NODE_IPS['node-b'], port: 18101 }, server: PEER_SERVER }
const STUNNEL: PairAddresses = { entry: { host: NODE_IPS['node-a'], port: 18200 }, tunnel: { host: NODE_IPS['node-b'], port: 18201 }, server: PEER_SERVER }

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url))
const STARTUP_TIMEOUT_MS = 30_000
const WARMUP_SECONDS = 2
/** Connections for the fixed-rate run: enough that a slow answer never holds a slot back. */
const FIXED_RATE_CONNECTIONS = 8

/** --modes keep-alive,close,rate picks among the three kinds of run. */
const MODE_FLAGS: Readonly<Record<Mode, string>> = { 'keep-alive': 'keep-alive', 'new connection per request': 'close', 'fixed rate': 'rate' }

interface RunningSetup extends Setup {
  readonly url: string
  /** The pod namespace wrk runs in. */
  readonly from: NamespaceName
  /** Whose CPU counts as the proxy's. */
  readonly proxies: readonly Child[]
}

interface Started {
  readonly setups: RunningSetup[]
  readonly ztunnels: readonly Child[]
  readonly memory: ReadonlyArray<{ readonly process: string, readonly children: readonly Child[] }>
}

async function startAll (dir: string, processes: ProcessSet): Promise<Started> {
  const tls = await makeTlsFiles(dir)
  const file = async (name: string, text: string): Promise<string> => {
    const path = join(dir, name)
    await writeFile(path, text)
    return path
  }
  const startIn = (ns: NamespaceName, name: string, command: string, args: readonly string[]): Child =>
    processes.start(name, ...inNamespace(ns, command, args))
  const startNginx = async (ns: NamespaceName, listen: Address): Promise<Child> => {
    const home = join(dir, ns)
    await mkdir(home)
    return startIn(ns, `nginx (${ns})`, 'nginx', ['-c', await file(`${ns}/nginx.conf`, nginxConfig(home, listen)), '-g', 'daemon off;'])
  }
  await mkdir(join(dir, 'mesh'))
  await file('mesh/bench.yaml', meshYaml({
    nodes: NODE_IPS,
    client: { node: 'node-a', ip: POD_IPS.client },
    server: { node: 'node-b', address: MESH_SERVER },
    service: SERVICE,
    outside: [{ name: 'peer-client', node: 'node-a', ip: POD_IPS['peer-client'] }, { name: 'peer-server', node: 'node-b', ip: POD_IPS['peer-server'] }]
  }))

  const meshNginx = await startNginx('server', MESH_SERVER)
  const peerNginx = await startNginx('peer-server', PEER_SERVER)
  const ztunnels = await startAmbit(dir, startIn)
  const haproxyA = startIn('node-a', 'haproxy A', 'haproxy', ['-db', '-f', await file('haproxy-a.cfg', haproxyClientConfig(HAPROXY, tls))])
  const haproxyB = startIn('node-b', 'haproxy B', 'haproxy', ['-db', '-f', await file('haproxy-b.cfg', haproxyServerConfig(HAPROXY, tls))])
  const stunnel = onPath('stunnel4') ?? 'stunnel'
  const stunnelA = startIn('node-a', 'stunnel A', stunnel, [await file('stunnel-a.conf', stunnelClientConfig(STUNNEL, tls))])
  const stunnelB = startIn('node-b', 'stunnel B', stunnel, [await file('stunnel-b.conf', stunnelServerConfig(STUNNEL, tls))])

  const url = (a: Address): string => `http://${hostPort(a)}/`
  const setups: RunningSetup[] = [
    { name: 'direct', path: 'wrk → nginx (routed through both nodes)', url: url(PEER_SERVER), from: 'peer-client', proxies: [] },
    { name: 'ambit', path: 'wrk → (capture) ztunnel ⇒ HBONE ⇒ ztunnel → nginx', url: url(SERVICE), from: 'client', proxies: ztunnels },
    { name: 'haproxy', path: 'wrk → haproxy ⇒ mTLS ⇒ haproxy → nginx', url: url(HAPROXY.entry), from: 'peer-client', proxies: [haproxyA, haproxyB] },
    { name: 'stunnel', path: 'wrk → stunnel ⇒ mTLS ⇒ stunnel → nginx', url: url(STUNNEL.entry), from: 'peer-client', proxies: [stunnelA, stunnelB] }
  ]
  for (const setup of setups) await waitForOk(setup, [meshNginx, peerNginx, ...setup.proxies])
  return {
    setups: setups.filter((s) => options.only === undefined || options.only.includes(s.name)),
    ztunnels,
    memory: [
      { process: 'ztunnel A + B (two processes)', children: ztunnels },
      { process: 'haproxy A + B', children: [haproxyA, haproxyB] },
      { process: 'stunnel A + B', children: [stunnelA, stunnelB] }
    ]
  }
}

/** Redis and `ambit controller` on node-a, then one capturing `ambit ztunnel` per node; resolves once both are ready. */
async function startAmbit (dir: string, startIn: (ns: NamespaceName, name: string, command: string, args: readonly string[]) => Child): Promise<Child[]> {
  const credentials = join(dir, 'credentials')
  const storeUrl = `redis://${hostPort(REDIS)}`
  const redis = startIn('node-a', 'redis', 'redis-server', ['--bind', REDIS.host, '--port', String(REDIS.port), '--save', '', '--appendonly', 'no', '--protected-mode', 'no'])
  await waitUntil('Redis to answer', async () => (await runIn('node-a', 'redis-cli', ['-h', REDIS.host, '-p', String(REDIS.port), 'ping'])).includes('PONG'), [redis])
  const flags = await cliNodeFlags(CLI)
  const controller = startIn('node-a', 'ambit controller', process.execPath, [...flags, CLI, 'controller', '--store', storeUrl, '-f', join(dir, 'mesh'),
    '--ca-address', NODE_IPS['node-a'], '--ca-port', '0', '--credentials-dir', credentials])
  const caPattern = /CA at (https:\/\/[^\s;]+)/
  await waitUntil('the controller to serve its CA', async () => caPattern.test(controller.output()), [controller])
  const caUrl = caPattern.exec(controller.output())![1]!
  const ztunnels = (Object.keys(NODE_IPS) as NodeName[]).map((node) => startIn(node, `ztunnel ${node}`, process.execPath, [
    ...flags,
    ...(options.profile ? ['--cpu-prof', '--cpu-prof-dir', join(dir, 'profile')] : []),
    CLI, 'ztunnel', '--node', node, '--store', storeUrl, '--ca', caUrl, '--token-file', join(credentials, `${node}.token`)]))
  await Promise.all((Object.keys(NODE_IPS) as NodeName[]).map(async (node, i) => await waitUntil(`the ztunnel of ${node} to be ready`,
    async () => (await runIn(node, 'curl', ['-sS', '-m', '2', `http://${NODE_IPS[node]}:${READINESS_PORT}/healthz/ready`])).includes('"ready": true'),
    [ztunnels[i]!, controller])))
  return ztunnels
}

/** Runs a command in a namespace; its stdout, or '' when it failed. */
async function runIn (ns: NamespaceName, command: string, args: readonly string[]): Promise<string> {
  try {
    return (await run(...inNamespace(ns, command, args), { timeout: 10_000 })).stdout
  } catch {
    return ''
  }
}

async function waitUntil (what: string, ready: () => Promise<boolean>, children: readonly Child[]): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS
  while (!(await ready())) {
    const said = children.map((c) => `--- ${c.name} said:\n${c.output()}`).join('\n')
    const exited = children.find((c) => c.hasExited())
    if (exited !== undefined) throw new Error(`${exited.name} exited while waiting for ${what}\n${said}`)
    if (Date.now() > deadline) throw new Error(`no ${what} after ${STARTUP_TIMEOUT_MS} ms\n${said}`)
    await sleep(200)
  }
}

/** Waits until the setup's URL answers `ok` from its client pod, all the way through. */
async function waitForOk (setup: RunningSetup, children: readonly Child[]): Promise<void> {
  await waitUntil(`${setup.name}: ${setup.url} to answer from ${setup.from}`,
    async () => (await runIn(setup.from, 'curl', ['-sS', '-m', '2', setup.url])) === 'ok', children)
}

/** One wrk run, with the CPU the setup's processes spent during it. */
async function measure (setup: RunningSetup, wrk: Omit<WrkOptions, 'url'>): Promise<Measurement> {
  const before = cpuOf(setup.proxies)
  const result = await runWrk({ ...wrk, url: setup.url, netns: netns(setup.from) })
  const perRequest = (after: CpuTime, start: CpuTime): CpuTime => ({
    userMicros: (after.userMicros - start.userMicros) / Math.max(1, result.requests),
    systemMicros: (after.systemMicros - start.systemMicros) / Math.max(1, result.requests)
  })
  return {
    wrk: result,
    ...(setup.proxies.length > 0 && { proxyCpu: perRequest(cpuOf(setup.proxies), before) })
  }
}

function cpuOf (children: readonly Child[]): CpuTime {
  return children.map((c) => cpuTimeOf(c.pid)).reduce(
    (sum, t) => ({ userMicros: sum.userMicros + t.userMicros, systemMicros: sum.systemMicros + t.systemMicros }),
    { userMicros: 0, systemMicros: 0 })
}

async function measureAll (setups: readonly RunningSetup[], dir: string): Promise<Row[]> {
  const rows: Row[] = []
  const closedLoop = { connections: options.connections, threads: 2, durationSeconds: options.durationSeconds }
  const runs: ReadonlyArray<{ mode: Mode, wrk: Omit<WrkOptions, 'url'>, warmup?: Omit<WrkOptions, 'url'> }> = [
    { mode: 'keep-alive', wrk: closedLoop, warmup: { ...closedLoop, durationSeconds: WARMUP_SECONDS } },
    {
      mode: 'new connection per request',
      wrk: { ...closedLoop, newConnectionPerRequest: true },
      warmup: { ...closedLoop, newConnectionPerRequest: true, durationSeconds: 1 }
    },
    {
      mode: 'fixed rate',
      wrk: { connections: FIXED_RATE_CONNECTIONS, threads: 1, durationSeconds: options.rateDurationSeconds, script: await writePacingScript(dir, options.rate) }
    }
  ]
  for (const run of runs.filter((r) => options.modes === undefined || options.modes.includes(MODE_FLAGS[r.mode]))) {
    for (const setup of setups) {
      if (run.warmup !== undefined) await runWrk({ ...run.warmup, url: setup.url, netns: netns(setup.from) })
      await sleep(500) // let the sockets of the previous run close
      const result = await measure(setup, run.wrk)
      rows.push({ setup, mode: run.mode, result })
      console.error(`  ${setup.name.padEnd(8)} ${run.mode.padEnd(27)} ${Math.round(result.wrk.requestsPerSecond).toString().padStart(7)} req/s  ` +
        `p99 ${formatMicros(result.wrk.p99Micros).padStart(9)}  proxy CPU/req ${formatCpu(result.proxyCpu).padStart(18)}  errors ${result.wrk.errors}`)
    }
  }
  return rows
}

async function main (): Promise<void> {
  const started = Date.now()
  // Other work on the machine takes CPU from every setup: the load average says how much.
  const loadBefore = loadavg()[0]!
  const dir = await mkdtemp(join(tmpdir(), 'ambit-bench-l4-'))
  const processes = new ProcessSet()
  process.once('exit', () => {
    processes.killAllNow()
    destroyTopology()
  })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130))
  try {
    console.error(`bench/l4: starting the namespaces, nginx, Redis, ambit controller and ztunnels, haproxy and stunnel (in ${dir})`)
    await createTopology()
    const { setups, ztunnels, memory } = await startAll(dir, processes)
    const idle = memory.map((m) => m.children.reduce((sum, c) => sum + memoryOf(c.pid).rssBytes, 0))
    const rows = await measureAll(setups, dir)
    const memoryRows: MemoryRow[] = memory.map((m, i) => ({
      process: m.process,
      idleRssBytes: idle[i]!,
      peakRssBytes: m.children.reduce((sum, c) => sum + memoryOf(c.pid).peakRssBytes, 0)
    }))
    const cpu = cpus()
    console.log(`\n## bench/l4\n\nMachine: ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}; Node.js ${process.version}; ` +
      `${new Date().toISOString().slice(0, 10)}. ${options.connections} connections, 2 wrk threads, ${options.durationSeconds} s per run; ` +
      `fixed rate ${options.rate} req/s for ${options.rateDurationSeconds} s over ${FIXED_RATE_CONNECTIONS} keep-alive connections. ` +
      `Load average (1 min) before: ${loadBefore.toFixed(2)}, after: ${loadavg()[0]!.toFixed(2)}.\n`)
    console.log(throughputTable(rows))
    console.log(`\nFixed rate (${options.rate} req/s):\n`)
    console.log(fixedRateTable(rows))
    console.log('\nMemory:\n')
    console.log(memoryTable(memoryRows))
    console.log('\nThe issue\'s floor and goals:\n')
    console.log(goalsTable(rows, options.rate))
    if (options.verbose) for (const child of processes.list()) console.error(`--- ${child.name} said:\n${child.output()}`)
    if (options.profile) await printProfiles(processes, ztunnels, dir)
    console.error(`bench/l4: done in ${Math.round((Date.now() - started) / 1000)} s`)
  } finally {
    await processes.stopAll()
    destroyTopology()
    await rm(dir, { recursive: true, force: true })
  }
}

/** Stops the ztunnels (V8 writes a profile as each exits) and prints where their time went. */
async function printProfiles (processes: ProcessSet, ztunnels: readonly Child[], dir: string): Promise<void> {
  await Promise.all(ztunnels.map(async (z) => await processes.stop(z, 20_000)))
  const profileDir = join(dir, 'profile')
  const names = (await readdir(profileDir)).filter((f) => f.endsWith('.cpuprofile'))
  if (names.length === 0) throw new Error('the ztunnels wrote no CPU profile')
  const share = (s: number): string => `${(s * 100).toFixed(1)}%`
  for (const [i, name] of names.entries()) {
    const kept = join(tmpdir(), `ambit-bench-l4-ztunnel-${i}.cpuprofile`)
    await copyFile(join(profileDir, name), kept)
    const profile = await readProfile(kept)
    console.log(`\nProfile of a ztunnel process (${kept}), self time as a share of busy time:\n`)
    console.log(hotFunctions(profile, 25).map((h) => `  ${share(h.selfShare).padStart(6)}  ${h.where}`).join('\n'))
    console.log('\nBy file:\n')
    console.log(hotFiles(profile, 15).map((h) => `  ${share(h.selfShare).padStart(6)}  ${h.where}`).join('\n'))
  }
}

/** Debian names the binary stunnel4, most other systems stunnel. */
function onPath (command: string): string | undefined {
  return (process.env.PATH ?? '').split(':').some((d) => existsSync(join(d, command))) ? command : undefined
}

await main()
