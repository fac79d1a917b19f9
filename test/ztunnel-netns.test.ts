/**
 * Multi-node capture, end to end, with real processes in real network namespaces (needs root;
 * fails, never skips, without it): plain `curl` in a pod namespace is captured by its node's
 * ztunnel, tunnelled over HBONE to the other node's ztunnel and answered by a real HTTP server
 * in the destination pod's namespace. See test/helpers/netns-mesh.ts for the topology and
 * test/fixtures/netns-mesh/ for the mesh. The subtests run in order on one mesh.
 */
import t, { type Test } from 'tap'
import type { ListenerAnswer } from './fixtures/capture-listener.js'
import {
  NODES, POD_IPS, SERVER_PORT, SERVICE, startNetnsMesh, type NetnsMesh, type NodeName, type PodName
} from './helpers/netns-mesh.js'
import { parseMetrics, sumOf } from './helpers/prometheus.js'
import { waitFor } from './helpers/wait.js'

const SERVICE_URL = `http://${SERVICE.ip}:${SERVICE.port}/`
const SERVER_URL = `http://${POD_IPS.server}:${SERVER_PORT}/`
const OPENED = 'istio_tcp_connections_opened_total'
const principal = (namespace: string, serviceAccount: string): string => `spiffe://cluster.local/ns/${namespace}/sa/${serviceAccount}`

const mesh: NetnsMesh = await startNetnsMesh(t)
t.afterEach((child: Test) => {
  if (!child.passing()) console.error(mesh.logs())
})

/** Calls the echo server; resolves with its answer, or undefined when the connection failed. */
async function call (from: PodName, url: string, timeoutSeconds = 5): Promise<ListenerAnswer | undefined> {
  const result = await mesh.curl(from, url, timeoutSeconds)
  return result.code === 0 ? JSON.parse(result.stdout) as ListenerAnswer : undefined
}

/** The connections a node's ztunnel counted with these labels. */
async function opened (node: NodeName, labels: Record<string, string>): Promise<number> {
  return sumOf(parseMetrics(await mesh.metrics(node)), OPENED, labels)
}

/** Rule lines ('-A ...') of both iptables backends of a node. */
async function natRules (node: NodeName): Promise<{ nft: string[], legacy: string[] }> {
  const saves = await mesh.natSaves(node)
  const rules = (saved: string): string[] => saved.split('\n').filter((line) => line.startsWith('-A '))
  return { nft: rules(saves.nft), legacy: rules(saves.legacy) }
}

const captures = (rules: readonly string[], ip: string): boolean => rules.some((line) => line.includes(` -s ${ip}/32 `))

t.test('capture rules are in place on both nodes, in one backend', async (t) => {
  const a = await natRules('node-a')
  t.ok(captures(a.nft, POD_IPS.client), 'node-a captures the client pod (iptables-nft on a clean namespace)')
  t.notOk(captures(a.nft, POD_IPS.outsider), 'but not the pod outside the mesh')
  t.notOk(captures(a.nft, POD_IPS.newcomer), 'nor a pod that is not in the mesh state yet')
  const b = await natRules('node-b')
  t.ok(b.nft.some((line) => line.includes(`-d ${POD_IPS.server}/32 `) && line.includes('--to-ports 15006')), 'node-b captures plaintext to the server pod')
  t.same([...a.legacy, ...b.legacy], [], 'nothing in the legacy tables')
})

t.test('a plain curl to a ClusterIP is captured, tunnelled over HBONE and answered', async (t) => {
  const before = await opened('node-b', { reporter: 'destination', source_principal: principal('client', 'client') })
  const answer = await call('client', SERVICE_URL)
  t.match(answer, { listenPort: SERVER_PORT, remote: '10.80.2.1', redirected: false },
    'the server pod answered a connection node-b\'s ztunnel opened from the node')
  t.equal(await opened('node-b', {
    reporter: 'destination',
    source_principal: principal('client', 'client'),
    destination_principal: principal('server', 'echo'),
    destination_service: 'echo.server.svc.cluster.local',
    connection_security_policy: 'mutual_tls',
    response_flags: '-'
  }), before + 1, 'node-b reports the connection as destination, with mutual TLS and both identities')
  t.ok(await opened('node-a', { reporter: 'source', source_principal: principal('client', 'client'), connection_security_policy: 'mutual_tls' }) >= 1,
    'node-a reports it as source')
})

t.test('plaintext from outside the mesh to a STRICT pod is captured inbound and refused', async (t) => {
  const refusedBefore = await opened('node-b', { reporter: 'destination', connection_security_policy: 'none', response_flags: 'MTLS_REQUIRED' })
  const strict = await mesh.curl('outsider', SERVER_URL)
  t.not(strict.code, 0, `refused (curl: ${strict.stderr.trim()})`)
  t.equal(await opened('node-b', { reporter: 'destination', connection_security_policy: 'none', response_flags: 'MTLS_REQUIRED' }),
    refusedBefore + 1, 'by node-b\'s inbound plaintext capture, for want of mutual TLS')

  await mesh.apply('permissive.yaml')
  let answer: ListenerAnswer | undefined
  await waitFor('PERMISSIVE to let plaintext through', async () => (answer = await call('outsider', SERVER_URL, 2)) !== undefined, 15_000)
  t.match(answer, { listenPort: SERVER_PORT, remote: '10.80.2.1' }, 'with PERMISSIVE it passes, through node-b\'s ztunnel')
  await mesh.apply('strict.yaml')
  await waitFor('STRICT again', async () => (await mesh.curl('outsider', SERVER_URL, 2)).code !== 0, 15_000)
})

t.test('node agent: a pod added later is captured, and released when it leaves', async (t) => {
  t.equal(await call('newcomer', SERVICE_URL, 2), undefined, 'before it joins, the ClusterIP leads nowhere')

  await mesh.apply('newcomer.yaml')
  await waitFor('node-a to capture the new pod', async () => captures((await natRules('node-a')).nft, POD_IPS.newcomer), 15_000)
  let answer: ListenerAnswer | undefined
  // Its certificate may take a moment more than the rules: retry until it is issued.
  await waitFor('the new pod\'s call to go through', async () => (answer = await call('newcomer', SERVICE_URL, 2)) !== undefined, 15_000)
  t.match(answer, { listenPort: SERVER_PORT, remote: '10.80.2.1' }, 'its curl to the ClusterIP works through the mesh')
  t.ok(await opened('node-b', { reporter: 'destination', source_principal: principal('client', 'newcomer'), connection_security_policy: 'mutual_tls' }) >= 1,
    'node-b saw the new pod\'s identity')

  await mesh.apply('newcomer-finished.yaml')
  await waitFor('node-a to release the finished pod', async () => !captures((await natRules('node-a')).nft, POD_IPS.newcomer), 15_000)
  const rules = await natRules('node-a')
  t.notOk([...rules.nft, ...rules.legacy].some((line) => line.includes(POD_IPS.newcomer)), 'no rule names it in either backend')
  t.ok(captures(rules.nft, POD_IPS.client), 'the other pods stay captured')
  t.equal(await call('newcomer', SERVICE_URL, 2), undefined, 'and its traffic is no longer captured')
})

t.test('a DENY AuthorizationPolicy refuses the same call within 2 s', async (t) => {
  t.ok(await call('client', SERVICE_URL) !== undefined, 'allowed before')
  const deniedBefore = await opened('node-b', { reporter: 'destination', source_principal: principal('client', 'client'), response_flags: 'UAEX' })
  await mesh.apply('deny.yaml')
  const applied = Date.now()
  let elapsed = Infinity
  await waitFor('the call to be refused', async () => {
    const refused = await call('client', SERVICE_URL, 2) === undefined
    if (refused) elapsed = Date.now() - applied
    return refused
  }, 15_000)
  t.ok(elapsed < 2000, `refused ${elapsed} ms after apply exited`)
  t.equal(await call('client', SERVICE_URL, 2), undefined, 'and stays refused')
  t.ok(await opened('node-b', { reporter: 'destination', source_principal: principal('client', 'client'), response_flags: 'UAEX' }) > deniedBefore,
    'by node-b\'s authorization')
})

t.test('SIGTERM: each ztunnel exits 0 and leaves no rule behind', async (t) => {
  for (const node of NODES) {
    t.equal(await mesh.terminate(node), 0, `the ztunnel of ${node} exits 0`)
    const saves = await mesh.natSaves(node)
    t.notMatch(saves.nft, /AMBIT/, `${node}: no chain or jump of ours in iptables-nft-save`)
    t.notMatch(saves.legacy, /AMBIT/, `${node}: nor in iptables-legacy-save`)
  }
  t.equal(await call('client', SERVICE_URL, 2), undefined, 'the client pod is no longer captured')
})
