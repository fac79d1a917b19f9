import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { runCli, startCli } from './helpers/cli.js'
import { startRedis } from './helpers/redis.js'
import { waitFor } from './helpers/wait.js'
import { SHOP_DIR, TEST_MESH, shopResources } from './helpers/mesh.js'
import { MemoryStore } from '../control/memory-store.js'
import { Controller } from '../control/controller.js'
import { openStore } from '../control/open-store.js'
import { CaClient } from '../policy/ca-client.js'
import { CaRefusedError } from '../policy/errors.js'
import { certificateInfo } from '../policy/certs.js'
import { resourceKey } from '../policy/resources.js'

const quiet = pino({ level: 'silent' })
const FIXTURES = new URL('./fixtures/apply/', import.meta.url).pathname

t.test('the controller resolves files and applied resources into the store', async (t) => {
  const store = new MemoryStore()
  const controller = new Controller({ store, files: [SHOP_DIR], mesh: TEST_MESH, logger: quiet, watchFiles: false })
  t.teardown(() => controller.stop())
  await controller.start()
  t.equal(Object.keys(controller.state!.workloads).length, 5)
  const first = await store.revision('state')
  t.ok(first > 0)

  // What `ambit apply` does: put a resource in the resources keyspace.
  const web = (await shopResources()).find((r) => resourceKey(r) === 'Pod/shop/web')!
  const moved = { ...web, nodeName: 'node-b' }
  await store.commit('resources', { upserts: new Map([[resourceKey(moved), moved]]), deletes: [] })
  await waitFor('the moved pod', () => controller.state?.workloads['shop/web']?.node === 'node-b', 2000)
  t.ok(await store.revision('state') > first)

  // Restarting on the same store writes nothing new when nothing changed.
  const before = await store.revision('state')
  const again = new Controller({ store, files: [SHOP_DIR], mesh: TEST_MESH, logger: quiet, watchFiles: false })
  await again.start()
  await again.stop()
  t.equal(await store.revision('state'), before, 'an unchanged state is not written again')
})

t.test('against a real Redis: apply, reject bad YAML without touching state, node-scoped CA', async (t) => {
  const redis = await startRedis(t)
  const dir = await mkdtemp(join(tmpdir(), 'ambit-controller-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const controller = startCli(t, ['controller', '--store', redis.url, '-f', SHOP_DIR, '--ca-port', '0', '--status-port', '0', '--credentials-dir', dir])
  const banner = await controller.waitFor(/CA at (https:\/\/\S+)/)
  const caUrl = /CA at (https:\/\/\S+)/.exec(banner)![1]!

  const workloads = await runCli(['get', 'workloads', '--store', redis.url])
  t.equal(workloads.code, 0, workloads.stderr)
  t.equal(workloads.stdout.trim().split('\n').length, 6, 'a header and five workloads')

  const applied = await runCli(['apply', '-f', join(FIXTURES, 'good-policy.yaml'), '--store', redis.url])
  t.equal(applied.code, 0, applied.stderr)
  t.match(applied.stdout, 'AuthorizationPolicy/shop/catalog-from-web applied')
  const store = await openStore(redis.url)
  t.teardown(() => store.close())
  // Timed from apply's exit to the resolved state in Redis (the CLI's own start-up is not the mesh's latency).
  const started = Date.now()
  await waitFor('the applied policy in the state', async () =>
    (await store.snapshot('state')).entries.has('authz/shop/catalog-from-web'), 2000)
  t.ok(Date.now() - started < 2000, 'visible within 2 s')
  t.match((await runCli(['get', 'policies', '--store', redis.url])).stdout, 'catalog-from-web', 'ambit get shows it')
  const resourcesBefore = await store.snapshot('resources')
  const stateBefore = await store.snapshot('state')
  for (const [file, expected] of [
    ['bad-unknown-kind.yaml', /bad-unknown-kind\.yaml document 0 \(Gizmo\/thing\): kind: Unknown kind "Gizmo"/],
    ['bad-field-type.yaml', /bad-field-type\.yaml document 0 \(Service\/broken\): spec\.ports\[0\]\.port: expected a number, got string/],
    ['bad-missing-field.yaml', /bad-missing-field\.yaml document 0 \(AuthorizationPolicy\): metadata\.name: is required/],
    ['bad-selector.yaml', /bad-selector\.yaml document 0 \(AuthorizationPolicy\/bad-selector\): spec\.selector\.matchLabels\.app: expected a string/]
  ] as const) {
    const rejected = await runCli(['apply', '-f', join(FIXTURES, 'good-policy.yaml'), '-f', join(FIXTURES, file), '--store', redis.url])
    t.equal(rejected.code, 1, `${file} is rejected`)
    t.match(rejected.stderr, expected, `${file}: names file, document, object, field and reason`)
  }
  await new Promise((resolve) => setTimeout(resolve, 200))
  const resourcesAfter = await store.snapshot('resources')
  t.equal(resourcesAfter.revision, resourcesBefore.revision, 'nothing was written to the resources')
  t.same([...resourcesAfter.entries.keys()], [...resourcesBefore.entries.keys()])
  t.equal((await store.snapshot('state')).revision, stateBefore.revision, 'the mesh state is unchanged')

  // The CA signs only for service accounts of pods on the asking node.
  const trustBundle = [await readFile(join(dir, 'ca-root.pem'), 'utf8')]
  const nodeA = new CaClient({ url: caUrl, token: await readFile(join(dir, 'node-a.token'), 'utf8'), trustBundle })
  const identity = await nodeA.requestCertificate('shop', 'web', 'cluster.local')
  t.equal(certificateInfo(identity.certChain).spiffeId, 'spiffe://cluster.local/ns/shop/sa/web')
  const refused = await nodeA.requestCertificate('shop', 'payments', 'cluster.local').catch((err: unknown) => err)
  t.ok(refused instanceof CaRefusedError, 'payments runs only on node-b')
  t.match((refused as Error).message, /node-a/)
  t.match((refused as Error).message, /payments/)
  const forged = new CaClient({ url: caUrl, token: 'node.bm9kZS1h.AAAA', trustBundle })
  await t.rejects(forged.requestCertificate('shop', 'web', 'cluster.local'), CaRefusedError)

  t.equal(await controller.stop('SIGTERM'), 0, 'SIGTERM shuts the controller down cleanly')
})
