import t from 'tap'
import { resolve, appProtocolOf } from '../policy/resolve.js'
import { parseResources } from '../policy/load.js'
import type { Resource } from '../policy/resources.js'
import { shopResources, shopState, TEST_MESH } from './helpers/mesh.js'

function resources (yaml: string): Resource[] {
  const { resources, errors } = parseResources(yaml, 'inline.yaml')
  if (errors.length > 0) throw new Error(errors.map((e) => e.message).join('\n'))
  return resources
}

t.test('the sample shop resolves into workloads, services and their policies', async (t) => {
  const state = await shopState()
  t.same(Object.keys(state.nodes), ['node-a', 'node-b'])
  t.same(Object.keys(state.workloads).sort(), ['shop/cart', 'shop/catalog-v1', 'shop/catalog-v2', 'shop/payments', 'shop/web'],
    'only pods of the ambient namespace are workloads (legacy/reporter is not)')
  const web = state.workloads['shop/web']!
  t.equal(web.spiffeId, 'spiffe://cluster.local/ns/shop/sa/web')
  t.equal(web.node, 'node-a')
  t.equal(web.ip, '127.0.0.11')
  t.same(web.services, ['shop/web'])
  t.equal(web.mtls.mode, 'STRICT')
  t.equal(web.mtls.policy, 'shop/default')
  t.same(state.workloads['shop/payments']!.policies,
    ['ambit-system/audit-cross-namespace', 'shop/deny-web-to-payments', 'shop/payments-from-cart'],
    'selector policies of the namespace and mesh-wide root-namespace policies')
  t.same(web.policies, ['ambit-system/audit-cross-namespace'])

  const catalog = state.services['shop/catalog']!
  t.equal(catalog.vip, '10.96.0.12')
  t.same(catalog.hostnames, ['catalog.shop.svc.cluster.local', 'catalog.shop.svc', 'catalog.shop'])
  t.same(catalog.endpoints.map((e) => e.ip).sort(), ['127.0.0.12', '127.0.0.22'])
  t.same(catalog.ports, [{ name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' }])
  t.same(catalog.waypoint, { namespace: 'shop', name: 'waypoint' }, 'catalog\'s own label sends it through the waypoint')
  t.same(catalog.routes, ['HTTPRoute/shop/catalog-canary'])
  t.same(state.services['shop/catalog-v2']!.endpoints.map((e) => e.ip), ['127.0.0.12'], 'one Service per version, for the canary split')
  t.equal(state.services['shop/payments']!.waypoint, undefined, 'payments stays L4: its deny is the ztunnel\'s')
  t.same(state.waypoints['shop/waypoint']!.instances, [{ ip: '127.0.0.13', node: 'node-a' }])
  t.equal(state.workloads['shop/waypoint-0'], undefined, 'the waypoint pod is not a meshed workload')
  const webSvc = state.services['shop/web']!
  t.same(webSvc.endpoints[0]!.ports, { 80: 8080 }, 'a named targetPort resolves through the pod\'s container ports')
  t.equal(state.services['shop/payments']!.ports[0]!.appProtocol, 'grpc')
})

t.test('resolution is deterministic and pure', async (t) => {
  const input = await shopResources()
  const a = resolve(input, TEST_MESH)
  const b = resolve([...input].reverse(), TEST_MESH)
  t.same(JSON.stringify(a.state), JSON.stringify(b.state), 'input order does not matter')
})

const BASE = `
apiVersion: v1
kind: Namespace
metadata: { name: app, labels: { ambit.dev/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Node
metadata: { name: n1 }
status: { addresses: [{ type: InternalIP, address: 10.0.0.1 }] }
---
apiVersion: v1
kind: Pod
metadata: { name: a, namespace: app, labels: { app: a } }
spec: { nodeName: n1, serviceAccountName: sa-a }
status: { podIP: 10.1.0.1, phase: Running }
---
apiVersion: v1
kind: Service
metadata: { name: a, namespace: app }
spec: { selector: { app: a }, clusterIP: 10.96.1.1, ports: [{ port: 80, targetPort: 8080 }] }
`

t.test('a policy targeting a Service without a waypoint is enforced on its endpoints', async (t) => {
  const { state } = resolve(resources(BASE + `
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: svc-policy, namespace: app }
spec:
  targetRefs: [{ kind: Service, group: "", name: a }]
  action: DENY
  rules: [{}]
`), TEST_MESH)
  t.same(state.services['app/a']!.policies, ['app/svc-policy'])
  t.same(state.workloads['app/a']!.policies, ['app/svc-policy'], 'the ztunnel enforces it (Istio would ignore it)')
})

t.test('with a waypoint, targetRefs policies are the waypoint\'s and the service routes through it', async (t) => {
  const { state, warnings } = resolve(resources(BASE.replace('ambit.dev/dataplane-mode: ambient', 'ambit.dev/dataplane-mode: ambient, ambit.dev/use-waypoint: wp') + `
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: wp, namespace: app }
spec: { gatewayClassName: ambit-waypoint, listeners: [{ name: mesh, port: 15008, protocol: HBONE }] }
---
apiVersion: v1
kind: Pod
metadata: { name: wp-0, namespace: app, labels: { gateway.networking.k8s.io/gateway-name: wp } }
spec: { nodeName: n1, serviceAccountName: wp }
status: { podIP: 10.1.0.9, phase: Running }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: svc-policy, namespace: app }
spec:
  targetRefs: [{ kind: Service, group: "", name: a }]
  action: DENY
  rules: [{ to: [{ operation: { methods: ["POST"] } }] }]
`), TEST_MESH)
  t.same(warnings, [])
  t.same(state.services['app/a']!.waypoint, { namespace: 'app', name: 'wp' })
  t.same(state.workloads['app/a']!.policies, [], 'not enforced at L4 when a waypoint applies it')
  t.same(state.waypoints['app/wp']!.instances, [{ ip: '10.1.0.9', node: 'n1' }])
  t.equal(state.waypoints['app/wp']!.spiffeId, 'spiffe://cluster.local/ns/app/sa/wp')
})

t.test('a missing waypoint is kept (fail closed) and reported', async (t) => {
  const { state, warnings } = resolve(resources(BASE.replace('{ name: a, namespace: app }\nspec: { selector', '{ name: a, namespace: app, labels: { ambit.dev/use-waypoint: ghost } }\nspec: { selector')), TEST_MESH)
  t.same(state.services['app/a']!.waypoint, { namespace: 'app', name: 'ghost' })
  t.match(warnings.join('\n'), /waypoint ghost does not exist/)
})

t.test('pods: opt-out label, unknown node, finished and unscheduled pods', async (t) => {
  const { state, warnings } = resolve(resources(BASE + `
---
apiVersion: v1
kind: Pod
metadata: { name: out, namespace: app, labels: { ambit.dev/dataplane-mode: none } }
spec: { nodeName: n1 }
status: { podIP: 10.1.0.2 }
---
apiVersion: v1
kind: Pod
metadata: { name: lost, namespace: app }
spec: { nodeName: nowhere }
status: { podIP: 10.1.0.3 }
---
apiVersion: v1
kind: Pod
metadata: { name: done, namespace: app }
spec: { nodeName: n1 }
status: { podIP: 10.1.0.4, phase: Succeeded }
---
apiVersion: v1
kind: Pod
metadata: { name: pending, namespace: app }
spec: {}
`), TEST_MESH)
  t.same(Object.keys(state.workloads), ['app/a'])
  t.match(warnings.join('\n'), /Pod\/app\/lost: node nowhere is unknown/)
})

t.test('PeerAuthentication precedence reaches the workloads', async (t) => {
  const { state } = resolve(resources(BASE + `
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: mesh, namespace: ambit-system }
spec: { mtls: { mode: STRICT } }
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: a-permissive, namespace: app }
spec: { selector: { matchLabels: { app: a } }, mtls: { mode: PERMISSIVE }, portLevelMtls: { "9000": { mode: DISABLE } } }
`), TEST_MESH)
  t.same(state.workloads['app/a']!.mtls, { mode: 'PERMISSIVE', ports: { 9000: 'DISABLE' }, policy: 'app/a-permissive' })
})

t.test('app protocol: appProtocol first, then the port name prefix', async (t) => {
  t.equal(appProtocolOf({ appProtocol: 'grpc' }), 'grpc')
  t.equal(appProtocolOf({ appProtocol: 'kubernetes.io/h2c' }), 'http2')
  t.equal(appProtocolOf({ name: 'http-web' }), 'http')
  t.equal(appProtocolOf({ name: 'http2' }), 'http2')
  t.equal(appProtocolOf({ name: 'grpc-api', appProtocol: 'tcp' }), 'tcp')
  t.equal(appProtocolOf({ name: 'redis' }), 'tcp')
  t.equal(appProtocolOf({}), 'tcp')
})

/** A selector-less Service in front of the meshed pod `a` (10.1.0.1) and an address outside the mesh. */
const EXTERNAL = BASE + `
---
apiVersion: v1
kind: Service
metadata: { name: external, namespace: app }
spec: { clusterIP: 10.96.1.2, ports: [{ name: http, port: 80, targetPort: 8080 }, { name: admin, port: 9000 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: external-1, namespace: app, labels: { kubernetes.io/service-name: external } }
addressType: IPv4
endpoints:
  - { addresses: [10.1.0.1], conditions: { ready: true } }
  - { addresses: [192.168.7.7], nodeName: n1, targetRef: { kind: Pod, name: outside, namespace: legacy } }
  - { addresses: [192.168.7.8], conditions: { ready: false, serving: true, terminating: true }, nodeName: n1 }
ports: [{ name: http, port: 8080, protocol: TCP }, { name: admin, port: 9090 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: other-1, namespace: app, labels: { kubernetes.io/service-name: other } }
addressType: IPv4
endpoints: [{ addresses: [192.168.9.9] }]
ports: [{ name: http, port: 8080 }]
`

t.test('a Service without a selector takes its endpoints from its EndpointSlices', async (t) => {
  const { state } = resolve(resources(EXTERNAL), TEST_MESH)
  const endpoints = state.services['app/external']!.endpoints
  t.same(endpoints.map((e) => e.ip), ['10.1.0.1', '192.168.7.7'],
    'ready (or unconditioned) addresses of its own slices only: not-ready 192.168.7.8 and the other service\'s 192.168.9.9 are left out')
  t.same(endpoints[0], { workload: 'app/a', meshed: true, ip: '10.1.0.1', node: 'n1', ports: { 80: 8080, 9000: 9090 } },
    'an address of a meshed pod is that workload, on its node; ports map by name')
  t.same(endpoints[1], { workload: 'legacy/outside', meshed: false, ip: '192.168.7.7', node: 'n1', ports: { 80: 8080, 9000: 9090 } })
  t.same(state.workloads['app/a']!.services, ['app/a', 'app/external'], 'the meshed pod is a member of the selector-less Service')
  t.same(state.services['app/a']!.endpoints.map((e) => e.ip), ['10.1.0.1'], 'a Service with a selector still takes its pods')
})

t.test('an unnamed slice port serves a single-port Service; slices do not override a selector', async (t) => {
  const { state } = resolve(resources(BASE + `
---
apiVersion: v1
kind: Service
metadata: { name: single, namespace: app }
spec: { ports: [{ name: web, port: 80, targetPort: 8080 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: single-1, namespace: app, labels: { kubernetes.io/service-name: single } }
addressType: IPv4
endpoints: [{ addresses: [192.168.1.1] }]
ports: [{ name: "", port: 8443 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: a-manual, namespace: app, labels: { kubernetes.io/service-name: a } }
addressType: IPv4
endpoints: [{ addresses: [192.168.2.2] }]
ports: [{ port: 8080 }]
`), TEST_MESH)
  t.same(state.services['app/single']!.endpoints, [{ workload: '192.168.1.1', meshed: false, ip: '192.168.1.1', node: '', ports: { 80: 8443 } }])
  t.same(state.services['app/a']!.endpoints.map((e) => e.ip), ['10.1.0.1'])
})
