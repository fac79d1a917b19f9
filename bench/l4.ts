/**
 * bench/l4: what ambit's L4 path costs next to the usual mTLS TCP proxies, side by side in one
 * run on loopback. An HTTP server (nginx, one worker, `return 200`) is loaded with wrk through:
 *
 *   direct   wrk → nginx
 *   bridge   wrk → SOCKS5 bridge in plain-forward mode → nginx (what the bridge alone costs)
 *   ambit    wrk → bridge → SOCKS5 → ztunnel A ═HBONE mTLS═ ztunnel B → nginx  (`ambit up`)
 *   haproxy  wrk → haproxy A ═TLS 1.3 mTLS═ haproxy B → nginx
 *   stunnel  wrk → stunnel A ═TLS 1.3 mTLS═ stunnel B → nginx
 *
 * wrk cannot speak SOCKS5, hence the bridge (bench/l4/bridge.ts, its own process) in front of
 * ambit; its CPU is reported apart, so the ztunnels' own cost stays visible. Each setup runs
 * with 32 keep-alive connections, with a new connection per request, and at a fixed rate
 * (a pacing wrk Lua script). CPU per request is utime + stime of the proxy processes over the
 * run, from /proc, divided by the requests wrk completed.
 *
 *   npm run build && node dist/bench/l4.js [--duration 10] [--rate 1000] [--only ambit,haproxy]
 *     [--modes keep-alive,close,rate] [--profile] [--verbose]
 */
import http from 'node:http'
import { existsSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { ProcessSet, cpuTimeOf, memoryOf, waitForTcp, type Child, type CpuTime } from './l4/processes.js'
import { runWrk, writePacingScript, type WrkOptions } from './l4/wrk.js'
import { makeTlsFiles } from './l4/certificates.js'
import {
  haproxyClientConfig, haproxyServerConfig, hostPort, meshYaml, nginxConfig, stunnelClientConfig, stunnelServerConfig,
  type Address, type PairAddresses
} from './l4/configs.js'
import {
  fixedRateTable, goalsTable, memoryTable, throughputTable, formatCpu, formatMicros, totalMicros, type Measurement, type MemoryRow, type Mode, type Row, type Setup
} from './l4/report.js'
import { hotFiles, hotFunctions, readProfile } from './l4/profile.js'

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

// One loopback /24 of our own, so nothing else on the machine (tests included) collides.
const NET = '127.0.77'
const SERVER: Address = { host: `${NET}.21`, port: 18080 }
const NODE_A = `${NET}.2`
const NODE_B = `${NET}.3`
const CLIENT_POD = `${NET}.11`
const SOCKS_PORT = 15080
const READINESS_PORT = 15021
const AMBIT_ENTRY: Address = { host: CLIENT_POD, port: 18000 }
const BRIDGE_ENTRY: Address = { host: `${NET}.12`, port: 18000 }
const HAPROXY: PairAddresses = { entry: { host: `${NET}.31`, port: 18100 }, tunnel: { host: `${NET}.32`, port: 18101 }, server: SERVER }
const STUNNEL: PairAddresses = { entry: { host: `${NET}.41`, port: 18200 }, tunnel: { host: `${NET}.42`, port: 18201 }, server: SERVER }

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url))
const BRIDGE = fileURLToPath(new URL('./l4/bridge.js', import.meta.url))
const STARTUP_TIMEOUT_MS = 30_000
const WARMUP_SECONDS = 2
/** Connections for the fixed-rate run: enough that a slow answer never holds a slot back. */
const FIXED_RATE_CONNECTIONS = 8

/** --modes keep-alive,close,rate picks among the three kinds of run. */
const MODE_FLAGS: Readonly<Record<Mode, string>> = { 'keep-alive': 'keep-alive', 'new connection per request': 'close', 'fixed rate': 'rate' }

interface RunningSetup extends Setup {
  readonly url: string
  /** Whose CPU counts as the proxy's. */
  readonly proxies: readonly Child[]
  /** The bridge, counted apart. */
  readonly bridge?: Child
}

interface Started {
  readonly setups: RunningSetup[]
  readonly ambit: Child
  readonly memory: ReadonlyArray<{ readonly process: string, readonly children: readonly Child[] }>
}

async function startAll (dir: string, processes: ProcessSet): Promise<Started> {
  const tls = await makeTlsFiles(dir)
  const file = async (name: string, text: string): Promise<string> => {
    const path = join(dir, name)
    await writeFile(path, text)
    return path
  }
  await mkdir(join(dir, 'mesh'))
  await file('mesh/bench.yaml', meshYaml({ nodeA: NODE_A, nodeB: NODE_B, clientPod: CLIENT_POD, serverPod: SERVER }))

  const nginx = processes.start('nginx', 'nginx', ['-c', await file('nginx.conf', nginxConfig(dir, SERVER)), '-g', 'daemon off;'])
  const ambit = processes.start('ambit up', process.execPath, [
    ...(options.profile ? ['--cpu-prof', '--cpu-prof-dir', join(dir, 'profile')] : []),
    CLI, 'up', '-f', join(dir, 'mesh'), '--ca-address', `${NET}.1`, '--ca-port', '0'
  ])
  const bridgeToAmbit = processes.start('bridge (SOCKS5)', process.execPath, [BRIDGE,
    '--listen', hostPort(AMBIT_ENTRY), '--target', hostPort(SERVER), '--socks', `${NODE_A}:${SOCKS_PORT}`, '--source', CLIENT_POD])
  const bridgeAlone = processes.start('bridge (plain)', process.execPath, [BRIDGE, '--listen', hostPort(BRIDGE_ENTRY), '--target', hostPort(SERVER)])
  const haproxyA = processes.start('haproxy A', 'haproxy', ['-db', '-f', await file('haproxy-a.cfg', haproxyClientConfig(HAPROXY, tls))])
  const haproxyB = processes.start('haproxy B', 'haproxy', ['-db', '-f', await file('haproxy-b.cfg', haproxyServerConfig(HAPROXY, tls))])
  const stunnel = onPath('stunnel4') ?? 'stunnel'
  const stunnelA = processes.start('stunnel A', stunnel, [await file('stunnel-a.conf', stunnelClientConfig(STUNNEL, tls))])
  const stunnelB = processes.start('stunnel B', stunnel, [await file('stunnel-b.conf', stunnelServerConfig(STUNNEL, tls))])

  await Promise.all([
    waitForTcp(SERVER.host, SERVER.port, STARTUP_TIMEOUT_MS, nginx),
    waitForTcp(AMBIT_ENTRY.host, AMBIT_ENTRY.port, STARTUP_TIMEOUT_MS, bridgeToAmbit),
    waitForTcp(BRIDGE_ENTRY.host, BRIDGE_ENTRY.port, STARTUP_TIMEOUT_MS, bridgeAlone),
    waitForTcp(HAPROXY.entry.host, HAPROXY.entry.port, STARTUP_TIMEOUT_MS, haproxyA),
    waitForTcp(HAPROXY.tunnel.host, HAPROXY.tunnel.port, STARTUP_TIMEOUT_MS, haproxyB),
    waitForTcp(STUNNEL.entry.host, STUNNEL.entry.port, STARTUP_TIMEOUT_MS, stunnelA),
    waitForTcp(STUNNEL.tunnel.host, STUNNEL.tunnel.port, STARTUP_TIMEOUT_MS, stunnelB),
    waitForReady(`http://${NODE_A}:${READINESS_PORT}/healthz/ready`, ambit),
    waitForReady(`http://${NODE_B}:${READINESS_PORT}/healthz/ready`, ambit)
  ])

  const url = (a: Address): string => `http://${hostPort(a)}/`
  const setups: RunningSetup[] = [
    { name: 'direct', path: 'wrk → nginx', url: url(SERVER), proxies: [] },
    { name: 'bridge', path: 'wrk → bridge → nginx (the bridge alone)', url: url(BRIDGE_ENTRY), proxies: [], bridge: bridgeAlone },
    { name: 'ambit', path: 'wrk → bridge → ztunnel ⇒ HBONE ⇒ ztunnel → nginx', url: url(AMBIT_ENTRY), proxies: [ambit], bridge: bridgeToAmbit },
    { name: 'haproxy', path: 'wrk → haproxy ⇒ mTLS ⇒ haproxy → nginx', url: url(HAPROXY.entry), proxies: [haproxyA, haproxyB] },
    { name: 'stunnel', path: 'wrk → stunnel ⇒ mTLS ⇒ stunnel → nginx', url: url(STUNNEL.entry), proxies: [stunnelA, stunnelB] }
  ]
  for (const setup of setups) await expectOk(setup.url)
  return {
    setups: setups.filter((s) => options.only === undefined || options.only.includes(s.name)),
    ambit,
    memory: [
      { process: 'ambit up (both ztunnels, controller, CA)', children: [ambit] },
      { process: 'SOCKS5 bridge', children: [bridgeToAmbit] },
      { process: 'haproxy A + B', children: [haproxyA, haproxyB] },
      { process: 'stunnel A + B', children: [stunnelA, stunnelB] }
    ]
  }
}

/** One wrk run, with the CPU the setup's processes spent during it. */
async function measure (setup: RunningSetup, wrk: Omit<WrkOptions, 'url'>): Promise<Measurement> {
  const bridge = setup.bridge === undefined ? [] : [setup.bridge]
  const before = { proxies: cpuOf(setup.proxies), bridge: cpuOf(bridge) }
  const result = await runWrk({ ...wrk, url: setup.url })
  const perRequest = (after: CpuTime, start: CpuTime): CpuTime => ({
    userMicros: (after.userMicros - start.userMicros) / Math.max(1, result.requests),
    systemMicros: (after.systemMicros - start.systemMicros) / Math.max(1, result.requests)
  })
  return {
    wrk: result,
    ...(setup.proxies.length > 0 && { proxyCpu: perRequest(cpuOf(setup.proxies), before.proxies) }),
    ...(bridge.length > 0 && { bridgeCpu: perRequest(cpuOf(bridge), before.bridge) })
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
      if (run.warmup !== undefined) await runWrk({ ...run.warmup, url: setup.url })
      await sleep(500) // let the sockets of the previous run close
      const result = await measure(setup, run.wrk)
      rows.push({ setup, mode: run.mode, result })
      console.error(`  ${setup.name.padEnd(8)} ${run.mode.padEnd(27)} ${Math.round(result.wrk.requestsPerSecond).toString().padStart(7)} req/s  ` +
        `p99 ${formatMicros(result.wrk.p99Micros).padStart(9)}  proxy CPU/req ${formatCpu(result.proxyCpu).padStart(18)}  ` +
        `bridge CPU/req ${formatMicros(totalMicros(result.bridgeCpu)).padStart(8)}  errors ${result.wrk.errors}`)
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
  process.once('exit', () => processes.killAllNow())
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      processes.killAllNow()
      process.exit(130)
    })
  }
  try {
    console.error(`bench/l4: starting nginx, ambit up, the bridges, haproxy and stunnel (in ${dir})`)
    const { setups, ambit, memory } = await startAll(dir, processes)
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
    if (options.profile) await printProfile(processes, ambit, dir)
    console.error(`bench/l4: done in ${Math.round((Date.now() - started) / 1000)} s`)
  } finally {
    await processes.stopAll()
    await rm(dir, { recursive: true, force: true })
  }
}

/** Stops ambit (V8 writes the profile as the process exits) and prints where its time went. */
async function printProfile (processes: ProcessSet, ambit: Child, dir: string): Promise<void> {
  await processes.stop(ambit, 20_000)
  const profileDir = join(dir, 'profile')
  const name = (await readdir(profileDir)).find((f) => f.endsWith('.cpuprofile'))
  if (name === undefined) throw new Error('ambit up wrote no CPU profile')
  const kept = join(tmpdir(), 'ambit-bench-l4-ztunnel.cpuprofile')
  await copyFile(join(profileDir, name), kept)
  const profile = await readProfile(kept)
  const share = (s: number): string => `${(s * 100).toFixed(1)}%`
  console.log(`\nProfile of the ztunnel process (${kept}), self time as a share of busy time:\n`)
  console.log(hotFunctions(profile, 25).map((h) => `  ${share(h.selfShare).padStart(6)}  ${h.where}`).join('\n'))
  console.log('\nBy file:\n')
  console.log(hotFiles(profile, 15).map((h) => `  ${share(h.selfShare).padStart(6)}  ${h.where}`).join('\n'))
}

/** Debian names the binary stunnel4, most other systems stunnel. */
function onPath (command: string): string | undefined {
  return (process.env.PATH ?? '').split(':').some((d) => existsSync(join(d, command))) ? command : undefined
}

async function waitForReady (url: string, child: Child): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS
  while ((await statusOf(url)) !== 200) {
    if (child.hasExited()) throw new Error(`${child.name} exited before ${url} was ready; it said:\n${child.output()}`)
    if (Date.now() > deadline) throw new Error(`${url} is not ready after ${STARTUP_TIMEOUT_MS} ms; ${child.name} said:\n${child.output()}`)
    await sleep(200)
  }
}

function statusOf (url: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const request = http.get(url, { agent: false }, (response) => {
      response.resume()
      resolve(response.statusCode)
    })
    request.on('error', () => resolve(undefined))
  })
}

async function expectOk (url: string): Promise<void> {
  const body = await new Promise<string>((resolve, reject) => {
    http.get(url, { agent: false }, (response) => {
      let text = ''
      response.on('data', (chunk: Buffer) => { text += chunk.toString() })
      response.on('end', () => resolve(`${response.statusCode} ${text}`))
    }).on('error', reject)
  })
  if (body !== '200 ok') throw new Error(`${url} answered "${body}", expected "200 ok"`)
}

await main()
