/**
 * Resources from a Kubernetes API server. One client-node informer per kind ambit reads lists
 * the kind, then watches it from that resourceVersion; every object goes through the same
 * validateResource as a YAML document, so the controller cannot tell where it came from.
 *
 *  - A bad object is skipped with a logged error. One that was valid keeps its last valid
 *    version until it is fixed or deleted: a bad document never replaces good state.
 *  - client-node restarts an informer by itself only after a watch that ended cleanly, and
 *    relists after 410 Gone; on any other error it stops. KindWatch restarts it, waiting longer
 *    after each failure in a row.
 *  - A kind the server does not serve (its CRD is not installed) counts as empty and is looked
 *    for again now and then.
 *  - EndpointSlices are read for Services without a selector; the others' endpoints are
 *    resolved from their selectors and Pods (policy/resolve.ts).
 *
 * Status conditions go back to Gateways and TrafficPolicies (kubernetes-status.ts).
 */
import { EventEmitter } from 'node:events'
import {
  ADD, DELETE, ERROR, UPDATE, makeInformer, type Informer, type KubeConfig, type KubernetesObject
} from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { KUBERNETES_KINDS, apiError, apiVersionOf, collectionPath, kubernetesClients, listAll, statusOf, type KubernetesClients } from './kubernetes-api.js'
import { KubernetesStatus, STATUS_KINDS, type ObservedObject, type StatusKind, type TrackedObject } from './kubernetes-status.js'
import type { ResourceSource, ResourceSourceEvents } from './resource-source.js'
import { InvalidResourceError } from '../policy/errors.js'
import { RESOURCE_KINDS, type GatewayResource, type PodResource, type Resource, type ResourceKind } from '../policy/resources.js'
import type { MeshState } from '../policy/state.js'
import { validateResource } from '../policy/validate.js'

export interface KubernetesSourceOptions {
  readonly kubeConfig: KubeConfig
  readonly logger: Logger
  /** The first delay before restarting a failed watch; it doubles with each failure in a row (default 250 ms). */
  readonly retryDelayMs?: number
  /** The longest delay, also how often an unserved kind is looked for again (default 30 s). */
  readonly maxRetryDelayMs?: number
}

/** The "file" of a resource from the API server, in validation errors. */
const KUBERNETES_FILE = '<kubernetes>'

export class KubernetesSource extends EventEmitter<ResourceSourceEvents> implements ResourceSource {
  /** Object key → its last valid version. */
  private readonly valid = new Map<string, Resource>()
  /** Gateways and TrafficPolicies as last seen, with the reason their latest version was rejected. */
  private readonly observed = new Map<string, TrackedObject>()
  /** Object key → the last validation error logged for it, so an unchanged one is said once. */
  private readonly reported = new Map<string, string>()
  private readonly watches: KindWatch[]
  private readonly status: KubernetesStatus

  constructor (private readonly options: KubernetesSourceOptions) {
    super()
    const clients = kubernetesClients(options.kubeConfig)
    this.watches = RESOURCE_KINDS.map((kind) => new KindWatch(kind, clients, options, {
      upsert: (object) => this.accept(kind, object),
      remove: (object) => this.forget(kind, object)
    }))
    this.status = new KubernetesStatus({ kubeConfig: options.kubeConfig, logger: options.logger, tracked: () => this.observed.values() })
  }

  /** Resolves once every kind has been listed (retrying while the API server fails). */
  async start (): Promise<void> {
    for (const watch of this.watches) watch.start()
    await Promise.all(this.watches.map((watch) => watch.synced))
    this.options.logger.info({ resources: this.valid.size }, 'Kubernetes resources listed; watching for changes')
  }

  async stop (): Promise<void> {
    await Promise.all(this.watches.map((watch) => watch.stop()))
    await this.status.stop()
  }

  resources (): Iterable<Resource> {
    return this.valid.values()
  }

  committed (state: MeshState): void {
    this.status.update(state)
  }

  /** A pod from the watch cache, if it is there and valid. */
  pod (namespace: string, name: string): PodResource | undefined {
    const found = this.valid.get(keyOf('Pod', { metadata: { namespace, name } }))
    return found?.kind === 'Pod' ? found : undefined
  }

  /** A Gateway from the watch cache, if it is there and valid. */
  gateway (namespace: string, name: string): GatewayResource | undefined {
    const found = this.valid.get(keyOf('Gateway', { metadata: { namespace, name } }))
    return found?.kind === 'Gateway' ? found : undefined
  }

  private accept (kind: ResourceKind, raw: KubernetesObject): void {
    const object = plainObject(kind, raw)
    const key = keyOf(kind, object)
    let changed = false
    let problem: InvalidResourceError | undefined
    try {
      const resource = validateResource(object, { file: KUBERNETES_FILE, document: 0, object: key })
      const before = this.valid.get(key)
      // Status-only changes (ours included) move resourceVersion alone: keep the old copy, resolve nothing.
      if (before === undefined || !sameResource(before, resource)) {
        this.valid.set(key, resource)
        changed = true
      }
      this.reported.delete(key)
    } catch (err) {
      if (!(err instanceof InvalidResourceError)) throw err
      problem = err
      this.report(key, err)
    }
    if (isStatusKind(kind)) {
      // The API server's objects always have metadata.name, and metadata.namespace for these namespaced kinds.
      this.observed.set(key, { kind, object: object as unknown as ObservedObject, ...(problem !== undefined && { problem }) })
      this.status.update()
    }
    if (changed) this.emit('update')
  }

  private forget (kind: ResourceKind, raw: KubernetesObject): void {
    const key = keyOf(kind, raw)
    this.observed.delete(key)
    this.reported.delete(key)
    if (this.valid.delete(key)) this.emit('update')
  }

  private report (key: string, err: InvalidResourceError): void {
    if (this.reported.get(key) === err.message) return
    this.reported.set(key, err.message)
    const kept = this.valid.has(key)
    this.options.logger.error({ object: key, field: err.field, reason: err.reason },
      kept ? 'invalid change skipped; the last valid version stays in effect' : 'invalid object skipped')
  }
}

interface KindWatchHandlers {
  readonly upsert: (object: KubernetesObject) => void
  readonly remove: (object: KubernetesObject) => void
}

const DEFAULT_RETRY_MS = 250
const DEFAULT_MAX_RETRY_MS = 30_000

/** One kind's informer, kept running: restarted after each failure, later each time in a row. */
class KindWatch {
  /** Resolves once the kind has been listed and watched (or found not served). */
  readonly synced: Promise<void>
  private markSynced: () => void = () => {}
  private readonly informer: Informer<KubernetesObject>
  private readonly logger: Logger
  private failures = 0
  private failuresInARow = 0
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  /** The list in flight, if any: stopping waits for it. */
  private listing: Promise<unknown> | undefined

  constructor (
    private readonly kind: ResourceKind,
    clients: KubernetesClients,
    private readonly options: KubernetesSourceOptions,
    handlers: KindWatchHandlers
  ) {
    this.logger = options.logger.child({ kind })
    this.synced = new Promise((resolve) => { this.markSynced = resolve })
    this.informer = makeInformer(options.kubeConfig, collectionPath(KUBERNETES_KINDS[kind]), () => this.list(clients))
    this.informer.on(ADD, this.guarded(handlers.upsert))
    this.informer.on(UPDATE, this.guarded(handlers.upsert))
    this.informer.on(DELETE, this.guarded(handlers.remove))
    this.informer.on(ERROR, (err: unknown) => this.failed(err))
  }

  start (): void {
    void this.run()
  }

  /**
   * client-node's stop() aborts only a watch already open. The informer relists by itself (after
   * a 410), and a list in flight when we stop would be followed by a new watch that keeps the
   * process alive: so a list that ends after stop() fails instead, and stop() waits for it.
   */
  async stop (): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.informer.stop()
    await this.listing?.catch(() => {})
    await this.informer.stop()
  }

  private async list (clients: KubernetesClients): ReturnType<typeof listAll> {
    const listing = listAll(clients, this.kind)
    this.listing = listing
    const list = await listing
    if (this.stopped) throw new Error(`stopped while listing ${this.kind}`)
    return list
  }

  /** Lists (unless the informer holds a resourceVersion to watch from) and watches; a failure calls failed(). */
  private async run (): Promise<void> {
    if (this.stopped) return
    const failuresBefore = this.failures
    try {
      await this.informer.start()
    } catch (err) {
      this.failed(err)
      return
    }
    if (this.failures !== failuresBefore || this.stopped) return
    if (this.failuresInARow > 0) this.logger.info('watch restored')
    this.failuresInARow = 0
    this.markSynced()
  }

  private failed (err: unknown): void {
    if (this.stopped) return
    this.failures++
    const max = this.options.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_MS
    let delay: number
    if (statusOf(err) === 404) {
      if (this.failuresInARow === 0) this.logger.warn('not served by the API server (is its CRD installed?); read as empty for now')
      delay = max
      this.markSynced()
    } else {
      // Jitter keeps the informers of many controllers from retrying in step.
      const base = (this.options.retryDelayMs ?? DEFAULT_RETRY_MS) * 2 ** Math.min(this.failuresInARow, 16)
      delay = Math.round(Math.min(max, base) * (0.8 + Math.random() * 0.4))
      this.logger.warn({ err: apiError(`watching ${this.kind}`, err).message, retryInMs: delay }, 'watch failed; restarting it')
    }
    this.failuresInARow++
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { void this.run() }, delay)
  }

  /** A handler that cannot throw into client-node (which would swallow the error or stop listing). */
  private guarded (handler: (object: KubernetesObject) => void): (object: KubernetesObject) => void {
    return (object) => {
      try {
        handler(object)
      } catch (err) {
        this.logger.error({ err, object: object.metadata?.name }, 'a watched object could not be taken in')
      }
    }
  }
}

/** The object as plain JSON (list items come typed, watch events raw), with the apiVersion and kind list items lack. */
function plainObject (kind: ResourceKind, raw: KubernetesObject): Record<string, unknown> {
  const object = JSON.parse(JSON.stringify(raw)) as Record<string, unknown>
  object.apiVersion ??= apiVersionOf(KUBERNETES_KINDS[kind])
  object.kind ??= kind
  return object
}

/** 'Kind/namespace/name' or 'Kind/name', as resourceKey() names the validated resource. */
function keyOf (kind: ResourceKind, object: { metadata?: { namespace?: string, name?: string } }): string {
  const { namespace = '', name = '' } = object.metadata ?? {}
  return namespace === '' ? `${kind}/${name}` : `${kind}/${namespace}/${name}`
}

function sameResource (a: Resource, b: Resource): boolean {
  const unversioned = (r: Resource): string => JSON.stringify({ ...r, metadata: { ...r.metadata, resourceVersion: undefined } })
  return unversioned(a) === unversioned(b)
}

function isStatusKind (kind: ResourceKind): kind is StatusKind {
  return (STATUS_KINDS as readonly string[]).includes(kind)
}
