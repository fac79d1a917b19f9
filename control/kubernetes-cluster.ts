/**
 * Running the control plane against a cluster: which KubeConfig to use, and the ControlPlane
 * options that read resources from the API server and authenticate CA callers by TokenReview.
 */
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import type { ControlPlaneOptions } from './control-plane.js'
import { apiError, inClusterKubeConfig, loadKubeConfig } from './kubernetes-api.js'
import { loadOrCreateCaRoot } from './kubernetes-ca-root.js'
import { KubernetesSource } from './kubernetes-source.js'
import { WaypointStamper } from './waypoint-stamper.js'
import { WAYPOINT_CLASS } from '../policy/resources.js'
import { TokenReviewAuthenticator, type ServiceAccountRef } from './token-review.js'

/**
 * The cluster to watch: `file` when given; otherwise the pod's own credentials when running in
 * one (KUBERNETES_SERVICE_HOST is set); otherwise none (local mode).
 */
export function clusterKubeConfig (file: string | undefined, env: NodeJS.ProcessEnv = process.env): KubeConfig | undefined {
  if (file !== undefined) return loadKubeConfig(file)
  if (env.KUBERNETES_SERVICE_HOST !== undefined && env.KUBERNETES_SERVICE_HOST !== '') return inClusterKubeConfig()
  return undefined
}

/**
 * The image this controller runs, read from its own Pod (named by the downward API in
 * AMBIT_POD_NAME / AMBIT_POD_NAMESPACE, k8s/controller.yaml): waypoints run the same image,
 * whatever `kustomize edit set image` made of it. Undefined outside a pod.
 */
export async function ownImage (kubeConfig: KubeConfig, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const name = env.AMBIT_POD_NAME
  const namespace = env.AMBIT_POD_NAMESPACE
  if (name === undefined || name === '' || namespace === undefined || namespace === '') return undefined
  try {
    const pod = await kubeConfig.makeApiClient(CoreV1Api).readNamespacedPod({ namespace, name })
    const containers = pod.spec?.containers ?? []
    return (containers.find((c) => c.name === 'controller') ?? containers[0])?.image
  } catch (err) {
    throw apiError(`reading the controller's own pod ${namespace}/${name}`, err)
  }
}

export interface ClusterOptions {
  readonly kubeConfig: KubeConfig
  readonly logger: Logger
  readonly trustDomain: string
  /** Whose tokens the CA accepts as a node's (default ambit-system/ambit-ztunnel). */
  readonly ztunnelServiceAccount?: ServiceAccountRef
  /** Stamp each waypoint Gateway's objects from this template (none are stamped when absent). */
  readonly waypoints?: { readonly template: string, readonly image: string, readonly storeUrl: string }
}

export function clusterControlPlaneOptions (options: ClusterOptions): Pick<ControlPlaneOptions, 'sources' | 'authenticateCaller' | 'caRoot'> {
  options.logger.info({ server: options.kubeConfig.getCurrentCluster()?.server }, 'resources come from the Kubernetes API')
  const source = new KubernetesSource({ kubeConfig: options.kubeConfig, logger: options.logger.child({ component: 'kubernetes' }) })
  const reviewer = new TokenReviewAuthenticator({
    kubeConfig: options.kubeConfig,
    logger: options.logger.child({ component: 'ca' }),
    cachedPod: (namespace, name) => {
      const pod = source.pod(namespace, name)
      return pod === undefined ? undefined : { nodeName: pod.nodeName, uid: pod.metadata.uid, labels: pod.metadata.labels }
    },
    isWaypoint: (namespace, name) => source.gateway(namespace, name)?.gatewayClassName === WAYPOINT_CLASS,
    ...(options.ztunnelServiceAccount !== undefined && { ztunnelServiceAccount: options.ztunnelServiceAccount })
  })
  const stamper = options.waypoints === undefined
    ? undefined
    : new WaypointStamper({
      ...options.waypoints,
      kubeConfig: options.kubeConfig,
      gateway: (namespace, name) => source.gateway(namespace, name),
      logger: options.logger.child({ component: 'waypoints' })
    })
  return {
    sources: stamper === undefined ? [source] : [source, stamper],
    authenticateCaller: reviewer.authenticate,
    caRoot: () => loadOrCreateCaRoot({ kubeConfig: options.kubeConfig, trustDomain: options.trustDomain, logger: options.logger.child({ component: 'ca' }) })
  }
}
