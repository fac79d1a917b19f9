/**
 * In a cluster, each Gateway of class ambit-waypoint gets the ServiceAccount, Deployment and
 * Service of k8s/waypoint-template.yaml (WAYPOINT_TEMPLATE), owned by the Gateway so that
 * deleting it garbage-collects them: the controller creates and patches, never deletes.
 *
 * It is told each committed state (as a source is) and stamps every waypoint Gateway it has
 * not stamped yet under that uid; a failed stamp is tried again with the next state.
 */
import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'
import { AppsV1Api, CoreV1Api, type KubeConfig, type KubernetesObject, type V1Deployment, type V1OwnerReference, type V1Service, type V1ServiceAccount } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { parseAllDocuments } from 'yaml'
import { WAYPOINT_TEMPLATE } from './kubernetes-access.js'
import { MERGE_PATCH, apiError, statusOf } from './kubernetes-api.js'
import type { ResourceSource, ResourceSourceEvents } from './resource-source.js'
import { ConfigError } from '../policy/errors.js'
import type { GatewayResource, Resource } from '../policy/resources.js'
import type { MeshState } from '../policy/state.js'

/** k8s/waypoint-template.yaml, found next to the code both in the repository and in the image (dist/k8s/). */
export const DEFAULT_TEMPLATE_FILE = fileURLToPath(new URL(`../${WAYPOINT_TEMPLATE.file}`, import.meta.url))

export type TemplateValues = Readonly<Record<keyof typeof WAYPOINT_TEMPLATE.placeholders, string>>

/** The objects of the template for one Gateway, each owned by it. */
export function renderWaypointObjects (template: string, gateway: GatewayResource, values: Omit<TemplateValues, 'gatewayName' | 'gatewayNamespace'>): KubernetesObject[] {
  const { name, namespace, uid } = gateway.metadata
  if (uid === undefined) throw new ConfigError(`Gateway ${namespace}/${name} has no uid to own its waypoint objects`)
  const all: TemplateValues = { ...values, gatewayName: name, gatewayNamespace: namespace }
  // Replaced in the parsed strings, not the text: a value cannot change the YAML's structure.
  const fill = (value: unknown): unknown => {
    if (typeof value === 'string') {
      return Object.entries(WAYPOINT_TEMPLATE.placeholders).reduce((text, [key, placeholder]) => text.replaceAll(placeholder, all[key as keyof TemplateValues]), value)
    }
    if (Array.isArray(value)) return value.map(fill)
    if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v)]))
    return value
  }
  const owner: V1OwnerReference = { apiVersion: gateway.apiVersion, kind: 'Gateway', name, uid, controller: true }
  return parseAllDocuments(template)
    .map((document) => document.toJS() as unknown)
    .filter((object): object is KubernetesObject => typeof object === 'object' && object !== null)
    .map((object) => {
      const filled = fill(object) as KubernetesObject
      return { ...filled, metadata: { ...filled.metadata, ownerReferences: [owner] } }
    })
}

export interface WaypointStamperOptions extends Omit<TemplateValues, 'gatewayName' | 'gatewayNamespace'> {
  readonly kubeConfig: KubeConfig
  /** The text of k8s/waypoint-template.yaml. */
  readonly template: string
  /** A Gateway from the watch cache. */
  readonly gateway: (namespace: string, name: string) => GatewayResource | undefined
  readonly logger: Logger
}

export class WaypointStamper extends EventEmitter<ResourceSourceEvents> implements ResourceSource {
  private readonly core: CoreV1Api
  private readonly apps: AppsV1Api
  /** Gateway key → the uid its objects were stamped for. */
  private readonly stamped = new Map<string, string>()
  private readonly inFlight = new Set<string>()
  private pending: Promise<unknown> = Promise.resolve()

  constructor (private readonly options: WaypointStamperOptions) {
    super()
    this.core = options.kubeConfig.makeApiClient(CoreV1Api)
    this.apps = options.kubeConfig.makeApiClient(AppsV1Api)
  }

  async start (): Promise<void> {}

  async stop (): Promise<void> {
    await this.pending
  }

  /** It brings no resources: it only acts on the committed state. */
  resources (): Iterable<Resource> {
    return []
  }

  committed (state: MeshState): void {
    for (const waypoint of Object.values(state.waypoints)) {
      const gateway = this.options.gateway(waypoint.namespace, waypoint.name)
      const uid = gateway?.metadata.uid
      if (gateway === undefined || uid === undefined || this.stamped.get(waypoint.key) === uid || this.inFlight.has(waypoint.key)) continue
      this.inFlight.add(waypoint.key)
      const stamping = this.stamp(gateway)
        .then(() => this.stamped.set(waypoint.key, uid))
        .catch((err: Error) => this.options.logger.error({ gateway: waypoint.key, err: err.message }, 'cannot stamp the waypoint\'s objects; retrying with the next state'))
        .finally(() => this.inFlight.delete(waypoint.key))
      this.pending = Promise.all([this.pending, stamping])
    }
  }

  /** Creates each object, or merge-patches it when it exists. */
  async stamp (gateway: GatewayResource): Promise<void> {
    for (const object of renderWaypointObjects(this.options.template, gateway, this.options)) {
      const { name = '', namespace = '' } = object.metadata ?? {}
      const what = `${object.kind ?? ''} ${namespace}/${name}`
      try {
        await this.create(object, namespace)
      } catch (err) {
        if (statusOf(err) !== 409) throw apiError(`creating ${what}`, err)
        try {
          await this.patch(object, namespace, name)
        } catch (patchErr) {
          throw apiError(`patching ${what}`, patchErr)
        }
      }
    }
    this.options.logger.info({ gateway: `${gateway.metadata.namespace}/${gateway.metadata.name}` }, 'waypoint objects stamped')
  }

  private async create (object: KubernetesObject, namespace: string): Promise<void> {
    switch (object.kind) {
      case 'ServiceAccount': await this.core.createNamespacedServiceAccount({ namespace, body: object as V1ServiceAccount }); return
      case 'Deployment': await this.apps.createNamespacedDeployment({ namespace, body: object as V1Deployment }); return
      case 'Service': await this.core.createNamespacedService({ namespace, body: object as V1Service }); return
      default: throw new ConfigError(`${WAYPOINT_TEMPLATE.file} holds a ${object.kind ?? 'kindless object'}; only ServiceAccount, Deployment and Service are stamped`)
    }
  }

  private async patch (object: KubernetesObject, namespace: string, name: string): Promise<void> {
    switch (object.kind) {
      case 'ServiceAccount': await this.core.patchNamespacedServiceAccount({ namespace, name, body: object }, MERGE_PATCH); return
      case 'Deployment': await this.apps.patchNamespacedDeployment({ namespace, name, body: object }, MERGE_PATCH); return
      case 'Service': await this.core.patchNamespacedService({ namespace, name, body: object }, MERGE_PATCH); return
      default: throw new ConfigError(`${WAYPOINT_TEMPLATE.file} holds a ${object.kind ?? 'kindless object'}`)
    }
  }
}
