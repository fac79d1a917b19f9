import type { Command } from '../command.js'
import { FILE_FLAG, HELP_FLAG, STORE_FLAG, stringFlag } from '../command.js'
import { loadMesh } from '../mesh-input.js'
import { renderTable } from '../table.js'
import { ConfigError } from '../../policy/errors.js'
import type { MeshState } from '../../policy/state.js'

interface View<T> {
  readonly header: readonly string[]
  items (state: MeshState): T[]
  row (item: T): string[]
}

// Each view is typed on its own item; the table only needs them as View<unknown>.
const view = <T>(v: View<T>): View<unknown> => v as View<unknown>

const selectorText = (labels: Readonly<Record<string, string>>): string =>
  Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',')

const VIEWS: Readonly<Record<string, View<unknown>>> = {
  nodes: view({
    header: ['NAME', 'ADDRESS'],
    items: (s) => Object.values(s.nodes),
    row: (n) => [n.name, n.address]
  }),
  workloads: view({
    header: ['NAMESPACE', 'NAME', 'NODE', 'IP', 'IDENTITY', 'MTLS', 'POLICIES'],
    items: (s) => Object.values(s.workloads),
    row: (w) => [w.namespace, w.name, w.node, w.ip, w.spiffeId, w.mtls.mode, w.policies.join(',') || '-']
  }),
  services: view({
    header: ['NAMESPACE', 'NAME', 'VIP', 'PORTS', 'ENDPOINTS', 'WAYPOINT'],
    items: (s) => Object.values(s.services),
    row: (svc) => [
      svc.namespace, svc.name, svc.vip ?? '-',
      svc.ports.map((p) => `${p.port}/${p.appProtocol}`).join(','),
      svc.endpoints.map((e) => e.ip).join(',') || '-',
      svc.waypoint?.name ?? '-']
  }),
  policies: view({
    header: ['NAMESPACE', 'NAME', 'ACTION', 'APPLIES TO', 'RULES'],
    items: (s) => Object.values(s.authorizationPolicies),
    row: (p) => [
      p.metadata.namespace, p.metadata.name, p.action,
      p.targetRefs.length > 0
        ? p.targetRefs.map((r) => `${r.kind}/${r.name}`).join(',')
        : p.selector !== undefined ? selectorText(p.selector) : '(namespace)',
      String(p.rules.length)]
  }),
  waypoints: view({
    header: ['NAMESPACE', 'NAME', 'IDENTITY', 'INSTANCES'],
    items: (s) => Object.values(s.waypoints),
    row: (w) => [w.namespace, w.name, w.spiffeId, w.instances.map((i) => `${i.ip}@${i.node}`).join(',') || '-']
  }),
  routes: view({
    header: ['KIND', 'NAMESPACE', 'NAME', 'PARENTS', 'RULES'],
    items: (s) => [...Object.values(s.httpRoutes), ...Object.values(s.grpcRoutes)],
    row: (r) => [r.kind, r.metadata.namespace, r.metadata.name, r.parentRefs.map((p) => `${p.kind}/${p.name}`).join(','), String(r.rules.length)]
  })
}

const ALIASES: Readonly<Record<string, string>> = {
  node: 'nodes', workload: 'workloads', pods: 'workloads', service: 'services', svc: 'services',
  policy: 'policies', authorizationpolicies: 'policies', waypoint: 'waypoints', route: 'routes'
}

export const getCommand: Command = {
  name: 'get',
  summary: `show the resolved mesh: ${Object.keys(VIEWS).join(', ')}`,
  usage: `ambit get ${Object.keys(VIEWS).join('|')} (-f PATH | --store URL) [-o table|json]`,
  positionals: { min: 1, max: 1 },
  flags: {
    file: FILE_FLAG,
    store: STORE_FLAG,
    output: { type: 'string', short: 'o', value: 'FORMAT', default: 'table', description: 'table or json' },
    help: HELP_FLAG
  },
  async run (args) {
    const asked = args.positionals[0]!.toLowerCase()
    const kind = ALIASES[asked] ?? asked
    const chosen = VIEWS[kind]
    if (chosen === undefined) throw new ConfigError(`unknown kind "${asked}"; one of ${Object.keys(VIEWS).join(', ')}`)
    const format = stringFlag(args, 'output')
    if (format !== 'table' && format !== 'json') throw new ConfigError(`-o must be table or json, got "${format}"`)
    const state = await loadMesh(args)
    const items = chosen.items(state)
    console.log(format === 'json' ? JSON.stringify(items, null, 2) : renderTable(chosen.header, items.map((i) => chosen.row(i))))
    return 0
  }
}
