/**
 * The controller in a cluster: `ambit controller --kubeconfig` (a child process) against the
 * Kubernetes API stand-in, writing a real Redis. Every call it makes must be one the manifests'
 * RBAC grants (CONTROLLER_API_ACCESS): the stand-in refuses anything else with 403.
 */
import t, { type Test } from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { runCli, startCli, type LongRunning } from './helpers/cli.js'
import { KubeApi, type KubeObject } from './helpers/kube-api.js'
import { startRedis } from './helpers/redis.js'
import { waitFor } from './helpers/wait.js'
import { openStore } from '../control/open-store.js'
import { CONTROLLER_API_ACCESS, WAYPOINT_CLI_API_ACCESS } from '../control/kubernetes-access.js'
import { mergeConditions, wantedConditions, type Condition, type TrackedObject } from '../control/kubernetes-status.js'
import { parseServiceAccount, ztunnelPod } from '../control/token-review.js'
import { CaClient } from '../policy/ca-client.js'
import { InvalidResourceError } from '../policy/errors.js'
import { fromEntries } from '../policy/entries.js'
import type { MeshState } from '../policy/state.js'
import { validateResource } from '../policy/validate.js'
import { shopState } from './helpers/mesh.js'

const FIXTURES = new URL('./fixtures/kube/', import.meta.url).pathname
const CLUSTER = join(FIXTURES, 'cluster.yaml')
const CONTROLLER_TOKEN = 'controller-token'
const CLI_TOKEN = 'cli-token'
const USERS = {
  [CONTROLLER_TOKEN]: { name: 'system:serviceaccount:ambit-system:ambit-controller', access: CONTROLLER_API_ACCESS },
  [CLI_TOKEN]: { name: 'waypoint-admin', access: WAYPOINT_CLI_API_ACCESS }
}
/** The kinds the controller must list and watch (plural, API group). */
const WATCHED = [
  ['namespaces', ''], ['nodes', ''], ['pods', ''], ['services', ''], ['endpointslices', 'discovery.k8s.io'],
  ['gateways', 'gateway.networking.k8s.io'], ['httproutes', 'gateway.networking.k8s.io'], ['grpcroutes', 'gateway.networking.k8s.io'],
  ['authorizationpolicies', 'security.istio.io'], ['peerauthentications', 'security.istio.io'], ['trafficpolicies', 'ambit.dev']
] as const
/** The deadline for a cluster change to reach Redis. */
const DEADLINE_MS = 2000

interface RunningController {
  readonly api: KubeApi
  readonly process: LongRunning
  readonly caUrl: string
  state (): Promise<MeshState>
  /** Waits (generously) for `condition` on the state in Redis; returns how long it took. */
  until (what: string, condition: (state: MeshState) => boolean): Promise<number>
}

async function fixture (name: string): Promise<KubeObject[]> {
  return parseAllDocuments(await readFile(join(FIXTURES, name), 'utf8')).map((document) => document.toJS() as KubeObject)
}

async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-kube-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** The stand-in with the fixture cluster (plus `extra` objects, minus `unserved` kinds), a Redis, and the controller watching them. */
async function startController (t: Test, extra: readonly KubeObject[] = [], unserved: readonly string[] = []): Promise<RunningController> {
  const api = await KubeApi.start(t, USERS, [CLUSTER])
  for (const object of extra) api.upsert(object)
  for (const plural of unserved) api.unserved.add(plural)
  const redis = await startRedis(t)
  const kubeconfig = await api.writeKubeconfig(await tempDir(t), CONTROLLER_TOKEN)
  const child = startCli(t, ['controller', '--kubeconfig', kubeconfig, '--store', redis.url, '--ca-port', '0', '--status-port', '0', '--log-level', 'info'])
  const banner = await child.waitFor(/CA at (https:\/\/\S+)/, 30_000)
  const store = await openStore(redis.url)
  t.teardown(() => store.close())
  const state = async (): Promise<MeshState> => {
    const found = fromEntries((await store.snapshot('state')).entries)
    if (found === undefined) throw new Error('no state in Redis')
    return found
  }
  return {
    api,
    process: child,
    caUrl: /CA at (https:\/\/\S+)/.exec(banner)![1]!,
    state,
    async until (what, condition) {
      const started = Date.now()
      await waitFor(what, async () => condition(await state()), 15_000)
      return Date.now() - started
    }
  }
}

/** Every call the controller made was granted by the RBAC, and it listed and watched every kind (that is served). */
function checkControllerCalls (t: Test, api: KubeApi): void {
  const mine = api.calls.filter((c) => c.user === USERS[CONTROLLER_TOKEN].name)
  t.same(mine.filter((c) => c.status === 403), [], 'no call outside CONTROLLER_API_ACCESS')
  for (const [resource, apiGroup] of WATCHED) {
    for (const verb of api.unserved.has(resource) ? ['list'] as const : ['list', 'watch'] as const) {
      t.ok(mine.some((c) => c.verb === verb && c.resource === resource && c.apiGroup === apiGroup), `${verb} ${resource}`)
    }
  }
}

function namespace (name: string, labels: Record<string, string>): KubeObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } }
}

function pod (name: string, node: string, ip: string, labels: Record<string, string> = { app: name }): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'shop', labels },
    spec: { nodeName: node, serviceAccountName: name, containers: [{ name, image: 'ambit/example' }] },
    status: { phase: 'Running', podIP: ip }
  }
}

const AMBIENT = { 'ambit.dev/dataplane-mode': 'ambient' }

t.test('watching the cluster: labels, pods, moves, EndpointSlices, dropped watches and 410 Gone reach Redis within 2 s', async (t) => {
  const cluster = await startController(t)
  const { api } = cluster
  const first = await cluster.state()
  t.same(Object.keys(first.nodes).sort(), ['node-a', 'node-b'])
  t.equal(first.nodes['node-a']!.address, '172.18.0.2', 'the InternalIP')
  t.same(first.workloads, {}, 'no namespace is in the mesh yet')
  t.same(first.services['shop/web']!.endpoints.map((e) => e.workload), ['shop/web'], 'services resolve from the watched pods')

  api.upsert(namespace('shop', AMBIENT))
  t.ok(await cluster.until('labelled shop in the mesh', (s) => s.workloads['shop/web'] !== undefined && s.workloads['shop/cart'] !== undefined) < DEADLINE_MS,
    'a namespace labelled ambient enrols its running pods, without restarting them')
  t.equal((await cluster.state()).workloads['shop/web']!.spiffeId, 'spiffe://cluster.local/ns/shop/sa/web')

  api.upsert(pod('orders', 'node-a', '10.244.0.40'))
  api.delete('Pod', 'shop', 'cart')
  t.ok(await cluster.until('orders added, cart gone', (s) => s.workloads['shop/orders'] !== undefined && s.workloads['shop/cart'] === undefined) < DEADLINE_MS,
    'added and deleted pods')

  const web = api.get('Pod', 'shop', 'web')!
  api.upsert({ ...web, spec: { ...web.spec as object, nodeName: 'node-b' }, status: { phase: 'Running', podIP: '10.244.1.11' } })
  t.ok(await cluster.until('web on node-b', (s) => s.workloads['shop/web']?.node === 'node-b' && s.workloads['shop/web'].ip === '10.244.1.11') < DEADLINE_MS,
    'a pod moved to another node')

  // A Service without a selector: its endpoints are the EndpointSlices someone else writes.
  api.upsert({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'legacy-db', namespace: 'shop' }, spec: { ports: [{ name: 'sql', port: 5432 }] } })
  await cluster.until('legacy-db in the state', (s) => s.services['shop/legacy-db'] !== undefined)
  t.same((await cluster.state()).services['shop/legacy-db']!.endpoints, [], 'no slice yet, no endpoints')
  api.upsert({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'legacy-db-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'legacy-db' } },
    addressType: 'IPv4',
    endpoints: [
      { addresses: ['10.244.1.11'], conditions: { ready: true } },
      { addresses: ['192.168.5.5'], conditions: { ready: true }, nodeName: 'node-a' },
      { addresses: ['192.168.5.6'], conditions: { ready: false } }
    ],
    ports: [{ name: 'sql', port: 15432, protocol: 'TCP' }]
  })
  t.ok(await cluster.until('legacy-db endpoints from its slice', (s) => s.services['shop/legacy-db']!.endpoints.length === 2) < DEADLINE_MS,
    'an EndpointSlice reaches the Service\'s endpoints')
  t.same((await cluster.state()).services['shop/legacy-db']!.endpoints, [
    { workload: 'shop/web', meshed: true, ip: '10.244.1.11', node: 'node-b', ports: { 5432: 15432 } },
    { workload: '192.168.5.5', meshed: false, ip: '192.168.5.5', node: 'node-a', ports: { 5432: 15432 } }
  ], 'ready addresses only; the meshed pod\'s address is its workload')

  // Watches cut mid-stream, and the API server refuses the first reconnections: changes made
  // meanwhile must still arrive once the informers are back.
  const watchCalls = (): number => api.calls.filter((c) => c.verb === 'watch').length
  const watchesBefore = watchCalls()
  t.equal(api.dropWatches(), WATCHED.length, 'one watch per kind was open')
  api.failNextRequests(3)
  api.upsert(pod('late', 'node-b', '10.244.1.50'))
  t.ok(await cluster.until('the pod added while the watches were down', (s) => s.workloads['shop/late'] !== undefined) < DEADLINE_MS,
    'recovered from dropped watches')
  await waitFor('every watch reopened', () => api.openWatches === WATCHED.length)
  t.ok(watchCalls() > watchesBefore, 'the watches were opened again')
  t.ok(api.calls.some((c) => c.status === 503), 'some reconnections failed and were retried')

  // 410 Gone on open watches (an ERROR event): the informers list again.
  const podLists = (): number => api.calls.filter((c) => c.verb === 'list' && c.resource === 'pods').length
  const listsBefore = podLists()
  api.expireResourceVersions()
  api.delete('Pod', 'shop', 'orders')
  t.ok(await cluster.until('orders deleted after a relist', (s) => s.workloads['shop/orders'] === undefined) < DEADLINE_MS,
    'recovered from a 410 ERROR event')
  await waitFor('pods listed again', () => podLists() > listsBefore)

  // 410 Gone answering a reconnection (HTTP 410): a deletion missed while disconnected shows in the relist.
  const relists = podLists()
  api.dropWatches()
  api.delete('Pod', 'shop', 'late')
  api.expireResourceVersions()
  t.ok(await cluster.until('late deleted after a relist', (s) => s.workloads['shop/late'] === undefined) < DEADLINE_MS,
    'recovered from an HTTP 410 on reconnection')
  t.ok(api.calls.some((c) => c.verb === 'watch' && c.status === 410), 'a reconnection was answered 410')
  t.ok(podLists() > relists, 'and the pods were listed again')

  api.upsert(namespace('shop', {}))
  t.ok(await cluster.until('shop out of the mesh', (s) => Object.keys(s.workloads).length === 0) < DEADLINE_MS,
    'removing the label takes the pods out of the mesh')
  checkControllerCalls(t, api)
  t.equal(await cluster.process.stop(), 0, 'SIGTERM stops the watches and the controller cleanly')
})

t.test('SIGTERM while lists are in flight: the controller stops promptly, no watch opened after it', async (t) => {
  const cluster = await startController(t)
  const { api } = cluster
  api.listDelayMs = 1000
  // Every informer relists, and each list now takes a second: stop while they are on the wire.
  api.expireResourceVersions()
  await new Promise((resolve) => setTimeout(resolve, 300))
  const started = Date.now()
  t.equal(await cluster.process.stop(), 0, 'exit code 0')
  const tookMs = Date.now() - started
  t.ok(tookMs < 4000, `stopped in ${tookMs} ms: no informer was left watching (that would hold the process until the exit-anyway grace)`)
  t.notMatch(cluster.process.output(), /exiting anyway/, 'nothing outlived the stop')
})

t.test('the CA authenticates ztunnels with TokenReview and issues only for their own node', async (t) => {
  // Without the Istio security CRDs: those kinds read as empty, and everything else works.
  const cluster = await startController(t, [namespace('shop', AMBIENT)], ['authorizationpolicies', 'peerauthentications'])
  const { api } = cluster
  t.match(cluster.process.output(), /"kind":"AuthorizationPolicy".*not served by the API server/, 'an unserved kind is reported')
  const state = await cluster.state()
  t.ok(state.workloads['shop/web'] !== undefined && state.workloads['shop/cart'] !== undefined)
  const trustBundle = state.mesh.trustBundle
  t.ok(trustBundle.length > 0, 'the trust bundle is in the state')
  const rootSecret = api.get('Secret', 'ambit-system', 'ambit-ca-root')?.data as Record<string, string> | undefined
  t.equal(Buffer.from(rootSecret?.['ca.crt'] ?? '', 'base64').toString().trim(), trustBundle[0]?.trim(), 'the root comes from the Secret it created')
  t.notMatch(cluster.process.output(), /PRIVATE KEY/, 'and its key is never logged')
  const client = (token: string): CaClient => new CaClient({ url: cluster.caUrl, token, trustBundle })

  const nodeA = client(api.serviceAccountToken('ambit-system', 'ztunnel-a', ['ambit-ca']))
  const web = await nodeA.requestCertificate('shop', 'web', 'cluster.local')
  t.equal(web.spiffeId, 'spiffe://cluster.local/ns/shop/sa/web', 'node-a\'s ztunnel gets web (on node-a)')
  await t.rejects(nodeA.requestCertificate('shop', 'cart', 'cluster.local'), { status: 403, message: /node node-a has no pod with service account shop\/cart/ },
    'but not cart, which runs only on node-b')
  const nodeB = client(api.serviceAccountToken('ambit-system', 'ztunnel-b', ['ambit-ca']))
  t.ok(await nodeB.requestCertificate('shop', 'cart', 'cluster.local'), 'node-b\'s ztunnel gets cart')
  await t.rejects(nodeB.requestCertificate('shop', 'web', 'cluster.local'), { name: 'CaRefusedError', status: 403 }, 'and not web')

  const refusedAs401 = { name: 'CaRefusedError', status: 401 }
  await t.rejects(client(api.serviceAccountToken('ambit-system', 'ztunnel-a', ['https://kubernetes.default.svc'])).requestCertificate('shop', 'web', 'cluster.local'),
    refusedAs401, 'a token for another audience')
  await t.rejects(client(api.serviceAccountToken('shop', 'web', ['ambit-ca'])).requestCertificate('shop', 'web', 'cluster.local'),
    refusedAs401, 'a workload\'s own token is not a ztunnel\'s')
  await t.rejects(client('not-a-token').requestCertificate('shop', 'web', 'cluster.local'), refusedAs401, 'an unknown token')
  const orphan = api.serviceAccountToken('ambit-system', 'ztunnel-b', ['ambit-ca'])
  api.delete('Pod', 'ambit-system', 'ztunnel-b')
  await t.rejects(client(orphan).requestCertificate('shop', 'cart', 'cluster.local'), refusedAs401, 'the token of a deleted ztunnel pod')

  const reviews = api.calls.filter((c) => c.resource === 'tokenreviews')
  t.ok(reviews.length >= 5 && reviews.every((c) => c.verb === 'create' && c.status === 201), 'the CA asked the API server')
  checkControllerCalls(t, api)
})

t.test('status: the waypoint Gateway gets Programmed, a bad TrafficPolicy Accepted=False with the reason', async (t) => {
  const cluster = await startController(t, [namespace('shop', AMBIENT)])
  const { api } = cluster
  const conditionOf = (kind: string, name: string, type: string): Condition | undefined =>
    ((api.get(kind, 'shop', name)?.status as { conditions?: Condition[] } | undefined)?.conditions ?? []).find((c) => c.type === type)
  const [gateway, waypointPod] = await fixture('waypoint.yaml')

  api.upsert(gateway!)
  await waitFor('Programmed=False', () => conditionOf('Gateway', 'waypoint', 'Programmed')?.status === 'False', 15_000)
  t.match(conditionOf('Gateway', 'waypoint', 'Programmed'), { reason: 'Pending', observedGeneration: 1 }, 'no instance yet')
  t.match(conditionOf('Gateway', 'waypoint', 'Accepted'), { status: 'True', observedGeneration: 1 })
  const pending = conditionOf('Gateway', 'waypoint', 'Programmed')!

  api.upsert(waypointPod!)
  await waitFor('Programmed=True', () => conditionOf('Gateway', 'waypoint', 'Programmed')?.status === 'True', 15_000)
  const programmed = conditionOf('Gateway', 'waypoint', 'Programmed')!
  t.match(programmed, { reason: 'Programmed', observedGeneration: 1, message: /1 waypoint instance/ }, 'its instance runs')
  t.ok(Date.parse(programmed.lastTransitionTime) >= Date.parse(pending.lastTransitionTime), 'the transition is stamped')

  const updated = api.get('Gateway', 'shop', 'waypoint')!
  api.upsert({ ...updated, spec: { ...updated.spec as object, listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }, { name: 'extra', port: 15009, protocol: 'HBONE' }] } })
  await waitFor('observedGeneration 2', () => conditionOf('Gateway', 'waypoint', 'Programmed')?.observedGeneration === 2, 15_000)
  t.equal(conditionOf('Gateway', 'waypoint', 'Programmed')!.lastTransitionTime, programmed.lastTransitionTime, 'an unchanged status keeps its transition time')

  const other: KubeObject = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'ingress', namespace: 'shop' }, spec: { gatewayClassName: 'someone-else', listeners: [] } }
  api.upsert(other)

  const [badPolicy] = await fixture('bad-traffic-policy.yaml')
  api.upsert(badPolicy!)
  await waitFor('Accepted=False', () => conditionOf('TrafficPolicy', 'cart-balancing', 'Accepted') !== undefined, 15_000)
  t.match(conditionOf('TrafficPolicy', 'cart-balancing', 'Accepted'), {
    status: 'False', reason: 'Invalid', observedGeneration: 1,
    message: 'spec.loadBalancer.consistentHash: is required when type is ConsistentHash'
  }, 'the validation reason')
  t.match(cluster.process.output(), /TrafficPolicy\/shop\/cart-balancing.*invalid object skipped|invalid object skipped.*TrafficPolicy\/shop\/cart-balancing/, 'and a logged error')
  t.same((await cluster.state()).trafficPolicies, {}, 'the bad policy is not in the state')

  const fixed = api.get('TrafficPolicy', 'shop', 'cart-balancing')!
  api.upsert({ ...fixed, spec: { targetRefs: [{ kind: 'Service', name: 'cart' }], loadBalancer: { type: 'ConsistentHash', consistentHash: { header: 'x-user' } } } })
  await waitFor('Accepted=True', () => conditionOf('TrafficPolicy', 'cart-balancing', 'Accepted')?.status === 'True', 15_000)
  t.match(conditionOf('TrafficPolicy', 'cart-balancing', 'Accepted'), { reason: 'Accepted', observedGeneration: 2 })
  t.ok((await cluster.state()).trafficPolicies['shop/cart-balancing'], 'the fixed policy is in the state')

  // A bad change to a good policy is refused, and the good version stays in effect.
  const good = api.get('TrafficPolicy', 'shop', 'cart-balancing')!
  api.upsert({ ...good, spec: { ...good.spec as object, rateLimit: { local: { requests: 0, unit: 'Second' } } } })
  await waitFor('Accepted=False again', () => conditionOf('TrafficPolicy', 'cart-balancing', 'Accepted')?.status === 'False', 15_000)
  t.match(conditionOf('TrafficPolicy', 'cart-balancing', 'Accepted'), { reason: 'Invalid', observedGeneration: 3, message: /spec\.rateLimit\.local\.requests/ })
  t.match((await cluster.state()).trafficPolicies['shop/cart-balancing']?.spec, { loadBalancer: { type: 'ConsistentHash' }, rateLimit: undefined },
    'the last valid version stays')

  t.equal(api.get('Gateway', 'shop', 'ingress')!.status, undefined, 'a Gateway of another class is not ours to report on')
  const patches = api.calls.filter((c) => c.user === USERS[CONTROLLER_TOKEN].name && c.verb === 'patch')
  t.ok(patches.some((c) => c.resource === 'gateways/status') && patches.some((c) => c.resource === 'trafficpolicies/status'), 'written through the status subresource')
  checkControllerCalls(t, api)
})

t.test('ambit waypoint apply / delete: the Gateway and the namespace label', async (t) => {
  const api = await KubeApi.start(t, USERS, [CLUSTER])
  const dir = await tempDir(t)
  const kubeconfig = await api.writeKubeconfig(dir, CLI_TOKEN)
  const useWaypoint = (): string | undefined => (api.get('Namespace', '', 'shop')!.metadata.labels as Record<string, string>)['ambit.dev/use-waypoint']

  const applied = await runCli(['waypoint', 'apply', '-n', 'shop', '--kubeconfig', kubeconfig])
  t.equal(applied.code, 0, applied.stderr)
  t.match(applied.stdout, 'waypoint shop/waypoint created; namespace shop labelled ambit.dev/use-waypoint=waypoint')
  t.match(api.get('Gateway', 'shop', 'waypoint'), { spec: { gatewayClassName: 'ambit-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } })
  t.equal(useWaypoint(), 'waypoint')
  t.equal((api.get('Namespace', '', 'shop')!.metadata.labels as Record<string, string>)['kubernetes.io/metadata.name'], 'shop', 'other labels are kept')

  const again = await runCli(['waypoint', 'apply', '-n', 'shop', '--kubeconfig', kubeconfig])
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, 'waypoint shop/waypoint unchanged', 'applying twice is harmless')

  api.upsert({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'ingress', namespace: 'shop' }, spec: { gatewayClassName: 'nginx' } })
  const clash = await runCli(['waypoint', 'apply', '-n', 'shop', '--name', 'ingress', '--kubeconfig', kubeconfig])
  t.equal(clash.code, 2)
  t.match(clash.stderr, 'Gateway shop/ingress exists with class nginx', 'another controller\'s Gateway is left alone')
  const badName = await runCli(['waypoint', 'apply', '-n', 'shop', '--name', 'Not_A_Name', '--kubeconfig', kubeconfig])
  t.equal(badName.code, 1)
  t.match(badName.stderr, /metadata\.name/, 'names are checked before calling the API')

  const deleted = await runCli(['waypoint', 'delete', '-n', 'shop', '--kubeconfig', kubeconfig])
  t.equal(deleted.code, 0, deleted.stderr)
  t.match(deleted.stdout, 'waypoint shop/waypoint deleted; namespace shop no longer labelled ambit.dev/use-waypoint')
  t.equal(api.get('Gateway', 'shop', 'waypoint'), undefined)
  t.equal(useWaypoint(), undefined)
  t.ok(api.get('Gateway', 'shop', 'ingress'), 'other Gateways stay')

  const missing = await runCli(['waypoint', 'apply', '-n', 'nowhere', '--kubeconfig', kubeconfig])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /labelling namespace nowhere: HTTP 404/)

  const controllerKubeconfig = await api.writeKubeconfig(dir, CONTROLLER_TOKEN)
  const asController = await runCli(['waypoint', 'apply', '-n', 'shop', '--kubeconfig', controllerKubeconfig])
  t.equal(asController.code, 1)
  t.match(asController.stderr, /HTTP 403/, 'the controller\'s own RBAC cannot create Gateways')

  const cliCalls = api.calls.filter((c) => c.user === USERS[CLI_TOKEN].name)
  t.ok(cliCalls.length >= 8)
  t.same(cliCalls.filter((c) => c.status === 403), [], 'the CLI needs no more than WAYPOINT_CLI_API_ACCESS')
})

t.test('pure parts: conditions, TokenReview answers, flags', async (t) => {
  const state = await shopState()
  const gateway = (generation: number, problem?: InvalidResourceError): TrackedObject => ({
    kind: 'Gateway',
    object: { metadata: { name: 'waypoint', namespace: 'shop', generation }, spec: { gatewayClassName: 'ambit-waypoint' } },
    ...(problem !== undefined && { problem })
  })
  const withWaypoint = (instances: number): MeshState => ({
    ...state,
    waypoints: { 'shop/waypoint': { key: 'shop/waypoint', name: 'waypoint', namespace: 'shop', spiffeId: '', instances: Array.from({ length: instances }, () => ({ ip: '10.0.0.1', node: 'node-a' })) } }
  })
  t.equal(wantedConditions(gateway(1), { ...state, waypoints: {} }), undefined, 'nothing to say before the state has it')
  t.match(wantedConditions(gateway(4), withWaypoint(0)), [{ type: 'Accepted', status: 'True' }, { type: 'Programmed', status: 'False', reason: 'Pending', observedGeneration: 4 }])
  t.match(wantedConditions(gateway(4), withWaypoint(2)), [{ type: 'Accepted' }, { type: 'Programmed', status: 'True', message: '2 waypoint instance(s) running' }])
  const problem = new InvalidResourceError({ file: '<kubernetes>', document: 0, object: 'Gateway/waypoint' }, 'spec.listeners[0].port', 'expected a number')
  t.match(wantedConditions(gateway(2, problem), withWaypoint(1)), [{ type: 'Accepted', status: 'False', reason: 'Invalid', message: 'spec.listeners[0].port: expected a number' }, { type: 'Programmed', status: 'False' }])
  t.equal(wantedConditions({ kind: 'Gateway', object: { metadata: { name: 'x', namespace: 'shop' }, spec: { gatewayClassName: 'other' } } }, state), undefined, 'other classes are not ours')

  const policy = validateResource({
    apiVersion: 'ambit.dev/v1alpha1', kind: 'TrafficPolicy', metadata: { name: 'lb', namespace: 'shop' },
    spec: { targetRefs: [{ name: 'catalog' }], loadBalancer: { type: 'LeastRequest' } }
  }, { file: 'test', document: 0, object: '' })
  if (policy.kind !== 'TrafficPolicy') throw new Error('not a TrafficPolicy')
  const withPolicy: MeshState = { ...state, trafficPolicies: { 'shop/lb': policy } }
  const tracked: TrackedObject = { kind: 'TrafficPolicy', object: { metadata: { name: 'lb', namespace: 'shop', generation: 3 } } }
  t.equal(wantedConditions(tracked, state), undefined, 'a policy not committed yet gets nothing')
  t.same(wantedConditions(tracked, withPolicy), [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'accepted by ambit', observedGeneration: 3 }])
  t.match(wantedConditions(tracked, { ...withPolicy, services: {} }), [{ type: 'Accepted', status: 'False', reason: 'TargetNotFound', message: 'no Service catalog in namespace shop' }])
  t.match(wantedConditions({ ...tracked, problem }, withPolicy), [{ type: 'Accepted', status: 'False', reason: 'Invalid' }], 'a rejected change says so, even with a good version in effect')

  const then = new Date('2025-01-01T00:00:00Z')
  const now = new Date('2025-06-01T00:00:00Z')
  const theirs: Condition = { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: '', lastTransitionTime: then.toISOString() }
  const accepted: Condition = { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok', observedGeneration: 1, lastTransitionTime: then.toISOString() }
  const merged = mergeConditions([theirs, accepted], [
    { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok', observedGeneration: 2 },
    { type: 'Programmed', status: 'False', reason: 'Pending', message: 'none' }
  ], now)
  t.same(merged.map((c) => [c.type, c.lastTransitionTime]), [['ResolvedRefs', then.toISOString()], ['Accepted', then.toISOString()], ['Programmed', now.toISOString()]],
    'other writers\' conditions are kept; a transition time moves only with the status')
  t.equal(merged[1]!.observedGeneration, 2)
  t.equal(mergeConditions([accepted], [{ ...accepted, status: 'False' }], now)[0]!.lastTransitionTime, now.toISOString())

  const ztunnel = { namespace: 'ambit-system', name: 'ztunnel' }
  const user = (username: string, extra: Record<string, string[]> = { 'authentication.kubernetes.io/pod-name': ['ztunnel-x'] }): object => ({ username, extra })
  t.same(ztunnelPod({ authenticated: true, audiences: ['ambit-ca'], user: user('system:serviceaccount:ambit-system:ztunnel') }, ztunnel, ['ambit-ca']), { pod: 'ztunnel-x' })
  t.match(ztunnelPod({ authenticated: false, error: 'expired' }, ztunnel, ['ambit-ca']), { refused: /expired/ })
  t.match(ztunnelPod({ authenticated: true, audiences: [], user: user('system:serviceaccount:ambit-system:ztunnel') }, ztunnel, ['ambit-ca']), { refused: /audience/ },
    'an API server that does not check audiences is not trusted with them')
  t.match(ztunnelPod({ authenticated: true, audiences: ['ambit-ca'], user: user('system:serviceaccount:shop:ztunnel') }, ztunnel, ['ambit-ca']), { refused: /not system:serviceaccount:ambit-system:ztunnel/ })
  t.match(ztunnelPod({ authenticated: true, audiences: ['ambit-ca'], user: user('system:serviceaccount:ambit-system:ztunnel', {}) }, ztunnel, ['ambit-ca']), { refused: /bound to a pod/ })

  t.same(parseServiceAccount('mesh/zt'), { namespace: 'mesh', name: 'zt' })
  t.throws(() => parseServiceAccount('mesh'), { code: 'AMBIT_CONFIG' })
  t.throws(() => parseServiceAccount('a/b/c'), { code: 'AMBIT_CONFIG' })
})
