/** Node.js process metrics from prom-client, named so `promtool check metrics` accepts them. */
import { collectDefaultMetrics, type Registry } from 'prom-client'

// prom-client names three gauges `*_total`, which promtool rejects (only counters may end in
// _total); their per-type twins without the suffix stay.
const MISNAMED_DEFAULT_GAUGES = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

export function registerProcessMetrics (registry: Registry): void {
  collectDefaultMetrics({ register: registry })
  for (const name of MISNAMED_DEFAULT_GAUGES) registry.removeSingleMetric(name)
}
