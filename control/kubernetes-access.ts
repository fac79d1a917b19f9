/**
 * The contract between the in-cluster code and the manifests in k8s/: what the controller may
 * ask of the Kubernetes API, what `ambit waypoint apply/delete` needs from the user running it,
 * and the names both sides must agree on (namespace, CA root Secret, token audience).
 *
 * CONTROLLER_API_ACCESS is the single source of truth for the controller's RBAC: k8s/rbac.yaml
 * grants exactly this list (test/k8s-manifests.test.ts checks both directions), and
 * control/kubernetes*.ts must only make the calls it lists. To call something new, add it here
 * first, then to k8s/rbac.yaml.
 */

/** The RBAC verbs ambit uses; never '*'. */
export type Verb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete'

/** One permission: verbs on a resource of an API group. */
export interface ApiAccess {
  /** '' is the core group (Pods, Services...). */
  readonly apiGroup: string
  /** The plural resource name; a subresource is written 'gateways/status'. */
  readonly resource: string
  readonly verbs: readonly Verb[]
  /** Granted in this namespace only (a Role); cluster-wide (a ClusterRole) when absent. */
  readonly namespace?: string
  /** Only these objects. RBAC cannot limit `create` by name, so creates never carry names. */
  readonly resourceNames?: readonly string[]
}

/** Where the control plane, the ztunnels and Redis run. */
export const AMBIT_NAMESPACE = 'ambit-system'

/** The controller's ServiceAccount (the subject the RBAC binds). */
export const CONTROLLER_SERVICE_ACCOUNT = 'ambit-controller'

/** The ztunnel DaemonSet's ServiceAccount: the CA takes its tokens as proof of a node. */
export const ZTUNNEL_SERVICE_ACCOUNT = 'ambit-ztunnel'

/**
 * The root CA lives in this Secret (type Opaque). The controller creates it with a fresh root
 * when absent and loads it otherwise; `trustBundleKey` holds extra roots to trust while a root
 * is being rotated (docs/kubernetes.md, "Rotating the root CA").
 */
export const CA_ROOT_SECRET = {
  namespace: AMBIT_NAMESPACE,
  name: 'ambit-ca-root',
  /** PEM: the signing CA certificate, optionally followed by its chain up to the root. */
  certKey: 'ca.crt',
  /** PEM: the private key of that certificate. */
  keyKey: 'ca.key',
  /** PEM, optional: more roots every proxy trusts (the next root, or the previous one). */
  trustBundleKey: 'trust-bundle.pem'
} as const

/**
 * Proxies authenticate to the CA with a projected ServiceAccount token of this audience
 * (never the API server's own); the controller checks it with a TokenReview naming it.
 */
export const CA_TOKEN_AUDIENCE = 'ambit-ca'

/** The watched kinds: the controller lists, watches and reads each of them. */
const READ: readonly Verb[] = ['get', 'list', 'watch']

const GATEWAY_API = 'gateway.networking.k8s.io'
const ISTIO_SECURITY = 'security.istio.io'

export const CONTROLLER_API_ACCESS: readonly ApiAccess[] = [
  { apiGroup: '', resource: 'namespaces', verbs: READ },
  { apiGroup: '', resource: 'nodes', verbs: READ },
  { apiGroup: '', resource: 'pods', verbs: READ },
  // Services are also stamped for each waypoint (created, or merge-patched when they exist).
  { apiGroup: '', resource: 'services', verbs: [...READ, 'create', 'patch'] },
  { apiGroup: 'discovery.k8s.io', resource: 'endpointslices', verbs: READ },
  { apiGroup: GATEWAY_API, resource: 'gateways', verbs: READ },
  { apiGroup: GATEWAY_API, resource: 'gateways/status', verbs: ['update', 'patch'] },
  { apiGroup: GATEWAY_API, resource: 'httproutes', verbs: READ },
  { apiGroup: GATEWAY_API, resource: 'grpcroutes', verbs: READ },
  { apiGroup: ISTIO_SECURITY, resource: 'authorizationpolicies', verbs: READ },
  { apiGroup: ISTIO_SECURITY, resource: 'peerauthentications', verbs: READ },
  { apiGroup: 'ambit.dev', resource: 'trafficpolicies', verbs: READ },
  { apiGroup: 'ambit.dev', resource: 'trafficpolicies/status', verbs: ['update', 'patch'] },
  { apiGroup: 'authentication.k8s.io', resource: 'tokenreviews', verbs: ['create'] },
  // Each waypoint Gateway gets a ServiceAccount (its identity), a Deployment and a Service from
  // WAYPOINT_TEMPLATE, owned by the Gateway (ownerReferences without blockOwnerDeletion, which
  // would also need gateways/finalizers): deleting the Gateway garbage-collects them, so the
  // controller never deletes.
  { apiGroup: '', resource: 'serviceaccounts', verbs: ['create', 'patch'] },
  { apiGroup: 'apps', resource: 'deployments', verbs: ['create', 'patch'] },
  { apiGroup: '', resource: 'secrets', verbs: ['get', 'update'], namespace: AMBIT_NAMESPACE, resourceNames: [CA_ROOT_SECRET.name] },
  { apiGroup: '', resource: 'secrets', verbs: ['create'], namespace: AMBIT_NAMESPACE }
]

/**
 * What the person running `ambit waypoint apply` / `ambit waypoint delete` needs in the target
 * namespace: create or remove the waypoint Gateway and set the namespace's
 * ambit.dev/use-waypoint label. Not the controller's: k8s/extras/waypoint-admin-role.yaml
 * is a ClusterRole an administrator may bind to such users.
 */
export const WAYPOINT_CLI_API_ACCESS: readonly ApiAccess[] = [
  { apiGroup: GATEWAY_API, resource: 'gateways', verbs: ['get', 'create', 'delete'] },
  { apiGroup: '', resource: 'namespaces', verbs: ['get', 'patch'] }
]

/**
 * k8s/waypoint-template.yaml (relative to the repository root): the ServiceAccount, Deployment
 * and Service the controller stamps for each waypoint Gateway after replacing every placeholder
 * below. The `${...}` form keeps names that prefix one another apart and works with envsubst.
 */
export const WAYPOINT_TEMPLATE = {
  file: 'k8s/waypoint-template.yaml',
  placeholders: {
    /** The Gateway's name: also the waypoint's ServiceAccount and SPIFFE identity. */
    gatewayName: '${GATEWAY_NAME}',
    gatewayNamespace: '${GATEWAY_NAMESPACE}',
    /** The image the controller itself runs. */
    image: '${AMBIT_IMAGE}',
    /** The controller's own --store URL (the ambit-config ConfigMap is not visible in other namespaces). */
    storeUrl: '${STORE_URL}'
  }
} as const
