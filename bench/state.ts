/**
 * bench/state: how the mesh model scales. Generates a mesh of 10,000 pods, 2,000 services and
 * 1,000 authorization policies, then reports validation and resolution time, heap, and the
 * cost of what a ztunnel does per connection: resolve the destination, find the source and
 * destination workloads, and decide.
 *
 *   npm run build && node --expose-gc dist/bench/state.js [--pods N --services N --policies N]
 */
import { parseArgs } from 'node:util'
import { performance } from 'node:perf_hooks'
import { cpus } from 'node:os'
import { validateResource } from '../policy/validate.js'
import { resolve } from '../policy/resolve.js'
import { MeshRegistry } from '../policy/registry.js'
import { principalOf } from '../policy/identity.js'
import type { Resource } from '../policy/resources.js'
import { DEFAULT_ROOT_NAMESPACE, DEFAULT_TRUST_DOMAIN } from '../policy/state.js'

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '10000' },
    services: { type: 'string', default: '2000' },
    policies: { type: 'string', default: '1000' },
    namespaces: { type: 'string', default: '50' },
    nodes: { type: 'string', default: '100' },
    lookups: { type: 'string', default: '1000000' }
  }
})
const size = {
  pods: Number(values.pods), services: Number(values.services), policies: Number(values.policies),
  namespaces: Number(values.namespaces), nodes: Number(values.nodes), lookups: Number(values.lookups)
}

const ip = (base: number, n: number): string => `${base}.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`
const ns = (i: number): string => `ns-${i % size.namespaces}`

/** Raw objects as `kubectl get -o yaml` would give them (the validator sees the real shapes). */
function generate (): unknown[] {
  const raw: unknown[] = []
  for (let i = 0; i < size.namespaces; i++) {
    raw.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns-${i}`, labels: { 'ambit.dev/dataplane-mode': 'ambient' } } })
  }
  for (let i = 0; i < size.nodes; i++) {
    raw.push({ apiVersion: 'v1', kind: 'Node', metadata: { name: `node-${i}` }, status: { addresses: [{ type: 'InternalIP', address: ip(172, i + 1) }] } })
  }
  const podsPerService = Math.max(1, Math.floor(size.pods / size.services))
  for (let i = 0; i < size.pods; i++) {
    const app = `app-${Math.floor(i / podsPerService) % size.services}`
    raw.push({
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name: `pod-${i}`, namespace: ns(Math.floor(i / podsPerService)), labels: { app, tier: i % 3 === 0 ? 'front' : 'back' } },
      spec: { nodeName: `node-${i % size.nodes}`, serviceAccountName: `sa-${app}`, containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }] }] },
      status: { phase: 'Running', podIP: ip(10, i + 1) }
    })
  }
  for (let i = 0; i < size.services; i++) {
    raw.push({
      apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${i}`, namespace: ns(i) },
      spec: { selector: { app: `app-${i}` }, clusterIP: ip(11, i + 1), ports: [{ name: 'http', port: 80, targetPort: 'http' }] }
    })
  }
  for (let i = 0; i < size.policies; i++) {
    const caller = `cluster.local/ns/${ns(i + 1)}/sa/sa-app-${(i + 1) % size.services}`
    raw.push({
      apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: `policy-${i}`, namespace: ns(i) },
      spec: i % 4 === 0
        ? { selector: { matchLabels: { app: `app-${i % size.services}` } }, action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['192.168.0.0/16'] } }] }] }
        : {
            selector: { matchLabels: { app: `app-${i % size.services}` } },
            action: 'ALLOW',
            rules: [{ from: [{ source: { principals: [caller, `cluster.local/ns/${ns(i)}/*`] } }], to: [{ operation: { ports: ['8080'] } }] }]
          }
    })
  }
  raw.push({
    apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'mesh-deny-legacy', namespace: DEFAULT_ROOT_NAMESPACE },
    spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['legacy'] } }] }] }
  })
  return raw
}

function time<T> (fn: () => T): { value: T, ms: number } {
  const start = performance.now()
  const value = fn()
  return { value, ms: performance.now() - start }
}

function heapMb (): number {
  globalThis.gc?.()
  return process.memoryUsage().heapUsed / 1024 / 1024
}

const raw = generate()
const heapBefore = heapMb()
const validated = time(() => raw.map((r, i) => validateResource(r, { file: '<generated>', document: i, object: '' }) as Resource))
const mesh = { trustDomain: DEFAULT_TRUST_DOMAIN, rootNamespace: DEFAULT_ROOT_NAMESPACE, trustBundle: [] }
const resolveRuns = [0, 1, 2].map(() => time(() => resolve(validated.value, mesh)))
const state = resolveRuns[resolveRuns.length - 1]!.value.state
const registryBuild = time(() => new MeshRegistry(state))
const registry = registryBuild.value
const heapAfter = heapMb()

// Per connection: (source IP, destination VIP:80) pairs chosen up front. The source principal
// comes from the peer certificate, read once per HBONE connection, so it is not counted here.
const workloads = Object.values(state.workloads)
const services = Object.values(state.services)
const pairs = Array.from({ length: 4096 }, (_, i) => {
  const source = workloads[(i * 7919) % workloads.length]!
  return { source: source.ip, principal: principalOf(source.spiffeId), vip: services[(i * 104729) % services.length]!.vip! }
})
let allowed = 0
const perConnection = (): void => {
  for (let i = 0; i < size.lookups; i++) {
    const pair = pairs[i & 4095]!
    const source = registry.workloadByIp(pair.source)!
    const target = registry.resolve(pair.vip, 80)
    if (target?.kind !== 'service') throw new Error('bench: a VIP did not resolve')
    const endpoint = target.service.endpoints[i % target.service.endpoints.length]!
    const destination = registry.workloadByIp(endpoint.ip)!
    const decision = registry.authorize(destination, {
      source: { principal: pair.principal, namespace: source.namespace, ip: source.ip },
      destination: { ip: endpoint.ip, port: endpoint.ports['80']! }
    })
    if (decision.allowed) allowed++
  }
}
time(perConnection) // warm up
allowed = 0
const lookups = time(perConnection)

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const report = {
  machine: `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`,
  mesh: `${workloads.length} workloads, ${services.length} services, ${Object.keys(state.authorizationPolicies).length} policies, ${Object.keys(state.nodes).length} nodes`,
  validateMs: Math.round(validated.ms),
  resolveMs: Math.round(median(resolveRuns.map((r) => r.ms))),
  registryBuildMs: Math.round(registryBuild.ms),
  heapMb: Math.round(heapAfter - heapBefore),
  lookupAndDecisionNs: Math.round((lookups.ms * 1e6) / size.lookups),
  allowedShare: Number((allowed / size.lookups).toFixed(3))
}
console.log(JSON.stringify(report, null, 2))
console.log(`\n| resolve (ms) | validate (ms) | registry build (ms) | heap (MB) | lookup + decision (ns) |\n| ---: | ---: | ---: | ---: | ---: |\n| ${report.resolveMs} | ${report.validateMs} | ${report.registryBuildMs} | ${report.heapMb} | ${report.lookupAndDecisionNs} |`)
