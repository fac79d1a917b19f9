import t from 'tap'
import { mtlsModeForPort, resolveMtls } from '../policy/peer-auth.js'
import { labelSelectorMatches, selectorMatches } from '../policy/selector.js'
import type { LabelSelector, Labels, MtlsMode, PeerAuthenticationResource } from '../policy/resources.js'
import type { MtlsState } from '../policy/state.js'

const ROOT = 'istio-system'

function pa (
  key: string,
  mode: MtlsMode | undefined,
  options: { selector?: Labels, ports?: Record<string, MtlsMode | undefined> } = {}
): PeerAuthenticationResource {
  const [namespace, name] = key.split('/')
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: { name, namespace, labels: {}, annotations: {} },
    selector: options.selector,
    mode,
    portLevelMtls: options.ports ?? {}
  }
}

const WEB = { namespace: 'shop', labels: { app: 'web', tier: 'front' } }

interface Case {
  name: string
  /** The Istio behaviour this case mirrors. */
  istio: string
  workload?: { namespace: string, labels: Labels }
  policies: PeerAuthenticationResource[]
  expect: MtlsState
}

const cases: Case[] = [
  {
    name: 'no policy',
    istio: 'without any PeerAuthentication the mode is PERMISSIVE',
    policies: [],
    expect: { mode: 'PERMISSIVE', ports: {} }
  },
  {
    name: 'mesh-wide',
    istio: 'a policy without selector in the root namespace applies to the whole mesh',
    policies: [pa(`${ROOT}/default`, 'STRICT')],
    expect: { mode: 'STRICT', ports: {}, policy: `${ROOT}/default` }
  },
  {
    name: 'namespace over mesh',
    istio: 'a namespace-wide policy overrides the mesh-wide one',
    policies: [pa(`${ROOT}/default`, 'STRICT'), pa('shop/default', 'PERMISSIVE')],
    expect: { mode: 'PERMISSIVE', ports: {}, policy: 'shop/default' }
  },
  {
    name: 'workload over namespace',
    istio: 'a workload-specific policy overrides the namespace-wide one',
    policies: [pa('shop/default', 'STRICT'), pa('shop/web', 'DISABLE', { selector: { app: 'web' } })],
    expect: { mode: 'DISABLE', ports: {}, policy: 'shop/web' }
  },
  {
    name: 'selector not matching',
    istio: 'a selector applies only to workloads carrying all its labels',
    policies: [pa('shop/default', 'STRICT'), pa('shop/api', 'DISABLE', { selector: { app: 'web', tier: 'back' } })],
    expect: { mode: 'STRICT', ports: {}, policy: 'shop/default' }
  },
  {
    name: 'other namespace',
    istio: 'namespace-wide and workload policies apply only in their own namespace',
    policies: [pa('ops/default', 'STRICT'), pa('ops/web', 'STRICT', { selector: { app: 'web' } })],
    expect: { mode: 'PERMISSIVE', ports: {} }
  },
  {
    name: 'UNSET namespace inherits mesh',
    istio: 'UNSET inherits from the parent: the namespace policy takes the mesh mode',
    policies: [pa(`${ROOT}/default`, 'STRICT'), pa('shop/default', undefined)],
    expect: { mode: 'STRICT', ports: {}, policy: `${ROOT}/default` }
  },
  {
    name: 'UNSET workload inherits namespace',
    istio: 'UNSET inherits from the parent: the workload policy takes the namespace mode',
    policies: [pa(`${ROOT}/default`, 'DISABLE'), pa('shop/default', 'STRICT'), pa('shop/web', undefined, { selector: { app: 'web' } })],
    expect: { mode: 'STRICT', ports: {}, policy: 'shop/default' }
  },
  {
    name: 'UNSET everywhere',
    istio: 'UNSET all the way up means PERMISSIVE',
    policies: [pa(`${ROOT}/default`, undefined), pa('shop/default', undefined)],
    expect: { mode: 'PERMISSIVE', ports: {} }
  },
  {
    name: 'empty selector is namespace-wide',
    istio: 'istiod treats a selector with no labels as no selector',
    policies: [pa(`${ROOT}/default`, 'PERMISSIVE'), pa('shop/all', 'STRICT', { selector: {} })],
    expect: { mode: 'STRICT', ports: {}, policy: 'shop/all' }
  },
  {
    name: 'selector in the root namespace is ignored',
    istio: 'istiod ignores workload selectors on root-namespace PeerAuthentications',
    workload: { namespace: ROOT, labels: { app: 'web' } },
    policies: [pa(`${ROOT}/default`, 'PERMISSIVE'), pa(`${ROOT}/web`, 'STRICT', { selector: { app: 'web' } })],
    expect: { mode: 'PERMISSIVE', ports: {}, policy: `${ROOT}/default` }
  },
  {
    name: 'workload in the root namespace',
    istio: 'for a workload in the root namespace, the root policy without selector is the mesh level',
    workload: { namespace: ROOT, labels: {} },
    policies: [pa(`${ROOT}/default`, 'STRICT')],
    expect: { mode: 'STRICT', ports: {}, policy: `${ROOT}/default` }
  },
  {
    name: 'two namespace-wide policies',
    istio: 'Istio keeps the oldest; without timestamps ambit keeps the first by name',
    policies: [pa('shop/zz', 'DISABLE'), pa('shop/aa', 'STRICT')],
    expect: { mode: 'STRICT', ports: {}, policy: 'shop/aa' }
  },
  {
    name: 'two workload policies, the first by name UNSET',
    istio: 'one policy is picked per level before UNSET inheritance is applied',
    policies: [pa('shop/default', 'DISABLE'), pa('shop/b', 'STRICT', { selector: { app: 'web' } }), pa('shop/a', undefined, { selector: { tier: 'front' } })],
    expect: { mode: 'DISABLE', ports: {}, policy: 'shop/default' }
  },
  {
    name: 'port-level on a workload policy',
    istio: 'portLevelMtls overrides the mode for a target port',
    policies: [pa('shop/web', 'STRICT', { selector: { app: 'web' }, ports: { 8080: 'PERMISSIVE', 9090: 'DISABLE' } })],
    expect: { mode: 'STRICT', ports: { 8080: 'PERMISSIVE', 9090: 'DISABLE' }, policy: 'shop/web' }
  },
  {
    name: 'UNSET port inherits the workload mode',
    istio: 'an UNSET port takes the resolved workload mode, itself possibly inherited',
    policies: [pa('shop/default', 'STRICT'), pa('shop/web', undefined, { selector: { app: 'web' }, ports: { 8080: undefined, 9090: 'DISABLE' } })],
    expect: { mode: 'STRICT', ports: { 8080: 'STRICT', 9090: 'DISABLE' }, policy: 'shop/default' }
  },
  {
    name: 'port-level on a namespace-wide policy',
    istio: 'portLevelMtls counts only on a policy with a workload selector',
    policies: [pa('shop/default', 'STRICT', { ports: { 8080: 'DISABLE' } })],
    expect: { mode: 'STRICT', ports: {}, policy: 'shop/default' }
  },
  {
    name: 'port-level on a mesh-wide policy',
    istio: 'portLevelMtls counts only on a policy with a workload selector',
    policies: [pa(`${ROOT}/default`, 'STRICT', { ports: { 8080: 'DISABLE' } })],
    expect: { mode: 'STRICT', ports: {}, policy: `${ROOT}/default` }
  }
]

t.test('resolveMtls', async (t) => {
  for (const c of cases) {
    t.same(resolveMtls(c.workload ?? WEB, c.policies, ROOT), c.expect, `${c.name} (istio: ${c.istio})`)
  }
})

t.test('mtlsModeForPort', async (t) => {
  const state = resolveMtls(WEB, [
    pa('shop/default', 'STRICT'),
    pa('shop/web', undefined, { selector: { app: 'web' }, ports: { 8080: 'PERMISSIVE', 9090: undefined } })
  ], ROOT)
  const ports: [number, MtlsMode, string][] = [
    [8080, 'PERMISSIVE', 'a port-level override applies to its port'],
    [9090, 'STRICT', 'an UNSET port has the workload mode'],
    [443, 'STRICT', 'other ports have the workload mode']
  ]
  for (const [port, mode, istio] of ports) t.equal(mtlsModeForPort(state, port), mode, `port ${port} (istio: ${istio})`)
})

t.test('selectors', async (t) => {
  const labels = { app: 'web', tier: 'front' }
  const plain: [Labels | undefined, boolean, string][] = [
    [undefined, true, 'no selector selects every workload'],
    [{}, true, 'an empty selector selects every workload'],
    [{ app: 'web' }, true, 'a subset of the labels matches'],
    [{ app: 'web', tier: 'front' }, true, 'all labels match'],
    [{ app: 'web', tier: 'back' }, false, 'every label must match'],
    [{ zone: 'a' }, false, 'a missing label does not match']
  ]
  for (const [selector, expected, note] of plain) {
    t.equal(selectorMatches(selector, labels), expected, `selectorMatches ${JSON.stringify(selector)}: ${note}`)
  }

  const sel = (matchLabels: Labels, ...matchExpressions: LabelSelector['matchExpressions']): LabelSelector =>
    ({ matchLabels, matchExpressions })
  const full: [LabelSelector, boolean, string][] = [
    [sel({}), true, 'an empty LabelSelector selects everything'],
    [sel({ app: 'web' }, { key: 'tier', operator: 'In', values: ['front', 'edge'] }), true, 'In: value listed'],
    [sel({}, { key: 'tier', operator: 'In', values: ['back'] }), false, 'In: value not listed'],
    [sel({}, { key: 'zone', operator: 'In', values: ['a'] }), false, 'In: label absent'],
    [sel({}, { key: 'tier', operator: 'NotIn', values: ['back'] }), true, 'NotIn: value not listed'],
    [sel({}, { key: 'tier', operator: 'NotIn', values: ['front'] }), false, 'NotIn: value listed'],
    [sel({}, { key: 'zone', operator: 'NotIn', values: ['a'] }), true, 'NotIn: label absent matches'],
    [sel({}, { key: 'app', operator: 'Exists', values: [] }), true, 'Exists'],
    [sel({}, { key: 'zone', operator: 'Exists', values: [] }), false, 'Exists: absent'],
    [sel({}, { key: 'zone', operator: 'DoesNotExist', values: [] }), true, 'DoesNotExist'],
    [sel({}, { key: 'app', operator: 'DoesNotExist', values: [] }), false, 'DoesNotExist: present'],
    [sel({ app: 'api' }, { key: 'app', operator: 'Exists', values: [] }), false, 'matchLabels and expressions are AND-ed']
  ]
  for (const [selector, expected, note] of full) {
    t.equal(labelSelectorMatches(selector, labels), expected, `labelSelectorMatches: ${note}`)
  }
})
