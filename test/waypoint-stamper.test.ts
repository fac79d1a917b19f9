/**
 * The controller stamps each waypoint Gateway's ServiceAccount, Deployment and Service from
 * k8s/waypoint-template.yaml, in-process against the Kubernetes API stand-in, with only the
 * calls CONTROLLER_API_ACCESS grants. Loopback addresses 127.0.62.x belong to this file.
 */
import t, { type Test } from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { KubeApi, type KubeObject } from './helpers/kube-api.js'
import { waitFor } from './helpers/wait.js'
import { ControlPlane } from '../control/control-plane.js'
import { CONTROLLER_API_ACCESS } from '../control/kubernetes-access.js'
import { loadKubeConfig } from '../control/kubernetes-api.js'
import { clusterControlPlaneOptions, ownImage } from '../control/kubernetes-cluster.js'
import { MemoryStore } from '../control/memory-store.js'
import { DEFAULT_TEMPLATE_FILE, renderWaypointObjects } from '../control/waypoint-stamper.js'
import type { GatewayResource } from '../policy/resources.js'
import { DEFAULT_ROOT_NAMESPACE, DEFAULT_TRUST_DOMAIN } from '../policy/state.js'

const FIXTURES = new URL('./fixtures/kube/', import.meta.url).pathname
const CONTROLLER_TOKEN = 'controller-token'
const CONTROLLER_USER = 'system:serviceaccount:ambit-system:ambit-controller'
const USERS = { [CONTROLLER_TOKEN]: { name: CONTROLLER_USER, access: CONTROLLER_API_ACCESS } }
const IMAGE = 'registry.example.com/ambit:1.2.3'
const STORE_URL = 'redis://ambit-redis.ambit-system.svc:6379'
const AMBIENT_SHOP: KubeObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'ambit.dev/dataplane-mode': 'ambient' } } }

interface Stamped {
  metadata: { uid: string, ownerReferences?: Array<Record<string, unknown>>, labels?: Record<string, string> }
  spec?: { template?: { spec?: { serviceAccountName?: string, containers?: Array<{ image?: string, args?: string[] }> } } }
}

async function kubeConfigFor (t: Test, api: KubeApi): Promise<ReturnType<typeof loadKubeConfig>> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-stamper-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return loadKubeConfig(await api.writeKubeconfig(dir, CONTROLLER_TOKEN))
}

t.test('each waypoint Gateway gets its ServiceAccount, Deployment and Service, owned by it', async (t) => {
  const api = await KubeApi.start(t, USERS, [join(FIXTURES, 'cluster.yaml')])
  api.upsert(AMBIENT_SHOP)
  const logger = pino({ level: 'silent' })
  const kubeConfig = await kubeConfigFor(t, api)
  const store = new MemoryStore()
  const plane = await ControlPlane.start({
    store,
    files: [],
    trustDomain: DEFAULT_TRUST_DOMAIN,
    rootNamespace: DEFAULT_ROOT_NAMESPACE,
    logger,
    caHost: '127.0.62.1',
    caPort: 0,
    ...clusterControlPlaneOptions({
      kubeConfig, logger, trustDomain: DEFAULT_TRUST_DOMAIN,
      waypoints: { template: await readFile(DEFAULT_TEMPLATE_FILE, 'utf8'), image: IMAGE, storeUrl: STORE_URL }
    })
  })
  t.teardown(async () => {
    await plane.stop()
    await store.close()
  })
  const stamped = (kind: string): Stamped | undefined => api.get(kind, 'shop', 'waypoint') as Stamped | undefined
  t.equal(stamped('Deployment'), undefined, 'nothing is stamped without a waypoint Gateway')

  const [gateway] = (await readFile(join(FIXTURES, 'waypoint.yaml'), 'utf8')).split('\n---\n')
  const { parse } = await import('yaml')
  const created = api.upsert(parse(gateway!) as KubeObject)
  await waitFor('the waypoint objects', () => ['ServiceAccount', 'Deployment', 'Service'].every((kind) => stamped(kind) !== undefined), 15_000)
  for (const kind of ['ServiceAccount', 'Deployment', 'Service']) {
    t.same(stamped(kind)!.metadata.ownerReferences, [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'waypoint', uid: created.metadata.uid, controller: true }],
      `the ${kind} is owned by the Gateway (garbage-collected with it; no blockOwnerDeletion)`)
    t.equal(stamped(kind)!.metadata.labels?.['gateway.networking.k8s.io/gateway-name'], 'waypoint')
  }
  const pod = stamped('Deployment')!.spec!.template!.spec!
  t.equal(pod.serviceAccountName, 'waypoint', 'its pods run as the waypoint\'s identity')
  t.equal(pod.containers?.[0]?.image, IMAGE, 'the controller\'s image')
  t.ok(pod.containers?.[0]?.args?.includes('--name=waypoint') && pod.containers[0].args.includes('--namespace=shop') && pod.containers[0].args.includes(`--store=${STORE_URL}`),
    'running `ambit waypoint` for this Gateway with the controller\'s store')

  // A Gateway deleted and made again (a new uid) takes over the objects still there.
  const before = api.calls.filter((c) => c.verb === 'patch' && c.resource === 'deployments').length
  api.delete('Gateway', 'shop', 'waypoint')
  const again = api.upsert(parse(gateway!) as KubeObject)
  t.not(again.metadata.uid, created.metadata.uid)
  await waitFor('the objects owned by the new Gateway',
    () => ['ServiceAccount', 'Deployment', 'Service'].every((kind) => stamped(kind)?.metadata.ownerReferences?.[0]?.uid === again.metadata.uid), 15_000)
  t.ok(api.calls.filter((c) => c.verb === 'patch' && c.resource === 'deployments' && c.status === 200).length > before, 'existing objects are patched (create answered 409)')

  const controllerCalls = api.calls.filter((c) => c.user === CONTROLLER_USER)
  t.same(controllerCalls.filter((c) => c.status === 403), [], 'every call is one CONTROLLER_API_ACCESS grants')
  t.notOk(controllerCalls.some((c) => c.verb === 'delete'), 'the controller never deletes')
})

t.test('template values cannot change the YAML; the controller\'s own image', async (t) => {
  const gateway = {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', gatewayClassName: 'ambit-waypoint', listeners: [],
    metadata: { name: 'waypoint', namespace: 'shop', uid: 'u-1', labels: {}, annotations: {} }
  } as unknown as GatewayResource
  const tricky = 'redis://h:1/0\n  evil: true'
  const objects = renderWaypointObjects(await readFile(DEFAULT_TEMPLATE_FILE, 'utf8'), gateway, { image: IMAGE, storeUrl: tricky })
  t.same(objects.map((o) => o.kind), ['ServiceAccount', 'Deployment', 'Service'])
  const args = (objects[1] as Stamped).spec!.template!.spec!.containers![0]!.args!
  t.ok(args.includes(`--store=${tricky}`), 'a value stays inside its string')
  t.notMatch(JSON.stringify(objects), /\$\{/, 'every placeholder is replaced')
  t.throws(() => renderWaypointObjects('', { ...gateway, metadata: { ...gateway.metadata, uid: undefined } } as unknown as GatewayResource, { image: IMAGE, storeUrl: tricky }),
    { code: 'AMBIT_CONFIG' }, 'a Gateway without a uid cannot own anything')

  const api = await KubeApi.start(t, USERS)
  api.upsert({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'ambit-controller-abc', namespace: 'ambit-system' }, spec: { containers: [{ name: 'controller', image: IMAGE }] } })
  const kubeConfig = await kubeConfigFor(t, api)
  t.equal(await ownImage(kubeConfig, { AMBIT_POD_NAME: 'ambit-controller-abc', AMBIT_POD_NAMESPACE: 'ambit-system' }), IMAGE, 'read from its own Pod')
  t.equal(await ownImage(kubeConfig, {}), undefined, 'none outside a pod')
})
