/**
 * Running the control plane against a cluster: which KubeConfig to use, and the ControlPlane
 * options that read resources from the API server and authenticate CA callers by TokenReview.
 */
import type { KubeConfig } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import type { ControlPlaneOptions } from './control-plane.js'
import { inClusterKubeConfig, loadKubeConfig } from './kubernetes-api.js'
import { KubernetesSource } from './kubernetes-source.js'
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

export interface ClusterOptions {
  readonly kubeConfig: KubeConfig
  readonly logger: Logger
  /** Whose tokens the CA accepts as a node's (default ambit-system/ambit-ztunnel). */
  readonly ztunnelServiceAccount?: ServiceAccountRef
}

export function clusterControlPlaneOptions (options: ClusterOptions): Pick<ControlPlaneOptions, 'sources' | 'authenticateCaller'> {
  options.logger.info({ server: options.kubeConfig.getCurrentCluster()?.server }, 'resources come from the Kubernetes API')
  const source = new KubernetesSource({ kubeConfig: options.kubeConfig, logger: options.logger.child({ component: 'kubernetes' }) })
  const reviewer = new TokenReviewAuthenticator({
    kubeConfig: options.kubeConfig,
    logger: options.logger.child({ component: 'ca' }),
    cachedPod: (namespace, name) => {
      const pod = source.pod(namespace, name)
      return pod === undefined ? undefined : { nodeName: pod.nodeName, uid: pod.metadata.uid }
    },
    ...(options.ztunnelServiceAccount !== undefined && { ztunnelServiceAccount: options.ztunnelServiceAccount })
  })
  return { sources: [source], authenticateCaller: reviewer.authenticate }
}
