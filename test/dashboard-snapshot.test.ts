/**
 * The dashboard's pure parts: the Prometheus text reader, traffic totals and rates from the
 * proxies' Istio metrics, and the snapshot built from the sample shop's state.
 */
import t from 'tap'
import { parsePrometheusText } from '../control/prometheus-text.js'
import { edgeRates, quantile, serviceRates, totalsOf } from '../control/traffic.js'
import { buildSnapshot, type ServicePoint } from '../control/mesh-snapshot.js'
import { IssuedCertificates } from '../control/issued-certificates.js'
import { ruleHitsOf } from '../control/policy-hits.js'
import { shopState } from './helpers/mesh.js'

t.test('parsePrometheusText reads samples, labels with escapes, special values, and skips the rest', async (t) => {
  const samples = parsePrometheusText([
    '# HELP istio_requests_total Requests',
    '# TYPE istio_requests_total counter',
    'istio_requests_total{reporter="waypoint",path="a\\"b\\\\c\\nd",empty=""} 42',
    'process_start_time_seconds 1.7e9 1700000000000',
    'istio_request_duration_milliseconds_bucket{le="+Inf"} 7',
    'nan_metric NaN',
    'not a sample line',
    'bad_value{a="b"} twelve',
    ''
  ].join('\n'))
  t.equal(samples.length, 4)
  t.strictSame(samples[0], { name: 'istio_requests_total', labels: { reporter: 'waypoint', path: 'a"b\\c\nd', empty: '' }, value: 42 })
  t.equal(samples[1]!.value, 1.7e9, 'a timestamp is not the value')
  t.strictSame(samples[2]!.labels, { le: '+Inf' })
  t.ok(Number.isNaN(samples[3]!.value))
})

t.test('quantile interpolates inside the bucket, as histogram_quantile does', async (t) => {
  const buckets = new Map([[1, 50], [5, 90], [10, 100], [Infinity, 100]])
  t.equal(quantile(buckets, 0.5), 1)
  t.equal(quantile(buckets, 0.99), 9.5)
  t.equal(quantile(new Map([[1, 0], [Infinity, 0]]), 0.99), undefined, 'no observations')
  t.equal(quantile(new Map([[1, 0], [Infinity, 4]]), 0.99), 1, 'in +Inf: the highest finite bound')
})

const HOSTS: Record<string, string> = {
  'cart.shop.svc.cluster.local': 'shop/cart',
  'payments.shop.svc.cluster.local': 'shop/payments',
  'catalog.shop.svc.cluster.local': 'shop/catalog'
}

function tcp (source: string, service: string, flags: string, value: number, mtls = 'mutual_tls'): string {
  return `istio_tcp_connections_opened_total{reporter="destination",source_workload="${source}",source_workload_namespace="shop",` +
    `destination_service="${service}.shop.svc.cluster.local",connection_security_policy="${mtls}",response_flags="${flags}",node="node-b"} ${value}`
}

function http (source: string, code: number, value: number, le: Record<string, number>): string[] {
  const labels = `reporter="waypoint",source_workload="${source}",source_workload_namespace="shop",destination_service="catalog.shop.svc.cluster.local",response_code="${code}",connection_security_policy="mutual_tls"`
  return [
    `istio_requests_total{${labels}} ${value}`,
    ...Object.entries(le).map(([bound, n]) => `istio_request_duration_milliseconds_bucket{${labels},le="${bound}"} ${n}`),
    // The source-side ztunnel's view of the same calls: ignored (reporter="source").
    `istio_requests_total{${labels.replace('waypoint', 'source')}} 1000`
  ]
}

function reading (lines: readonly string[]): ReturnType<typeof totalsOf> {
  return totalsOf(parsePrometheusText(lines.join('\n')), (host) => HOSTS[host])
}

t.test('rates per edge and per Service come from the difference of two readings', async (t) => {
  const before = reading([
    tcp('web', 'payments', 'UAEX', 10), tcp('cart', 'payments', '-', 20), tcp('web', 'cart', '-', 30, 'none'),
    ...http('web', 200, 100, { 1: 50, 10: 100, '+Inf': 100 }),
    // catalog also has L4 counts (the waypoint's own hops): the L7 view wins for the Service.
    tcp('waypoint', 'catalog', '-', 500),
    'istio_tcp_connections_opened_total{reporter="destination",destination_service="unknown",source_workload="x"} 9'
  ])
  const after = reading([
    tcp('web', 'payments', 'UAEX', 30), tcp('cart', 'payments', '-', 40), tcp('web', 'cart', '-', 50, 'none'),
    ...http('web', 200, 180, { 1: 90, 10: 180, '+Inf': 180 }), ...http('web', 503, 20, { 1: 0, 10: 20, '+Inf': 20 }),
    tcp('waypoint', 'catalog', '-', 600)
  ])
  t.equal(after.size, 5, 'unknown destinations are left out')
  const edges = edgeRates(before, after, 2)
  const webToPayments = edges.find((e) => e.source === 'shop/web' && e.service === 'shop/payments')!
  t.match(webToPayments, { rps: 10, errorRate: 1, mtlsShare: 1, layer: 'tcp' })
  t.match(edges.find((e) => e.source === 'shop/web' && e.service === 'shop/cart'), { rps: 10, errorRate: 0, mtlsShare: 0 })

  const services = serviceRates(before, after, 2)
  t.match(services.get('shop/payments'), { rps: 20, successRate: 0.5, layer: 'tcp' })
  t.equal(services.get('shop/payments')!.p99Ms, undefined, 'no latency at L4')
  const catalog = services.get('shop/catalog')!
  t.match(catalog, { rps: 50, successRate: 0.8, layer: 'http', mtlsShare: 1 })
  t.ok(catalog.p99Ms! > 1 && catalog.p99Ms! <= 10, `p99 from the histogram's increase: ${catalog.p99Ms}`)

  const restarted = serviceRates(after, reading([tcp('cart', 'payments', '-', 4)]), 2)
  t.equal(restarted.get('shop/payments')!.rps, 2, 'a counter that went back counts from zero (its proxy restarted)')
  t.equal(serviceRates(undefined, after, 0).get('shop/payments')!.rps, 0, 'no rate from a first reading')
})

t.test('buildSnapshot: graph of every Service and workload, traffic edges, rule hits, routes, certificates', async (t) => {
  const state = await shopState()
  const now = Date.parse('2030-01-01T00:00:00Z')
  const before = reading([tcp('web', 'payments', 'UAEX', 0), tcp('cart', 'payments', '-', 0)])
  const after = reading([tcp('web', 'payments', 'UAEX', 8), tcp('cart', 'payments', '-', 12)])
  const certificates = new IssuedCertificates()
  const cart = state.workloads['shop/cart']!
  certificates.record({ node: cart.node, spiffeId: cart.spiffeId, serial: '01', notAfter: new Date(now + 3_600_000) })
  certificates.record({ node: cart.node, spiffeId: cart.spiffeId, serial: '00', notAfter: new Date(now + 60_000) })
  const history = new Map<string, ServicePoint[]>([['shop/payments', [{ t: now - 2000, rps: 9, successRate: 0.6 }, { t: now, rps: 10, successRate: 0.6 }]]])
  const ruleHits = ruleHitsOf(parsePrometheusText([
    'ambit_authorization_rule_hits_total{policy="shop/deny-web-to-payments",rule="0",action="DENY",node="node-b"} 8',
    'ambit_authorization_rule_hits_total{policy="shop/payments-from-cart",rule="0",action="ALLOW",node="node-b"} 10',
    // The same rule counted by another proxy adds up.
    'ambit_authorization_rule_hits_total{policy="shop/payments-from-cart",rule="0",action="ALLOW",node="node-a"} 2',
    'istio_tcp_connections_opened_total{policy="shop/payments-from-cart",rule="0"} 99'
  ].join('\n')))
  const snapshot = buildSnapshot({
    state, revision: 7, edges: edgeRates(before, after, 2), services: serviceRates(before, after, 2), history, ruleHits,
    certificates, sources: [{ name: 'ztunnel node-b', stale: false, lastSuccess: now }], now, sequence: 3
  })
  t.match(snapshot, { sequence: 3, revision: 7, time: '2030-01-01T00:00:00.000Z', totals: { rps: 10 } })
  const serviceNodes = snapshot.graph.nodes.filter((n) => n.kind === 'service').map((n) => n.key).sort()
  t.strictSame(serviceNodes, Object.keys(state.services).sort(), 'a node per Service')
  t.strictSame(snapshot.graph.nodes.filter((n) => n.kind === 'workload').map((n) => n.key).sort(), Object.keys(state.workloads).sort(), 'a node per workload')
  const traffic = snapshot.graph.edges.filter((e) => e.kind === 'traffic')
  t.match(traffic.find((e) => e.from === 'workload:shop/web'), { to: 'service:shop/payments', rps: 4, errorRate: 1 })
  t.ok(snapshot.graph.edges.some((e) => e.kind === 'endpoint' && e.from === 'service:shop/payments' && e.to === 'workload:shop/payments'))
  const columns = new Map(snapshot.graph.nodes.map((n) => [n.id, n.column]))
  t.ok(columns.get('workload:shop/web')! < columns.get('service:shop/payments')!, 'callers left of what they call')

  const payments = snapshot.services.find((s) => s.key === 'shop/payments')!
  t.match(payments, { rps: 10, successRate: 0.6, layer: 'tcp' })
  t.equal(payments.history.length, 2)

  const hits = Object.fromEntries(snapshot.policies.map((p) => [p.key, p.rules.map((r) => r.hits)]))
  t.same(hits['shop/deny-web-to-payments'], [8], 'the DENY rule\'s hits, as the proxies counted them')
  t.same(hits['shop/payments-from-cart'], [12], 'the ALLOW rule\'s, summed over the proxies (and no other metric)')
  t.same(hits['ambit-system/audit-cross-namespace'], [0], 'a rule nothing hit')
  t.equal(snapshot.policies.find((p) => p.key === 'shop/payments-from-cart')!.action, 'ALLOW')

  for (const route of snapshot.routes) {
    for (const rule of route.rules) {
      if (rule.backends.length > 0) t.equal(rule.backends.reduce((sum, b) => sum + b.percent, 0), 100, `${route.key} rule ${rule.index}: shares add up to 100%`)
    }
  }
  t.strictSame(snapshot.waypoints.map((w) => w.key), Object.keys(state.waypoints).sort())

  const cartCertificate = snapshot.certificates.find((c) => c.workload === 'shop/cart')!
  t.match(cartCertificate, { node: cart.node, spiffeId: cart.spiffeId, expiresInSeconds: 3600, notAfter: '2030-01-01T01:00:00.000Z' }, 'the latest certificate')
  t.equal(snapshot.certificates.find((c) => c.workload === 'shop/web')!.notAfter, undefined, 'none issued yet')
  t.strictSame(JSON.parse(JSON.stringify(snapshot)), snapshot, 'plain JSON')
})
