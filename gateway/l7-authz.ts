/**
 * The waypoint's L7 AuthorizationPolicy check for one request on a tunnel. The deciding rule
 * (and any AUDIT rule that matched) is counted in ambit_authorization_rule_hits_total.
 */
import { evaluatePolicies, type CompiledPolicy, type Decision } from '../policy/authz.js'
import { parseSpiffeId, principalOf } from '../policy/identity.js'
import type { RuleHits } from '../proxy/rule-hits.js'
import type { TunnelContext } from './http-ingress.js'

export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>

export interface L7Request {
  readonly method: string
  readonly path: string
  readonly headers: RequestHeaders
}

export function allowedAtWaypoint (policies: readonly CompiledPolicy[], tunnel: TunnelContext, request: L7Request, hits: RuleHits): boolean {
  if (policies.length === 0) return true
  const decision = decide(policies, tunnel, request)
  if (decision !== undefined) hits.record(decision)
  return decision?.allowed ?? false
}

/** The policies' decision; undefined when the peer is not a workload identity (never allowed). */
function decide (policies: readonly CompiledPolicy[], tunnel: TunnelContext, { method, path, headers }: L7Request): Decision | undefined {
  let peer: { principal: string, namespace: string }
  try {
    peer = { principal: principalOf(tunnel.peerSpiffeId), namespace: parseSpiffeId(tunnel.peerSpiffeId).namespace }
  } catch {
    return undefined
  }
  const host = headers.host
  return evaluatePolicies(policies, {
    source: { ...peer, ip: tunnel.sourceIp },
    destination: { ip: tunnel.service.vip ?? '', port: tunnel.port.port },
    http: { method, path, host: (Array.isArray(host) ? host[0] : host) ?? tunnel.service.hostnames[0] ?? '', headers }
  })
}
