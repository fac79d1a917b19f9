/**
 * Waypoint resilience, through the real path: client pod → node-a's ztunnel (SOCKS5) → HBONE →
 * waypoint → HBONE → the backend's ztunnel → backend server, all on 127.0.6.1xx loopback.
 * Retries, request timeouts, outlier detection, the circuit breaker and fault injection, each
 * set up by applying an HTTPRoute or a TrafficPolicy as a user would.
 */
import t, { type Test } from 'tap'
import { RETRY_NON_IDEMPOTENT_ANNOTATION } from '../gateway/pipeline.js'
import { fileURLToPath } from 'node:url'
import { always, failEveryOther, slow, startWaypointMesh, type EchoBody, type MeshResponse } from './helpers/waypoint-mesh.js'
import { sumOf } from './helpers/prometheus.js'
import { waitFor } from './helpers/wait.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/waypoint-a/resilience', import.meta.url))
const mesh = await startWaypointMesh(t, FIXTURE)

const ECHO_V1_HOST = 'echo-v1.shop.svc.cluster.local'
const ECHO_V2_HOST = 'echo-v2.shop.svc.cluster.local'

/** Applies a resource (the JSON form of its YAML) for the test only. */
async function withResource (t: Test, kind: 'HTTPRoute' | 'TrafficPolicy', name: string, spec: object): Promise<void> {
  const apiVersion = kind === 'HTTPRoute' ? 'gateway.networking.k8s.io/v1' : 'ambit.dev/v1alpha1'
  await mesh.apply(JSON.stringify({ apiVersion, kind, metadata: { name, namespace: 'shop' }, spec }))
  t.teardown(() => mesh.remove(`${kind}/shop/${name}`))
}

/** An HTTPRoute on Service shop/echo sending everything to echo-v1 (one endpoint), with `rule` added. */
function toEchoV1 (t: Test, name: string, rule: object): Promise<void> {
  return withResource(t, 'HTTPRoute', name, {
    parentRefs: [{ group: '', kind: 'Service', name: 'echo', port: 80 }],
    rules: [{ backendRefs: [{ name: 'echo-v1', port: 80 }], ...rule }]
  })
}

function statuses (responses: readonly MeshResponse[]): Record<number, number> {
  const counts: Record<number, number> = {}
  for (const response of responses) counts[response.status] = (counts[response.status] ?? 0) + 1
  return counts
}

function median (values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/** The waypoint counts a request when its answer is done, which may be just after the client has it. */
async function requestsCounted (labels: Record<string, string>, atLeast: number): Promise<number> {
  let count = 0
  await waitFor(`${atLeast} requests counted with ${JSON.stringify(labels)}`, async () => {
    count = sumOf(await mesh.metrics(), 'istio_requests_total', labels)
    return count >= atLeast
  })
  return count
}

t.beforeEach(() => mesh.resetBackends())

t.test('retries', async (t) => {
  // A short backoff keeps the hundreds of retries below quick (Envoy's default base is 25 ms).
  await toEchoV1(t, 'retry', { retry: { attempts: 2, codes: [503], backoff: '1ms' } })
  const backend = mesh.backend('echo-v1')

  t.test('a backend failing every other request with 503 is invisible to the client', async (t) => {
    backend.handler = failEveryOther(503)
    // More than the waypoint's 256 tunnels per endpoint: a failed try's answer left unread would
    // keep its tunnel busy for good, and the requests after the 256th would wait forever.
    const responses = await mesh.client.many(300, 1, (i) => ({ path: `/get/${i}` }))
    t.same(statuses(responses), { 200: 300 }, 'every GET answered 200')
    t.equal(backend.received.length, 600, 'each took two tries: the 503, then the retry')
  })

  t.test('a POST is not retried: the client sees the 503', async (t) => {
    backend.reset()
    backend.handler = failEveryOther(503)
    const responses = await mesh.client.many(10, 1, (i) => ({ path: '/post', method: 'POST', body: `order ${i}` }))
    t.same(statuses(responses), { 200: 5, 503: 5 }, 'the failing half reaches the client')
    t.equal(backend.received.length, 10, 'one try per POST')
    t.same(backend.received.map((r) => r.body), Array.from({ length: 10 }, (_, i) => `order ${i}`), 'every body arrived whole')
  })

  t.test('a POST is retried only when the route opts in, its body sent again whole', async (t) => {
    backend.reset()
    backend.handler = failEveryOther(503)
    const plain = await mesh.client.many(4, 1, (i) => ({ path: `/pay/${i}`, method: 'POST' }))
    t.same(statuses(plain), { 200: 2, 503: 2 }, 'not retried by default')
    await mesh.apply(JSON.stringify({
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute',
      metadata: { name: 'retry', namespace: 'shop', annotations: { [RETRY_NON_IDEMPOTENT_ANNOTATION]: 'true' } },
      spec: { parentRefs: [{ group: '', kind: 'Service', name: 'echo', port: 80 }], rules: [{ backendRefs: [{ name: 'echo-v1', port: 80 }], retry: { attempts: 2, codes: [503], backoff: '1ms' } }] }
    }))
    backend.reset()
    backend.handler = failEveryOther(503)
    const optedIn = await mesh.client.many(4, 1, (i) => ({ path: `/pay/${i}`, method: 'POST', body: `payment ${i}` }))
    t.same(statuses(optedIn), { 200: 4 }, `retried with ${RETRY_NON_IDEMPOTENT_ANNOTATION}: "true"`)
    t.same(backend.received.map((r) => r.body), [0, 0, 1, 1, 2, 2, 3, 3].map((i) => `payment ${i}`), 'each body reached the backend whole, on both tries')
  })

  t.test('a PUT (idempotent) with a chunked body is retried with the body replayed', async (t) => {
    backend.reset()
    backend.handler = failEveryOther(503)
    const body = 'x'.repeat(20_000)
    const response = await mesh.client.request({ path: '/put', method: 'PUT', body, headers: { 'transfer-encoding': 'chunked' } })
    t.equal(response.status, 200, 'the retry answered')
    t.same(backend.received.map((r) => r.body.length), [body.length, body.length], 'both tries carried the whole body')
    t.equal((JSON.parse(response.body) as EchoBody).headers['content-length'], String(body.length), 'the replay is sent with its length')
  })

  t.test('retries stop after `attempts`', async (t) => {
    backend.reset()
    backend.handler = always(503)
    const response = await mesh.client.request({ path: '/always-503' })
    t.equal(response.status, 503, 'the last answer reaches the client')
    t.equal(backend.received.length, 3, 'the first try and two retries')
  })
})

t.test('a retry goes to another endpoint of the backend when it has one', async (t) => {
  // The route's backend is Service echo itself: both pods. echo-v1 always fails.
  await withResource(t, 'HTTPRoute', 'retry-elsewhere', {
    parentRefs: [{ group: '', kind: 'Service', name: 'echo', port: 80 }],
    rules: [{ backendRefs: [{ name: 'echo', port: 80 }], retry: { attempts: 1, codes: [503], backoff: '1ms' } }]
  })
  mesh.backend('echo-v1').handler = always(503)
  const responses = await mesh.client.many(20, 1, (i) => ({ path: `/elsewhere/${i}` }))
  t.same(statuses(responses), { 200: 20 }, 'one retry is enough: it never goes back to the failing pod')
  t.same([...new Set(responses.map((r) => (JSON.parse(r.body) as EchoBody).pod))], ['echo-v2'], 'every answer came from echo-v2')
  t.ok(mesh.backend('echo-v1').received.length <= 20, 'echo-v1 got no request twice')
  t.equal(mesh.backend('echo-v2').received.length, 20, 'echo-v2 got each request once')
})

t.test('a 200 ms request timeout answers 504 within 300 ms against a 1 s backend', async (t) => {
  await toEchoV1(t, 'timeout', { timeouts: { request: '200ms' } })
  mesh.backend('echo-v1').handler = slow(1000)
  for (let i = 0; i < 3; i++) {
    const response = await mesh.client.request({ path: `/slow/${i}` })
    t.equal(response.status, 504, 'gateway timeout')
    t.ok(response.ms <= 300, `answered after ${Math.round(response.ms)} ms at the client (≤ 300)`)
  }
  const slowLines = (): Record<string, unknown>[] => mesh.accessLog.filter((line) => String(line.path).startsWith('/slow/'))
  // The waypoint logs a request when its answer is done, which may be just after the client has it.
  await waitFor('three access log lines', () => slowLines().length >= 3)
  const logged = slowLines()
  t.same(logged.map((line) => [line.status, line.flags]), [[504, 'UT'], [504, 'UT'], [504, 'UT']], 'logged as 504 with flag UT (upstream request timeout)')
})

t.test('outlier detection ejects an endpoint after 5 consecutive 5xx; traffic moves to the healthy one', async (t) => {
  await withResource(t, 'TrafficPolicy', 'outliers', {
    targetRefs: [{ name: 'echo' }],
    outlierDetection: { consecutive5xxErrors: 5, interval: '1s', baseEjectionTime: '30s' }
  })
  const ejections = (): Promise<number> => mesh.metrics().then((samples) =>
    sumOf(samples, 'ambit_outlier_ejections_total', { destination_service: 'echo.shop.svc.cluster.local' }))
  const before = await ejections()
  // 500: the implicit retry policy (503 only) does not hide these answers from the detector.
  mesh.backend('echo-v1').handler = always(500)

  // Round robin alternates between the two pods: echo-v1 answers its fifth 500 by request 10.
  const warmup = await mesh.client.many(10, 1, (i) => ({ path: `/warmup/${i}` }))
  t.equal(mesh.backend('echo-v1').received.length, 5, 'echo-v1 got every other request until ejected')
  t.same(statuses(warmup), { 200: 5, 500: 5 }, 'the client saw the 500s before the ejection')

  const after = await mesh.client.many(30, 3, (i) => ({ path: `/after/${i}` }))
  t.same(statuses(after), { 200: 30 }, 'after the ejection, every request succeeds')
  t.same([...new Set(after.map((r) => (JSON.parse(r.body) as EchoBody).pod))], ['echo-v2'], 'all on the healthy endpoint')
  t.equal(mesh.backend('echo-v1').received.length, 5, 'the ejected endpoint got nothing more')
  t.equal(await ejections() - before, 1, 'ambit_outlier_ejections_total counted the ejection')
})

t.test('a dead endpoint: connect failures are retried on the other endpoint and count toward its ejection', async (t) => {
  await withResource(t, 'TrafficPolicy', 'dead-endpoint', { targetRefs: [{ name: 'echo' }], outlierDetection: { consecutive5xxErrors: 5 } })
  const ejections = (): Promise<number> => mesh.metrics().then((samples) =>
    sumOf(samples, 'ambit_outlier_ejections_total', { destination_service: 'echo.shop.svc.cluster.local' }))
  const before = await ejections()
  const backend = mesh.backend('echo-v1')
  // Closing drops the connections the waypoint keeps to it: the first request must not be sent
  // on a dead keep-alive tunnel and wait for an answer that never comes.
  await backend.close()
  t.teardown(() => backend.listen())
  const responses = await mesh.client.many(20, 1, (i) => ({ path: `/dead/${i}` }))
  t.same(statuses(responses), { 200: 20 }, 'the client never sees the dead endpoint: each failed connect is retried on echo-v2')
  t.equal(await ejections() - before, 1, 'the connect failures ejected echo-v1')

  t.test('with no other endpoint, the client gets 503 UF', async (t) => {
    await toEchoV1(t, 'dead-only', {})
    const logged = mesh.accessLog.length
    const only = await mesh.client.many(3, 1, (i) => ({ path: `/dead-only/${i}` }))
    t.same(statuses(only), { 503: 3 }, 'every try failed to connect')
    await waitFor('the access log lines', () => mesh.accessLog.length >= logged + 3)
    t.same([...new Set(mesh.accessLog.slice(logged).map((line) => line.flags))], ['UF'], 'logged with flag UF (upstream connect failure)')
  })
})

t.test('the circuit breaker sheds load beyond maxParallelRequests with 503 UO, then recovers', async (t) => {
  await withResource(t, 'TrafficPolicy', 'breaker', { targetRefs: [{ name: 'echo-v1' }], circuitBreaker: { maxParallelRequests: 2 } })
  const overflowLabels = { reporter: 'waypoint', response_code: '503', response_flags: 'UO', destination_service: ECHO_V1_HOST }
  const overflowsBefore = sumOf(await mesh.metrics(), 'istio_requests_total', overflowLabels)
  // Long enough that the whole burst arrives while the first two are still in flight.
  mesh.backend('echo-v1').handler = slow(1500)
  const burst = await Promise.all(Array.from({ length: 8 }, (_, i) => mesh.client.request({ host: ECHO_V1_HOST, path: `/burst/${i}` })))
  t.same(statuses(burst), { 200: 2, 503: 6 }, 'two in flight, the other six shed')
  t.ok(burst.filter((r) => r.status === 503).every((r) => r.ms < 1000), 'shed at once, not after waiting')
  t.equal(mesh.backend('echo-v1').received.length, 2, 'shed requests never reach the backend')
  t.equal(await requestsCounted(overflowLabels, overflowsBefore + 6) - overflowsBefore, 6, 'istio_requests_total counts them with response_flags="UO"')

  mesh.backend('echo-v1').reset()
  const recovered = await Promise.all(Array.from({ length: 2 }, (_, i) => mesh.client.request({ host: ECHO_V1_HOST, path: `/recovered/${i}` })))
  const sequential = await mesh.client.many(5, 1, (i) => ({ host: ECHO_V1_HOST, path: `/after/${i}` }))
  t.same(statuses([...recovered, ...sequential]), { 200: 7 }, 'after the burst, requests succeed again')
})

t.test('the circuit breaker\'s pool: maxConnections 1 and maxPendingRequests 1 serve one, queue one, shed the rest', async (t) => {
  await withResource(t, 'TrafficPolicy', 'pool', { targetRefs: [{ name: 'echo-v1' }], circuitBreaker: { maxConnections: 1, maxPendingRequests: 1 } })
  const backend = mesh.backend('echo-v1')
  backend.handler = slow(800)
  // One request first, so the burst finds the single connection busy.
  const first = mesh.client.request({ host: ECHO_V1_HOST, path: '/pool/first' })
  await waitFor('the first request at the backend', () => backend.received.length === 1)
  const burst = await Promise.all(Array.from({ length: 4 }, (_, i) => mesh.client.request({ host: ECHO_V1_HOST, path: `/pool/${i}` })))
  t.equal((await first).status, 200)
  t.same(statuses(burst), { 200: 1, 503: 3 }, 'one waited for the connection, three overflowed')
  t.ok(burst.filter((r) => r.status === 503).every((r) => r.ms < 700), 'shed at once')
  t.same([...new Set(backend.received.map((r) => r.connection))].length, 1, 'both served requests shared the one connection')
})

t.test('maxRequestsPerConnection 1: each request on a new connection; without it, one kept alive', async (t) => {
  const backend = mesh.backend('echo-v1')
  await mesh.client.many(4, 1, (i) => ({ host: ECHO_V1_HOST, path: `/keepalive/${i}` }))
  t.equal(new Set(backend.received.map((r) => r.connection)).size, 1, 'one connection, reused')
  await withResource(t, 'TrafficPolicy', 'one-per-connection', { targetRefs: [{ name: 'echo-v1' }], circuitBreaker: { maxRequestsPerConnection: 1 } })
  backend.reset()
  const responses = await mesh.client.many(4, 1, (i) => ({ host: ECHO_V1_HOST, path: `/fresh/${i}` }))
  t.same(statuses(responses), { 200: 4 })
  t.equal(new Set(backend.received.map((r) => r.connection)).size, 4, 'four requests, four connections')
  await mesh.apply(JSON.stringify({ apiVersion: 'ambit.dev/v1alpha1', kind: 'TrafficPolicy', metadata: { name: 'one-per-connection', namespace: 'shop' }, spec: { targetRefs: [{ name: 'echo-v1' }], circuitBreaker: { maxRequestsPerConnection: 3 } } }))
  backend.reset()
  await mesh.client.many(6, 1, (i) => ({ host: ECHO_V1_HOST, path: `/three/${i}` }))
  const connections = backend.received.map((r) => r.connection)
  t.equal(new Set(connections).size, 2, 'maxRequestsPerConnection 3: six requests on two connections')
  t.equal(connections[0], connections[2], 'the first three on one')
})

t.test('fault injection', async (t) => {
  t.test('abort 50 % with 503 measures 50 ± 5 % over 1,000 requests', async (t) => {
    await withResource(t, 'TrafficPolicy', 'abort', { targetRefs: [{ name: 'echo-v1' }], faultInjection: { abort: { httpStatus: 503, percentage: 50 } } })
    const responses = await mesh.client.many(1000, 8, (i) => ({ host: ECHO_V1_HOST, path: `/fault/${i}` }))
    const counts = statuses(responses)
    const aborted = counts[503] ?? 0
    t.equal(aborted + (counts[200] ?? 0), 1000, 'only 503s and 200s')
    t.ok(Math.abs(aborted / 10 - 50) <= 5, `${(aborted / 10).toFixed(1)} % aborted (50 ± 5 %)`)
    t.equal(mesh.backend('echo-v1').received.length, 1000 - aborted, 'aborted requests never reach the backend (nor are retried)')
    const faultLabels = { reporter: 'waypoint', response_code: '503', response_flags: 'FI', destination_service: ECHO_V1_HOST }
    t.equal(await requestsCounted(faultLabels, aborted), aborted, 'counted with response_flags="FI" (no other test aborts)')
  })

  t.test('a 100 ms delay adds 100 ms to the median latency', async (t) => {
    await withResource(t, 'TrafficPolicy', 'delay', { targetRefs: [{ name: 'echo-v1' }], faultInjection: { delay: { fixedDelay: '100ms', percentage: 100 } } })
    // Requests with and without the delay take turns, so that the load of the moment weighs on both alike.
    const delayed: number[] = []
    const undelayed: number[] = []
    for (let i = 0; i < 30; i++) {
      delayed.push((await mesh.client.request({ host: ECHO_V1_HOST, path: `/latency/${i}` })).ms)
      undelayed.push((await mesh.client.request({ host: ECHO_V2_HOST, path: `/latency/${i}` })).ms)
    }
    const added = median(delayed) - median(undelayed)
    t.ok(added >= 90 && added <= 150, `median ${median(delayed).toFixed(1)} ms with the delay (echo-v1), ${median(undelayed).toFixed(1)} ms without (echo-v2): +${added.toFixed(1)} ms (90..150)`)
  })
})
