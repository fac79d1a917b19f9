import type { Logger } from 'pino'
import type { Command, ParsedArgs } from '../command.js'
import { FILE_FLAG, HELP_FLAG, LOG_LEVEL_FLAG, STORE_FLAG, listFlag, numberFlag, requiredFlag, stringFlag } from '../command.js'
import { CONTROL_PLANE_FLAGS, controlPlaneOptions } from './control-flags.js'
import { createLogger } from '../log.js'
import { serveUntilSignal } from '../lifecycle.js'
import { openStore } from '../../control/open-store.js'
import { ControlPlane, type ControlPlaneOptions } from '../../control/control-plane.js'
import { STATUS_PORT } from '../../control/status-server.js'
import { AMBIT_NAMESPACE, ZTUNNEL_SERVICE_ACCOUNT } from '../../control/kubernetes-access.js'
import { DEFAULT_TRUST_DOMAIN } from '../../policy/state.js'
import { ConfigError } from '../../policy/errors.js'

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
    'waypoint-image': { type: 'string', value: 'IMAGE', description: 'in a cluster, the image of the waypoint Deployments stamped per Gateway (default: the controller pod\'s own)' },
    'waypoint-template': { type: 'string', value: 'FILE', description: 'in a cluster, what to stamp per waypoint Gateway (default: the bundled k8s/waypoint-template.yaml)' },
    'status-port': { type: 'string', value: 'PORT', default: '15014', description: 'serve the dashboard, /healthz/ready and /metrics on this port (0 picks a free one)' },
    'status-address': { type: 'string', value: 'HOST', default: '127.0.0.1', description: 'address the status port listens on' },
    'ca-server-name': { type: 'string', multiple: true, value: 'NAME', description: 'another DNS name for the CA\'s serving certificate (repeatable; its Service\'s names in a cluster)' },
    'log-level': LOG_LEVEL_FLAG,
    help: HELP_FLAG
  },
  async run (args) {
    const logger = createLogger(stringFlag(args, 'log-level'), 'controller')
    const store = await openStore(requiredFlag(args, 'store'), { logger })
    try {
      const cluster = await clusterOptions(args, logger)
      const plane = await ControlPlane.start({
        ...await controlPlaneOptions(args, store, logger),
        caServerNames: listFlag(args, 'ca-server-name'),
        statusPort: numberFlag(args, 'status-port') ?? STATUS_PORT,
        statusHost: stringFlag(args, 'status-address') ?? '127.0.0.1',
        ...cluster
      })
      const state = plane.controller.state
      console.log(`ambit controller: ${Object.keys(state?.workloads ?? {}).length} workloads, ` +
        `${Object.keys(state?.services ?? {}).length} services in ${store.description}; ` +
        // The CA's URL stays last: scripts and tests read it up to the end of the line.
        (plane.statusServer === undefined ? '' : `status at ${plane.statusServer.url}; `) + `CA at ${plane.caServer.url}`)
      await serveUntilSignal(logger, () => plane.stop())
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
  const { clusterControlPlaneOptions, clusterKubeConfig, ownImage } = await import('../../control/kubernetes-cluster.js')
  const { parseServiceAccount } = await import('../../control/token-review.js')
  const kubeConfig = clusterKubeConfig(file)
  if (kubeConfig === undefined) return {}
  const waypoints = await waypointStamping(args, await ownImage(kubeConfig), logger)
  return clusterControlPlaneOptions({
    kubeConfig,
    logger,
    trustDomain: stringFlag(args, 'trust-domain') ?? DEFAULT_TRUST_DOMAIN,
    ztunnelServiceAccount: parseServiceAccount(requiredFlag(args, 'ztunnel-service-account')),
    ...(waypoints !== undefined && { waypoints })
  })
}

/** What to stamp per waypoint Gateway: nothing without an image to run (outside a pod, no --waypoint-image). */
async function waypointStamping (
  args: ParsedArgs, podImage: string | undefined, logger: Logger
): Promise<{ template: string, image: string, storeUrl: string } | undefined> {
  const image = stringFlag(args, 'waypoint-image') ?? podImage
  if (image === undefined) {
    logger.info('no --waypoint-image and not in a pod: waypoint Deployments are not stamped')
    return undefined
  }
  const { readFile } = await import('node:fs/promises')
  const { DEFAULT_TEMPLATE_FILE } = await import('../../control/waypoint-stamper.js')
  const templateFile = stringFlag(args, 'waypoint-template') ?? DEFAULT_TEMPLATE_FILE
  const template = await readFile(templateFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new ConfigError(`cannot read the waypoint template ${templateFile}: ${err.code ?? err.message}`)
  })
  return { template, image, storeUrl: requiredFlag(args, 'store') }
}
