/**
 * bench/l7: what ambit's L7 path (the waypoint) costs next to the usual HTTP reverse proxies,
 * side by side in one run on loopback. An HTTP server (nginx, one worker, `return 200`) is
 * loaded by wrk, 32 keep-alive connections, through:
 *
 *   direct    wrk → nginx
 *   nginx     wrk → nginx as a reverse proxy → nginx
 *   haproxy   wrk → haproxy (mode http) → nginx
 *   fastify   wrk → bare fastify + @fastify/http-proxy → nginx   (the floor)
 *   waypoint  wrk → the waypoint's fastify pipeline, plain HTTP, one HTTPRoute, metrics and
 *             access log on → nginx   (bench/l7/waypoint-alone.ts)
 *   ambit L7  wrk → bridge → SOCKS5 → ztunnel A ═HBONE═ waypoint ═HBONE═ ztunnel B → nginx
 *             (`ambit up --access-log`: both ztunnels and the waypoint in one process)
 *
 * wrk cannot speak SOCKS5, hence a SOCKS5 bridge (bench/lib/socks-bridge.ts) in front of ambit;
 * its CPU is reported apart.
 * CPU per request is utime + stime of the proxy processes over the run, from /proc, divided by
 * the requests wrk completed. Every Node process runs with the ambit CLI's node flags
 * (--no-memory-reducer, see cli/main.ts). --profile runs the waypoint processes under `node --cpu-prof` and
 * prints where their time goes.
 *
 * With --rounds N the setups are measured in turn N times and each row is its setup's median
 * round by req/s: on a shared machine one round's figures move by ±10%, more than the
 * differences the floor is about.
 *
 *   npm run build && node dist/bench/l7.js [--duration 10] [--rounds 3] [--only waypoint,ambit L7] [--profile]
 */
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { ProcessSet, cpuTimeOf, memoryOf, waitForTcp, type Child, type CpuTime } from './l4/processes.js'
import { runWrk } from './l4/wrk.js'
import { hostPort, nginxConfig, type Address } from './l4/configs.js'
import { hotFiles, hotFunctions, readProfile } from './l4/profile.js'
import { formatCpu, formatMicros, totalMicros } from './l4/report.js'
import { waitForAnswer } from './lib/http-checks.js'
import { cliNodeFlags } from './lib/node-flags.js'
import { haproxyHttpConfig, l7MeshYaml, nginxProxyConfig, SERVICE_PORT } from './l7/configs.js'
import { throughputTable, verdictTable, type L7Row } from './l7/report.js'

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    only: { type: 'string' },
    rounds: { type: 'string', default: '1' },
    profile: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false }
  }
})
const options = {
  durationSeconds: Number(values.duration),
  connections: Number(values.connections),
  only: values.only?.split(',').map((s) => s.trim()),
  /** Every setup is measured this many times, in turn; each row is its setup's median round. */
  rounds: Math.max(1, Number(values.rounds)),
  profile: values.profile === true,
  /** Print what each server and proxy wrote, at the end. */
  verbose: values.verbose === true
}

// Loopback /24s of our own (bench/l4 has 127.0.77), so nothing else on the machine collides.
const NET = '127.0.79'
const ALONE_NET = '127.0.80'
const SERVER: Address = { host: `${NET}.21`, port: 18080 }
const NGINX_PROXY: Address = { host: `${NET}.41`, port: 18100 }
const HAPROXY: Address = { host: `${NET}.42`, port: 18101 }
const FASTIFY: Address = { host: `${NET}.43`, port: 18102 }
const WAYPOINT_ALONE: Address = { host: `${ALONE_NET}.51`, port: 18400 }
/** The full path's mesh: two nodes, the client pod on A, nginx and the waypoint on B. */
const MESH = {
  nodes: { 'node-a': `${NET}.2`, 'node-b': `${NET}.3` },
  waypointIp: `${NET}.30`,
  waypointNode: 'node-b',
  client: { ip: `${NET}.11`, node: 'node-a' },
  server: { ...SERVER, node: 'node-b' },
  serviceVip: '10.96.79.10'
}
/** The waypoint alone's mesh: nginx on a node the mesh does not know, so it is dialled in plain TCP. */
const ALONE_MESH = {
  nodes: { 'node-w': `${ALONE_NET}.2` },
  waypointIp: `${ALONE_NET}.30`,
  waypointNode: 'node-w',
  server: { ...SERVER, node: 'outside-the-mesh' },
  serviceVip: '10.96.80.10'
}
const AMBIT_ENTRY: Address = { host: MESH.client.ip, port: 18000 }
const SOCKS_PORT = 15080
const READINESS_PORT = 15021

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url))
const BRIDGE = fileURLToPath(new URL('./lib/socks-bridge.js', import.meta.url))
const FASTIFY_PROXY = fileURLToPath(new URL('./l7/fastify-proxy.js', import.meta.url))
const WAYPOINT_ALONE_SCRIPT = fileURLToPath(new URL('./l7/waypoint-alone.js', import.meta.url))
const STARTUP_TIMEOUT_MS = 30_000
const WARMUP_SECONDS = 2

interface RunningSetup {
  readonly name: string
  readonly path: string
  readonly url: string
  /** Whose CPU and memory count as the proxy's. */
  readonly proxies: readonly Child[]
  /** The bridge, counted apart. */
  readonly bridge?: Child
}

interface Started {
  readonly setups: RunningSetup[]
  /** The processes --profile profiles: the two running a waypoint, and bare fastify to compare with. */
  readonly profiled: readonly Child[]
}

async function startAll (dir: string, processes: ProcessSet): Promise<Started> {
  const file = async (name: string, text: string): Promise<string> => {
    const path = join(dir, name)
    await writeFile(path, text)
    return path
  }
  await Promise.all(['mesh', 'alone-mesh', 'nginx-proxy', 'profile'].map(async (d) => await mkdir(join(dir, d))))
  await file('mesh/bench.yaml', l7MeshYaml(MESH))
  await file('alone-mesh/bench.yaml', l7MeshYaml(ALONE_MESH))
  const flags = await cliNodeFlags(CLI)
  const nodeArgs = (name: string): string[] => [...flags, ...(options.profile ? ['--cpu-prof', '--cpu-prof-dir', join(dir, 'profile', name)] : [])]

  const nginx = processes.start('nginx (server)', 'nginx', ['-c', await file('nginx.conf', nginxConfig(dir, SERVER)), '-g', 'daemon off;'])
  const nginxProxy = processes.start('nginx (proxy)', 'nginx', ['-c', await file('nginx-proxy.conf', nginxProxyConfig(join(dir, 'nginx-proxy'), NGINX_PROXY, SERVER)), '-g', 'daemon off;'])
  const haproxy = processes.start('haproxy', 'haproxy', ['-db', '-f', await file('haproxy.cfg', haproxyHttpConfig(HAPROXY, SERVER))])
  const fastify = processes.start('fastify proxy', process.execPath, [...nodeArgs('fastify'), FASTIFY_PROXY, '--listen', hostPort(FASTIFY), '--target', hostPort(SERVER)])
  const alone = processes.start('waypoint alone', process.execPath, [...nodeArgs('waypoint-alone'), WAYPOINT_ALONE_SCRIPT,
    '--mesh', join(dir, 'alone-mesh'), '--listen', hostPort(WAYPOINT_ALONE), '--ca-address', `${ALONE_NET}.1`])
  const ambit = processes.start('ambit up', process.execPath, [...nodeArgs('ambit-up'), CLI, 'up', '-f', join(dir, 'mesh'),
    '--access-log', '--ca-address', `${NET}.1`, '--ca-port', '0'])
  const bridge = processes.start('bridge (SOCKS5)', process.execPath, [BRIDGE, '--listen', hostPort(AMBIT_ENTRY),
    '--target', `${MESH.serviceVip}:${SERVICE_PORT}`, '--socks', `${MESH.nodes['node-a']}:${SOCKS_PORT}`, '--source', MESH.client.ip])

  const url = (a: Address): string => `http://${hostPort(a)}/`
  const setups: RunningSetup[] = [
    { name: 'direct', path: 'wrk → nginx', url: url(SERVER), proxies: [] },
    { name: 'nginx', path: 'wrk → nginx proxy → nginx', url: url(NGINX_PROXY), proxies: [nginxProxy] },
    { name: 'haproxy', path: 'wrk → haproxy (http) → nginx', url: url(HAPROXY), proxies: [haproxy] },
    { name: 'fastify', path: 'wrk → fastify + @fastify/http-proxy → nginx', url: url(FASTIFY), proxies: [fastify] },
    { name: 'waypoint', path: 'wrk → waypoint pipeline (plain HTTP; route, metrics, access log) → nginx', url: url(WAYPOINT_ALONE), proxies: [alone] },
    { name: 'ambit L7', path: 'wrk → bridge → ztunnel ⇒ HBONE ⇒ waypoint ⇒ HBONE ⇒ ztunnel → nginx', url: url(AMBIT_ENTRY), proxies: [ambit], bridge }
  ]
  await waitForTcp(SERVER.host, SERVER.port, STARTUP_TIMEOUT_MS, nginx)
  await Promise.all([
    waitForAnswer(`http://${MESH.nodes['node-a']}:${READINESS_PORT}/healthz/ready`, (a) => a.status === 200, STARTUP_TIMEOUT_MS, ambit),
    waitForAnswer(`http://${MESH.nodes['node-b']}:${READINESS_PORT}/healthz/ready`, (a) => a.status === 200, STARTUP_TIMEOUT_MS, ambit),
    waitForAnswer(`http://${MESH.waypointIp}:${READINESS_PORT}/healthz/ready`, (a) => a.status === 200, STARTUP_TIMEOUT_MS, ambit),
    waitForAnswer(`http://${ALONE_MESH.waypointIp}:${READINESS_PORT}/healthz/ready`, (a) => a.status === 200, STARTUP_TIMEOUT_MS, alone)
  ])
  // Every setup must answer nginx's own `200 ok` before it is measured.
  await Promise.all(setups.map(async (s) => await waitForAnswer(s.url, (a) => a.status === 200 && a.body === 'ok', STARTUP_TIMEOUT_MS, s.bridge ?? s.proxies[0] ?? nginx)))
  return {
    setups: setups.filter((s) => options.only === undefined || options.only.includes(s.name)),
    profiled: [alone, ambit, fastify]
  }
}

/** One warmed-up wrk run, with the CPU the setup's processes spent during it. */
async function measure (setup: RunningSetup): Promise<L7Row> {
  const wrk = { url: setup.url, connections: options.connections, threads: 2 }
  await runWrk({ ...wrk, durationSeconds: WARMUP_SECONDS })
  await sleep(500)
  const bridge = setup.bridge === undefined ? [] : [setup.bridge]
  const before = { proxies: cpuOf(setup.proxies), bridge: cpuOf(bridge) }
  const result = await runWrk({ ...wrk, durationSeconds: options.durationSeconds })
  const perRequest = (after: CpuTime, start: CpuTime): CpuTime => ({
    userMicros: (after.userMicros - start.userMicros) / Math.max(1, result.requests),
    systemMicros: (after.systemMicros - start.systemMicros) / Math.max(1, result.requests)
  })
  return {
    name: setup.name,
    path: setup.path,
    wrk: result,
    ...(setup.proxies.length > 0 && {
      proxyCpu: perRequest(cpuOf(setup.proxies), before.proxies),
      peakRssBytes: setup.proxies.reduce((sum, c) => sum + memoryOf(c.pid).peakRssBytes, 0)
    }),
    ...(setup.bridge !== undefined && { bridgeCpu: perRequest(cpuOf(bridge), before.bridge) })
  }
}

function cpuOf (children: readonly Child[]): CpuTime {
  return children.map((c) => cpuTimeOf(c.pid)).reduce(
    (sum, t) => ({ userMicros: sum.userMicros + t.userMicros, systemMicros: sum.systemMicros + t.systemMicros }),
    { userMicros: 0, systemMicros: 0 })
}

async function main (): Promise<void> {
  const started = Date.now()
  // Other work on the machine takes CPU from every setup: the load average says how much.
  const loadBefore = loadavg()[0]!
  const dir = await mkdtemp(join(tmpdir(), 'ambit-bench-l7-'))
  const processes = new ProcessSet()
  process.once('exit', () => processes.killAllNow())
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      processes.killAllNow()
      process.exit(130)
    })
  }
  try {
    console.error(`bench/l7: starting nginx (server and proxy), haproxy, fastify, the waypoint alone, ambit up and the bridge (in ${dir})`)
    const { setups, profiled } = await startAll(dir, processes)
    const rounds: L7Row[][] = setups.map(() => [])
    for (let round = 1; round <= options.rounds; round++) {
      for (const [index, setup] of setups.entries()) {
        const row = await measure(setup)
        rounds[index]!.push(row)
        console.error(`  ${options.rounds > 1 ? `round ${round} ` : ''}${setup.name.padEnd(9)} ${Math.round(row.wrk.requestsPerSecond).toString().padStart(7)} req/s  ` +
          `p50 ${formatMicros(row.wrk.p50Micros).padStart(9)}  p99 ${formatMicros(row.wrk.p99Micros).padStart(9)}  ` +
          `proxy CPU/req ${formatCpu(row.proxyCpu).padStart(18)}  bridge CPU/req ${formatMicros(totalMicros(row.bridgeCpu)).padStart(8)}  errors ${row.wrk.errors}`)
      }
    }
    const rows = rounds.map(medianRound)
    const cpu = cpus()
    console.log(`\n## bench/l7\n\nMachine: ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}; Node.js ${process.version}; ` +
      `${new Date().toISOString().slice(0, 10)}. ${options.connections} keep-alive connections, 2 wrk threads, ` +
      `${options.durationSeconds} s per run after ${WARMUP_SECONDS} s of warm-up` +
      `${options.rounds > 1 ? `; each row the median of ${options.rounds} rounds (by req/s)` : ''}. ` +
      `Load average (1 min) before: ${loadBefore.toFixed(2)}, after: ${loadavg()[0]!.toFixed(2)}.\n`)
    console.log(throughputTable(rows))
    console.log('\nThe issue\'s floor and goal:\n')
    console.log(verdictTable(rows))
    if (options.verbose) for (const child of processes.list()) console.error(`--- ${child.name} said:\n${child.output()}`)
    if (options.profile) {
      for (const child of profiled) await processes.stop(child, 20_000)
      await printProfile(join(dir, 'profile', 'waypoint-alone'), 'the waypoint alone')
      await printProfile(join(dir, 'profile', 'ambit-up'), 'ambit up (ztunnels + waypoint)')
      await printProfile(join(dir, 'profile', 'fastify'), 'bare fastify')
    }
    console.error(`bench/l7: done in ${Math.round((Date.now() - started) / 1000)} s`)
  } finally {
    await processes.stopAll()
    await rm(dir, { recursive: true, force: true })
  }
}

/** The round whose req/s is the median (the lower middle one for an even count). */
function medianRound (runs: readonly L7Row[]): L7Row {
  const sorted = [...runs].sort((a, b) => a.wrk.requestsPerSecond - b.wrk.requestsPerSecond)
  return sorted[Math.floor((sorted.length - 1) / 2)]!
}

/** Prints where a stopped process's time went, from the profile V8 wrote as it exited. */
async function printProfile (profileDir: string, what: string): Promise<void> {
  const name = (await readdir(profileDir)).find((f) => f.endsWith('.cpuprofile'))
  if (name === undefined) throw new Error(`${what} wrote no CPU profile`)
  const kept = join(tmpdir(), `ambit-bench-l7-${profileDir.split('/').pop() ?? 'profile'}.cpuprofile`)
  await copyFile(join(profileDir, name), kept)
  const profile = await readProfile(kept)
  const share = (s: number): string => `${(s * 100).toFixed(1)}%`
  console.log(`\nProfile of ${what} (${kept}), self time as a share of busy time:\n`)
  console.log(hotFunctions(profile, 25).map((h) => `  ${share(h.selfShare).padStart(6)}  ${h.where}`).join('\n'))
  console.log('\nBy file:\n')
  console.log(hotFiles(profile, 15).map((h) => `  ${share(h.selfShare).padStart(6)}  ${h.where}`).join('\n'))
}

await main()
