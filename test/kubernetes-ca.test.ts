/**
 * The control plane's CA in a cluster, in-process against the Kubernetes API stand-in: the
 * root in its Secret, the serving certificate's in-cluster names, waypoint pods' tokens, token
 * files read afresh, and the status port (15014) with readiness and metrics.
 * Loopback addresses 127.0.61.x belong to this file.
 */
import t, { type Test } from 'tap'
import { X509Certificate } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { connect } from 'node:tls'
import type { IncomingMessage } from 'node:http'
import { get } from 'node:https'
import { once } from 'node:events'
import { pino, type Logger } from 'pino'
import { KubeApi, type KubeObject } from './helpers/kube-api.js'
import { fetchMetrics, parseMetrics, promtoolCheckMetrics, sumOf } from './helpers/prometheus.js'
import { waitFor } from './helpers/wait.js'
import { tokenFileProvider } from '../cli/token-file.js'
import { CertificateAuthority } from '../control/ca.js'
import { ControlPlane, type ControlPlaneOptions } from '../control/control-plane.js'
import { CA_ROOT_SECRET, CONTROLLER_API_ACCESS } from '../control/kubernetes-access.js'
import { loadKubeConfig } from '../control/kubernetes-api.js'
import { loadOrCreateCaRoot } from '../control/kubernetes-ca-root.js'
import { clusterControlPlaneOptions } from '../control/kubernetes-cluster.js'
import { MemoryStore } from '../control/memory-store.js'
import type { Keyspace, Store } from '../control/store.js'
import { CaClient, type TokenProvider } from '../policy/ca-client.js'
import type { EntryChanges } from '../policy/entries.js'
import { DEFAULT_ROOT_NAMESPACE, DEFAULT_TRUST_DOMAIN } from '../policy/state.js'

const FIXTURES = new URL('./fixtures/kube/', import.meta.url).pathname
const CLUSTER = join(FIXTURES, 'cluster.yaml')
const WAYPOINT = join(FIXTURES, 'waypoint.yaml')
const CONTROLLER_TOKEN = 'controller-token'
const CONTROLLER_USER = 'system:serviceaccount:ambit-system:ambit-controller'
const USERS = { [CONTROLLER_TOKEN]: { name: CONTROLLER_USER, access: CONTROLLER_API_ACCESS } }
const HOST = '127.0.61.1'
const AMBIENT_SHOP: KubeObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'ambit.dev/dataplane-mode': 'ambient' } } }

/** A logger whose every line the test can read (to prove no key is ever written). */
function capturingLogger (): { logger: Logger, text: () => string } {
  const lines: string[] = []
  const sink = new Writable({ write (chunk: Buffer, _encoding, done) { lines.push(chunk.toString()); done() } })
  return { logger: pino({ level: 'trace' }, sink), text: () => lines.join('') }
}

async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-kube-ca-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function kubeConfigFor (t: Test, api: KubeApi): Promise<ReturnType<typeof loadKubeConfig>> {
  return loadKubeConfig(await api.writeKubeconfig(await tempDir(t), CONTROLLER_TOKEN))
}

/** A control plane in this process, watching the stand-in. */
async function startPlane (t: Test, api: KubeApi, logger: Logger, more: Partial<ControlPlaneOptions> = {}): Promise<ControlPlane> {
  const store = new MemoryStore()
  const kubeConfig = await kubeConfigFor(t, api)
  const plane = await ControlPlane.start({
    store,
    files: [],
    trustDomain: DEFAULT_TRUST_DOMAIN,
    rootNamespace: DEFAULT_ROOT_NAMESPACE,
    logger,
    caHost: HOST,
    caPort: 0,
    watchFiles: false,
    ...clusterControlPlaneOptions({ kubeConfig, logger, trustDomain: DEFAULT_TRUST_DOMAIN }),
    ...more
  })
  t.teardown(async () => {
    await plane.stop()
    await store.close()
  })
  return plane
}

function secretPem (api: KubeApi, key: string): string | undefined {
  const data = api.get('Secret', CA_ROOT_SECRET.namespace, CA_ROOT_SECRET.name)?.data as Record<string, string> | undefined
  return data?.[key] === undefined ? undefined : Buffer.from(data[key], 'base64').toString()
}

const samePem = (a: string, b: string): boolean => new X509Certificate(a).fingerprint256 === new X509Certificate(b).fingerprint256

function checkNoForbiddenCalls (t: Test, api: KubeApi): void {
  t.same(api.calls.filter((c) => c.user === CONTROLLER_USER && c.status === 403), [], 'every call is one CONTROLLER_API_ACCESS grants')
}

t.test('the root CA lives in the Secret ambit-system/ambit-ca-root', async (t) => {
  const api = await KubeApi.start(t, USERS, [CLUSTER])
  const { logger, text } = capturingLogger()
  const first = await startPlane(t, api, logger)
  const certificate = secretPem(api, CA_ROOT_SECRET.certKey)
  t.ok(certificate !== undefined && secretPem(api, CA_ROOT_SECRET.keyKey)?.includes('PRIVATE KEY'), 'the first start creates it with ca.crt and ca.key')
  t.equal(api.get('Secret', CA_ROOT_SECRET.namespace, CA_ROOT_SECRET.name)?.type, 'Opaque')
  const bundle = first.controller.state!.mesh.trustBundle
  t.equal(bundle.length, 1)
  t.ok(samePem(bundle[0]!, certificate!), 'the mesh trusts the Secret\'s root')
  await first.stop()

  const second = await startPlane(t, api, logger)
  t.ok(samePem(second.controller.state!.mesh.trustBundle[0]!, certificate!), 'a restart loads the same root')
  const creates = api.calls.filter((c) => c.resource === 'secrets' && c.verb === 'create')
  t.equal(creates.length, 1, 'and does not create another')

  // Rotation: the next root is trusted alongside the current one.
  const next = await CertificateAuthority.create({ trustDomain: DEFAULT_TRUST_DOMAIN })
  const secret = api.get('Secret', CA_ROOT_SECRET.namespace, CA_ROOT_SECRET.name)!
  api.upsert({ ...secret, data: { ...secret.data as object, [CA_ROOT_SECRET.trustBundleKey]: Buffer.from(next.trustBundle.join('')).toString('base64') } })
  await second.stop()
  const third = await startPlane(t, api, logger)
  const rotated = third.controller.state!.mesh.trustBundle
  t.equal(rotated.length, 2, 'the trust bundle is the root plus trust-bundle.pem')
  t.ok(samePem(rotated[0]!, certificate!) && samePem(rotated[1]!, next.trustBundle[0]!))
  const fromServer = await getTrustBundle(third.caServer.url, rotated)
  t.equal(fromServer.length, 2, 'the CA server publishes the whole bundle')

  t.notMatch(text(), /PRIVATE KEY|BEGIN EC/, 'the key is never logged')
  checkNoForbiddenCalls(t, api)
})

async function getTrustBundle (url: string, trustBundle: readonly string[]): Promise<string[]> {
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    get(`${url}/v1/trust-bundle`, { ca: [...trustBundle], agent: false }, resolve).once('error', reject)
  })
  const chunks: Buffer[] = []
  for await (const chunk of res) chunks.push(chunk as Buffer)
  return (JSON.parse(Buffer.concat(chunks).toString()) as { trustBundle: string[] }).trustBundle
}

t.test('two controllers creating the Secret at once agree on one root', async (t) => {
  const api = await KubeApi.start(t, USERS, [CLUSTER])
  const kubeConfig = await kubeConfigFor(t, api)
  const [a, b] = await Promise.all([
    loadOrCreateCaRoot({ kubeConfig, trustDomain: DEFAULT_TRUST_DOMAIN }),
    loadOrCreateCaRoot({ kubeConfig, trustDomain: DEFAULT_TRUST_DOMAIN })
  ])
  t.ok(samePem(a.ca.trustBundle[0]!, b.ca.trustBundle[0]!), 'both use the same root')
  t.ok(samePem(a.ca.trustBundle[0]!, secretPem(api, CA_ROOT_SECRET.certKey)!), 'the one in the Secret')
  const creates = api.calls.filter((c) => c.resource === 'secrets' && c.verb === 'create').map((c) => c.status).sort()
  t.same(creates, [201, 409], 'one create won, the other found it taken')

  const secret = api.get('Secret', CA_ROOT_SECRET.namespace, CA_ROOT_SECRET.name)!
  api.upsert({ ...secret, data: { [CA_ROOT_SECRET.certKey]: (secret.data as Record<string, string>)[CA_ROOT_SECRET.certKey] } })
  await t.rejects(loadOrCreateCaRoot({ kubeConfig, trustDomain: DEFAULT_TRUST_DOMAIN }), { code: 'AMBIT_CONFIG', message: /ca\.key/ }, 'a Secret without the key is an error')
  checkNoForbiddenCalls(t, api)
})

t.test('the CA serving certificate carries the --ca-server-name names', async (t) => {
  const api = await KubeApi.start(t, USERS, [CLUSTER])
  const names = ['ambit-controller.ambit-system.svc', 'ambit-controller.ambit-system.svc.cluster.local']
  const plane = await startPlane(t, api, pino({ level: 'silent' }), { caServerNames: names })
  const { port } = new URL(plane.caServer.url)
  for (const servername of names) {
    const socket = connect({ host: HOST, port: Number(port), servername, ca: [...plane.controller.state!.mesh.trustBundle] })
    t.teardown(() => socket.destroy())
    await once(socket, 'secureConnect')
    t.ok(socket.authorized, `${servername} verifies with the trust bundle`)
    t.match(socket.getPeerCertificate().subjectaltname, `DNS:${servername}`)
    socket.destroy()
  }
})

t.test('a waypoint pod\'s token gets its own identity, and only that; token files are read afresh', async (t) => {
  const api = await KubeApi.start(t, USERS, [CLUSTER, WAYPOINT])
  api.upsert(AMBIENT_SHOP)
  const instance = 'waypoint-5f7c9-x2x4q'
  const podOnNodeB = (name: string, serviceAccountName: string, labels: Record<string, string>): KubeObject => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'shop', labels },
    spec: { nodeName: 'node-b', serviceAccountName, containers: [{ name: 'x', image: 'ambit/ambit' }] },
    status: { phase: 'Running', podIP: `10.244.1.${40 + name.length}` }
  })
  api.upsert(podOnNodeB('impostor', 'waypoint', {}))
  api.upsert({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'ingress', namespace: 'shop' }, spec: { gatewayClassName: 'someone-else', listeners: [] } })
  api.upsert(podOnNodeB('ingress-1', 'ingress', { 'gateway.networking.k8s.io/gateway-name': 'ingress' }))
  const plane = await startPlane(t, api, pino({ level: 'silent' }))
  await waitFor('the waypoint instance in the state', () => plane.controller.state?.waypoints['shop/waypoint']?.instances.length === 1, 15_000)
  const trustBundle = plane.controller.state!.mesh.trustBundle
  const client = (token: string | TokenProvider): CaClient => new CaClient({ url: plane.caServer.url, token, trustBundle })

  const waypoint = client(api.serviceAccountToken('shop', instance, ['ambit-ca']))
  const identity = await waypoint.requestCertificate('shop', 'waypoint', DEFAULT_TRUST_DOMAIN)
  t.equal(identity.spiffeId, 'spiffe://cluster.local/ns/shop/sa/waypoint', 'the waypoint instance gets the waypoint identity')
  await t.rejects(waypoint.requestCertificate('shop', 'cart', DEFAULT_TRUST_DOMAIN), { status: 403, message: /only obtain certificates for shop\/waypoint/ },
    'but not cart, though cart runs on its node')
  await t.rejects(client(api.serviceAccountToken('shop', 'impostor', ['ambit-ca'])).requestCertificate('shop', 'waypoint', DEFAULT_TRUST_DOMAIN),
    { name: 'CaRefusedError', status: 401 }, 'a pod of the waypoint\'s ServiceAccount that is not its instance')
  await t.rejects(client(api.serviceAccountToken('shop', 'ingress-1', ['ambit-ca'])).requestCertificate('shop', 'ingress', DEFAULT_TRUST_DOMAIN),
    { name: 'CaRefusedError', status: 401 }, 'an instance of a Gateway of another class')
  await t.rejects(client(api.serviceAccountToken('shop', instance, ['other'])).requestCertificate('shop', 'waypoint', DEFAULT_TRUST_DOMAIN),
    { name: 'CaRefusedError', status: 401 }, 'a waypoint token for another audience')

  const dir = await tempDir(t)
  const file = join(dir, 'token')
  await t.rejects(tokenFileProvider(file), { code: 'AMBIT_CONFIG', message: /cannot read --token-file/ }, 'a missing token file fails at start')
  await writeFile(file, `${api.serviceAccountToken('shop', instance, ['ambit-ca'])}\n`)
  const fromFile = client(await tokenFileProvider(file))
  t.ok(await fromFile.requestCertificate('shop', 'waypoint', DEFAULT_TRUST_DOMAIN), 'the token file works')
  await writeFile(file, 'revoked')
  await t.rejects(fromFile.requestCertificate('shop', 'waypoint', DEFAULT_TRUST_DOMAIN), { name: 'CaRefusedError', status: 401 }, 'the next request reads the file again')
  await writeFile(file, api.serviceAccountToken('shop', instance, ['ambit-ca']))
  t.ok(await fromFile.requestCertificate('shop', 'waypoint', DEFAULT_TRUST_DOMAIN), 'and a rotated token is picked up')
  await rm(file)
  await t.rejects(fromFile.requestCertificate('shop', 'waypoint', DEFAULT_TRUST_DOMAIN), { name: 'CaUnavailableError', message: /cannot get the token/ },
    'a token that cannot be read is a retryable failure')
  checkNoForbiddenCalls(t, api)
})

/** A real in-memory store whose commits wait until the test opens the gate. */
class GatedStore extends MemoryStore {
  private release!: () => void
  private readonly gate = new Promise<void>((resolve) => { this.release = resolve })

  openGate (): void { this.release() }

  override async commit (space: Keyspace, changes: EntryChanges): Promise<number> {
    await this.gate
    return await super.commit(space, changes)
  }
}

t.test('the status port: 503 until the first state, then 200; metrics promtool accepts', async (t) => {
  const store = new GatedStore()
  const statusUrl = `http://${HOST}:15014`
  const starting = ControlPlane.start({
    store: store as Store,
    files: [],
    trustDomain: DEFAULT_TRUST_DOMAIN,
    rootNamespace: DEFAULT_ROOT_NAMESPACE,
    logger: pino({ level: 'silent' }),
    caHost: HOST,
    caPort: 0,
    statusHost: HOST,
    statusPort: 15014
  })
  // Whatever happens below, the plane is stopped and its ports closed.
  t.teardown(async () => {
    store.openGate()
    await (await starting.catch(() => undefined))?.stop()
  })
  let before: Response | undefined
  await waitFor('the status port listening', async () => {
    before = await fetch(`${statusUrl}/healthz/ready`).catch(() => undefined)
    return before !== undefined
  }, 15_000)
  t.equal(before!.status, 503, 'not ready before the first state is committed')
  t.match(await before!.text(), /no mesh state committed yet/)

  store.openGate()
  const plane = await starting
  t.equal(plane.statusServer?.url, statusUrl)
  const after = await fetch(`${statusUrl}/healthz/ready`)
  t.equal(after.status, 200, 'ready once it is')
  t.equal((await fetch(`${statusUrl}/nothing`)).status, 404)
  t.equal((await fetch(`${statusUrl}/metrics`, { method: 'POST' })).status, 405)

  const text = await fetchMetrics(`${statusUrl}/metrics`)
  const check = await promtoolCheckMetrics(text)
  t.equal(check.code, 0, `promtool check metrics: ${check.output}`)
  const samples = parseMetrics(text)
  const revision = await store.revision('state')
  t.ok(revision >= 1)
  t.equal(sumOf(samples, 'ambit_controller_state_revision'), revision, 'the revision committed')
  t.equal(sumOf(samples, 'ambit_controller_commits_total'), 1, 'one commit')
  t.ok(sumOf(samples, 'ambit_controller_resolve_duration_seconds_count') >= 1, 'resolutions are timed')
  t.ok(samples.some((s) => s.name === 'process_cpu_user_seconds_total'), 'process metrics')

  const second = await ControlPlane.start({
    store: new MemoryStore(), files: [], trustDomain: DEFAULT_TRUST_DOMAIN, rootNamespace: DEFAULT_ROOT_NAMESPACE,
    logger: pino({ level: 'silent' }), caHost: HOST, caPort: 0, statusHost: HOST, statusPort: 15014
  })
  t.teardown(() => second.stop())
  t.equal(second.statusServer, undefined, 'a status port in use is not fatal: the plane runs without it')
  const free = await ControlPlane.start({
    store: new MemoryStore(), files: [], trustDomain: DEFAULT_TRUST_DOMAIN, rootNamespace: DEFAULT_ROOT_NAMESPACE,
    logger: pino({ level: 'silent' }), caHost: HOST, caPort: 0, statusHost: HOST, statusPort: 0
  })
  t.teardown(() => free.stop())
  t.not(free.statusServer?.port, 15014, 'port 0 picks a free one')
  t.equal((await fetch(`${free.statusServer!.url}/healthz/ready`)).status, 200)
})
