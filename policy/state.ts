/**
 * The resolved mesh state: what the controller computes from the resources and
 * publishes through the store, and what every ztunnel and waypoint follows.
 *
 * It is plain JSON so it can cross process boundaries; it travels as a map of
 * entries (see entries.ts) so that a change only ships the entries it touches.
 */
import type {
  AppProtocol, AuthorizationPolicyResource, GRPCRouteResource, HTTPRouteResource,
  Labels, MtlsMode, PeerAuthenticationResource, TrafficPolicyResource
} from './resources.js'

export interface MeshConfig {
  readonly trustDomain: string
  /** Policies in this namespace apply mesh-wide (Istio's root namespace). */
  readonly rootNamespace: string
  /** PEM root certificates the mesh trusts (more than one during a root rotation). */
  readonly trustBundle: readonly string[]
}

export interface NodeState {
  readonly name: string
  /** Where this node's ztunnel listens (the Node's InternalIP). */
  readonly address: string
}

/** The peer-authentication outcome for one workload, resolved workload > namespace > root. */
export interface MtlsState {
  readonly mode: MtlsMode
  /** Port-level overrides by target port. */
  readonly ports: Readonly<Record<string, MtlsMode>>
  /** 'namespace/name' of the PeerAuthentication that set the mode, if any. */
  readonly policy?: string
}

export interface WorkloadState {
  /** 'namespace/name' of the Pod. */
  readonly key: string
  readonly name: string
  readonly namespace: string
  readonly node: string
  readonly ip: string
  readonly serviceAccount: string
  readonly spiffeId: string
  readonly labels: Labels
  /** Keys of the Services that select this workload. */
  readonly services: readonly string[]
  /** Keys of the AuthorizationPolicies the ztunnel enforces for this workload, in key order. */
  readonly policies: readonly string[]
  readonly mtls: MtlsState
  /** Named container ports, to resolve string targetPorts. */
  readonly namedPorts: Readonly<Record<string, number>>
}

export interface ServicePortState {
  readonly name?: string
  readonly port: number
  readonly targetPort: number | string
  readonly appProtocol: AppProtocol
}

export interface EndpointState {
  /** Pod key ('namespace/name'; a workload key when `meshed`), or the address of an EndpointSlice endpoint that names no Pod. */
  readonly workload: string
  /** false: a pod outside the mesh, reached with plain TCP. */
  readonly meshed: boolean
  readonly ip: string
  readonly node: string
  /** Service port → the workload's port for it (named target ports resolved). */
  readonly ports: Readonly<Record<string, number>>
}

export interface WaypointRef {
  readonly namespace: string
  readonly name: string
}

export interface ServiceState {
  /** 'namespace/name'. */
  readonly key: string
  readonly name: string
  readonly namespace: string
  readonly vip?: string
  /** NAME.NS.svc.<domain>, NAME.NS.svc, NAME.NS (and NAME within NS, resolved by the registry). */
  readonly hostnames: readonly string[]
  readonly ports: readonly ServicePortState[]
  readonly endpoints: readonly EndpointState[]
  readonly waypoint?: WaypointRef
  /** Keys of AuthorizationPolicies attached by targetRefs. */
  readonly policies: readonly string[]
  /** Keys of HTTPRoutes / GRPCRoutes whose parentRefs name this Service. */
  readonly routes: readonly string[]
  /** Key of the TrafficPolicy attached to this Service, if any. */
  readonly trafficPolicy?: string
}

export interface WaypointState {
  /** 'namespace/name' of the Gateway. */
  readonly key: string
  readonly name: string
  readonly namespace: string
  readonly spiffeId: string
  /** Its pods (labelled gateway.networking.k8s.io/gateway-name): where its HBONE listener runs. */
  readonly instances: readonly { readonly ip: string, readonly node: string }[]
}

export interface MeshState {
  readonly mesh: MeshConfig
  readonly nodes: Readonly<Record<string, NodeState>>
  readonly workloads: Readonly<Record<string, WorkloadState>>
  readonly services: Readonly<Record<string, ServiceState>>
  readonly waypoints: Readonly<Record<string, WaypointState>>
  readonly authorizationPolicies: Readonly<Record<string, AuthorizationPolicyResource>>
  readonly peerAuthentications: Readonly<Record<string, PeerAuthenticationResource>>
  readonly httpRoutes: Readonly<Record<string, HTTPRouteResource>>
  readonly grpcRoutes: Readonly<Record<string, GRPCRouteResource>>
  readonly trafficPolicies: Readonly<Record<string, TrafficPolicyResource>>
}

export const CLUSTER_DOMAIN = 'cluster.local'
export const DEFAULT_TRUST_DOMAIN = 'cluster.local'
export const DEFAULT_ROOT_NAMESPACE = 'ambit-system'
