/**
 * L7 AuthorizationPolicy at the waypoint, and what the ztunnels do about L7 rules (DESIGN §2, §5),
 * on the real path client → node-a's ztunnel → waypoint → a node's ztunnel → pod:
 *  - a DENY on `POST /admin*` (targetRefs: the Service) answers 403 to those requests only, with a
 *    body that names nothing internal; GET /admin and POST /other still reach a pod, and the next
 *    request on the same keep-alive connection too;
 *  - a Service served by a waypoint takes its traffic only from the waypoint: the client's direct
 *    connection to a pod IP:port is refused (pods on the other node and on the client's own node);
 *  - L7 rules in a namespace without a waypoint fail closed at the ztunnel: an ALLOW whose only
 *    rule is a path, and a DENY with methods, both refuse connections at L4.
 *
 * In-process mesh (fixtures/waypoint-b/policy): node-a 127.0.7.32 with the client 127.0.7.41 and
 * web-a 127.0.7.42; node-b 127.0.7.33 with the waypoint 127.0.7.35, web-b 127.0.7.43 and the
 * wpb-plain pods allow-l7 .45, deny-l7 .46, open .47; every pod serves HTTP on 18080.
 */
import t from 'tap'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { startWaypointMesh } from './helpers/waypoint-b-mesh.js'
import { meshRequest, startMeshBridge, type MeshBridge } from './helpers/waypoint-b-bridge.js'
import { startWebPod, type WebAnswer } from './helpers/waypoint-b-pods.js'
import { socks5Connect } from './helpers/socks5-client.js'
import { samplesOf, scrape, sumOf } from './helpers/prometheus.js'
import { waitFor } from './helpers/wait.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/waypoint-b/policy', import.meta.url))
const CLIENT = '127.0.7.41'
const WAYPOINT = '127.0.7.35'
const POD_PORT = 18080
const WEB_HOST = 'web.wpb-policy.svc.cluster.local'
/** SOCKS5 reply 2: connection not allowed by ruleset. */
const NOT_ALLOWED = 2

const mesh = await startWaypointMesh(t, FIXTURE)
const socks = mesh.socks('node-a')
const webA = await startWebPod(t, '127.0.7.42', POD_PORT, 'web-a')
const webB = await startWebPod(t, '127.0.7.43', POD_PORT, 'web-b')
const allowL7 = await startWebPod(t, '127.0.7.45', POD_PORT, 'allow-l7')
const denyL7 = await startWebPod(t, '127.0.7.46', POD_PORT, 'deny-l7')
await startWebPod(t, '127.0.7.47', POD_PORT, 'open')
const web = await startMeshBridge(t, { podIp: CLIENT, socks, host: WEB_HOST, port: 80 })

/** The requests the web pods saw (both of them). */
function webSaw (): string[] {
  return [...webA.seen, ...webB.seen].map((r) => `${r.method} ${r.path}`)
}

/** What a SOCKS5 CONNECT from the client pod to host:port gets as its reply. */
async function socksReply (host: string, port: number): Promise<number> {
  const { reply, socket } = await socks5Connect({ proxy: socks, localAddress: CLIENT, host, port })
  socket.destroy()
  return reply
}

/** One request through the bridge's Service; a POST carries a small JSON body, as a real one would. */
async function send (bridge: MeshBridge, method: string, path: string, agent?: http.Agent): Promise<{ status: number, body: string }> {
  const body = method === 'POST' ? { body: '{"name":"x"}', headers: { 'content-type': 'application/json' } } : {}
  return await meshRequest(bridge, { method, path, ...body, ...(agent !== undefined && { agent }) })
}

t.test('DENY POST /admin* answers 403 to those requests only, naming nothing internal', async (t) => {
  for (const path of ['/admin', '/admin/users', '/administrator?x=1']) {
    const denied = await send(web, 'POST', path)
    t.equal(denied.status, 403, `POST ${path} is denied`)
    t.equal(denied.body, 'RBAC: access denied\n', 'the body is the plain RBAC message')
    for (const internal of ['no-admin-writes', 'wpb-policy', 'waypoint', 'spiffe', '127.0.7', '10.96.7', 'node-', 'rule']) {
      t.notOk(denied.body.includes(internal), `the body does not name ${internal}`)
    }
  }
  const allowedRequests: Array<[string, string]> = [['GET', '/admin'], ['POST', '/other'], ['GET', '/admin/users'], ['POST', '/adm']]
  for (const [method, path] of allowedRequests) {
    const allowed = await send(web, method, path)
    t.equal(allowed.status, 200, `${method} ${path} is allowed`)
    t.match(JSON.parse(allowed.body) as WebAnswer, { method, path, pod: /^web-[ab]$/ }, 'answered by a web pod')
  }
  t.notOk(webSaw().some((r) => r.startsWith('POST /admin')), 'no denied request reached a pod')

  // A denial does not cost the connection: the next request on it goes through.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const connectionsBefore = web.accepted
  t.equal((await send(web, 'POST', '/admin', agent)).status, 403, 'denied on a keep-alive connection')
  const next = await send(web, 'GET', '/admin', agent)
  t.equal(next.status, 200, 'the next request on that connection is served')
  t.equal(web.accepted - connectionsBefore, 1, 'both went over one connection')

  await waitFor('the waypoint counts the denials', async () =>
    sumOf(await scrape(mesh.waypointMetricsUrl(WAYPOINT)), 'istio_requests_total', { response_code: '403', response_flags: 'UAEX', destination_service: WEB_HOST }) === 4, 10_000)
  t.pass('istio_requests_total counts 4 denials (403, UAEX)')
  const hits = samplesOf(await scrape(mesh.waypointMetricsUrl(WAYPOINT)), 'ambit_authorization_rule_hits_total', {}).map((s) => [s.labels.policy, s.labels.rule, s.labels.action, s.value])
  t.same(hits, [['wpb-policy/no-admin-writes', '0', 'DENY', 4]], 'the waypoint counted the DENY rule\'s four hits (the allowed requests matched no rule)')
})

t.test('a Service served by a waypoint takes traffic only from the waypoint', async (t) => {
  const seenBefore = webSaw().length
  t.equal(await socksReply('127.0.7.43', POD_PORT), NOT_ALLOWED, 'straight to web-b (other node): refused')
  t.equal(await socksReply('127.0.7.42', POD_PORT), NOT_ALLOWED, 'straight to web-a (the client\'s own node): refused')
  t.equal(webSaw().length, seenBefore, 'neither pod saw a request')
  const refusals = mesh.logs.filter((r) => r.msg === 'inbound connection refused' && /must come from/.test(String(r.reason)))
  t.same(new Set(refusals.map((r) => r.node)), new Set(['node-a', 'node-b']), 'each pod\'s ztunnel refused, saying traffic must come from the waypoint')

  const viaService = await send(web, 'GET', '/through-the-service')
  t.equal(viaService.status, 200, 'through the Service (and its waypoint) it works')
  t.equal(await socksReply(WEB_HOST, 80), 0, 'a SOCKS5 CONNECT to the Service itself succeeds')
})

t.test('L7 rules in a namespace without a waypoint fail closed at the ztunnel', async (t) => {
  const open = await startMeshBridge(t, { podIp: CLIENT, socks, host: 'open.wpb-plain.svc.cluster.local', port: 80 })
  t.equal((await send(open, 'GET', '/public')).status, 200, 'a pod with no policy is reachable (no waypoint involved)')

  t.equal(await socksReply('allow-l7.wpb-plain.svc.cluster.local', 80), NOT_ALLOWED, 'ALLOW with only a path rule: refused at L4')
  t.equal(await socksReply('127.0.7.45', POD_PORT), NOT_ALLOWED, '... also straight to the pod')
  t.equal(await socksReply('deny-l7.wpb-plain.svc.cluster.local', 80), NOT_ALLOWED, 'DENY with L7 fields: refused at L4')
  t.equal(await socksReply('127.0.7.46', POD_PORT), NOT_ALLOWED, '... also straight to the pod')
  t.same([allowL7.seen.length, denyL7.seen.length], [0, 0], 'neither pod saw anything')

  const reasons = mesh.logs.filter((r) => r.node === 'node-b' && r.msg === 'inbound connection refused').map((r) => String(r.reason))
  t.ok(reasons.some((r) => r.includes('public-paths-only') && r.includes('HTTP fields never match at L4')), 'the ALLOW refusal says its HTTP rule cannot match at L4')
  t.ok(reasons.some((r) => r.includes('no-writes') && r.includes('cannot be checked at L4')), 'the DENY refusal says its HTTP fields count as matched')
})
