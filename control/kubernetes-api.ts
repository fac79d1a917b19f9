/**
 * How ambit talks to a Kubernetes API server with @kubernetes/client-node: where each kind it
 * reads is served, how to list one, how to load a KubeConfig, and what a failed call means.
 * Every call made here must be granted by CONTROLLER_API_ACCESS (control/kubernetes-access.ts).
 */
import {
  ApiException, CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions,
  type KubernetesListObject, type KubernetesObject
} from '@kubernetes/client-node'
import { ConfigError, KubernetesApiError } from '../policy/errors.js'
import type { ResourceKind } from '../policy/resources.js'

export interface KubernetesKind {
  /** '' is the core group. */
  readonly group: string
  readonly version: string
  readonly plural: string
  readonly clusterScoped: boolean
}

const GATEWAY_API = 'gateway.networking.k8s.io'
const ISTIO_SECURITY = 'security.istio.io'

/** The served version ambit reads of each kind (Gateway API v1.1+, Istio 1.22+). */
export const KUBERNETES_KINDS: { readonly [K in ResourceKind]: KubernetesKind } = {
  Namespace: { group: '', version: 'v1', plural: 'namespaces', clusterScoped: true },
  Node: { group: '', version: 'v1', plural: 'nodes', clusterScoped: true },
  Pod: { group: '', version: 'v1', plural: 'pods', clusterScoped: false },
  Service: { group: '', version: 'v1', plural: 'services', clusterScoped: false },
  EndpointSlice: { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', clusterScoped: false },
  Gateway: { group: GATEWAY_API, version: 'v1', plural: 'gateways', clusterScoped: false },
  HTTPRoute: { group: GATEWAY_API, version: 'v1', plural: 'httproutes', clusterScoped: false },
  GRPCRoute: { group: GATEWAY_API, version: 'v1', plural: 'grpcroutes', clusterScoped: false },
  AuthorizationPolicy: { group: ISTIO_SECURITY, version: 'v1', plural: 'authorizationpolicies', clusterScoped: false },
  PeerAuthentication: { group: ISTIO_SECURITY, version: 'v1', plural: 'peerauthentications', clusterScoped: false },
  TrafficPolicy: { group: 'ambit.dev', version: 'v1alpha1', plural: 'trafficpolicies', clusterScoped: false }
}

export function apiVersionOf (kind: KubernetesKind): string {
  return kind.group === '' ? kind.version : `${kind.group}/${kind.version}`
}

/** The path of every object of the kind, in all namespaces (what an informer lists and watches). */
export function collectionPath (kind: KubernetesKind): string {
  return kind.group === '' ? `/api/${kind.version}/${kind.plural}` : `/apis/${kind.group}/${kind.version}/${kind.plural}`
}

/** The typed clients ambit uses. */
export interface KubernetesClients {
  readonly core: CoreV1Api
  readonly custom: CustomObjectsApi
}

export function kubernetesClients (kubeConfig: KubeConfig): KubernetesClients {
  return { core: kubeConfig.makeApiClient(CoreV1Api), custom: kubeConfig.makeApiClient(CustomObjectsApi) }
}

/** Lists every object of a kind, in all namespaces. */
export function listAll (clients: KubernetesClients, kind: ResourceKind): Promise<KubernetesListObject<KubernetesObject>> {
  switch (kind) {
    case 'Namespace': return clients.core.listNamespace()
    case 'Node': return clients.core.listNode()
    case 'Pod': return clients.core.listPodForAllNamespaces()
    case 'Service': return clients.core.listServiceForAllNamespaces()
    default: {
      const { group, version, plural } = KUBERNETES_KINDS[kind]
      // Custom objects come back untyped; the API server's list shape is KubernetesListObject.
      return clients.custom.listClusterCustomObject({ group, version, plural }) as Promise<KubernetesListObject<KubernetesObject>>
    }
  }
}

/** Request options for a JSON merge patch (RFC 7386); the generated clients default to JSON Patch. */
export const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch)

/** The HTTP status of a failed call: ApiException.code from the typed clients, statusCode from a watch. */
export function statusOf (err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code
  const status = (err as { statusCode?: unknown } | undefined)?.statusCode
  return typeof status === 'number' ? status : undefined
}

/** A failed call as a KubernetesApiError naming what was attempted and the server's own message. */
export function apiError (what: string, err: unknown): KubernetesApiError {
  const status = statusOf(err)
  const reason = status === undefined ? (err as Error).message : `HTTP ${status}: ${serverMessage(err) ?? (err as Error).message}`
  return new KubernetesApiError(`${what}: ${reason}`, status, { cause: err })
}

/** The `message` of the Status object the API server sends with an error, when there is one. */
function serverMessage (err: unknown): string | undefined {
  if (!(err instanceof ApiException)) return undefined
  const body: unknown = err.body
  try {
    const status = (typeof body === 'string' ? JSON.parse(body) : body) as { message?: unknown } | undefined
    return typeof status?.message === 'string' ? status.message : undefined
  } catch {
    return undefined
  }
}

/** The KubeConfig of `file`, or client-node's default chain ($KUBECONFIG, ~/.kube/config, in-cluster). */
export function loadKubeConfig (file?: string): KubeConfig {
  const kubeConfig = new KubeConfig()
  try {
    if (file === undefined) kubeConfig.loadFromDefault()
    else kubeConfig.loadFromFile(file)
  } catch (err) {
    throw new ConfigError(`cannot load the kubeconfig${file === undefined ? '' : ` ${file}`}: ${(err as Error).message}`)
  }
  if (kubeConfig.getCurrentCluster() === null) {
    throw new ConfigError(`the kubeconfig${file === undefined ? '' : ` ${file}`} has no current cluster`)
  }
  return kubeConfig
}

/** A pod's service-account credentials: what a controller running in the cluster uses. */
export function inClusterKubeConfig (): KubeConfig {
  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromCluster()
  return kubeConfig
}
