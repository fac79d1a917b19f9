import t from 'tap'
import { MeshRegistry } from '../policy/registry.js'
import { explain } from '../policy/explain.js'
import { shopState } from './helpers/mesh.js'

t.test('per-connection lookups', async (t) => {
  const registry = new MeshRegistry(await shopState())
  t.equal(registry.workloadByIp('127.0.0.21')?.key, 'shop/cart')
  t.equal(registry.workloadByIp('127.0.0.31'), undefined, 'a pod outside the mesh is not a workload')
  t.equal(registry.serviceByVip('10.96.0.13')?.key, 'shop/payments')
  for (const host of ['payments.shop.svc.cluster.local', 'payments.shop.svc', 'payments.shop', 'PAYMENTS.shop.svc.cluster.local.']) {
    t.equal(registry.serviceByHost(host)?.key, 'shop/payments', host)
  }
  t.equal(registry.serviceByHost('payments', 'shop')?.key, 'shop/payments', 'a bare name resolves in the caller\'s namespace')
  t.equal(registry.serviceByHost('payments', 'legacy'), undefined)
  t.same(registry.workloadsOnNode('node-a').map((w) => w.key).sort(), ['shop/catalog-v2', 'shop/web'])

  const target = registry.resolve('catalog.shop', 80)
  t.equal(target?.kind, 'service')
  t.equal(registry.resolve('catalog.shop', 81), undefined, 'a port the Service does not declare')
  t.equal(registry.resolve('127.0.0.22', 8080)?.kind, 'workload')
  t.same(registry.resolve('192.0.2.7', 443), { kind: 'passthrough', ip: '192.0.2.7', port: 443 })
  t.equal(registry.resolve('nope.example', 80), undefined)

  const catalogV1 = registry.workloadByIp('127.0.0.22')!
  t.same(registry.servicesServing(catalogV1, 8080).map((s) => s.key).sort(), ['shop/catalog', 'shop/catalog-v1'], 'a pod port reached through two Services')
  t.equal(registry.serviceServing(catalogV1, 8080)?.key, registry.servicesServing(catalogV1, 8080)[0]?.key, 'the first of them names it in metrics')
  t.same(registry.servicesServing(catalogV1, 9999), [], 'no Service reaches that port')
})

t.test('authorization through the registry names the deciding policy and rule', async (t) => {
  const registry = new MeshRegistry(await shopState())
  const payments = registry.workloadByIp('127.0.0.23')!
  const fromCart = registry.authorize(payments, {
    source: { principal: 'cluster.local/ns/shop/sa/cart', namespace: 'shop', ip: '127.0.0.21' },
    destination: { ip: '127.0.0.23', port: 9090 }
  })
  t.ok(fromCart.allowed)
  t.equal(fromCart.policy, 'shop/payments-from-cart')
  const fromWeb = registry.authorize(payments, {
    source: { principal: 'cluster.local/ns/shop/sa/web', namespace: 'shop', ip: '127.0.0.11' },
    destination: { ip: '127.0.0.23', port: 9090 }
  })
  t.notOk(fromWeb.allowed)
  t.equal(fromWeb.policy, 'shop/deny-web-to-payments')
  t.equal(fromWeb.rule, 0)
  const fromCatalog = registry.authorize(payments, {
    source: { principal: 'cluster.local/ns/shop/sa/catalog', namespace: 'shop', ip: '127.0.0.22' },
    destination: { ip: '127.0.0.23', port: 9090 }
  })
  t.notOk(fromCatalog.allowed, 'not on the allow-list')
  t.match(fromCatalog.reason, /shop\/payments-from-cart/)
  t.equal(registry.mtlsMode(payments, 9090), 'STRICT')
})

t.test('explain: allowed, denied by a DENY, denied by an allow-list', async (t) => {
  const registry = new MeshRegistry(await shopState())
  const allowed = explain(registry, { from: 'shop/cart', to: 'payments.shop:9090' })
  t.ok(allowed.allowed)
  t.equal(allowed.endpoints[0]!.decision?.policy, 'shop/payments-from-cart')
  const denied = explain(registry, { from: 'web', to: 'payments.shop.svc.cluster.local:9090' })
  t.notOk(denied.allowed)
  t.equal(denied.endpoints[0]!.decision?.policy, 'shop/deny-web-to-payments')
  t.equal(denied.endpoints[0]!.decision?.action, 'DENY')
  const notListed = explain(registry, { from: '127.0.0.12', to: 'shop/payments' })
  t.notOk(notListed.allowed)
  t.match(notListed.endpoints[0]!.decision?.reason ?? '', /payments-from-cart/)
  const twoEndpoints = explain(registry, { from: 'web', to: 'catalog' })
  t.equal(twoEndpoints.endpoints.length, 2)
  t.ok(twoEndpoints.allowed)
  t.throws(() => explain(registry, { from: 'ghost', to: 'catalog' }), /no meshed workload "ghost"/)
  t.throws(() => explain(registry, { from: 'web', to: 'catalog:81' }), /has no port 81/)
})

t.test('explain behind a waypoint: the L7 verdict, the route taken and the waypoint identity at the endpoint', async (t) => {
  const { loadResourceFiles } = await import('../policy/load.js')
  const { resolve } = await import('../policy/resolve.js')
  const { TEST_MESH } = await import('./helpers/mesh.js')
  const { resources } = await loadResourceFiles([new URL('./fixtures/waypoint', import.meta.url).pathname])
  const registry = new MeshRegistry(resolve(resources, TEST_MESH).state)
  const e = explain(registry, { from: 'shop/client', to: 'echo.shop', http: { method: 'GET', path: '/x' } })
  t.equal(e.waypoint?.state?.spiffeId, 'spiffe://cluster.local/ns/shop/sa/waypoint')
  t.same(e.routing?.matched?.backends.map((b) => [b.name, b.weight]), [['echo-v1', 90], ['echo-v2', 10]])
  t.equal(e.routing?.matched?.route, 'HTTPRoute/shop/echo-split')
  t.ok(e.allowed)
  const withoutPath = explain(registry, { from: 'shop/client', to: 'echo.shop' })
  t.same(withoutPath.routing?.attached, ['HTTPRoute/shop/echo-split'])
  t.equal(withoutPath.routing?.matched, undefined, 'the rule needs a method and path')
})
