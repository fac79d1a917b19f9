/**
 * Traffic splitting: which of a rule's backendRefs takes a request, in proportion to the weights
 * (Gateway API HTTPBackendRef.weight; validation defaults it to 1).
 */
import type { BackendRef } from '../policy/resources.js'
import type { Random } from './random.js'

/**
 * A backend drawn with probability weight / sum of weights; a weight of 0 is never drawn.
 * undefined when there is nothing to draw (no backendRefs, or every weight 0): the spec's answer
 * to a request for such a rule is a 500 (UNAVAILABLE for gRPC).
 */
export function chooseBackend<B extends Pick<BackendRef, 'weight'>> (backendRefs: readonly B[], random: Random = Math.random): B | undefined {
  let total = 0
  for (const ref of backendRefs) total += ref.weight
  if (total === 0) return undefined
  const draw = random() * total
  let cumulative = 0
  for (const ref of backendRefs) {
    cumulative += ref.weight
    if (draw < cumulative) return ref
  }
  // Only reached if `random` returned 1 or more; Math.random never does.
  return backendRefs.findLast((ref) => ref.weight > 0)
}
