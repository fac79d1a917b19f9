/**
 * How often each AuthorizationPolicy rule decides traffic (or, for AUDIT rules, matches it):
 * ambit_authorization_rule_hits_total{policy, rule, action}. The ztunnels count connections,
 * the waypoints requests; the dashboard shows the sums next to each rule.
 */
import { Counter, type Registry } from 'prom-client'
import type { Decision } from '../policy/authz.js'

export const RULE_HITS_METRIC = 'ambit_authorization_rule_hits_total'

export class RuleHits {
  private readonly counter: Counter<'policy' | 'rule' | 'action'>

  constructor (registry: Registry) {
    this.counter = new Counter({
      name: RULE_HITS_METRIC,
      help: 'Connections (ztunnel) or requests (waypoint) decided by an AuthorizationPolicy rule, or matched by an AUDIT rule',
      labelNames: ['policy', 'rule', 'action'],
      registers: [registry]
    })
  }

  /** The deciding rule, if a rule decided (not the default allow), and every AUDIT rule that matched. */
  record (decision: Pick<Decision, 'policy' | 'rule' | 'action' | 'audit'>): void {
    if (decision.policy !== undefined && decision.rule !== undefined && decision.action !== undefined) {
      this.counter.inc({ policy: decision.policy, rule: String(decision.rule), action: decision.action })
    }
    for (const audit of decision.audit) this.counter.inc({ policy: audit.policy, rule: String(audit.rule), action: 'AUDIT' })
  }
}
