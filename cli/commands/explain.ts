import type { Command } from '../command.js'
import { FILE_FLAG, HELP_FLAG, STORE_FLAG, requiredFlag, stringFlag } from '../command.js'
import { MESH_FLAGS } from './control-flags.js'
import { loadMesh } from '../mesh-input.js'
import { MeshRegistry } from '../../policy/registry.js'
import { explain, type Explanation, type RouteVerdict } from '../../policy/explain.js'
import type { Decision } from '../../policy/authz.js'

export const explainCommand: Command = {
  name: 'explain',
  summary: 'say which rule allows or denies traffic between two workloads, and the way it takes',
  usage: 'ambit explain --from WORKLOAD --to SERVICE[:PORT] [--method M --path P] (-f PATH | --store URL)',
  flags: {
    from: { type: 'string', value: 'WORKLOAD', description: 'source: namespace/pod, a pod name or a pod IP' },
    to: { type: 'string', value: 'SERVICE[:PORT]', description: 'destination: service[.namespace][:port], namespace/service[:port] or IP:PORT' },
    method: { type: 'string', value: 'M', description: 'HTTP method, to evaluate L7 rules' },
    path: { type: 'string', value: 'P', description: 'HTTP path, to evaluate L7 rules' },
    file: FILE_FLAG,
    store: STORE_FLAG,
    ...MESH_FLAGS,
    help: HELP_FLAG
  },
  async run (args) {
    const from = requiredFlag(args, 'from')
    const to = requiredFlag(args, 'to')
    const method = stringFlag(args, 'method')
    const path = stringFlag(args, 'path')
    const http = method !== undefined || path !== undefined ? { method: method ?? 'GET', path: path ?? '/' } : undefined
    const registry = new MeshRegistry(await loadMesh(args))
    const explanation = explain(registry, { from, to, ...(http !== undefined && { http }) })
    console.log(render(explanation))
    return 0
  }
}

function render (e: Explanation): string {
  const lines = [
    `from:       ${e.source.key} on ${e.source.node} (${e.source.ip}), identity ${e.source.spiffeId}`,
    e.service !== undefined
      ? `to:         Service ${e.service.key} port ${e.port.port}${'appProtocol' in e.port ? ` (${e.port.appProtocol})` : ''}${e.service.vip !== undefined ? `, VIP ${e.service.vip}` : ''}`
      : `to:         ${e.endpoints[0]?.endpoint.workload ?? '?'} port ${e.port.port}`
  ]
  if (e.waypoint !== undefined) {
    lines.push(`waypoint:   ${e.waypoint.namespace}/${e.waypoint.name}${e.waypoint.state === undefined ? ' (MISSING: traffic is refused)' : `, identity ${e.waypoint.state.spiffeId}`}`)
    if (e.waypoint.decision !== undefined) lines.push(...decisionLines(e.waypoint.decision))
  }
  if (e.routing !== undefined) lines.push(...routingLines(e.routing))
  if (e.trafficPolicy !== undefined) lines.push(`traffic:    TrafficPolicy ${e.trafficPolicy}`)
  if (e.endpoints.length === 0) lines.push('endpoints:  none (nothing to connect to)')
  for (const ep of e.endpoints) {
    lines.push(`endpoint:   ${ep.endpoint.workload} ${ep.endpoint.ip}:${ep.targetPort} on ${ep.endpoint.node}`)
    lines.push(`  mTLS:     ${ep.mtls}${ep.workload !== undefined ? `, identity ${ep.workload.spiffeId}` : ''}`)
    if (ep.decision === undefined) {
      lines.push('  verdict:  ALLOW (outside the mesh: plain TCP, no policy)')
      continue
    }
    lines.push(...decisionLines(ep.decision))
  }
  lines.push(`result:     ${e.allowed ? 'ALLOWED' : 'DENIED'}`)
  return lines.join('\n')
}

function decisionLines (decision: Decision): string[] {
  return [
    ...decision.considered.map((c) => `  policy:   ${c.policy} ${c.action}: ${c.matchedRule === undefined ? 'no rule matched' : `rule ${c.matchedRule} matched`}`),
    `  verdict:  ${decision.allowed ? 'ALLOW' : 'DENY'}: ${decision.reason}`
  ]
}

function routingLines (routing: RouteVerdict): string[] {
  if (routing.attached.length === 0) return ['route:      none attached: the Service itself']
  if (routing.noMatch) return [`route:      no rule of ${routing.attached.join(', ')} matches: 404`]
  if (routing.matched === undefined) return [`routes:     ${routing.attached.join(', ')} (give --method/--path to see the rule taken)`]
  const total = routing.matched.backends.reduce((sum, b) => sum + b.weight, 0)
  const backends = routing.matched.backends.map((b) => `${b.name}${b.port !== undefined ? `:${b.port}` : ''} ${total === 0 ? 0 : Math.round(b.weight * 1000 / total) / 10}%`)
  return [`route:      ${routing.matched.route} rule ${routing.matched.rule} → ${backends.join(', ')}`]
}
