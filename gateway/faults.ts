/**
 * Fault injection (TrafficPolicy `faultInjection`): delay and abort, each for its percentage of
 * requests (0..100, fractions allowed: 0.1 is one request in a thousand), drawn independently.
 * When both hit, the waypoint waits first and then aborts, as Envoy's fault filter does.
 */
import type { TrafficPolicySpec } from '../policy/resources.js'
import type { Random } from './random.js'

/** What to do to one request; an empty object means leave it alone. */
export interface FaultDecision {
  readonly delayMs?: number
  /** The HTTP status to answer with instead of forwarding. */
  readonly abort?: number
}

export function decideFault (spec: TrafficPolicySpec['faultInjection'], random: Random = Math.random): FaultDecision {
  const delay = spec?.delay
  const abort = spec?.abort
  return {
    ...(delay !== undefined && happens(delay.percentage, random) ? { delayMs: delay.fixedDelay } : {}),
    ...(abort !== undefined && happens(abort.percentage, random) ? { abort: abort.httpStatus } : {})
  }
}

/** random() is in [0, 1), so 100 always happens and 0 never does. */
function happens (percentage: number, random: Random): boolean {
  return random() * 100 < percentage
}
