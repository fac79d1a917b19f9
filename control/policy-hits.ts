/**
 * Which AuthorizationPolicy rules the traffic hits, from the proxies' own counts
 * (ambit_authorization_rule_hits_total: connections at the ztunnels, requests at the waypoints),
 * summed over every proxy read.
 */
import { RULE_HITS_METRIC } from '../proxy/rule-hits.js'
import type { MetricSample } from './prometheus-text.js'

/** Hits per rule, keyed by ruleId. */
export function ruleHitsOf (samples: readonly MetricSample[]): Map<string, number> {
  const hits = new Map<string, number>()
  for (const { name, labels, value } of samples) {
    if (name !== RULE_HITS_METRIC || labels.policy === undefined || labels.rule === undefined) continue
    const id = ruleId(labels.policy, Number(labels.rule))
    hits.set(id, (hits.get(id) ?? 0) + value)
  }
  return hits
}

export function ruleId (policy: string, rule: number): string {
  return `${policy}#${rule}`
}
