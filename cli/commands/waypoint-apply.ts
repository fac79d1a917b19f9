/**
 * `ambit waypoint apply -n NS [--name N]`: in a cluster, declare the namespace's waypoint (a
 * Gateway of class ambit-waypoint) and send the namespace's services through it (the label
 * ambit.dev/use-waypoint=N). `ambit waypoint delete` undoes both. The calls are those
 * WAYPOINT_CLI_API_ACCESS lists (control/kubernetes-access.ts).
 */
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node'
import type { Command, FlagSpec, ParsedArgs } from '../command.js'
import { HELP_FLAG, requiredFlag, stringFlag } from '../command.js'
import { KUBERNETES_KINDS, MERGE_PATCH, apiError, apiVersionOf, loadKubeConfig, statusOf } from '../../control/kubernetes-api.js'
import { ConfigError } from '../../policy/errors.js'
import { USE_WAYPOINT_LABEL, WAYPOINT_CLASS } from '../../policy/resources.js'
import { validateResource } from '../../policy/validate.js'

const DEFAULT_NAME = 'waypoint'
/** HBONE, where a waypoint receives its mesh traffic (Istio's waypoint Gateways declare the same listener). */
const MESH_LISTENER = { name: 'mesh', port: 15008, protocol: 'HBONE' }

const FLAGS: Readonly<Record<string, FlagSpec>> = {
  namespace: { type: 'string', short: 'n', value: 'NS', description: 'the namespace whose waypoint it is' },
  name: { type: 'string', value: 'NAME', default: DEFAULT_NAME, description: 'the waypoint Gateway\'s name' },
  kubeconfig: { type: 'string', value: 'FILE', description: 'the cluster (default: $KUBECONFIG, ~/.kube/config, or in-cluster)' },
  help: HELP_FLAG
}

/** The waypoint's Gateway, checked as the controller will read it (names must be valid). */
export function waypointGateway (namespace: string, name: string): Record<string, unknown> {
  const gateway = {
    apiVersion: apiVersionOf(KUBERNETES_KINDS.Gateway),
    kind: 'Gateway',
    metadata: { name, namespace },
    spec: { gatewayClassName: WAYPOINT_CLASS, listeners: [MESH_LISTENER] }
  }
  validateResource(gateway, { file: '<command line>', document: 0, object: `Gateway/${name}` })
  return gateway
}

interface Target {
  readonly namespace: string
  readonly name: string
  readonly core: CoreV1Api
  readonly custom: CustomObjectsApi
}

function target (args: ParsedArgs): Target {
  const kubeConfig: KubeConfig = loadKubeConfig(stringFlag(args, 'kubeconfig'))
  return {
    namespace: requiredFlag(args, 'namespace'),
    name: requiredFlag(args, 'name'),
    core: kubeConfig.makeApiClient(CoreV1Api),
    custom: kubeConfig.makeApiClient(CustomObjectsApi)
  }
}

const GATEWAYS = { group: KUBERNETES_KINDS.Gateway.group, version: KUBERNETES_KINDS.Gateway.version, plural: KUBERNETES_KINDS.Gateway.plural }

/** The Gateway named so, if there is one; refuses to go on with a Gateway that is not a waypoint. */
async function existingWaypoint ({ custom, namespace, name }: Target): Promise<boolean> {
  let existing: { spec?: { gatewayClassName?: unknown } }
  try {
    existing = await custom.getNamespacedCustomObject({ ...GATEWAYS, namespace, name }) as typeof existing
  } catch (err) {
    if (statusOf(err) === 404) return false
    throw apiError(`reading Gateway ${namespace}/${name}`, err)
  }
  const gatewayClass = String(existing.spec?.gatewayClassName)
  if (gatewayClass !== WAYPOINT_CLASS) {
    throw new ConfigError(`Gateway ${namespace}/${name} exists with class ${gatewayClass}, not ${WAYPOINT_CLASS}; choose another --name`)
  }
  return true
}

/** Sets (or, with null, removes) the namespace's waypoint label. */
async function labelNamespace ({ core, namespace }: Target, value: string | null): Promise<void> {
  try {
    await core.patchNamespace({ name: namespace, body: { metadata: { labels: { [USE_WAYPOINT_LABEL]: value } } } }, MERGE_PATCH)
  } catch (err) {
    throw apiError(`labelling namespace ${namespace}`, err)
  }
}

export const waypointApplyCommand: Command = {
  name: 'waypoint apply',
  summary: 'in a cluster: create a namespace\'s waypoint Gateway and send the namespace\'s traffic through it',
  usage: 'ambit waypoint apply -n NS [--name NAME] [--kubeconfig FILE]',
  flags: FLAGS,
  async run (args) {
    const cluster = target(args)
    const { namespace, name, custom } = cluster
    const gateway = waypointGateway(namespace, name)
    let created = false
    if (!await existingWaypoint(cluster)) {
      try {
        await custom.createNamespacedCustomObject({ ...GATEWAYS, namespace, body: gateway })
        created = true
      } catch (err) {
        throw apiError(`creating Gateway ${namespace}/${name}`, err)
      }
    }
    await labelNamespace(cluster, name)
    console.log(`waypoint ${namespace}/${name} ${created ? 'created' : 'unchanged'}; namespace ${namespace} labelled ${USE_WAYPOINT_LABEL}=${name}`)
    return 0
  }
}

export const waypointDeleteCommand: Command = {
  name: 'waypoint delete',
  summary: 'in a cluster: delete a namespace\'s waypoint Gateway and its ambit.dev/use-waypoint label',
  usage: 'ambit waypoint delete -n NS [--name NAME] [--kubeconfig FILE]',
  flags: FLAGS,
  async run (args) {
    const cluster = target(args)
    const { namespace, name, core, custom } = cluster
    const existed = await existingWaypoint(cluster)
    if (existed) {
      try {
        await custom.deleteNamespacedCustomObject({ ...GATEWAYS, namespace, name })
      } catch (err) {
        if (statusOf(err) !== 404) throw apiError(`deleting Gateway ${namespace}/${name}`, err)
      }
    }
    let labels: Record<string, string> | undefined
    try {
      labels = (await core.readNamespace({ name: namespace })).metadata?.labels
    } catch (err) {
      throw apiError(`reading namespace ${namespace}`, err)
    }
    // A label naming another waypoint is someone else's choice: leave it.
    const labelled = labels?.[USE_WAYPOINT_LABEL] === name
    if (labelled) await labelNamespace(cluster, null)
    console.log(`waypoint ${namespace}/${name} ${existed ? 'deleted' : 'not found'}; ` +
      `namespace ${namespace} ${labelled ? `no longer labelled ${USE_WAYPOINT_LABEL}` : `was not labelled ${USE_WAYPOINT_LABEL}=${name}`}`)
    return 0
  }
}
