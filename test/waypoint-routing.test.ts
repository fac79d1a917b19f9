/**
 * Waypoint routing, through the real path: client pod → node-a's ztunnel (SOCKS5) → HBONE →
 * waypoint → HBONE → the backend's ztunnel → backend server, all on 127.0.6.x loopback.
 * Weighted splits, Gateway API match precedence, filters (header modifiers, redirect, rewrite),
 * W3C trace context, Istio request metrics and the JSON access log.
 */
import t, { type Test } from 'tap'
import http2 from 'node:http2'
import { fileURLToPath } from 'node:url'
import { ECHO_HOST, echo, startWaypointMesh, type BackendHandler, type EchoBody, type MeshResponse } from './helpers/waypoint-mesh.js'
import { sumOf } from './helpers/prometheus.js'
import { waitFor } from './helpers/wait.js'
import { socks5Connect } from './helpers/socks5-client.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/waypoint-a/routing', import.meta.url))
const mesh = await startWaypointMesh(t, FIXTURE)

// Node warns once per emitter: listen from the start, check at the end (the last test).
const warnings: Error[] = []
const onWarning = (warning: Error): void => { if (warning.name === 'MaxListenersExceededWarning') warnings.push(warning) }
process.on('warning', onWarning)
t.teardown(() => { process.off('warning', onWarning) })

const CLIENT = 'spiffe://cluster.local/ns/shop/sa/client'
const ECHO = 'spiffe://cluster.local/ns/shop/sa/echo'

/** An HTTPRoute on Service shop/echo port 80, as the JSON form of its YAML. */
function echoRoute (name: string, rules: readonly object[]): string {
  return JSON.stringify({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name, namespace: 'shop' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'echo', port: 80 }], rules }
  })
}

/** Applies `route` for the test only. */
async function withRoute (t: Test, name: string, rules: readonly object[]): Promise<void> {
  await mesh.apply(echoRoute(name, rules))
  t.teardown(() => mesh.remove(`HTTPRoute/shop/${name}`))
}

function echoed (response: MeshResponse): EchoBody {
  if (response.status !== 200) throw new Error(`expected 200 from the backend, got ${response.status}: ${response.body}`)
  return JSON.parse(response.body) as EchoBody
}

t.beforeEach(() => mesh.resetBackends())

t.test('a 90/10 HTTPRoute split lands within ±3 % of 90/10 over 2,000 requests', async (t) => {
  await withRoute(t, 'split', [{
    backendRefs: [{ name: 'echo-v1', port: 80, weight: 90 }, { name: 'echo-v2', port: 80, weight: 10 }]
  }])
  const responses = await mesh.client.many(2000, 8, () => ({ path: '/split' }))
  const pods = responses.map((r) => echoed(r).pod)
  const v1 = pods.filter((pod) => pod === 'echo-v1').length
  const v2 = pods.filter((pod) => pod === 'echo-v2').length
  t.equal(v1 + v2, 2000, 'every request answered by one of the two versions')
  t.ok(Math.abs(v1 / 2000 - 0.9) <= 0.03, `echo-v1 took ${(v1 / 20).toFixed(1)} % (90 ± 3 %)`)
  t.ok(Math.abs(v2 / 2000 - 0.1) <= 0.03, `echo-v2 took ${(v2 / 20).toFixed(1)} % (10 ± 3 %)`)
  t.equal(mesh.backend('echo-v1').received.length, v1, 'the backends saw exactly those requests (no retries, no duplicates)')
})

t.test('matches follow the Gateway API precedence', async (t) => {
  /** A rule whose requests carry x-rule: TAG to the backend, so the test sees which rule took them. */
  const tagged = (tag: string, match: object): object => ({
    matches: [match],
    filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-rule', value: tag }] } }]
  })
  // Listed so that, where it matters, the rule that must win comes after the one it beats.
  await withRoute(t, 'precedence', [
    tagged('prefix /a', { path: { type: 'PathPrefix', value: '/a' } }),
    tagged('prefix /a/b', { path: { type: 'PathPrefix', value: '/a/b' } }),
    tagged('exact /a/b', { path: { type: 'Exact', value: '/a/b' } }),
    tagged('any method', { path: { type: 'PathPrefix', value: '/m' } }),
    tagged('POST', { path: { type: 'PathPrefix', value: '/m' }, method: 'POST' }),
    tagged('one header', { path: { type: 'PathPrefix', value: '/h' }, headers: [{ name: 'x-a', value: '1' }] }),
    tagged('two headers', { path: { type: 'PathPrefix', value: '/h' }, headers: [{ name: 'x-a', value: '1' }, { name: 'x-b', value: '2' }] }),
    tagged('one param', { path: { type: 'PathPrefix', value: '/q' }, queryParams: [{ name: 'a', value: '1' }] }),
    tagged('two params', { path: { type: 'PathPrefix', value: '/q' }, queryParams: [{ name: 'a', value: '1' }, { name: 'b', value: '2' }] }),
    tagged('first', { path: { type: 'PathPrefix', value: '/f' } }),
    tagged('second', { path: { type: 'PathPrefix', value: '/f' } })
  ])
  const cases: { why: string, method?: string, path: string, headers?: Record<string, string>, rule: string | 404 }[] = [
    { why: 'Exact beats PathPrefix', path: '/a/b', rule: 'exact /a/b' },
    { why: 'the longest PathPrefix wins', path: '/a/b/c', rule: 'prefix /a/b' },
    { why: 'a prefix matches whole path segments only', path: '/a/bc', rule: 'prefix /a' },
    { why: 'a method match beats none', method: 'POST', path: '/m', rule: 'POST' },
    { why: 'without the method, the rule without one', path: '/m', rule: 'any method' },
    { why: 'more header matches win', path: '/h', headers: { 'x-a': '1', 'x-b': '2' }, rule: 'two headers' },
    { why: 'a request with fewer headers takes the rule it satisfies', path: '/h', headers: { 'x-a': '1' }, rule: 'one header' },
    { why: 'more query param matches win', path: '/q?b=2&a=1', rule: 'two params' },
    { why: 'a request with fewer params takes the rule it satisfies', path: '/q?a=1', rule: 'one param' },
    { why: 'the first rule wins within a route', path: '/f', rule: 'first' },
    { why: 'no rule matches: 404', path: '/nothing', rule: 404 },
    { why: 'a header-only miss is no match either', path: '/h', headers: { 'x-b': '2' }, rule: 404 }
  ]
  for (const c of cases) {
    const response = await mesh.client.request({ path: c.path, method: c.method ?? 'GET', headers: c.headers ?? {} })
    if (c.rule === 404) {
      t.equal(response.status, 404, `${c.why} (${c.path})`)
      continue
    }
    t.equal(echoed(response).headers['x-rule'], c.rule, `${c.why} (${c.method ?? 'GET'} ${c.path})`)
  }
  t.equal(mesh.backend('echo-v1').received.length + mesh.backend('echo-v2').received.length, cases.filter((c) => c.rule !== 404).length,
    'unmatched requests never reach a backend')
})

t.test('filters: header modifiers, a redirect, a URL rewrite', async (t) => {
  await withRoute(t, 'filters', [
    {
      matches: [{ path: { type: 'PathPrefix', value: '/mod' } }],
      filters: [
        { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-set', value: 'by-route' }], add: [{ name: 'x-added', value: 'more' }], remove: ['x-drop'] } },
        { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-resp', value: 'by-route' }], remove: ['x-powered'] } }
      ]
    },
    {
      matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
      filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' }, statusCode: 301 } }]
    },
    {
      matches: [{ path: { type: 'PathPrefix', value: '/moved' } }],
      filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', hostname: 'shop.example.com' } }]
    },
    {
      matches: [{ path: { type: 'PathPrefix', value: '/v1' } }],
      filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/api/v1' } } }]
    }
  ])

  mesh.backend('echo-v1').handler = mesh.backend('echo-v2').handler = (request, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'x-powered': 'backend' }).end(JSON.stringify(request))
  }
  const modified = await mesh.client.request({ path: '/mod', headers: { 'x-added': 'first', 'x-drop': 'secret', 'x-keep': 'kept' } })
  const seen = echoed(modified).headers
  t.equal(seen['x-set'], 'by-route', 'RequestHeaderModifier set: the backend sees the header')
  t.equal(seen['x-added'], 'first,more', 'add appends to the client\'s value')
  t.notOk('x-drop' in seen, 'remove: the backend does not see the header')
  t.equal(seen['x-keep'], 'kept', 'other headers pass untouched')
  t.equal(modified.headers['x-resp'], 'by-route', 'ResponseHeaderModifier set: the client sees the header')
  t.notOk('x-powered' in modified.headers, 'ResponseHeaderModifier remove: the client does not see the backend\'s header')

  const permanent = await mesh.client.request({ path: '/old/page?x=1' })
  t.equal(permanent.status, 301, 'the configured redirect status')
  t.equal(permanent.headers.location, 'http://echo.shop.svc.cluster.local/new/page?x=1', 'the prefix replaced, the query kept, port 80 left out')
  const found = await mesh.client.request({ path: '/moved/here' })
  t.equal(found.status, 302, 'the default redirect status')
  t.equal(found.headers.location, 'https://shop.example.com/moved/here', 'a new scheme and hostname')

  const rewritten = echoed(await mesh.client.request({ path: '/v1/items?page=2' }))
  t.equal(rewritten.path, '/api/v1/items?page=2', 'URLRewrite: the backend sees the rewritten path')

  const reached = [...mesh.backend('echo-v1').received, ...mesh.backend('echo-v2').received].map((r) => r.path)
  t.same(reached.sort(), ['/api/v1/items?page=2', '/mod'], 'redirected requests never reach a backend')
})

t.test('W3C trace context: same trace, a new span per hop, baggage passed on', async (t) => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
  const clientSpan = '00f067aa0ba902b7'
  const response = await mesh.client.request({
    path: '/traced',
    headers: { traceparent: `00-${traceId}-${clientSpan}-01`, baggage: 'user=alice,tier=gold;ttl=5' }
  })
  const seen = echoed(response).headers
  const parts = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(String(seen.traceparent))
  t.ok(parts, `the backend gets a valid traceparent (${String(seen.traceparent)})`)
  t.equal(parts?.[1], traceId, 'the client\'s trace id')
  t.not(parts?.[2], clientSpan, 'a new span id, the waypoint\'s own')
  t.equal(parts?.[3], '01', 'the sampled flag kept')
  t.equal(seen.baggage, 'user=alice,tier=gold;ttl=5', 'baggage passed through as it is')

  const untraced = echoed(await mesh.client.request({ path: '/untraced' })).headers
  t.match(String(untraced.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, 'a request without a trace starts one')
})

t.test('istio_requests_total with reporter="waypoint", codes and principals; one access log line per request', async (t) => {
  const ok = { reporter: 'waypoint', response_code: '200', source_principal: CLIENT, source_workload: 'client', destination_principal: ECHO, destination_service: 'echo.shop.svc.cluster.local', response_flags: '-' }
  const notFound = { reporter: 'waypoint', response_code: '404', source_principal: CLIENT, response_flags: 'NR' }
  await withRoute(t, 'metrics', [{ matches: [{ path: { type: 'PathPrefix', value: '/counted' } }] }])
  const before = await mesh.metrics()
  const logged = mesh.accessLog.length
  const traceId = 'a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5'
  const paths = ['/counted/1', '/counted/2', '/counted/3', '/counted/4', '/counted/5']
  for (const path of paths) t.equal((await mesh.client.request({ path, headers: { traceparent: `00-${traceId}-1111111111111111-01` } })).status, 200, `GET ${path}`)
  t.equal((await mesh.client.request({ path: '/not-routed' })).status, 404, 'GET /not-routed')

  // The waypoint counts a request when its answer is done, which may be just after the client has it.
  const delta = async (labels: Record<string, string>): Promise<number> =>
    sumOf(await mesh.metrics(), 'istio_requests_total', labels) - sumOf(before, 'istio_requests_total', labels)
  await waitFor('the requests to be counted', async () => (await delta(ok)) >= 5 && (await delta(notFound)) >= 1)
  t.equal(await delta(ok), 5, '200s counted with the client and echo principals')
  t.equal(await delta(notFound), 1, 'the 404 counted with response_flags NR')
  const after = await mesh.metrics()
  t.ok(sumOf(after, 'istio_request_duration_milliseconds_count', ok) >= 5, 'durations observed')
  t.ok(sumOf(after, 'istio_response_bytes_sum', ok) > 0, 'response bytes observed')

  await waitFor('six access log lines', () => mesh.accessLog.length >= logged + 6)
  const lines = mesh.accessLog.slice(logged)
  t.equal(lines.length, 6, 'one line per request')
  for (const path of paths) {
    const mine = lines.filter((line) => line.path === path)
    t.equal(mine.length, 1, `exactly one line for ${path}`)
    t.match(mine[0], {
      method: 'GET', authority: 'echo.shop.svc.cluster.local', path, status: 200, flags: '-',
      upstream: /^127\.0\.6\.2[12]:8080$/, duration: Number, traceId
    }, `the line for ${path} has method, authority, path, status, flags, upstream, duration, traceId`)
  }
  t.match(lines.find((line) => line.path === '/not-routed'), { status: 404, flags: 'NR', traceId: /^[0-9a-f]{32}$/ }, 'the 404 is logged too, with flag NR')
})

t.test('keep-alive tunnels to backends do not pile up listeners', async (t) => {
  // Tunnels are reused by the waypoint's http.Agent; each reuse used to leave an 'error' listener.
  await mesh.client.many(600, 4, (i) => ({ path: `/reuse/${i}` }))
  await new Promise((resolve) => setImmediate(resolve))
  t.same(warnings.map((w) => w.message), [], 'no MaxListenersExceededWarning in this file (2,600+ keep-alive requests)')
})

t.test('RequestMirror: the mirror backend gets a copy, the client only the primary answer', async (t) => {
  await withRoute(t, 'mirror', [{
    matches: [{ path: { type: 'PathPrefix', value: '/mirrored' } }],
    filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'echo-v2', port: 80 } } }],
    backendRefs: [{ name: 'echo-v1', port: 80 }]
  }])
  const response = await mesh.client.request({ path: '/mirrored/1' })
  t.equal(echoed(response).pod, 'echo-v1', 'the client sees the primary backend')
  await waitFor('the mirrored copy', () => mesh.backend('echo-v2').received.some((r) => r.path === '/mirrored/1'), 5000)
  const copy = mesh.backend('echo-v2').received.find((r) => r.path === '/mirrored/1')!
  t.match(copy.headers.host, /-shadow$/, 'the copy is marked as a shadow request, as Envoy does')
  t.equal(mesh.backend('echo-v1').received.filter((r) => r.path === '/mirrored/1').length, 1)
})

t.test('answers pass on whole: a large body, repeated headers, HEAD, 204; one the backend cuts short reaches the client cut short', async (t) => {
  const big = Buffer.alloc(4 * 1024 * 1024, 'a')
  const answer: BackendHandler = (request, res) => {
    if (request.path === '/big') {
      res.writeHead(200, { 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'] }).end(big)
    } else if (request.path === '/empty') {
      res.writeHead(204).end()
    } else if (request.path === '/cut') {
      res.writeHead(200, { 'content-length': '100000' }).write(Buffer.alloc(1000))
      setTimeout(() => res.socket?.destroy(), 50)
    } else {
      echo(request, res)
    }
  }
  for (const pod of ['echo-v1', 'echo-v2']) mesh.backend(pod).handler = answer
  const before = sumOf(await mesh.metrics(), 'istio_response_bytes_sum', { reporter: 'waypoint' })

  const large = await mesh.client.request({ path: '/big' })
  t.equal(large.status, 200)
  t.equal(large.body.length, big.length, 'every byte of the 4 MiB body arrived')
  t.ok(/^a+$/.test(large.body), 'and none changed')
  t.same(large.headers['set-cookie'], ['a=1', 'b=2'], 'a repeated header keeps every value')
  const head = await mesh.client.request({ path: '/big', method: 'HEAD' })
  t.equal(head.status, 200, 'HEAD answered')
  t.equal(head.body, '', 'with no body')
  const empty = await mesh.client.request({ path: '/empty' })
  t.equal(empty.status, 204, '204 passed on')
  await t.rejects(mesh.client.request({ path: '/cut' }), 'an answer cut short by the backend is cut short for the client')
  t.equal((await mesh.client.request({ path: '/after' })).status, 200, 'the next request is answered')
  await waitFor('the large body to be counted', async () => sumOf(await mesh.metrics(), 'istio_response_bytes_sum', { reporter: 'waypoint' }) - before >= big.length)
})

t.test('odd answers: a status fastify refuses becomes a 5xx, a hop-by-hop header HTTP/2 forbids is dropped; the waypoint goes on serving', async (t) => {
  const answer: BackendHandler = (request, res) => {
    if (request.path === '/status-999') res.writeHead(999).end('odd\n')
    // TE is allowed in an HTTP/1.1 answer; an HTTP/2 response may not carry it (Node throws).
    else if (request.path === '/te') res.writeHead(200, { te: 'gzip', 'content-type': 'text/plain' }).end('te\n')
    else echo(request, res)
  }
  for (const pod of ['echo-v1', 'echo-v2']) mesh.backend(pod).handler = answer
  const odd = await mesh.client.request({ path: '/status-999' })
  t.ok(odd.status >= 500 && odd.status <= 599, `status 999 from the backend reached the client as ${odd.status}`)
  t.equal((await mesh.client.request({ path: '/after-999' })).status, 200, 'the next request is answered')

  const node = mesh.state.nodes[mesh.state.workloads['shop/client']!.node]!
  const { socket, reply } = await socks5Connect({ proxy: { host: node.address, port: 15080 }, localAddress: mesh.state.workloads['shop/client']!.ip, host: ECHO_HOST, port: 80 })
  t.equal(reply, 0, 'the mesh accepted the h2c connection')
  socket.resume()
  const session = http2.connect(`http://${ECHO_HOST}`, { createConnection: () => socket })
  t.teardown(() => session.destroy())
  const h2Answer = async (path: string): Promise<http2.IncomingHttpHeaders> => await new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path })
    stream.on('response', resolve)
    stream.on('error', reject)
    stream.resume()
  })
  const te = await h2Answer('/te')
  t.equal(te[':status'], 200, 'an HTTP/1.1 answer with TE: gzip reaches an h2c client')
  t.equal(te.te, undefined, 'without the hop-by-hop header')
  t.equal((await h2Answer('/after-te'))[':status'], 200, 'the same session is served next')
})

t.test('an HTTP/1.1 Upgrade (WebSocket style) passes through the waypoint untouched', async (t) => {
  for (const pod of ['echo-v1', 'echo-v2']) {
    mesh.backend(pod).upgradeHandler = (request, socket) => {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${request.headers.upgrade ?? ''}\r\nconnection: Upgrade\r\nx-pod: ${pod}\r\n\r\n`)
      socket.pipe(socket)
    }
  }
  t.teardown(() => { for (const pod of ['echo-v1', 'echo-v2']) mesh.backend(pod).upgradeHandler = (_r, s) => s.destroy() })
  const node = mesh.state.nodes[mesh.state.workloads['shop/client']!.node]!
  const { socket, reply } = await socks5Connect({ proxy: { host: node.address, port: 15080 }, localAddress: mesh.state.workloads['shop/client']!.ip, host: 'echo.shop.svc.cluster.local', port: 80 })
  t.teardown(() => socket.destroy())
  t.equal(reply, 0, 'the mesh accepted the connection')
  socket.resume()
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString('latin1') })
  socket.write('GET /chat HTTP/1.1\r\nhost: echo.shop.svc.cluster.local\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n')
  await waitFor('the 101 answer', () => received.includes('\r\n\r\n'), 5000)
  t.match(received, /^HTTP\/1\.1 101 Switching Protocols/)
  t.match(received, /upgrade: websocket/i)
  const afterHandshake = received.length
  socket.write('ping over the upgraded connection')
  await waitFor('the echo', () => received.slice(afterHandshake).includes('ping over the upgraded connection'), 5000)
  t.pass('bytes flow both ways after the upgrade')
})
