/**
 * The controller's Prometheus metrics (served on its status port, 15014): how far the mesh
 * state has got, how long resolving takes, how often a new state is committed, and the
 * Node.js process metrics.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { Controller } from './controller.js'
import { registerProcessMetrics } from '../proxy/process-metrics.js'

// Resolving a small mesh takes well under a millisecond; a large cluster's may take seconds.
const RESOLVE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

/** A registry fed by the controller's events from now on. */
export function controllerMetrics (controller: Controller): Registry {
  const registry = new Registry()
  registerProcessMetrics(registry)
  const revision = new Gauge({ name: 'ambit_controller_state_revision', help: 'Revision of the last mesh state committed to the store', registers: [registry] })
  const resolveDuration = new Histogram({
    name: 'ambit_controller_resolve_duration_seconds', help: 'Time to resolve the resources into a mesh state', buckets: RESOLVE_BUCKETS, registers: [registry]
  })
  const commits = new Counter({ name: 'ambit_controller_commits_total', help: 'Mesh states committed to the store', registers: [registry] })
  controller.on('resolved', (seconds) => resolveDuration.observe(seconds))
  controller.on('state', (_state, committed) => {
    revision.set(committed)
    commits.inc()
  })
  return registry
}
