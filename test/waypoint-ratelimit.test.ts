/**
 * A global rate limit (TrafficPolicy rateLimit.global, 100 requests per minute) shared by two
 * waypoint PROCESSES through one real Redis (DESIGN §5, §6), on the real path: the client's
 * requests go through node-a's ztunnel, which picks a waypoint instance at random for each
 * connection, so both instances serve and both take tokens from the same bucket.
 *  - 300 requests over many connections: 100 ± 2 pass in total (plus the tokens the bucket
 *    refills while they run, at 100 a minute), the rest get 429; each instance passed some,
 *    neither passed them all; no fail-open while Redis is up;
 *  - Redis stopped: the waypoints keep serving from their last state (stale), requests pass
 *    although the bucket is empty, and ambit_ratelimit_fail_open_total counts each of them.
 *
 * Processes (fixtures/waypoint-b/ratelimit): the controller and every proxy are `ambit`
 * children on one redis-server; node-a 127.0.7.52 (waypoint-0 127.0.7.55, client 127.0.7.61),
 * node-b 127.0.7.53 (waypoint-1 127.0.7.56, echo pod 127.0.7.62:18080).
 */
import t from 'tap'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { startRedis } from './helpers/redis.js'
import { startProcessMesh } from './helpers/waypoint-b-processes.js'
import { meshRequest, startMeshBridge } from './helpers/waypoint-b-bridge.js'
import { startWebPod } from './helpers/waypoint-b-pods.js'
import { scrape, sumOf } from './helpers/prometheus.js'
import { waitFor } from './helpers/wait.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/waypoint-b/ratelimit', import.meta.url))
const NODE_A = '127.0.7.52'
const NODE_B = '127.0.7.53'
const WAYPOINTS = ['127.0.7.55', '127.0.7.56']
const CLIENT = '127.0.7.61'
const ECHO_POD = '127.0.7.62'
const SERVICE_HOST = 'echo.wpb-rl.svc.cluster.local'
const LIMIT = 100
const LIMIT_INTERVAL_MS = 60_000
const REQUESTS = 300
/** Keep-alive connections the requests share; each is one tunnel to a randomly chosen waypoint. */
const CONNECTIONS = 24

const redis = await startRedis(t)
await startProcessMesh(t, {
  fixture: FIXTURE,
  store: redis.url,
  nodes: [{ name: 'node-a', address: NODE_A }, { name: 'node-b', address: NODE_B }],
  waypoint: { namespace: 'wpb-rl', name: 'waypoint', instances: [{ ip: WAYPOINTS[0]!, node: 'node-a' }, { ip: WAYPOINTS[1]!, node: 'node-b' }] }
})
const echo = await startWebPod(t, ECHO_POD, 18080, 'echo-0')
const bridge = await startMeshBridge(t, { podIp: CLIENT, socks: { host: NODE_A, port: 15080 }, host: SERVICE_HOST, port: 80 })

/** One number per waypoint instance, summed from its own /metrics. */
async function perWaypoint (name: string, labels: Record<string, string> = {}): Promise<number[]> {
  return await Promise.all(WAYPOINTS.map(async (ip) => sumOf(await scrape(`http://${ip}:15020/metrics`), name, labels)))
}

/** Sends `count` GETs over `connections` keep-alive connections at once; the status of each. */
async function burst (count: number, connections: number): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
  try {
    return await Promise.all(Array.from({ length: count }, async (_, i) => (await meshRequest(bridge, { path: `/r/${i}`, agent, timeoutMs: 30_000 })).status))
  } finally {
    agent.destroy()
  }
}

const total = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0)

t.test('100 requests a minute, shared by two waypoint processes on one Redis', async (t) => {
  const started = Date.now()
  const statuses = await burst(REQUESTS, CONNECTIONS)
  const elapsed = Date.now() - started
  const passed = statuses.filter((s) => s === 200).length
  const limited = statuses.filter((s) => s === 429).length
  t.equal(passed + limited, REQUESTS, 'every request got 200 or 429')
  // The bucket refills continuously: what it regained while the burst ran may pass too.
  const refilled = Math.floor(elapsed * LIMIT / LIMIT_INTERVAL_MS)
  t.ok(passed >= LIMIT - 2 && passed <= LIMIT + 2 + refilled, `${passed} passed in ${elapsed} ms (expected ${LIMIT} ± 2, + ${refilled} refilled)`)
  t.equal(echo.seen.length, passed, 'the echo pod saw exactly the requests that passed')

  let served: number[] = []
  let refused: number[] = []
  // A request is counted when its exchange closes, a moment after the client has the answer.
  await waitFor('the two waypoints\' metrics to add up to what the client saw', async () => {
    served = await perWaypoint('istio_requests_total', { response_code: '200', destination_service: SERVICE_HOST })
    refused = await perWaypoint('istio_requests_total', { response_code: '429', response_flags: 'RL', destination_service: SERVICE_HOST })
    return total(served) === passed && total(refused) === limited
  }, 10_000)
  t.pass(`the waypoints counted ${served.join(' + ')} passed and ${refused.join(' + ')} limited`)
  t.ok(served.every((n) => n > 0 && n < passed), `both instances passed requests (${served.join(' + ')}), neither all of them: one bucket`)
  t.same(await perWaypoint('ambit_ratelimit_fail_open_total'), [0, 0], 'no request failed open while Redis was up')
})

t.test('with Redis stopped, the waypoints keep serving and fail open, counted', async (t) => {
  await redis.stop()
  await waitFor('both waypoints to report their state stale', async () => total(await perWaypoint('ambit_state_stale')) === 2, 30_000)
  const statuses = await burst(20, 4)
  t.same(statuses, statuses.map(() => 200), 'all 20 requests pass: the limiter fails open')
  const failOpen = await perWaypoint('ambit_ratelimit_fail_open_total', { destination_service: SERVICE_HOST })
  t.equal(total(failOpen), 20, `ambit_ratelimit_fail_open_total counts each of them (${failOpen.join(' + ')})`)
})
