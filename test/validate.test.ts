import t from 'tap'
import { parse } from 'yaml'
import { InvalidResourceError } from '../policy/errors.js'
import { parseDuration } from '../policy/fields.js'
import { validateResource } from '../policy/validate.js'

const LOCATION = { file: 'mesh.yaml', document: 2, object: '' }

function validate (yaml: string): unknown {
  // Through JSON so that absent and undefined fields compare alike.
  return JSON.parse(JSON.stringify(validateResource(parse(yaml), LOCATION)))
}

/** What `kubectl get -o yaml` adds to every object. */
const NOISE = `
  creationTimestamp: "2024-05-01T10:00:00Z"
  managedFields:
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1: {f:metadata: {f:labels: {.: {}}}}
    manager: kubectl-client-side-apply
    operation: Update
    time: "2024-05-01T10:00:00Z"`

const VALID: Array<{ name: string, yaml: string, expected: unknown }> = [
  {
    name: 'Namespace',
    yaml: `
apiVersion: v1
kind: Namespace
metadata:${NOISE}
  labels:
    ambit.dev/dataplane-mode: ambient
    ambit.dev/use-waypoint: waypoint
    kubernetes.io/metadata.name: shop
  name: shop
  resourceVersion: "1234"
  uid: 6f1c2a9e-3b7d-4c1e-9a55-0d2c7e8f9a10
spec:
  finalizers:
  - kubernetes
status:
  phase: Active
`,
    expected: {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: {
        name: 'shop',
        namespace: '',
        labels: { 'ambit.dev/dataplane-mode': 'ambient', 'ambit.dev/use-waypoint': 'waypoint', 'kubernetes.io/metadata.name': 'shop' },
        annotations: {},
        uid: '6f1c2a9e-3b7d-4c1e-9a55-0d2c7e8f9a10',
        resourceVersion: '1234'
      }
    }
  },
  {
    name: 'Node',
    yaml: `
apiVersion: v1
kind: Node
metadata:
  annotations:
    kubeadm.alpha.kubernetes.io/cri-socket: unix:///run/containerd/containerd.sock
    node.alpha.kubernetes.io/ttl: "0"${NOISE}
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: worker-1
    node-role.kubernetes.io/worker: ""
  name: worker-1
  resourceVersion: "9876"
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs:
  - 10.244.1.0/24
status:
  addresses:
  - address: worker-1
    type: Hostname
  - address: 172.18.0.3
    type: InternalIP
  allocatable:
    cpu: "8"
  conditions:
  - lastHeartbeatTime: "2024-05-01T10:05:00Z"
    reason: KubeletReady
    status: "True"
    type: Ready
  nodeInfo:
    kubeletVersion: v1.30.0
`,
    expected: {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: 'worker-1',
        namespace: '',
        labels: { 'kubernetes.io/arch': 'amd64', 'kubernetes.io/hostname': 'worker-1', 'node-role.kubernetes.io/worker': '' },
        annotations: { 'kubeadm.alpha.kubernetes.io/cri-socket': 'unix:///run/containerd/containerd.sock', 'node.alpha.kubernetes.io/ttl': '0' },
        resourceVersion: '9876'
      },
      internalIP: '172.18.0.3'
    }
  },
  {
    name: 'Pod',
    yaml: `
apiVersion: v1
kind: Pod
metadata:${NOISE}
  generateName: reviews-v1-5d9f7b8c6-
  labels:
    app: reviews
    pod-template-hash: 5d9f7b8c6
    version: v1
  name: reviews-v1-5d9f7b8c6-x2k4q
  namespace: shop
  ownerReferences:
  - apiVersion: apps/v1
    controller: true
    kind: ReplicaSet
    name: reviews-v1-5d9f7b8c6
    uid: 0b3c5d2e-1111-2222-3333-444455556666
  resourceVersion: "5501"
  uid: 9a8b7c6d-1111-2222-3333-444455556666
spec:
  containers:
  - image: ghcr.io/example/reviews:1.0
    name: reviews
    ports:
    - containerPort: 9080
      name: http
      protocol: TCP
    - containerPort: 9464
    resources: {}
  - image: ghcr.io/example/metrics:1.0
    name: metrics
    ports:
    - containerPort: 9100
      name: metrics
  dnsPolicy: ClusterFirst
  nodeName: worker-1
  restartPolicy: Always
  serviceAccount: bookinfo-reviews
  serviceAccountName: bookinfo-reviews
  tolerations:
  - effect: NoExecute
    key: node.kubernetes.io/not-ready
    operator: Exists
    tolerationSeconds: 300
status:
  conditions:
  - lastTransitionTime: "2024-05-01T10:00:05Z"
    status: "True"
    type: Ready
  hostIP: 172.18.0.3
  phase: Running
  podIP: 10.244.1.17
  podIPs:
  - ip: 10.244.1.17
  qosClass: BestEffort
  startTime: "2024-05-01T10:00:01Z"
`,
    expected: {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'reviews-v1-5d9f7b8c6-x2k4q',
        namespace: 'shop',
        labels: { app: 'reviews', 'pod-template-hash': '5d9f7b8c6', version: 'v1' },
        annotations: {},
        uid: '9a8b7c6d-1111-2222-3333-444455556666',
        resourceVersion: '5501'
      },
      nodeName: 'worker-1',
      serviceAccountName: 'bookinfo-reviews',
      podIP: '10.244.1.17',
      phase: 'Running',
      namedPorts: { http: 9080, metrics: 9100 }
    }
  },
  {
    name: 'Pod with defaults and the legacy serviceAccount field',
    yaml: `
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  serviceAccount: legacy
`,
    expected: {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'client', namespace: 'default', labels: {}, annotations: {} },
      serviceAccountName: 'legacy',
      namedPorts: {}
    }
  },
  {
    name: 'Service',
    yaml: `
apiVersion: v1
kind: Service
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"v1","kind":"Service","metadata":{"name":"reviews","namespace":"shop"}}${NOISE}
  labels:
    app: reviews
  name: reviews
  namespace: shop
  resourceVersion: "777"
spec:
  clusterIP: 10.96.12.34
  clusterIPs:
  - 10.96.12.34
  internalTrafficPolicy: Cluster
  ipFamilies:
  - IPv4
  ipFamilyPolicy: SingleStack
  ports:
  - appProtocol: http
    name: http
    port: 9080
    protocol: TCP
    targetPort: http
  - name: grpc
    port: 9090
  - name: metrics
    port: 9464
    targetPort: "19464"
  selector:
    app: reviews
  sessionAffinity: None
  type: ClusterIP
status:
  loadBalancer: {}
`,
    expected: {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: {
        name: 'reviews',
        namespace: 'shop',
        labels: { app: 'reviews' },
        annotations: {
          'kubectl.kubernetes.io/last-applied-configuration': '{"apiVersion":"v1","kind":"Service","metadata":{"name":"reviews","namespace":"shop"}}\n'
        },
        resourceVersion: '777'
      },
      selector: { app: 'reviews' },
      clusterIP: '10.96.12.34',
      ports: [
        { name: 'http', port: 9080, targetPort: 'http', protocol: 'TCP', appProtocol: 'http' },
        { name: 'grpc', port: 9090, targetPort: 9090, protocol: 'TCP' },
        { name: 'metrics', port: 9464, targetPort: 19464, protocol: 'TCP' }
      ]
    }
  },
  {
    name: 'EndpointSlice',
    yaml: `
addressType: IPv4
apiVersion: discovery.k8s.io/v1
endpoints:
- addresses:
  - 10.244.1.17
  conditions:
    ready: true
    serving: true
    terminating: false
  nodeName: node-a
  targetRef:
    kind: Pod
    name: reviews-v1-7d9c6b5f4-x2k8p
    namespace: shop
    uid: 0b7a6c1e-8d2f-4f3a-9e1b-5c4d3a2b1f00
  zone: zone-a
- addresses:
  - 192.168.50.4
kind: EndpointSlice
metadata:
  annotations:
    endpoints.kubernetes.io/last-change-trigger-time: "2024-05-01T10:00:00Z"${NOISE}
  generateName: reviews-
  generation: 3
  labels:
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
    kubernetes.io/service-name: reviews
  name: reviews-8fj2k
  namespace: shop
  ownerReferences:
  - apiVersion: v1
    kind: Service
    name: reviews
  resourceVersion: "778"
ports:
- name: http
  port: 9080
  protocol: TCP
- name: ""
  port: 9464
- appProtocol: grpc
  name: grpc
  port: 9090
`,
    expected: {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: 'reviews-8fj2k',
        namespace: 'shop',
        labels: { 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io', 'kubernetes.io/service-name': 'reviews' },
        annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': '2024-05-01T10:00:00Z' },
        resourceVersion: '778',
        generation: 3
      },
      addressType: 'IPv4',
      endpoints: [
        {
          addresses: ['10.244.1.17'],
          conditions: { ready: true, serving: true, terminating: false },
          nodeName: 'node-a',
          targetRef: { kind: 'Pod', name: 'reviews-v1-7d9c6b5f4-x2k8p', namespace: 'shop' }
        },
        { addresses: ['192.168.50.4'], conditions: {} }
      ],
      ports: [
        { name: 'http', port: 9080, protocol: 'TCP' },
        { port: 9464, protocol: 'TCP' },
        { name: 'grpc', port: 9090, protocol: 'TCP' }
      ]
    }
  },
  {
    name: 'headless Service without selector',
    yaml: `
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: shop
spec:
  clusterIP: None
  selector: {}
  ports:
  - port: 5432
    protocol: TCP
`,
    expected: {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'db', namespace: 'shop', labels: {}, annotations: {} },
      ports: [{ port: 5432, targetPort: 5432, protocol: 'TCP' }]
    }
  },
  {
    name: 'Gateway',
    yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:${NOISE}
  generation: 1
  labels:
    istio.io/waypoint-for: service
  name: waypoint
  namespace: shop
  resourceVersion: "4242"
  uid: 11111111-2222-3333-4444-555555555555
spec:
  gatewayClassName: ambit-waypoint
  listeners:
  - allowedRoutes:
      namespaces:
        from: Same
    name: mesh
    port: 15008
    protocol: HBONE
status:
  addresses:
  - type: IPAddress
    value: 10.96.200.1
  conditions:
  - lastTransitionTime: "2024-05-01T10:00:00Z"
    message: Resource programmed
    observedGeneration: 1
    reason: Programmed
    status: "True"
    type: Programmed
`,
    expected: {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: {
        name: 'waypoint',
        namespace: 'shop',
        labels: { 'istio.io/waypoint-for': 'service' },
        annotations: {},
        uid: '11111111-2222-3333-4444-555555555555',
        resourceVersion: '4242',
        generation: 1
      },
      gatewayClassName: 'ambit-waypoint',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }]
    }
  },
  {
    name: 'HTTPRoute',
    yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:${NOISE}
  generation: 3
  name: reviews
  namespace: shop
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: reviews
    port: 9080
  - name: waypoint
  hostnames:
  - reviews.shop.svc.cluster.local
  rules:
  - matches:
    - path:
        type: Exact
        value: /health
    - path:
        type: RegularExpression
        value: ^/api/v[0-9]+/reviews$
      headers:
      - name: x-user
        value: jason
      - name: x-trace
        type: RegularExpression
        value: ^[a-f0-9]+$
      queryParams:
      - name: debug
        value: "1"
      method: GET
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: x-mesh
          value: ambit
        remove:
        - x-internal
    - type: URLRewrite
      urlRewrite:
        path:
          type: ReplacePrefixMatch
          replacePrefixMatch: /v2
    backendRefs:
    - name: reviews-v1
      port: 9080
      weight: 90
    - name: reviews-v2
      port: 9080
      weight: 10
    timeouts:
      request: 10s
      backendRequest: 2s500ms
    retry:
      attempts: 3
      backoff: 200ms
      codes: [500, 503]
  - backendRefs:
    - name: reviews-v1
      port: 9080
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: https
        statusCode: 301
status:
  parents:
  - conditions:
    - lastTransitionTime: "2024-05-01T10:00:00Z"
      reason: Accepted
      status: "True"
      type: Accepted
    controllerName: ambit.dev/controller
    parentRef:
      group: ""
      kind: Service
      name: reviews
`,
    expected: {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'reviews', namespace: 'shop', labels: {}, annotations: {}, generation: 3 },
      parentRefs: [
        { group: '', kind: 'Service', name: 'reviews', port: 9080 },
        { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }
      ],
      hostnames: ['reviews.shop.svc.cluster.local'],
      rules: [
        {
          matches: [
            { path: { type: 'Exact', value: '/health' }, headers: [], queryParams: [] },
            {
              path: { type: 'RegularExpression', value: '^/api/v[0-9]+/reviews$' },
              headers: [
                { type: 'Exact', name: 'x-user', value: 'jason' },
                { type: 'RegularExpression', name: 'x-trace', value: '^[a-f0-9]+$' }
              ],
              queryParams: [{ type: 'Exact', name: 'debug', value: '1' }],
              method: 'GET'
            }
          ],
          filters: [
            { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-mesh', value: 'ambit' }], add: [], remove: ['x-internal'] } },
            { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2' } } }
          ],
          backendRefs: [
            { group: '', kind: 'Service', name: 'reviews-v1', port: 9080, weight: 90 },
            { group: '', kind: 'Service', name: 'reviews-v2', port: 9080, weight: 10 }
          ],
          timeouts: { request: 10_000, backendRequest: 2500 },
          retry: { codes: [500, 503], attempts: 3, backoff: 200 }
        },
        {
          matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }],
          filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', statusCode: 301 } }],
          backendRefs: [{ group: '', kind: 'Service', name: 'reviews-v1', port: 9080, weight: 1 }]
        }
      ]
    }
  },
  {
    name: 'GRPCRoute',
    yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:${NOISE}
  name: catalog
  namespace: shop
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: catalog
  rules:
  - matches:
    - method:
        service: shop.v1.Catalog
        method: GetItem
      headers:
      - name: x-canary
        value: "true"
    - method:
        type: RegularExpression
        service: ^shop\\.v1\\..*$
    backendRefs:
    - name: catalog-v2
      port: 9090
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add:
        - name: x-served-by
          value: v2
status:
  parents: []
`,
    expected: {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'GRPCRoute',
      metadata: { name: 'catalog', namespace: 'shop', labels: {}, annotations: {} },
      parentRefs: [{ group: '', kind: 'Service', name: 'catalog' }],
      hostnames: [],
      rules: [{
        matches: [
          { method: { type: 'Exact', service: 'shop.v1.Catalog', method: 'GetItem' }, headers: [{ type: 'Exact', name: 'x-canary', value: 'true' }] },
          { method: { type: 'RegularExpression', service: '^shop\\.v1\\..*$' }, headers: [] }
        ],
        filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [], add: [{ name: 'x-served-by', value: 'v2' }], remove: [] } }],
        backendRefs: [{ group: '', kind: 'Service', name: 'catalog-v2', port: 9090, weight: 1 }]
      }]
    }
  },
  {
    name: 'AuthorizationPolicy with targetRefs',
    yaml: `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:${NOISE}
  name: reviews-viewers
  namespace: shop
spec:
  targetRefs:
  - kind: Service
    group: ""
    name: reviews
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/shop/sa/productpage"]
    - source:
        namespaces: [monitoring]
        ipBlocks: ["10.0.0.0/8", "fd00::/64", "192.168.1.7"]
    to:
    - operation:
        methods: [GET, HEAD]
        paths: ["/reviews/*"]
        ports: [9080, "9443"]
    when:
    - key: request.headers[x-user]
      values: ["jason"]
    - key: destination.port
      notValues: [15000]
    - key: request.auth.claims[groups][admin]
      values: ["true"]
`,
    expected: {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'reviews-viewers', namespace: 'shop', labels: {}, annotations: {} },
      targetRefs: [{ group: '', kind: 'Service', name: 'reviews' }],
      action: 'ALLOW',
      rules: [{
        from: [
          { principals: ['cluster.local/ns/shop/sa/productpage'] },
          { namespaces: ['monitoring'], ipBlocks: ['10.0.0.0/8', 'fd00::/64', '192.168.1.7'] }
        ],
        to: [{ methods: ['GET', 'HEAD'], paths: ['/reviews/*'], ports: ['9080', '9443'] }],
        when: [
          { key: 'request.headers[x-user]', values: ['jason'] },
          { key: 'destination.port', notValues: ['15000'] },
          { key: 'request.auth.claims[groups][admin]', values: ['true'] }
        ]
      }]
    }
  },
  {
    name: 'AuthorizationPolicy with selector and the legacy singular targetRef defaults',
    yaml: `
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: deny-all
  namespace: shop
spec:
  selector:
    matchLabels:
      app: db
  action: DENY
  rules:
  - {}
`,
    expected: {
      apiVersion: 'security.istio.io/v1beta1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'deny-all', namespace: 'shop', labels: {}, annotations: {} },
      selector: { app: 'db' },
      targetRefs: [],
      action: 'DENY',
      rules: [{ from: [], to: [], when: [] }]
    }
  },
  {
    name: 'AuthorizationPolicy with an empty spec (allow nothing)',
    yaml: 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing, namespace: shop}\nspec: {}\n',
    expected: {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'allow-nothing', namespace: 'shop', labels: {}, annotations: {} },
      targetRefs: [],
      action: 'ALLOW',
      rules: []
    }
  },
  {
    name: 'PeerAuthentication',
    yaml: `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:${NOISE}
  name: reviews-mtls
  namespace: shop
spec:
  selector:
    matchLabels:
      app: reviews
  mtls:
    mode: STRICT
  portLevelMtls:
    9464:
      mode: PERMISSIVE
    "9080":
      mode: UNSET
`,
    expected: {
      apiVersion: 'security.istio.io/v1',
      kind: 'PeerAuthentication',
      metadata: { name: 'reviews-mtls', namespace: 'shop', labels: {}, annotations: {} },
      selector: { app: 'reviews' },
      mode: 'STRICT',
      portLevelMtls: { 9464: 'PERMISSIVE' } // and 9080: undefined (UNSET), which JSON leaves out: see below
    }
  },
  {
    name: 'TrafficPolicy',
    yaml: `
apiVersion: ambit.dev/v1alpha1
kind: TrafficPolicy
metadata:${NOISE}
  generation: 2
  name: reviews-resilience
  namespace: shop
spec:
  targetRefs:
  - group: ""
    kind: Service
    name: reviews
  loadBalancer:
    type: ConsistentHash
    consistentHash:
      header: x-user
  circuitBreaker:
    maxConnections: 100
    maxPendingRequests: 10
  outlierDetection:
    consecutive5xxErrors: 5
    interval: 5s
  faultInjection:
    delay:
      fixedDelay: 1s
      percentage: 0.5
    abort:
      httpStatus: 503
  rateLimit:
    local:
      requests: 100
      interval: 1s
    global:
      requests: 6000
      unit: Minute
status:
  conditions: []
`,
    expected: {
      apiVersion: 'ambit.dev/v1alpha1',
      kind: 'TrafficPolicy',
      metadata: { name: 'reviews-resilience', namespace: 'shop', labels: {}, annotations: {}, generation: 2 },
      targetRefs: [{ group: '', kind: 'Service', name: 'reviews' }],
      spec: {
        loadBalancer: { type: 'ConsistentHash', consistentHash: { header: 'x-user' } },
        circuitBreaker: { maxConnections: 100, maxPendingRequests: 10 },
        outlierDetection: { consecutive5xxErrors: 5, interval: 5000, baseEjectionTime: 30_000, maxEjectionPercent: 10 },
        faultInjection: { delay: { fixedDelay: 1000, percentage: 0.5 }, abort: { httpStatus: 503, percentage: 100 } },
        rateLimit: { local: { requests: 100, interval: 1000 }, global: { requests: 6000, interval: 60_000 } }
      }
    }
  }
]

t.test('valid resources become the typed objects', async (t) => {
  for (const { name, yaml, expected } of VALID) {
    t.test(name, async (t) => { t.strictSame(validate(yaml), expected) })
  }
})

t.test('UNSET port-level mTLS is undefined, not a mode', async (t) => {
  const resource = validateResource(parse(VALID.find((c) => c.name === 'PeerAuthentication')?.yaml ?? ''), LOCATION)
  t.equal(resource.kind, 'PeerAuthentication')
  if (resource.kind !== 'PeerAuthentication') return
  t.ok(Object.hasOwn(resource.portLevelMtls, '9080'))
  t.equal(resource.portLevelMtls['9080'], undefined)
})

/** A document with `spec` spliced in. */
function doc (header: string, spec: string): string {
  return `${header.trim()}\n${spec.trim()}\n`
}
const SERVICE = 'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}'
const POD = 'apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop}'
const ROUTE = 'apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: shop}'
const GRPC_ROUTE = 'apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: web, namespace: shop}'
const POLICY = 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: web, namespace: shop}'
const PEER = 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: web, namespace: shop}'
const TRAFFIC = 'apiVersion: ambit.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: web, namespace: shop}'
const TARGET = 'targetRefs: [{name: web}]'
const SLICE = 'apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-abc, namespace: shop, labels: {kubernetes.io/service-name: web}}'

/** Each rejection: the object it names, the field path and the reason. */
const INVALID: Array<{ name: string, yaml: string, object: string, field: string, reason: string | RegExp }> = [
  {
    name: 'unknown kind',
    yaml: 'apiVersion: bar/v1\nkind: Foo\nmetadata: {name: x}',
    object: 'Foo/x',
    field: 'kind',
    reason: 'Unknown kind "Foo" (apiVersion bar/v1)'
  },
  { name: 'missing kind', yaml: 'apiVersion: v1\nmetadata: {name: x}', object: '<unknown>', field: 'kind', reason: 'is required' },
  { name: 'not an object', yaml: '- a\n- b', object: '<unknown>', field: '(document)', reason: 'expected an object, got list' },
  {
    name: 'wrong apiVersion',
    yaml: 'apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {gatewayClassName: x}',
    object: 'Gateway/gw',
    field: 'apiVersion',
    reason: 'networking.istio.io/v1 is not an apiVersion of Gateway (expected gateway.networking.k8s.io/v1 or gateway.networking.k8s.io/v1beta1)'
  },
  { name: 'missing name', yaml: 'apiVersion: v1\nkind: Pod\nmetadata: {namespace: shop}', object: 'Pod', field: 'metadata.name', reason: 'is required' },
  {
    name: 'name that is not DNS-1123',
    yaml: 'apiVersion: v1\nkind: Service\nmetadata: {name: Web.Front}',
    object: 'Service/Web.Front',
    field: 'metadata.name',
    reason: '"Web.Front" is not a DNS-1123 label (lowercase letters, digits and "-", at most 63)'
  },
  {
    name: 'label value that is a number',
    yaml: 'apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, labels: {version: 2}}',
    object: 'Pod/web-1',
    field: 'metadata.labels.version',
    reason: 'expected a string, got number'
  },
  {
    name: 'wrong field type',
    yaml: doc(POD, 'spec: {nodeName: 5}'),
    object: 'Pod/web-1',
    field: 'spec.nodeName',
    reason: 'expected a string, got number'
  },
  {
    name: 'bad pod IP',
    yaml: doc(POD, 'status: {podIP: 10.0.0.300}'),
    object: 'Pod/web-1',
    field: 'status.podIP',
    reason: '"10.0.0.300" is not an IP address'
  },
  {
    name: 'port out of range',
    yaml: doc(SERVICE, 'spec: {ports: [{port: 80}, {port: 70000}]}'),
    object: 'Service/web',
    field: 'spec.ports[1].port',
    reason: '70000 is not in 1..65535'
  },
  {
    name: 'port that is a string',
    yaml: doc(SERVICE, 'spec: {ports: [{port: http}]}'),
    object: 'Service/web',
    field: 'spec.ports[0].port',
    reason: 'expected a number, got string'
  },
  {
    name: 'broken Service selector',
    yaml: doc(SERVICE, 'spec: {selector: {"-app": web}}'),
    object: 'Service/web',
    field: 'spec.selector["-app"]',
    reason: '"-app" is not a valid label key'
  },
  {
    name: 'missing required field',
    yaml: doc(ROUTE, 'spec: {rules: [{backendRefs: [{port: 80}]}]}'),
    object: 'HTTPRoute/web',
    field: 'spec.rules[0].backendRefs[0].name',
    reason: 'is required'
  },
  {
    name: 'Service backend without port',
    yaml: doc(ROUTE, 'spec: {rules: [{backendRefs: [{name: web}]}]}'),
    object: 'HTTPRoute/web',
    field: 'spec.rules[0].backendRefs[0].port',
    reason: 'is required when the backend is a Service'
  },
  {
    name: 'weight out of range',
    yaml: doc(ROUTE, 'spec: {rules: [{backendRefs: [{name: web, port: 80, weight: 1000001}]}]}'),
    object: 'HTTPRoute/web',
    field: 'spec.rules[0].backendRefs[0].weight',
    reason: '1000001 is not in 0..1000000'
  },
  {
    name: 'bad duration',
    yaml: doc(ROUTE, 'spec: {rules: [{timeouts: {request: 1.5s}}]}'),
    object: 'HTTPRoute/web',
    field: 'spec.rules[0].timeouts.request',
    reason: '"1.5s" is not a duration like "200ms", "1s" or "1m30s"'
  },
  {
    name: 'backend timeout longer than the request timeout',
    yaml: doc(ROUTE, 'spec: {rules: [{timeouts: {request: 1s, backendRequest: 2s}}]}'),
    object: 'HTTPRoute/web',
    field: 'spec.rules[0].timeouts.backendRequest',
    reason: 'must not be longer than request'
  },
  {
    name: 'retry code outside 400..599',
    yaml: doc(ROUTE, 'spec: {rules: [{retry: {codes: [503, 302]}}]}'),
    object: 'HTTPRoute/web',
    field: 'spec.rules[0].retry.codes[1]',
    reason: '302 is not in 400..599'
  },
  {
    name: 'bad regex',
    yaml: doc(ROUTE, 'spec: {rules: [{matches: [{path: {type: RegularExpression, value: "/api/(v1"}}]}]}'),
    object: 'HTTPRoute/web',
    field: 'spec.rules[0].matches[0].path.value',
    reason: /^Invalid regular expression: .*Unterminated group/
  },
  {
    name: 'path that is not absolute',
    yaml: doc(ROUTE, 'spec: {rules: [{matches: [{path: {value: api}}]}]}'),
    object: 'HTTPRoute/web',
    field: 'spec.rules[0].matches[0].path.value',
    reason: '"api" is not an absolute path (starting with "/")'
  },
  {
    name: 'lowercase method',
    yaml: doc(ROUTE, 'spec: {rules: [{matches: [{method: get}]}]}'),
    object: 'HTTPRoute/web',
    field: 'spec.rules[0].matches[0].method',
    reason: '"get" is not one of "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"'
  },
  {
    name: 'filter without its settings',
    yaml: doc(ROUTE, 'spec: {rules: [{filters: [{type: RequestRedirect}]}]}'),
    object: 'HTTPRoute/web',
    field: 'spec.rules[0].filters[0].requestRedirect',
    reason: 'is required'
  },
  {
    name: 'unsupported filter',
    yaml: doc(ROUTE, 'spec: {rules: [{filters: [{type: ExtensionRef, extensionRef: {group: x, kind: y, name: z}}]}]}'),
    object: 'HTTPRoute/web',
    field: 'spec.rules[0].filters[0].type',
    reason: 'ExtensionRef is not supported'
  },
  {
    name: 'filter GRPCRoute does not have',
    yaml: doc(GRPC_ROUTE, 'spec: {rules: [{filters: [{type: URLRewrite, urlRewrite: {hostname: x}}]}]}'),
    object: 'GRPCRoute/web',
    field: 'spec.rules[0].filters[0].type',
    reason: 'URLRewrite is not supported'
  },
  {
    name: 'gRPC method match without service or method',
    yaml: doc(GRPC_ROUTE, 'spec: {rules: [{matches: [{method: {type: Exact}}]}]}'),
    object: 'GRPCRoute/web',
    field: 'spec.rules[0].matches[0].method',
    reason: 'needs a service, a method or both'
  },
  {
    name: 'CUSTOM action',
    yaml: doc(POLICY, 'spec: {action: CUSTOM, provider: {name: ext-authz}}'),
    object: 'AuthorizationPolicy/web',
    field: 'spec.action',
    reason: 'CUSTOM is not supported'
  },
  {
    name: 'unknown action',
    yaml: doc(POLICY, 'spec: {action: ALLOW_ALL}'),
    object: 'AuthorizationPolicy/web',
    field: 'spec.action',
    reason: '"ALLOW_ALL" is not one of "ALLOW", "DENY", "AUDIT"'
  },
  {
    name: 'bad CIDR',
    yaml: doc(POLICY, 'spec: {rules: [{from: [{source: {namespaces: [a]}}, {source: {ipBlocks: [10.0.0.1, "fd00::/64", 10.0.0.0/33]}}]}]}'),
    object: 'AuthorizationPolicy/web',
    field: 'spec.rules[0].from[1].source.ipBlocks[2]',
    reason: '"10.0.0.0/33" is not an IP address or CIDR'
  },
  {
    name: 'broken selector: matchLabels value not a string',
    yaml: doc(POLICY, 'spec: {selector: {matchLabels: {app: [web]}}}'),
    object: 'AuthorizationPolicy/web',
    field: 'spec.selector.matchLabels.app',
    reason: 'expected a string, got list'
  },
  {
    name: 'broken selector: invalid label key',
    yaml: doc(POLICY, 'spec: {selector: {matchLabels: {"app name": web}}}'),
    object: 'AuthorizationPolicy/web',
    field: 'spec.selector.matchLabels["app name"]',
    reason: '"app name" is not a valid label key'
  },
  {
    name: 'broken selector: matchExpressions',
    yaml: doc(POLICY, 'spec: {selector: {matchExpressions: [{key: app, operator: In, values: [web]}]}}'),
    object: 'AuthorizationPolicy/web',
    field: 'spec.selector.matchExpressions',
    reason: 'is not supported (Istio selects workloads by matchLabels)'
  },
  {
    name: 'selector together with targetRefs',
    yaml: doc(POLICY, 'spec: {selector: {matchLabels: {app: web}}, targetRefs: [{kind: Service, name: web}]}'),
    object: 'AuthorizationPolicy/web',
    field: 'spec.targetRefs',
    reason: 'cannot be set together with selector'
  },
  {
    name: 'unknown condition key',
    yaml: doc(POLICY, 'spec: {rules: [{when: [{key: source.serviceAccount, values: [a]}]}]}'),
    object: 'AuthorizationPolicy/web',
    field: 'spec.rules[0].when[0].key',
    reason: '"source.serviceAccount" is not an Istio condition key'
  },
  {
    name: 'unknown source field (ignoring it would widen the policy)',
    yaml: doc(POLICY, 'spec: {rules: [{from: [{source: {namespaces: [a], serviceAccounts: [b]}}]}]}'),
    object: 'AuthorizationPolicy/web',
    field: 'spec.rules[0].from[0].source.serviceAccounts',
    reason: /^unknown field \(expected one of principals, /
  },
  {
    name: 'empty operation',
    yaml: doc(POLICY, 'spec: {rules: [{to: [{operation: {}}]}]}'),
    object: 'AuthorizationPolicy/web',
    field: 'spec.rules[0].to[0].operation',
    reason: 'must not be empty'
  },
  {
    name: 'operation port out of range',
    yaml: doc(POLICY, 'spec: {rules: [{to: [{operation: {ports: ["80", "0"]}}]}]}'),
    object: 'AuthorizationPolicy/web',
    field: 'spec.rules[0].to[0].operation.ports[1]',
    reason: '0 is not in 1..65535'
  },
  {
    name: 'unknown mTLS mode',
    yaml: doc(PEER, 'spec: {mtls: {mode: ON}}'),
    object: 'PeerAuthentication/web',
    field: 'spec.mtls.mode',
    reason: '"ON" is not one of "STRICT", "PERMISSIVE", "DISABLE", "UNSET"'
  },
  {
    name: 'port-level mTLS with a key that is not a port',
    yaml: doc(PEER, 'spec: {selector: {matchLabels: {app: web}}, portLevelMtls: {http: {mode: DISABLE}}}'),
    object: 'PeerAuthentication/web',
    field: 'spec.portLevelMtls.http',
    reason: '"http" is not a port number'
  },
  {
    name: 'TrafficPolicy without targets',
    yaml: doc(TRAFFIC, 'spec: {loadBalancer: {type: RoundRobin}}'),
    object: 'TrafficPolicy/web',
    field: 'spec.targetRefs',
    reason: 'is required (at least one Service)'
  },
  {
    name: 'TrafficPolicy unknown spec field',
    yaml: doc(TRAFFIC, `spec: {${TARGET}, retries: {attempts: 3}}`),
    object: 'TrafficPolicy/web',
    field: 'spec.retries',
    reason: 'unknown field (expected one of targetRefs, targetRef, loadBalancer, circuitBreaker, outlierDetection, faultInjection, rateLimit)'
  },
  {
    name: 'TrafficPolicy target that is not a Service',
    yaml: doc(TRAFFIC, 'spec: {targetRefs: [{kind: Deployment, name: web}]}'),
    object: 'TrafficPolicy/web',
    field: 'spec.targetRefs[0].kind',
    reason: '"Deployment" is not one of "Service"'
  },
  {
    name: 'consistent hash without a key',
    yaml: doc(TRAFFIC, `spec: {${TARGET}, loadBalancer: {type: ConsistentHash}}`),
    object: 'TrafficPolicy/web',
    field: 'spec.loadBalancer.consistentHash',
    reason: 'is required when type is ConsistentHash'
  },
  {
    name: 'circuit breaker limit of zero',
    yaml: doc(TRAFFIC, `spec: {${TARGET}, circuitBreaker: {maxConnections: 0}}`),
    object: 'TrafficPolicy/web',
    field: 'spec.circuitBreaker.maxConnections',
    reason: 'must be at least 1 (got 0)'
  },
  {
    name: 'percentage above 100',
    yaml: doc(TRAFFIC, `spec: {${TARGET}, faultInjection: {abort: {httpStatus: 503, percentage: 150}}}`),
    object: 'TrafficPolicy/web',
    field: 'spec.faultInjection.abort.percentage',
    reason: '150 is not in 0..100'
  },
  {
    name: 'duration given as a number',
    yaml: doc(TRAFFIC, `spec: {${TARGET}, outlierDetection: {interval: 10}}`),
    object: 'TrafficPolicy/web',
    field: 'spec.outlierDetection.interval',
    reason: 'expected a string, got number'
  },
  {
    name: 'rate limit with neither interval nor unit',
    yaml: doc(TRAFFIC, `spec: {${TARGET}, rateLimit: {local: {requests: 10}}}`),
    object: 'TrafficPolicy/web',
    field: 'spec.rateLimit.local.interval',
    reason: 'is required (or unit: Second, Minute or Hour)'
  },
  {
    name: 'misspelt nested TrafficPolicy field',
    yaml: doc(TRAFFIC, `spec: {${TARGET}, rateLimit: {local: {requests: 10, unit: Second, burst: 5}}}`),
    object: 'TrafficPolicy/web',
    field: 'spec.rateLimit.local.burst',
    reason: 'unknown field (expected one of requests, interval, unit)'
  },
  {
    name: 'EndpointSlice address that is not an IP',
    yaml: doc(SLICE, 'addressType: IPv4\nendpoints: [{addresses: [10.0.0.1]}, {addresses: [web-1.shop]}]'),
    object: 'EndpointSlice/web-abc',
    field: 'endpoints[1].addresses[0]',
    reason: '"web-1.shop" is not an IP address'
  },
  {
    name: 'EndpointSlice without addressType',
    yaml: doc(SLICE, 'endpoints: [{addresses: [10.0.0.1]}]'),
    object: 'EndpointSlice/web-abc',
    field: 'addressType',
    reason: 'is required'
  },
  {
    name: 'EndpointSlice condition that is not a boolean',
    yaml: doc(SLICE, 'addressType: IPv4\nendpoints: [{addresses: [10.0.0.1], conditions: {ready: "yes"}}]'),
    object: 'EndpointSlice/web-abc',
    field: 'endpoints[0].conditions.ready',
    reason: 'expected true or false, got "yes"'
  },
  {
    name: 'EndpointSlice port out of range',
    yaml: doc(SLICE, 'addressType: IPv4\nports: [{name: http, port: 70000}]'),
    object: 'EndpointSlice/web-abc',
    field: 'ports[0].port',
    reason: /70000/
  }
]

t.test('invalid resources are rejected with file, document, object, field and reason', async (t) => {
  for (const { name, yaml, object, field, reason } of INVALID) {
    t.test(name, async (t) => {
      const error = t.throws(() => validateResource(parse(yaml), LOCATION), InvalidResourceError)
      if (!(error instanceof InvalidResourceError)) return
      t.equal(error.code, 'AMBIT_INVALID_RESOURCE')
      t.strictSame(error.location, { ...LOCATION, object }, 'location')
      t.equal(error.field, field, 'field')
      t.match(error.reason, reason, 'reason')
      const message = typeof reason === 'string' ? reason : error.reason
      t.equal(error.message, `mesh.yaml document 2 (${object}): ${field}: ${message}`, 'message')
    })
  }
})

t.test('field paths carry the prefix of an enclosing list', async (t) => {
  const error = t.throws(() => validateResource(parse(doc(POD, 'status: {podIP: nope}')), LOCATION, 'items[4]'))
  t.match(error, { field: 'items[4].status.podIP', message: 'mesh.yaml document 2 (Pod/web-1): items[4].status.podIP: "nope" is not an IP address' })
})

t.test('Gateway API durations (GEP-2257) in milliseconds', async (t) => {
  const cases: Array<[string, number | undefined]> = [
    ['0s', 0], ['200ms', 200], ['1s', 1000], ['1m30s', 90_000], ['1h', 3_600_000], ['2h45m10s5ms', 9_910_005], ['99999ms', 99_999],
    ['', undefined], ['1.5s', undefined], ['1s1m', undefined], ['100000s', undefined], ['1d', undefined], ['-1s', undefined], ['5', undefined], [' 1s', undefined]
  ]
  for (const [text, millis] of cases) t.equal(parseDuration(text), millis, JSON.stringify(text))
})
