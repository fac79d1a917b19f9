/**
 * Envoy's outlier detection for one Service (TrafficPolicy `outlierDetection`): passive health
 * checking from the answers real requests got.
 *
 * - consecutive5xxErrors (default 5, as Istio; 0 turns it off) answers in a row with a 5xx, or
 *   consecutiveGatewayErrors (default off) answers in a row with 502, 503 or 504, eject the
 *   endpoint at once. A connect failure counts as a 503 for both (Envoy's mapping of local
 *   errors when they are not split from the upstream's). A non-5xx answer resets both counts; a
 *   500 resets only the gateway count.
 * - An ejected endpoint stays out for baseEjectionTime × the times it was ejected, capped at
 *   max(300 s, baseEjectionTime) (Envoy's max_ejection_time default). Each full `interval` it
 *   then spends back in service lowers that multiplier by one again, as Envoy's sweeps do.
 * - Ejection limit, the rule of Envoy's architecture overview: an endpoint is ejected if none is
 *   ejected yet, or if the ejected share stays at most maxEjectionPercent afterwards. Two
 *   guards on the "none yet" exception: maxEjectionPercent 0 never ejects, and the only endpoint
 *   of a Service is not ejected unless maxEjectionPercent is 100 (ejecting it would just turn
 *   every request into a 503).
 *
 * Unlike Envoy, un-ejection is not waited for until the next interval sweep: an endpoint is back
 * as soon as its time is up. The detector reads the clock on each call and keeps no timers.
 */
import type { TrafficPolicySpec } from '../policy/resources.js'
import type { Endpoint } from './load-balancer.js'

export type OutlierDetectionSpec = NonNullable<TrafficPolicySpec['outlierDetection']>

/** Milliseconds, like Date.now. */
export type Clock = () => number

/** How a request to an endpoint ended: the status it answered, or a failed connect. */
export interface RequestOutcome {
  readonly status?: number
  readonly connectFailure?: boolean
}

const DEFAULT_CONSECUTIVE_5XX = 5
const DEFAULT_MAX_EJECTION_TIME_MS = 300_000
const GATEWAY_ERRORS = new Set([502, 503, 504])

export class OutlierDetector {
  /** Ejections so far (a counter for metrics). */
  ejections = 0
  /** Ejections refused by maxEjectionPercent (Envoy's ejections_overflow). */
  ejectionsOverflow = 0
  private readonly monitors = new Map<string, EndpointMonitor>()
  private readonly maxEjectionTime: number

  constructor (private readonly spec: OutlierDetectionSpec, private readonly clock: Clock = Date.now) {
    this.maxEjectionTime = Math.max(DEFAULT_MAX_EJECTION_TIME_MS, spec.baseEjectionTime)
  }

  /** Counts how a request to `endpointId` ended; may eject it. Outcomes without a status or connect failure count for nothing. */
  report (endpointId: string, outcome: RequestOutcome): void {
    const status = outcome.connectFailure === true ? 503 : outcome.status
    if (status === undefined) return
    const now = this.clock()
    const monitor = this.monitor(endpointId)
    // Answers to requests sent before the ejection change nothing.
    if (monitor.isEjected(now)) return
    if (monitor.count(status, this.thresholds())) this.tryEject(monitor, now)
  }

  isEjected (endpointId: string): boolean {
    return this.monitors.get(endpointId)?.isEjected(this.clock()) ?? false
  }

  /**
   * The endpoints not ejected now. Pass the Service's whole endpoint list: it is also the pool
   * maxEjectionPercent is counted against, and endpoints no longer in it are forgotten.
   */
  healthy<E extends Endpoint> (endpoints: readonly E[]): E[] {
    this.syncPool(endpoints)
    const now = this.clock()
    return endpoints.filter((endpoint) => this.monitors.get(endpoint.ip)?.isEjected(now) !== true)
  }

  /** Endpoints ejected right now (a gauge for metrics). */
  get ejectedCount (): number {
    const now = this.clock()
    let count = 0
    for (const monitor of this.monitors.values()) if (monitor.isEjected(now)) count++
    return count
  }

  private thresholds (): Thresholds {
    return {
      consecutive5xx: this.spec.consecutive5xxErrors ?? DEFAULT_CONSECUTIVE_5XX,
      consecutiveGateway: this.spec.consecutiveGatewayErrors ?? 0
    }
  }

  private tryEject (monitor: EndpointMonitor, now: number): void {
    if (!this.mayEjectAnother()) {
      this.ejectionsOverflow++
      return
    }
    monitor.eject(now, this.spec, this.maxEjectionTime)
    this.ejections++
  }

  private mayEjectAnother (): boolean {
    const percent = this.spec.maxEjectionPercent
    const pool = this.monitors.size
    const ejected = this.ejectedCount
    if (percent <= 0) return false
    if ((ejected + 1) * 100 <= percent * pool) return true
    return ejected === 0 && pool >= 2
  }

  private monitor (endpointId: string): EndpointMonitor {
    let monitor = this.monitors.get(endpointId)
    if (monitor === undefined) {
      monitor = new EndpointMonitor()
      this.monitors.set(endpointId, monitor)
    }
    return monitor
  }

  private syncPool (endpoints: readonly Endpoint[]): void {
    const current = new Set(endpoints.map((endpoint) => endpoint.ip))
    for (const id of this.monitors.keys()) if (!current.has(id)) this.monitors.delete(id)
    for (const id of current) this.monitor(id)
  }
}

interface Thresholds {
  /** 0 = this kind of detection is off. */
  readonly consecutive5xx: number
  readonly consecutiveGateway: number
}

/** One endpoint's error streaks and ejection history. */
class EndpointMonitor {
  private consecutive5xx = 0
  private consecutiveGateway = 0
  /** The multiplier of baseEjectionTime for the next ejection, before the +1. */
  private timesEjected = 0
  private ejectedUntil: number | undefined

  isEjected (now: number): boolean {
    return this.ejectedUntil !== undefined && now < this.ejectedUntil
  }

  /** Counts one answer; true when a streak just reached its threshold. */
  count (status: number, thresholds: Thresholds): boolean {
    if (status < 500 || status > 599) {
      this.resetStreaks()
      return false
    }
    this.consecutiveGateway = GATEWAY_ERRORS.has(status) ? this.consecutiveGateway + 1 : 0
    this.consecutive5xx++
    const reached = (streak: number, threshold: number): boolean => threshold > 0 && streak >= threshold
    const tripped = reached(this.consecutiveGateway, thresholds.consecutiveGateway) ||
      reached(this.consecutive5xx, thresholds.consecutive5xx)
    // As Envoy: a streak that reached its threshold starts over, whether or not the ejection
    // was allowed, so a refused ejection is retried only after another full streak.
    if (tripped) this.resetStreaks()
    return tripped
  }

  eject (now: number, spec: OutlierDetectionSpec, maxEjectionTime: number): void {
    const multiplier = this.decayedTimesEjected(now, spec.interval) + 1
    // Beyond the cap, a larger multiplier would only take longer to decay.
    this.timesEjected = Math.min(multiplier, Math.ceil(maxEjectionTime / spec.baseEjectionTime))
    this.ejectedUntil = now + Math.min(spec.baseEjectionTime * multiplier, maxEjectionTime)
  }

  /** timesEjected, less one for each full interval spent back in service since the last ejection ended. */
  private decayedTimesEjected (now: number, interval: number): number {
    if (this.ejectedUntil === undefined) return 0
    const healthyIntervals = Math.floor((now - this.ejectedUntil) / interval)
    return Math.max(0, this.timesEjected - healthyIntervals)
  }

  private resetStreaks (): void {
    this.consecutive5xx = 0
    this.consecutiveGateway = 0
  }
}
