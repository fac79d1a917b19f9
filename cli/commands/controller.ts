import type { Logger } from 'pino'
import type { Command, ParsedArgs } from '../command.js'
import { FILE_FLAG, HELP_FLAG, LOG_LEVEL_FLAG, STORE_FLAG, listFlag, requiredFlag, stringFlag } from '../command.js'
import { CONTROL_PLANE_FLAGS, controlPlaneOptions } from './control-flags.js'
import { createLogger } from '../log.js'
import { untilSignal } from '../lifecycle.js'
import { openStore } from '../../control/open-store.js'
import { ControlPlane, type ControlPlaneOptions } from '../../control/control-plane.js'
import { AMBIT_NAMESPACE, ZTUNNEL_SERVICE_ACCOUNT } from '../../control/kubernetes-access.js'

export const controllerCommand: Command = {
  name: 'controller',
  summary: 'run the control plane: resolve resources into the store and serve the CA',
  usage: 'ambit controller --store URL [-f PATH]... [--kubeconfig FILE] [--ca-cert FILE --ca-key FILE]',
  flags: {
    store: STORE_FLAG,
    file: FILE_FLAG,
    kubeconfig: { type: 'string', value: 'FILE', description: 'watch this cluster (in a pod, its own cluster is watched without it)' },
    'ztunnel-service-account': { type: 'string', value: 'NS/NAME', default: `${AMBIT_NAMESPACE}/${ZTUNNEL_SERVICE_ACCOUNT}`, description: 'in a cluster, the ServiceAccount whose tokens prove a ztunnel\'s node to the CA' },
    ...CONTROL_PLANE_FLAGS,
    'log-level': LOG_LEVEL_FLAG,
    help: HELP_FLAG
  },
  async run (args) {
    const logger = createLogger(stringFlag(args, 'log-level'), 'controller')
    const store = await openStore(requiredFlag(args, 'store'), { logger })
    try {
      const cluster = await clusterOptions(args, logger)
      const plane = await ControlPlane.start({ ...await controlPlaneOptions(args, store, logger), ...cluster })
      const state = plane.controller.state
      console.log(`ambit controller: ${Object.keys(state?.workloads ?? {}).length} workloads, ` +
        `${Object.keys(state?.services ?? {}).length} services in ${store.description}; CA at ${plane.caServer.url}`)
      await untilSignal()
      await plane.stop()
      return 0
    } finally {
      await store.close()
    }
  }
}

/**
 * Kubernetes as the resource source: with --kubeconfig, or in a pod when no -f files are given
 * (files mean local mode even inside a cluster). The client is loaded only then: it is heavy.
 */
async function clusterOptions (args: ParsedArgs, logger: Logger): Promise<Partial<ControlPlaneOptions>> {
  const file = stringFlag(args, 'kubeconfig')
  if (file === undefined && listFlag(args, 'file').length > 0) return {}
  const { clusterControlPlaneOptions, clusterKubeConfig } = await import('../../control/kubernetes-cluster.js')
  const { parseServiceAccount } = await import('../../control/token-review.js')
  const kubeConfig = clusterKubeConfig(file)
  if (kubeConfig === undefined) return {}
  return clusterControlPlaneOptions({ kubeConfig, logger, ztunnelServiceAccount: parseServiceAccount(requiredFlag(args, 'ztunnel-service-account')) })
}
