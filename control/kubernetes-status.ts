/**
 * Status conditions written back to the objects whose status is ambit's, as Gateway API
 * implementations do:
 *  - a Gateway of class ambit-waypoint: Accepted, and Programmed (True once the waypoint has a
 *    running instance);
 *  - a TrafficPolicy: Accepted (False with the validation reason when it was rejected, or when
 *    the Service it targets does not exist; GEP-713's reasons).
 * Each condition carries the generation it describes (observedGeneration); lastTransitionTime
 * moves only when the condition's status does.
 *
 * The decisions are pure functions; KubernetesStatus writes what differs with a merge patch of
 * the status subresource, at most once per object version and wanted conditions.
 */
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { KUBERNETES_KINDS, MERGE_PATCH, apiError } from './kubernetes-api.js'
import type { InvalidResourceError } from '../policy/errors.js'
import { WAYPOINT_CLASS } from '../policy/resources.js'
import { GATEWAY_NAME_LABEL } from '../policy/resolve.js'
import type { MeshState } from '../policy/state.js'

export interface Condition {
  readonly type: string
  readonly status: 'True' | 'False' | 'Unknown'
  /** CamelCase, machine-readable. */
  readonly reason: string
  readonly message: string
  readonly observedGeneration?: number
  /** RFC 3339. */
  readonly lastTransitionTime: string
}

export type WantedCondition = Omit<Condition, 'lastTransitionTime'>

/** The kinds whose status ambit writes. */
export const STATUS_KINDS = ['Gateway', 'TrafficPolicy'] as const
export type StatusKind = (typeof STATUS_KINDS)[number]

/** An object as the API server last sent it (plain JSON), and why its latest version was rejected, if it was. */
export interface TrackedObject {
  readonly kind: StatusKind
  readonly object: ObservedObject
  readonly problem?: InvalidResourceError
}

export interface ObservedObject {
  readonly metadata: { readonly name: string, readonly namespace: string, readonly generation?: number, readonly resourceVersion?: string }
  readonly spec?: { readonly gatewayClassName?: unknown }
  readonly status?: { readonly conditions?: readonly Condition[] }
}

/**
 * The conditions `tracked` should carry in `state`; undefined when there is nothing to say yet
 * (the state does not have the object: its commit is on the way) or the status is not ours.
 */
export function wantedConditions (tracked: TrackedObject, state: MeshState): WantedCondition[] | undefined {
  const { metadata } = tracked.object
  const key = `${metadata.namespace}/${metadata.name}`
  const condition = (type: string, ok: boolean, reason: string, message: string): WantedCondition =>
    ({ type, status: ok ? 'True' : 'False', reason, message, ...(metadata.generation !== undefined && { observedGeneration: metadata.generation }) })
  const invalid = tracked.problem === undefined ? undefined : `${tracked.problem.field}: ${tracked.problem.reason}`

  if (tracked.kind === 'Gateway') {
    if (tracked.object.spec?.gatewayClassName !== WAYPOINT_CLASS) return undefined
    if (invalid !== undefined) {
      return [condition('Accepted', false, 'Invalid', invalid), condition('Programmed', false, 'Invalid', 'the Gateway is not valid')]
    }
    const waypoint = state.waypoints[key]
    if (waypoint === undefined) return undefined
    const running = waypoint.instances.length
    return [
      condition('Accepted', true, 'Accepted', 'accepted by ambit'),
      running > 0
        ? condition('Programmed', true, 'Programmed', `${running} waypoint instance(s) running`)
        : condition('Programmed', false, 'Pending', `no running waypoint instance (pods labelled ${GATEWAY_NAME_LABEL}=${metadata.name})`)
    ]
  }

  if (invalid !== undefined) return [condition('Accepted', false, 'Invalid', invalid)]
  const policy = state.trafficPolicies[key]
  if (policy === undefined) return undefined
  const missing = policy.targetRefs.filter((ref) => state.services[`${metadata.namespace}/${ref.name}`] === undefined)
  return missing.length > 0
    ? [condition('Accepted', false, 'TargetNotFound', `no Service ${missing.map((ref) => ref.name).join(', ')} in namespace ${metadata.namespace}`)]
    : [condition('Accepted', true, 'Accepted', 'accepted by ambit')]
}

/** `existing` with the wanted conditions replaced or added; others (another writer's) are kept. */
export function mergeConditions (existing: readonly Condition[], wanted: readonly WantedCondition[], now: Date): Condition[] {
  const stamped = (want: WantedCondition): Condition => {
    const before = existing.find((c) => c.type === want.type)
    return { ...want, lastTransitionTime: before?.status === want.status ? before.lastTransitionTime : now.toISOString() }
  }
  const merged = existing.map((c) => {
    const want = wanted.find((w) => w.type === c.type)
    return want === undefined ? c : stamped(want)
  })
  for (const want of wanted) {
    if (!existing.some((c) => c.type === want.type)) merged.push(stamped(want))
  }
  return merged
}

export interface KubernetesStatusOptions {
  readonly kubeConfig: KubeConfig
  readonly logger: Logger
  /** The objects whose status may be ours, as last seen. */
  readonly tracked: () => Iterable<TrackedObject>
}

/** How long to gather changes before writing, and to wait after a failed write. */
const FLUSH_DELAY_MS = 50
const RETRY_DELAY_MS = 1000

export class KubernetesStatus {
  private readonly custom: CustomObjectsApi
  private state: MeshState | undefined
  private timer: NodeJS.Timeout | undefined
  private flushing: Promise<void> = Promise.resolve()
  /** Object key → the version and wanted conditions last written, so that nothing is written twice. */
  private readonly written = new Map<string, string>()
  private stopped = false

  constructor (private readonly options: KubernetesStatusOptions) {
    this.custom = options.kubeConfig.makeApiClient(CustomObjectsApi)
  }

  /** Something changed (the objects, or the committed state when given): write what now differs. */
  update (state?: MeshState): void {
    if (state !== undefined) this.state = state
    this.schedule(FLUSH_DELAY_MS)
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.flushing
  }

  private schedule (delay: number): void {
    if (this.stopped || this.state === undefined) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.flushing = this.flushing.then(() => this.flush())
    }, delay)
  }

  private async flush (): Promise<void> {
    const state = this.state
    if (this.stopped || state === undefined) return
    let failed = false
    const seen = new Set<string>()
    // A copy: the objects may change while a write is awaited.
    for (const tracked of [...this.options.tracked()]) {
      const { metadata, status } = tracked.object
      const key = `${tracked.kind}/${metadata.namespace}/${metadata.name}`
      seen.add(key)
      const wanted = wantedConditions(tracked, state)
      if (wanted === undefined) continue
      const memo = `${metadata.resourceVersion ?? ''} ${JSON.stringify(wanted)}`
      const existing = status?.conditions ?? []
      const conditions = mergeConditions(existing, wanted, new Date())
      if (JSON.stringify(conditions) === JSON.stringify(existing) || this.written.get(key) === memo) continue
      if (await this.write(tracked, conditions)) this.written.set(key, memo)
      else failed = true
    }
    for (const key of this.written.keys()) if (!seen.has(key)) this.written.delete(key)
    if (failed) this.schedule(RETRY_DELAY_MS)
  }

  private async write (tracked: TrackedObject, conditions: readonly Condition[]): Promise<boolean> {
    const { group, version, plural } = KUBERNETES_KINDS[tracked.kind]
    const { name, namespace } = tracked.object.metadata
    try {
      await this.custom.patchNamespacedCustomObjectStatus({ group, version, plural, namespace, name, body: { status: { conditions } } }, MERGE_PATCH)
      this.options.logger.debug({ object: `${tracked.kind}/${namespace}/${name}`, conditions }, 'status written')
      return true
    } catch (err) {
      this.options.logger.warn({ err: apiError(`cannot write the status of ${tracked.kind} ${namespace}/${name}`, err).message }, 'status not written; will retry')
      return false
    }
  }
}
