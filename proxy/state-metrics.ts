/** How fresh a proxy's mesh state is, as metrics: the same two gauges on every proxy. */
import { Gauge, type Registry } from 'prom-client'
import type { StateFollower } from '../control/follower.js'

export interface StateGauges {
  readonly stale: Gauge
  readonly revision: Gauge
}

export function stateGauges (registry: Registry): StateGauges {
  return {
    stale: new Gauge({ name: 'ambit_state_stale', help: '1 while the mesh state store is unreachable and the proxy serves its last state', registers: [registry] }),
    revision: new Gauge({ name: 'ambit_state_revision', help: 'Revision of the mesh state the proxy serves', registers: [registry] })
  }
}

/** Keeps the gauges in step with the follower. */
export function trackState (follower: StateFollower, gauges: StateGauges): void {
  gauges.stale.set(follower.stale ? 1 : 0)
  gauges.revision.set(follower.revision)
  follower.on('stale', () => gauges.stale.set(1))
  follower.on('fresh', () => gauges.stale.set(0))
  follower.on('update', (revision) => gauges.revision.set(revision))
}
