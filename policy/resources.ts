/**
 * The typed Kubernetes resources ambit reads, after validation (see validate.ts).
 * Only the fields ambit uses are kept; everything here has been checked once at the
 * edge, so the rest of the code trusts these shapes.
 */

export type Labels = Readonly<Record<string, string>>

export interface ObjectMeta {
  readonly name: string
  /** '' for cluster-scoped kinds (Namespace, Node). */
  readonly namespace: string
  readonly labels: Labels
  readonly annotations: Labels
  readonly uid?: string
  readonly resourceVersion?: string
  readonly generation?: number
}

export interface LabelSelector {
  readonly matchLabels: Labels
  readonly matchExpressions: readonly LabelSelectorRequirement[]
}

export interface LabelSelectorRequirement {
  readonly key: string
  readonly operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'
  readonly values: readonly string[]
}

/** A Gateway API / Istio policy reference to another object (targetRefs, parentRefs). */
export interface ObjectRef {
  readonly group: string
  readonly kind: string
  readonly name: string
  /** Defaults to the referring object's namespace. */
  readonly namespace?: string
  readonly port?: number
  readonly sectionName?: string
}

export interface NamespaceResource {
  readonly apiVersion: 'v1'
  readonly kind: 'Namespace'
  readonly metadata: ObjectMeta
}

export interface NodeResource {
  readonly apiVersion: 'v1'
  readonly kind: 'Node'
  readonly metadata: ObjectMeta
  /** status.addresses[type=InternalIP], if any. */
  readonly internalIP?: string
}

export interface PodResource {
  readonly apiVersion: 'v1'
  readonly kind: 'Pod'
  readonly metadata: ObjectMeta
  readonly nodeName?: string
  /** Defaults to 'default' as in Kubernetes. */
  readonly serviceAccountName: string
  readonly podIP?: string
  readonly phase?: string
  /** Named container ports, for Services whose targetPort is a name. */
  readonly namedPorts: Readonly<Record<string, number>>
}

export type AppProtocol = 'http' | 'http2' | 'grpc' | 'tcp'

export interface ServicePort {
  readonly name?: string
  readonly port: number
  readonly targetPort: number | string
  readonly protocol: 'TCP' | 'UDP' | 'SCTP'
  readonly appProtocol?: string
}

export interface ServiceResource {
  readonly apiVersion: 'v1'
  readonly kind: 'Service'
  readonly metadata: ObjectMeta
  /** undefined: a Service without selector, whose endpoints come from its EndpointSlices. */
  readonly selector?: Labels
  readonly clusterIP?: string
  readonly ports: readonly ServicePort[]
}

/** The label that ties an EndpointSlice to its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name'

export interface EndpointConditions {
  /** Absent: unknown, which consumers read as ready (as kube-proxy does). */
  readonly ready?: boolean
  readonly serving?: boolean
  readonly terminating?: boolean
}

export interface EndpointTargetRef {
  readonly kind: string
  readonly name: string
  readonly namespace?: string
}

export interface SliceEndpoint {
  readonly addresses: readonly string[]
  readonly conditions: EndpointConditions
  readonly nodeName?: string
  readonly targetRef?: EndpointTargetRef
}

export interface EndpointPort {
  /** Named as the Service port it serves; absent for a Service with a single unnamed port. */
  readonly name?: string
  /** The endpoints' port (the Service's target port). */
  readonly port: number
  readonly protocol: 'TCP' | 'UDP' | 'SCTP'
}

/** The endpoints of Services without a selector (ambit resolves the others from Pods). */
export interface EndpointSliceResource {
  readonly apiVersion: 'discovery.k8s.io/v1'
  readonly kind: 'EndpointSlice'
  readonly metadata: ObjectMeta
  readonly addressType: 'IPv4' | 'IPv6' | 'FQDN'
  readonly endpoints: readonly SliceEndpoint[]
  readonly ports: readonly EndpointPort[]
}

export interface GatewayListener {
  readonly name: string
  readonly port: number
  readonly protocol: string
}

export interface GatewayResource {
  readonly apiVersion: 'gateway.networking.k8s.io/v1' | 'gateway.networking.k8s.io/v1beta1'
  readonly kind: 'Gateway'
  readonly metadata: ObjectMeta
  readonly gatewayClassName: string
  readonly listeners: readonly GatewayListener[]
}

// ---- Gateway API routes (HTTPRoute, GRPCRoute) ----

export type PathMatchType = 'Exact' | 'PathPrefix' | 'RegularExpression'
export type StringMatchType = 'Exact' | 'RegularExpression'

export interface HTTPPathMatch { readonly type: PathMatchType, readonly value: string }
export interface HTTPHeaderMatch { readonly type: StringMatchType, readonly name: string, readonly value: string }

export interface HTTPRouteMatch {
  readonly path?: HTTPPathMatch
  readonly headers: readonly HTTPHeaderMatch[]
  readonly queryParams: readonly HTTPHeaderMatch[]
  readonly method?: string
}

export interface HTTPHeader { readonly name: string, readonly value: string }

export interface HeaderModifier {
  readonly set: readonly HTTPHeader[]
  readonly add: readonly HTTPHeader[]
  readonly remove: readonly string[]
}

export type PathModifier =
  | { readonly type: 'ReplaceFullPath', readonly replaceFullPath: string }
  | { readonly type: 'ReplacePrefixMatch', readonly replacePrefixMatch: string }

export type HTTPRouteFilter =
  | { readonly type: 'RequestHeaderModifier', readonly requestHeaderModifier: HeaderModifier }
  | { readonly type: 'ResponseHeaderModifier', readonly responseHeaderModifier: HeaderModifier }
  | {
    readonly type: 'RequestRedirect'
    readonly requestRedirect: {
      readonly scheme?: string
      readonly hostname?: string
      readonly path?: PathModifier
      readonly port?: number
      readonly statusCode: number
    }
  }
  | { readonly type: 'URLRewrite', readonly urlRewrite: { readonly hostname?: string, readonly path?: PathModifier } }
  | { readonly type: 'RequestMirror', readonly requestMirror: { readonly backendRef: BackendRef, readonly percent?: number } }

export interface BackendRef {
  readonly group: string
  readonly kind: string
  readonly name: string
  readonly namespace?: string
  readonly port?: number
  /** Defaults to 1. */
  readonly weight: number
}

export interface RouteTimeouts {
  /** Milliseconds. */
  readonly request?: number
  readonly backendRequest?: number
}

export interface RouteRetry {
  readonly codes: readonly number[]
  readonly attempts: number
  /** Milliseconds. */
  readonly backoff?: number
}

export interface HTTPRouteRule {
  readonly name?: string
  readonly matches: readonly HTTPRouteMatch[]
  readonly filters: readonly HTTPRouteFilter[]
  readonly backendRefs: readonly BackendRef[]
  readonly timeouts?: RouteTimeouts
  readonly retry?: RouteRetry
}

export interface HTTPRouteResource {
  readonly apiVersion: 'gateway.networking.k8s.io/v1' | 'gateway.networking.k8s.io/v1beta1'
  readonly kind: 'HTTPRoute'
  readonly metadata: ObjectMeta
  readonly parentRefs: readonly ObjectRef[]
  readonly hostnames: readonly string[]
  readonly rules: readonly HTTPRouteRule[]
}

export interface GRPCMethodMatch {
  readonly type: StringMatchType
  readonly service?: string
  readonly method?: string
}

export interface GRPCRouteMatch {
  readonly method?: GRPCMethodMatch
  readonly headers: readonly HTTPHeaderMatch[]
}

export interface GRPCRouteRule {
  readonly name?: string
  readonly matches: readonly GRPCRouteMatch[]
  readonly filters: readonly HTTPRouteFilter[]
  readonly backendRefs: readonly BackendRef[]
}

export interface GRPCRouteResource {
  readonly apiVersion: 'gateway.networking.k8s.io/v1'
  readonly kind: 'GRPCRoute'
  readonly metadata: ObjectMeta
  readonly parentRefs: readonly ObjectRef[]
  readonly hostnames: readonly string[]
  readonly rules: readonly GRPCRouteRule[]
}

// ---- Istio security ----

export type AuthorizationAction = 'ALLOW' | 'DENY' | 'AUDIT'

/** Every field is optional in Istio; an absent list means "no constraint". */
export interface AuthorizationSource {
  readonly principals?: readonly string[]
  readonly notPrincipals?: readonly string[]
  readonly requestPrincipals?: readonly string[]
  readonly notRequestPrincipals?: readonly string[]
  readonly namespaces?: readonly string[]
  readonly notNamespaces?: readonly string[]
  readonly ipBlocks?: readonly string[]
  readonly notIpBlocks?: readonly string[]
  readonly remoteIpBlocks?: readonly string[]
  readonly notRemoteIpBlocks?: readonly string[]
}

export interface AuthorizationOperation {
  readonly hosts?: readonly string[]
  readonly notHosts?: readonly string[]
  readonly ports?: readonly string[]
  readonly notPorts?: readonly string[]
  readonly methods?: readonly string[]
  readonly notMethods?: readonly string[]
  readonly paths?: readonly string[]
  readonly notPaths?: readonly string[]
}

export interface AuthorizationCondition {
  readonly key: string
  readonly values?: readonly string[]
  readonly notValues?: readonly string[]
}

export interface AuthorizationRule {
  readonly from: readonly AuthorizationSource[]
  readonly to: readonly AuthorizationOperation[]
  readonly when: readonly AuthorizationCondition[]
}

export interface AuthorizationPolicyResource {
  readonly apiVersion: 'security.istio.io/v1' | 'security.istio.io/v1beta1'
  readonly kind: 'AuthorizationPolicy'
  readonly metadata: ObjectMeta
  /** Absent: the policy selects every workload of its namespace (or of the mesh, in the root namespace). */
  readonly selector?: Labels
  readonly targetRefs: readonly ObjectRef[]
  readonly action: AuthorizationAction
  /** Empty: the policy matches nothing (an ALLOW with no rules is "allow nothing"). */
  readonly rules: readonly AuthorizationRule[]
}

export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE'

export interface PeerAuthenticationResource {
  readonly apiVersion: 'security.istio.io/v1' | 'security.istio.io/v1beta1'
  readonly kind: 'PeerAuthentication'
  readonly metadata: ObjectMeta
  readonly selector?: Labels
  /** undefined = UNSET: inherit from the parent scope. */
  readonly mode?: MtlsMode
  /** Per target port; a value of undefined (UNSET) inherits. */
  readonly portLevelMtls: Readonly<Record<string, MtlsMode | undefined>>
}

// ---- ambit.dev TrafficPolicy ----

export type LoadBalancerType = 'RoundRobin' | 'LeastRequest' | 'ConsistentHash'

export interface TrafficPolicySpec {
  readonly loadBalancer?: {
    readonly type: LoadBalancerType
    readonly consistentHash?: { readonly header?: string, readonly cookie?: string }
  }
  readonly circuitBreaker?: {
    readonly maxConnections?: number
    readonly maxPendingRequests?: number
    readonly maxRequestsPerConnection?: number
    readonly maxParallelRetries?: number
    readonly maxParallelRequests?: number
  }
  readonly outlierDetection?: {
    readonly consecutive5xxErrors?: number
    readonly consecutiveGatewayErrors?: number
    /** Milliseconds. */
    readonly interval: number
    readonly baseEjectionTime: number
    readonly maxEjectionPercent: number
  }
  readonly faultInjection?: {
    readonly delay?: { readonly fixedDelay: number, readonly percentage: number }
    readonly abort?: { readonly httpStatus: number, readonly percentage: number }
  }
  readonly rateLimit?: {
    readonly local?: RateLimitRule
    readonly global?: RateLimitRule
  }
}

export interface RateLimitRule {
  readonly requests: number
  /** Milliseconds. */
  readonly interval: number
}

export interface TrafficPolicyResource {
  readonly apiVersion: 'ambit.dev/v1alpha1'
  readonly kind: 'TrafficPolicy'
  readonly metadata: ObjectMeta
  readonly targetRefs: readonly ObjectRef[]
  readonly spec: TrafficPolicySpec
}

export type Resource =
  | NamespaceResource
  | NodeResource
  | PodResource
  | ServiceResource
  | EndpointSliceResource
  | GatewayResource
  | HTTPRouteResource
  | GRPCRouteResource
  | AuthorizationPolicyResource
  | PeerAuthenticationResource
  | TrafficPolicyResource

export type ResourceKind = Resource['kind']

export const RESOURCE_KINDS: readonly ResourceKind[] = [
  'Namespace', 'Node', 'Pod', 'Service', 'EndpointSlice', 'Gateway', 'HTTPRoute', 'GRPCRoute',
  'AuthorizationPolicy', 'PeerAuthentication', 'TrafficPolicy'
]

/** 'Kind/namespace/name' (or 'Kind/name' when cluster-scoped): the identity of a resource. */
export function resourceKey (r: Pick<Resource, 'kind' | 'metadata'>): string {
  const { namespace, name } = r.metadata
  return namespace === '' ? `${r.kind}/${name}` : `${r.kind}/${namespace}/${name}`
}

export const AMBIENT_LABEL = 'ambit.dev/dataplane-mode'
export const AMBIENT_VALUE = 'ambient'
export const USE_WAYPOINT_LABEL = 'ambit.dev/use-waypoint'
export const WAYPOINT_CLASS = 'ambit-waypoint'
