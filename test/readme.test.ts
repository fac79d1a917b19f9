import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { REPO_ROOT } from './helpers/mesh.js'
import { holdSampleAddresses, isListening, sampleProxyPorts } from './helpers/sample-addresses.js'
import { curlViaSocks } from './helpers/socks5-client.js'
import { waitFor } from './helpers/wait.js'

/** One line of the demo's summary (examples/summary.ts). */
interface SummaryRow {
  readonly service: string
  /** Calls in the 2 s window. */
  readonly calls: number
  readonly successPercent: number
  readonly mtls: string
  readonly denied: number
  readonly retried: number
  /** 'v1 90% / v2 10%' → { v1: 90, v2: 10 }. */
  readonly versions: Readonly<Record<string, number>>
}

const SUMMARY_WINDOW_S = 2
// service, req/s, success, p99, mTLS share, denied calls, retried calls, versions.
const ROW = /^([a-z][\w-]*) +([\d.]+) +(\d+)% +\S+ +(\S+) +(\d+) +(\d+) +(.+)$/gm

function summaryRows (output: string, service: string): SummaryRow[] {
  return [...output.matchAll(ROW)].filter((m) => m[1] === service).map((m) => ({
    service: m[1]!,
    calls: Math.round(Number(m[2]) * SUMMARY_WINDOW_S),
    successPercent: Number(m[3]),
    mtls: m[4]!,
    denied: Number(m[5]),
    retried: Number(m[6]),
    versions: Object.fromEntries([...m[7]!.matchAll(/(\w+) (\d+)%/g)].map((v) => [v[1]!, Number(v[2])]))
  }))
}

const sum = (rows: readonly SummaryRow[], value: (row: SummaryRow) => number): number => rows.reduce((total, row) => total + value(row), 0)

/** Every window with traffic shows 100% mutual TLS ('-': no byte reached a destination ztunnel in it). */
function allMutualTls (t: Test, rows: readonly SummaryRow[], what: string): void {
  const measured = rows.filter((r) => r.mtls !== '-')
  t.ok(measured.length > 0 && measured.every((r) => r.mtls === '100%'), `${what}: all mutual TLS (${rows.map((r) => r.mtls).join(' ')})`)
}

/** Whether any process of the group led by `pid` is still running (signal 0 only checks). */
function processGroupAlive (pid: number): boolean {
  try {
    process.kill(-pid, 0)
    return true
  } catch {
    return false
  }
}

// The README's first command is `npm ci && npm start`; CI has run `npm ci` already.
t.test('npm start runs the sample mesh with its demo load on the embedded store and Ctrl-C stops it cleanly', async (t) => {
  await holdSampleAddresses(t)
  const child = spawn('npm', ['start'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let output = ''
  child.stdout.on('data', (d: Buffer) => { output += d.toString() })
  child.stderr.on('data', (d: Buffer) => { output += d.toString() })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  t.teardown(() => {
    try { process.kill(-child.pid!, 'SIGKILL') } catch { /* already gone */ }
  })
  await waitFor('the mesh to be up', () => output.includes('Ctrl-C to stop'), 60_000)
  t.match(output, /2 nodes, 5 workloads, 6 services on memory/)
  t.match(output, /waypoint shop\/waypoint: 127\.0\.0\.13 on node-a/)

  // --demo: the sample's apps answer, the load flows through the ztunnels and the waypoint, and
  // a summary follows every 2 s. Wait for enough catalog calls to measure the canary split
  // (~12 a second, v2 fails every 5th of its requests), a retry, and denied payments calls.
  await waitFor('summaries with the demo traffic', () =>
    sum(summaryRows(output, 'catalog'), (r) => r.calls) >= 200 &&
    sum(summaryRows(output, 'catalog'), (r) => r.retried) >= 1 &&
    sum(summaryRows(output, 'payments'), (r) => r.denied) >= 1 &&
    summaryRows(output, 'cart').length > 0, 120_000)
  const catalog = summaryRows(output, 'catalog')
  const cart = summaryRows(output, 'cart')
  const payments = summaryRows(output, 'payments')

  // web (node-a) → the waypoint (node-a) → catalog-v1 (node-b) or catalog-v2 (node-a).
  const catalogCalls = sum(catalog, (r) => r.calls)
  const v2Share = sum(catalog, (r) => r.calls * (r.versions.v2 ?? 0) / 100) / catalogCalls
  t.ok(v2Share >= 0.03 && v2Share <= 0.2, `the canary split: v2 answered ${(100 * v2Share).toFixed(1)}% of ${catalogCalls} catalog calls (route: 10%)`)
  const catalogSuccess = sum(catalog, (r) => r.calls * r.successPercent / 100) / catalogCalls
  t.ok(catalogSuccess >= 0.98, `catalog calls succeed (${(100 * catalogSuccess).toFixed(1)}%) although v2 fails every 5th request`)
  t.ok(sum(catalog, (r) => r.retried) >= 1, 'the waypoint retried v2\'s 503s: the callers saw answers instead')
  t.equal(sum(catalog, (r) => r.denied), 0, 'nothing denies catalog calls')
  allMutualTls(t, catalog, 'the waypoint → catalog pods')

  t.ok(sum(cart, (r) => r.calls * r.successPercent / 100) >= 1 && cart.every((r) => r.denied === 0), 'web (node-a) → cart (node-b) flows')
  allMutualTls(t, cart, 'web → cart')

  // Half the payments calls come from web, and each one is denied once: calls, not connections.
  const paymentsCalls = sum(payments, (r) => r.calls)
  const denied = sum(payments, (r) => r.denied)
  t.ok(denied >= 0.3 * paymentsCalls && denied <= 0.7 * paymentsCalls, `web → payments is denied: ${denied} of ${paymentsCalls} payments calls (every other one)`)
  allMutualTls(t, payments, 'cart → payments')

  // The web pod calls the cart Service through node-a's ztunnel; the runner's cart pod (node-b) answers.
  const answer = await curlViaSocks({ clientIp: '127.0.0.11', proxy: { host: '127.0.0.2', port: 15080 }, url: 'http://cart.shop.svc.cluster.local/orders' })
  t.same(JSON.parse(answer.stdout), { service: 'cart', pod: 'cart', version: '', path: '/orders' }, answer.stderr)
  // And catalog, through the waypoint: one of the two versions answers.
  const fromCatalog = await curlViaSocks({ clientIp: '127.0.0.11', proxy: { host: '127.0.0.2', port: 15080 }, url: 'http://catalog.shop.svc.cluster.local/' })
  t.match(JSON.parse(fromCatalog.stdout), { service: 'catalog', version: /^v[12]$/ }, fromCatalog.stderr)
  // catalog-v1 has no waypoint of its own: called by name, its pod answers directly.
  const fromV1 = await curlViaSocks({ clientIp: '127.0.0.11', proxy: { host: '127.0.0.2', port: 15080 }, url: 'http://catalog-v1.shop.svc.cluster.local/' })
  t.match(JSON.parse(fromV1.stdout), { pod: 'catalog-v1', version: 'v1' }, `a direct call to catalog-v1 is not refused for want of the waypoint ${fromV1.stderr}`)

  process.kill(-child.pid!, 'SIGINT')
  const [code, signal] = await exited
  // npm passes the terminal's SIGINT on and then ends the same way; ambit itself exits 0.
  t.ok(code === 0 || signal === 'SIGINT', `npm start ended cleanly (code ${code}, signal ${signal})`)
  t.notMatch(output, /Error|ERR!/, 'nothing failed on the way out')
  for (const [address, port] of sampleProxyPorts()) t.notOk(await isListening(address, port), `${address}:${port} released`)
  t.notOk(await isListening('127.0.0.1', 15012), 'the CA port is released')
  t.notOk(await isListening('127.0.0.1', 15014), 'the dashboard\'s port is released')
  await waitFor('every process of npm start gone', () => !processGroupAlive(child.pid!), 5_000)
  t.pass('no process of npm start is left (its process group is empty)')
  for (const [pod, port] of [['127.0.0.11', 8080], ['127.0.0.12', 8080], ['127.0.0.21', 8080], ['127.0.0.22', 8080], ['127.0.0.23', 9090]] as const) {
    t.notOk(await isListening(pod, port), `the demo app on ${pod}:${port} stopped`)
  }
})
