/**
 * Which AuthorizationPolicy rules the observed traffic hits. The proxies count calls per
 * edge, not per rule, so each edge's calls are credited to the rules that decide it, found
 * by evaluating the policies as `ambit explain` does (at L4: rules on paths or methods are not
 * told apart). AUDIT rules that match are credited too.
 */
import { explain } from '../policy/explain.js'
import type { Decision } from '../policy/authz.js'
import type { MeshRegistry } from '../policy/registry.js'

export interface EdgeCount {
  /** 'namespace/name' of the calling workload. */
  readonly source: string
  /** Key of the Service called. */
  readonly service: string
  /** Calls counted so far. */
  readonly total: number
}

/** Calls per rule, keyed 'namespace/name#rule'. */
export function policyHits (registry: MeshRegistry, edges: readonly EdgeCount[]): Map<string, number> {
  const hits = new Map<string, number>()
  for (const edge of edges) {
    if (edge.total <= 0) continue
    for (const rule of rulesDeciding(registry, edge)) hits.set(rule, (hits.get(rule) ?? 0) + edge.total)
  }
  return hits
}

export function ruleId (policy: string, rule: number): string {
  return `${policy}#${rule}`
}

function rulesDeciding (registry: MeshRegistry, edge: EdgeCount): Set<string> {
  const rules = new Set<string>()
  let decisions: (Decision | undefined)[]
  try {
    const explanation = explain(registry, { from: edge.source, to: edge.service })
    decisions = [explanation.waypoint?.decision, ...explanation.endpoints.map((e) => e.decision)]
  } catch {
    return rules // a caller that is not a workload (a waypoint, an unknown one): no rule to credit
  }
  for (const decision of decisions) {
    if (decision === undefined) continue
    if (decision.policy !== undefined && decision.rule !== undefined) rules.add(ruleId(decision.policy, decision.rule))
    for (const audit of decision.audit) rules.add(ruleId(audit.policy, audit.rule))
  }
  return rules
}
