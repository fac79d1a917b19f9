/** The waypoint's L7 AuthorizationPolicy check for one request on a tunnel. */
import { evaluatePolicies, type CompiledPolicy } from '../policy/authz.js'
import { parseSpiffeId, principalOf } from '../policy/identity.js'
import type { TunnelContext } from './http-ingress.js'

export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>

export function allowedAtWaypoint (policies: readonly CompiledPolicy[], tunnel: TunnelContext, method: string, path: string, headers: RequestHeaders): boolean {
  if (policies.length === 0) return true
  let peer: { principal: string, namespace: string }
  try {
    peer = { principal: principalOf(tunnel.peerSpiffeId), namespace: parseSpiffeId(tunnel.peerSpiffeId).namespace }
  } catch {
    return false
  }
  const host = headers.host
  return evaluatePolicies(policies, {
    source: { ...peer, ip: tunnel.sourceIp },
    destination: { ip: tunnel.service.vip ?? '', port: tunnel.port.port },
    http: { method, path, host: (Array.isArray(host) ? host[0] : host) ?? tunnel.service.hostnames[0] ?? '', headers }
  }).allowed
}
