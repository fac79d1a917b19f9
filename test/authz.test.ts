import t, { type Test } from 'tap'
import {
  compilePolicy, evaluatePolicies, type AuthzRequest, type CompiledPolicy, type Decision, type HttpAttributes
} from '../policy/authz.js'
import { cidrContains, parseCidr, parseIp } from '../policy/match.js'
import type {
  AuthorizationAction, AuthorizationCondition, AuthorizationOperation, AuthorizationPolicyResource,
  AuthorizationSource, ObjectRef
} from '../policy/resources.js'

// ---- builders ----

interface RuleSpec {
  from?: AuthorizationSource[]
  to?: AuthorizationOperation[]
  when?: AuthorizationCondition[]
}

function policy (
  key: string, action: AuthorizationAction, rules: RuleSpec[], targetRefs: ObjectRef[] = []
): CompiledPolicy {
  const [namespace, name] = key.split('/')
  const resource: AuthorizationPolicyResource = {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace, labels: {}, annotations: {} },
    targetRefs,
    action,
    rules: rules.map((r) => ({ from: r.from ?? [], to: r.to ?? [], when: r.when ?? [] }))
  }
  return compilePolicy(key, resource)
}

const allow = (key: string, ...rules: RuleSpec[]): CompiledPolicy => policy(key, 'ALLOW', rules)
const deny = (key: string, ...rules: RuleSpec[]): CompiledPolicy => policy(key, 'DENY', rules)
const audit = (key: string, ...rules: RuleSpec[]): CompiledPolicy => policy(key, 'AUDIT', rules)

const WEB = 'cluster.local/ns/shop/sa/web'

/** A connection from shop/web (10.0.0.5) to 10.0.1.7:8080, with overrides. */
function conn (overrides: {
  principal?: string | null
  namespace?: string | null
  ip?: string
  port?: number
  destinationIp?: string
  sni?: string
  http?: Partial<HttpAttributes>
} = {}): AuthzRequest {
  const principal = overrides.principal === null ? undefined : overrides.principal ?? WEB
  const namespace = overrides.namespace === null ? undefined : overrides.namespace ?? 'shop'
  const http = overrides.http === undefined
    ? undefined
    : { method: 'GET', path: '/', host: 'api.shop', headers: {}, ...overrides.http }
  return {
    source: { principal, namespace, ip: overrides.ip ?? '10.0.0.5' },
    destination: { ip: overrides.destinationIp ?? '10.0.1.7', port: overrides.port ?? 8080 },
    sni: overrides.sni,
    http
  }
}

const plaintext = (): AuthzRequest => conn({ principal: null, namespace: null })

interface Expect {
  allowed: boolean
  policy?: string
  rule?: number
  audit?: { policy: string, rule: number }[]
  reason?: RegExp
}

interface Case {
  name: string
  /** The Istio behaviour this case mirrors. */
  istio: string
  policies: CompiledPolicy[]
  request: AuthzRequest
  expect: Expect
}

function check (t: Test, c: Case): Decision {
  const d = evaluatePolicies(c.policies, c.request)
  t.equal(d.allowed, c.expect.allowed, `${c.name}: allowed (${d.reason})`)
  t.equal(d.policy, c.expect.policy, `${c.name}: deciding policy`)
  t.equal(d.rule, c.expect.rule, `${c.name}: deciding rule`)
  t.same(d.audit, c.expect.audit ?? [], `${c.name}: audit`)
  if (c.expect.reason !== undefined) t.match(d.reason, c.expect.reason, `${c.name}: reason`)
  t.notOk(d.reason.includes('\n'), `${c.name}: reason is one line`)
  t.equal(d.considered.length, c.policies.length, `${c.name}: every policy considered`)
  return d
}

function runCases (t: Test, cases: Case[]): void {
  for (const c of cases) check(t, c)
}

const ALL: RuleSpec = {}

// ---- cases ----

t.test('action ordering: DENY, then ALLOW, AUDIT never decides', async (t) => {
  runCases(t, [
    {
      name: 'no policy',
      istio: 'no policy selects the workload: allow',
      policies: [],
      request: conn(),
      expect: { allowed: true, reason: /no ALLOW policy applies/ }
    },
    {
      name: 'DENY wins over ALLOW',
      istio: 'DENY policies are evaluated first; a matching DENY denies even if an ALLOW matches',
      policies: [allow('shop/allow-all', ALL), deny('shop/deny-web', { from: [{ principals: [WEB] }] })],
      request: conn(),
      expect: { allowed: false, policy: 'shop/deny-web', rule: 0, reason: /denied by DENY policy shop\/deny-web rule 0$/ }
    },
    {
      name: 'DENY not matching, only DENY policies',
      istio: 'DENY policies do not make an allow-list: no ALLOW policy applies, so allow',
      policies: [deny('shop/deny-admin', { from: [{ principals: ['cluster.local/ns/shop/sa/admin'] }] })],
      request: conn(),
      expect: { allowed: true, reason: /no ALLOW policy applies/ }
    },
    {
      name: 'AUDIT matches, no ALLOW',
      istio: 'AUDIT only marks the request for auditing; the verdict is unchanged (default allow)',
      policies: [audit('shop/audit-web', { from: [{ principals: [WEB] }] })],
      request: conn(),
      expect: { allowed: true, audit: [{ policy: 'shop/audit-web', rule: 0 }] }
    },
    {
      name: 'AUDIT matches, allow-list denies',
      istio: 'AUDIT does not turn an allow-list denial into an allow',
      policies: [
        audit('shop/audit-all', { from: [{ principals: ['*'] }] }, ALL),
        allow('shop/allow-admin', { from: [{ principals: ['cluster.local/ns/shop/sa/admin'] }] })
      ],
      request: conn(),
      expect: { allowed: false, audit: [{ policy: 'shop/audit-all', rule: 0 }], reason: /shop\/allow-admin/ }
    },
    {
      name: 'AUDIT alongside a DENY',
      istio: 'AUDIT matches are recorded whatever the verdict',
      policies: [audit('shop/audit-all', ALL), deny('shop/deny-all', ALL)],
      request: conn(),
      expect: { allowed: false, policy: 'shop/deny-all', rule: 0, audit: [{ policy: 'shop/audit-all', rule: 0 }] }
    },
    {
      name: 'first matching DENY in order, its first matching rule',
      istio: 'any matching DENY denies; ambit names the first one given and the rule that matched',
      policies: [
        deny('shop/a', { from: [{ namespaces: ['other'] }] }, { from: [{ namespaces: ['shop'] }] }),
        deny('shop/b', ALL)
      ],
      request: conn(),
      expect: { allowed: false, policy: 'shop/a', rule: 1 }
    },
    {
      name: 'ALLOW decided by its matching rule',
      istio: 'any matching ALLOW rule allows',
      policies: [
        allow('shop/x', { from: [{ namespaces: ['other'] }] }),
        allow('shop/y', { from: [{ namespaces: ['other'] }] }, { from: [{ namespaces: ['shop'] }] })
      ],
      request: conn(),
      expect: { allowed: true, policy: 'shop/y', rule: 1, reason: /allowed by ALLOW policy shop\/y rule 1/ }
    }
  ])
})

t.test('allow-list, allow-nothing, allow-all', async (t) => {
  runCases(t, [
    {
      name: 'allow-list denial lists the ALLOW policies',
      istio: 'once any ALLOW policy applies, a request must match one of them',
      policies: [
        allow('shop/allow-admin', { from: [{ principals: ['cluster.local/ns/shop/sa/admin'] }] }),
        allow('istio-system/allow-ops', { from: [{ namespaces: ['ops'] }] })
      ],
      request: conn(),
      expect: { allowed: false, reason: /^denied: no rule of the ALLOW policies shop\/allow-admin, istio-system\/allow-ops matches$/ }
    },
    {
      name: 'allow-nothing (spec: {})',
      istio: 'an ALLOW policy without rules matches nothing, so it denies everything',
      policies: [allow('shop/allow-nothing')],
      request: conn(),
      expect: { allowed: false, reason: /shop\/allow-nothing/ }
    },
    {
      name: 'DENY without rules',
      istio: 'a policy without rules matches nothing: a DENY without rules denies nothing',
      policies: [deny('shop/deny-nothing')],
      request: conn(),
      expect: { allowed: true }
    },
    {
      name: 'allow-all (rules: [{}])',
      istio: 'an empty rule matches every request',
      policies: [allow('shop/allow-all', ALL)],
      request: plaintext(),
      expect: { allowed: true, policy: 'shop/allow-all', rule: 0 }
    },
    {
      name: 'allow-nothing next to allow-all',
      istio: 'ALLOW policies are OR-ed: one matching is enough',
      policies: [allow('shop/allow-nothing'), allow('shop/allow-all', ALL)],
      request: conn(),
      expect: { allowed: true, policy: 'shop/allow-all', rule: 0 }
    },
    {
      name: 'root-namespace policy',
      istio: 'a policy in the root namespace applies mesh-wide; once selected it is evaluated like any other',
      policies: [allow('istio-system/mesh-allow', { from: [{ namespaces: ['shop'] }] })],
      request: conn(),
      expect: { allowed: true, policy: 'istio-system/mesh-allow', rule: 0 }
    },
    {
      name: 'policy attached by targetRefs',
      istio: 'a policy reached through targetRefs is evaluated like a selector policy',
      policies: [policy('shop/by-ref', 'DENY', [{ from: [{ namespaces: ['shop'] }] }],
        [{ group: '', kind: 'Service', name: 'api' }])],
      request: conn(),
      expect: { allowed: false, policy: 'shop/by-ref', rule: 0 }
    }
  ])
})

t.test('principals and namespaces', async (t) => {
  const allowPrincipal = (p: string): CompiledPolicy => allow('shop/p', { from: [{ principals: [p] }] })
  runCases(t, [
    {
      name: 'exact principal',
      istio: 'principals match the peer identity without spiffe://',
      policies: [allowPrincipal(WEB)],
      request: conn(),
      expect: { allowed: true, policy: 'shop/p', rule: 0 }
    },
    {
      name: 'full SPIFFE URI from the caller',
      istio: 'principal values never include spiffe://; a caller passing the full URI is normalised',
      policies: [allowPrincipal(WEB)],
      request: conn({ principal: `spiffe://${WEB}` }),
      expect: { allowed: true, policy: 'shop/p', rule: 0 }
    },
    {
      name: 'other principal',
      istio: 'exact match only',
      policies: [allowPrincipal('cluster.local/ns/shop/sa/webx')],
      request: conn(),
      expect: { allowed: false }
    },
    {
      name: 'prefix principal',
      istio: '"abc*" is a prefix match',
      policies: [allowPrincipal('cluster.local/ns/shop/*')],
      request: conn(),
      expect: { allowed: true, policy: 'shop/p', rule: 0 }
    },
    {
      name: 'prefix principal, other namespace',
      istio: '"abc*" is a prefix match',
      policies: [allowPrincipal('cluster.local/ns/shop/*')],
      request: conn({ principal: 'cluster.local/ns/shopping/sa/web' }),
      expect: { allowed: false }
    },
    {
      name: 'suffix principal',
      istio: '"*abc" is a suffix match',
      policies: [allowPrincipal('*/sa/web')],
      request: conn({ principal: 'cluster.local/ns/other/sa/web' }),
      expect: { allowed: true, policy: 'shop/p', rule: 0 }
    },
    {
      name: 'any principal, authenticated',
      istio: '"*" matches any non-empty value: any authenticated peer',
      policies: [allowPrincipal('*')],
      request: conn(),
      expect: { allowed: true, policy: 'shop/p', rule: 0 }
    },
    {
      name: 'any principal, plaintext',
      istio: '"*" requires a principal: plaintext peers have none',
      policies: [allowPrincipal('*')],
      request: plaintext(),
      expect: { allowed: false }
    },
    {
      name: 'notPrincipals excludes',
      istio: 'notPrincipals: the value must match none of them',
      policies: [allow('shop/p', { from: [{ notPrincipals: ['*/sa/web'] }] })],
      request: conn(),
      expect: { allowed: false }
    },
    {
      name: 'notPrincipals lets others in',
      istio: 'notPrincipals: the value must match none of them',
      policies: [allow('shop/p', { from: [{ notPrincipals: ['*/sa/web'] }] })],
      request: conn({ principal: 'cluster.local/ns/shop/sa/api' }),
      expect: { allowed: true, policy: 'shop/p', rule: 0 }
    },
    {
      name: 'DENY notPrincipals "*" catches plaintext',
      istio: 'the documented "deny requests without mTLS": an absent principal matches none of the not-values',
      policies: [deny('shop/require-mtls', { from: [{ notPrincipals: ['*'] }] })],
      request: plaintext(),
      expect: { allowed: false, policy: 'shop/require-mtls', rule: 0 }
    },
    {
      name: 'DENY notPrincipals "*" spares mTLS peers',
      istio: 'an authenticated principal matches "*"',
      policies: [deny('shop/require-mtls', { from: [{ notPrincipals: ['*'] }] })],
      request: conn(),
      expect: { allowed: true }
    },
    {
      name: 'namespaces exact',
      istio: 'namespaces match the peer identity namespace',
      policies: [allow('shop/n', { from: [{ namespaces: ['shop'] }] })],
      request: conn(),
      expect: { allowed: true, policy: 'shop/n', rule: 0 }
    },
    {
      name: 'namespaces prefix',
      istio: 'namespaces use the same string match as principals',
      policies: [allow('shop/n', { from: [{ namespaces: ['sh*'] }] })],
      request: conn(),
      expect: { allowed: true, policy: 'shop/n', rule: 0 }
    },
    {
      name: 'namespaces, plaintext peer',
      istio: 'a plaintext peer has no namespace: namespaces never match it',
      policies: [allow('shop/n', { from: [{ namespaces: ['*'] }] })],
      request: plaintext(),
      expect: { allowed: false }
    },
    {
      name: 'notNamespaces',
      istio: 'notNamespaces: the namespace must match none of them',
      policies: [deny('shop/n', { from: [{ notNamespaces: ['shop', 'ops'] }] })],
      request: conn({ namespace: 'ops' }),
      expect: { allowed: true }
    },
    {
      name: 'notNamespaces, outsider',
      istio: 'notNamespaces: the namespace must match none of them',
      policies: [deny('shop/n', { from: [{ notNamespaces: ['shop', 'ops'] }] })],
      request: conn({ namespace: 'evil', principal: 'cluster.local/ns/evil/sa/x' }),
      expect: { allowed: false, policy: 'shop/n', rule: 0 }
    },
    {
      name: 'fields of one source are AND-ed',
      istio: 'within a source every field must match',
      policies: [allow('shop/and', { from: [{ principals: [WEB], namespaces: ['other'] }] })],
      request: conn(),
      expect: { allowed: false }
    },
    {
      name: 'sources are OR-ed',
      istio: 'a rule matches if any source in from matches',
      policies: [allow('shop/or', { from: [{ namespaces: ['other'] }, { principals: [WEB] }] })],
      request: conn(),
      expect: { allowed: true, policy: 'shop/or', rule: 0 }
    },
    {
      name: 'from, to and when are AND-ed',
      istio: 'a rule needs from, to and when to all match',
      policies: [allow('shop/r', { from: [{ principals: [WEB] }], to: [{ ports: ['9090'] }] })],
      request: conn(),
      expect: { allowed: false }
    },
    {
      name: 'values within a field are OR-ed',
      istio: 'a field matches if any of its values does',
      policies: [allow('shop/r', { from: [{ principals: ['cluster.local/ns/a/sa/b', WEB] }] })],
      request: conn(),
      expect: { allowed: true, policy: 'shop/r', rule: 0 }
    }
  ])
})

t.test('ipBlocks and ports', async (t) => {
  const fromBlocks = (ipBlocks: string[]): CompiledPolicy => allow('shop/ip', { from: [{ ipBlocks }] })
  runCases(t, [
    {
      name: 'IPv4 CIDR',
      istio: 'ipBlocks take CIDR blocks matched against the source address',
      policies: [fromBlocks(['10.0.0.0/24'])],
      request: conn(),
      expect: { allowed: true, policy: 'shop/ip', rule: 0 }
    },
    {
      name: 'IPv4 CIDR, outside',
      istio: 'ipBlocks take CIDR blocks matched against the source address',
      policies: [fromBlocks(['10.0.0.0/30'])],
      request: conn(),
      expect: { allowed: false }
    },
    {
      name: 'IPv4 single address',
      istio: 'a single address is a /32',
      policies: [fromBlocks(['10.0.0.5'])],
      request: conn(),
      expect: { allowed: true, policy: 'shop/ip', rule: 0 }
    },
    {
      name: 'IPv4 /0',
      istio: '0.0.0.0/0 covers every IPv4 source',
      policies: [fromBlocks(['0.0.0.0/0'])],
      request: conn({ ip: '203.0.113.9' }),
      expect: { allowed: true, policy: 'shop/ip', rule: 0 }
    },
    {
      name: 'IPv4-mapped IPv6 source',
      istio: 'an IPv4 peer seen on a dual-stack socket (::ffff:a.b.c.d) is that IPv4 address',
      policies: [fromBlocks(['10.0.0.0/24'])],
      request: conn({ ip: '::ffff:10.0.0.5' }),
      expect: { allowed: true, policy: 'shop/ip', rule: 0 }
    },
    {
      name: 'IPv6 CIDR',
      istio: 'ipBlocks accept IPv6 CIDR blocks',
      policies: [fromBlocks(['2001:db8::/32'])],
      request: conn({ ip: '2001:db8:1::5' }),
      expect: { allowed: true, policy: 'shop/ip', rule: 0 }
    },
    {
      name: 'IPv6 CIDR, outside',
      istio: 'ipBlocks accept IPv6 CIDR blocks',
      policies: [fromBlocks(['2001:db8::/32'])],
      request: conn({ ip: '2001:db9::5' }),
      expect: { allowed: false }
    },
    {
      name: 'IPv6 block does not cover IPv4',
      istio: 'address families never mix',
      policies: [fromBlocks(['::/0'])],
      request: conn(),
      expect: { allowed: false }
    },
    {
      name: 'IPv6 single address',
      istio: 'a single address is a /128',
      policies: [fromBlocks(['fd00::1'])],
      request: conn({ ip: 'fd00:0:0:0:0:0:0:1' }),
      expect: { allowed: true, policy: 'shop/ip', rule: 0 }
    },
    {
      name: 'notIpBlocks',
      istio: 'notIpBlocks: the source must be in none of the blocks',
      policies: [deny('shop/ip', { from: [{ notIpBlocks: ['10.0.0.0/8'] }] })],
      request: conn(),
      expect: { allowed: true }
    },
    {
      name: 'notIpBlocks, outsider',
      istio: 'notIpBlocks: the source must be in none of the blocks',
      policies: [deny('shop/ip', { from: [{ notIpBlocks: ['10.0.0.0/8'] }] })],
      request: conn({ ip: '192.168.1.1' }),
      expect: { allowed: false, policy: 'shop/ip', rule: 0 }
    },
    {
      name: 'remoteIpBlocks at L4',
      istio: 'remoteIpBlocks: without X-Forwarded-For the remote address is the peer address',
      policies: [allow('shop/ip', { from: [{ remoteIpBlocks: ['10.0.0.0/24'] }] })],
      request: conn(),
      expect: { allowed: true, policy: 'shop/ip', rule: 0 }
    },
    {
      name: 'ports',
      istio: 'ports match the destination port',
      policies: [allow('shop/port', { to: [{ ports: ['80', '8080'] }] })],
      request: conn(),
      expect: { allowed: true, policy: 'shop/port', rule: 0 }
    },
    {
      name: 'ports, other port',
      istio: 'ports match the destination port',
      policies: [allow('shop/port', { to: [{ ports: ['80'] }] })],
      request: conn(),
      expect: { allowed: false }
    },
    {
      name: 'notPorts',
      istio: 'notPorts: the port must be none of them',
      policies: [deny('shop/port', { to: [{ notPorts: ['8080'] }] })],
      request: conn(),
      expect: { allowed: true }
    },
    {
      name: 'notPorts, other port',
      istio: 'notPorts: the port must be none of them',
      policies: [deny('shop/port', { to: [{ notPorts: ['8080'] }] })],
      request: conn({ port: 9090 }),
      expect: { allowed: false, policy: 'shop/port', rule: 0 }
    },
    {
      name: 'operations are OR-ed',
      istio: 'a rule matches if any operation in to matches',
      policies: [allow('shop/port', { to: [{ ports: ['80'] }, { ports: ['8080'] }] })],
      request: conn(),
      expect: { allowed: true, policy: 'shop/port', rule: 0 }
    }
  ])
})

t.test('when conditions at L4', async (t) => {
  const allowWhen = (...when: AuthorizationCondition[]): CompiledPolicy => allow('shop/w', { when })
  runCases(t, [
    {
      name: 'source.ip',
      istio: 'source.ip takes addresses and CIDR blocks',
      policies: [allowWhen({ key: 'source.ip', values: ['10.0.0.0/16'] })],
      request: conn(),
      expect: { allowed: true, policy: 'shop/w', rule: 0 }
    },
    {
      name: 'source.ip notValues',
      istio: 'notValues: the value must match none of them',
      policies: [allowWhen({ key: 'source.ip', notValues: ['10.0.0.5'] })],
      request: conn(),
      expect: { allowed: false }
    },
    {
      name: 'remote.ip',
      istio: 'remote.ip is the peer address when there is no X-Forwarded-For',
      policies: [allowWhen({ key: 'remote.ip', values: ['10.0.0.5'] })],
      request: conn(),
      expect: { allowed: true, policy: 'shop/w', rule: 0 }
    },
    {
      name: 'source.namespace',
      istio: 'source.namespace uses the string match',
      policies: [allowWhen({ key: 'source.namespace', values: ['ops', 'sh*'] })],
      request: conn(),
      expect: { allowed: true, policy: 'shop/w', rule: 0 }
    },
    {
      name: 'source.principal',
      istio: 'source.principal uses the string match',
      policies: [allowWhen({ key: 'source.principal', values: ['*/sa/api'] })],
      request: conn(),
      expect: { allowed: false }
    },
    {
      name: 'destination.port',
      istio: 'destination.port matches the port',
      policies: [allowWhen({ key: 'destination.port', values: ['8080'] })],
      request: conn(),
      expect: { allowed: true, policy: 'shop/w', rule: 0 }
    },
    {
      name: 'destination.port notValues',
      istio: 'notValues: the value must match none of them',
      policies: [allowWhen({ key: 'destination.port', notValues: ['8080'] })],
      request: conn(),
      expect: { allowed: false }
    },
    {
      name: 'destination.ip',
      istio: 'destination.ip takes addresses and CIDR blocks',
      policies: [allowWhen({ key: 'destination.ip', values: ['10.0.1.0/24'] })],
      request: conn(),
      expect: { allowed: true, policy: 'shop/w', rule: 0 }
    },
    {
      name: 'connection.sni',
      istio: 'connection.sni is the TLS server name',
      policies: [allowWhen({ key: 'connection.sni', values: ['*.shop.svc.cluster.local'] })],
      request: conn({ sni: 'api.shop.svc.cluster.local' }),
      expect: { allowed: true, policy: 'shop/w', rule: 0 }
    },
    {
      name: 'connection.sni absent',
      istio: 'an absent value matches no value',
      policies: [allowWhen({ key: 'connection.sni', values: ['*'] })],
      request: conn(),
      expect: { allowed: false }
    },
    {
      name: 'conditions are AND-ed',
      istio: 'every condition of when must match',
      policies: [allowWhen({ key: 'source.namespace', values: ['shop'] }, { key: 'destination.port', values: ['80'] })],
      request: conn(),
      expect: { allowed: false }
    },
    {
      name: 'values and notValues together',
      istio: 'a condition needs one of values and none of notValues',
      policies: [allowWhen({ key: 'source.ip', values: ['10.0.0.0/24'], notValues: ['10.0.0.5'] })],
      request: conn(),
      expect: { allowed: false }
    }
  ])
})

t.test('L7 fields at L4 fail closed, and match at L7', async (t) => {
  const allowGet = allow('shop/allow-get', { to: [{ methods: ['GET'] }] })
  const denyDelete = deny('shop/deny-delete', { to: [{ methods: ['DELETE'] }] })
  const denyAdminFromWeb = deny('shop/deny-admin', { from: [{ principals: [WEB] }], to: [{ paths: ['/admin*'] }] })
  const denyAdminFromApi = deny('shop/deny-admin', { from: [{ principals: ['*/sa/api'] }], to: [{ paths: ['/admin*'] }] })
  const allowHeader = allow('shop/header', { when: [{ key: 'request.headers[X-User]', values: ['alice', 'bob*'] }] })
  runCases(t, [
    {
      name: 'ALLOW with methods at L4',
      istio: 'ztunnel omits ALLOW rules with HTTP attributes: they never match, so the allow-list denies',
      policies: [allowGet],
      request: conn(),
      expect: { allowed: false, reason: /rules with HTTP fields never match at L4/ }
    },
    {
      name: 'ALLOW rule mixing an L4 source with an L7 source',
      istio: 'ztunnel drops the whole ALLOW rule, even if another source of it is L4 only',
      policies: [allow('shop/mixed', { from: [{ principals: [WEB] }, { requestPrincipals: ['*'] }] })],
      request: conn(),
      expect: { allowed: false }
    },
    {
      name: 'ALLOW: L7 rule skipped, L4 rule still matches',
      istio: 'only the rules with HTTP attributes are omitted, the other rules of the policy apply',
      policies: [allow('shop/two', { to: [{ paths: ['/x'] }] }, { from: [{ namespaces: ['shop'] }] })],
      request: conn(),
      expect: { allowed: true, policy: 'shop/two', rule: 1 }
    },
    {
      name: 'DENY with only methods at L4',
      istio: 'ztunnel enforces a DENY without its HTTP attributes: a rule of only L7 fields denies everything',
      policies: [denyDelete],
      request: conn(),
      expect: { allowed: false, policy: 'shop/deny-delete', rule: 0, reason: /HTTP fields cannot be checked at L4/ }
    },
    {
      name: 'DENY with L4 and L7 parts, L4 part matches',
      istio: 'the L4 part still applies: the rule matches when the source matches',
      policies: [denyAdminFromWeb],
      request: conn(),
      expect: { allowed: false, policy: 'shop/deny-admin', rule: 0 }
    },
    {
      name: 'DENY with L4 and L7 parts, L4 part does not match',
      istio: 'the L4 part still applies: other sources are not denied',
      policies: [denyAdminFromApi],
      request: conn(),
      expect: { allowed: true }
    },
    {
      name: 'DENY with a request header condition at L4',
      istio: 'when keys on request.* are HTTP attributes: dropped from a DENY at L4',
      policies: [deny('shop/deny-header', { when: [{ key: 'request.headers[x-debug]', values: ['1'] }] })],
      request: conn(),
      expect: { allowed: false, policy: 'shop/deny-header', rule: 0 }
    },
    {
      name: 'AUDIT with L7 fields at L4',
      istio: 'AUDIT never changes the verdict; ambit records only what it could check',
      policies: [audit('shop/audit-get', { to: [{ methods: ['GET'] }] })],
      request: conn(),
      expect: { allowed: true, audit: [] }
    },
    {
      name: 'ALLOW methods at L7, GET',
      istio: 'methods match the HTTP method',
      policies: [allowGet],
      request: conn({ http: { method: 'GET' } }),
      expect: { allowed: true, policy: 'shop/allow-get', rule: 0 }
    },
    {
      name: 'ALLOW methods at L7, POST',
      istio: 'methods match the HTTP method',
      policies: [allowGet],
      request: conn({ http: { method: 'POST' } }),
      expect: { allowed: false, reason: /^denied: no rule of the ALLOW policies shop\/allow-get matches$/ }
    },
    {
      name: 'DENY methods at L7, GET',
      istio: 'at L7 a DENY is checked in full',
      policies: [denyDelete],
      request: conn({ http: { method: 'GET' } }),
      expect: { allowed: true }
    },
    {
      name: 'DENY methods at L7, DELETE',
      istio: 'at L7 a DENY is checked in full',
      policies: [denyDelete],
      request: conn({ http: { method: 'DELETE' } }),
      expect: { allowed: false, policy: 'shop/deny-delete', rule: 0, reason: /rule 0$/ }
    },
    {
      name: 'DENY paths at L7, matching prefix with a query',
      istio: 'paths match the path without its query string',
      policies: [denyAdminFromWeb],
      request: conn({ http: { path: '/admin/users?all=1' } }),
      expect: { allowed: false, policy: 'shop/deny-admin', rule: 0 }
    },
    {
      name: 'DENY paths at L7, other path',
      istio: 'paths use the string match',
      policies: [denyAdminFromWeb],
      request: conn({ http: { path: '/public/admin' } }),
      expect: { allowed: true }
    },
    {
      name: 'path template {*}',
      istio: '"{*}" in a path matches exactly one segment',
      policies: [allow('shop/tpl', { to: [{ paths: ['/api/{*}/items'] }] })],
      request: conn({ http: { path: '/api/v1/items' } }),
      expect: { allowed: true, policy: 'shop/tpl', rule: 0 }
    },
    {
      name: 'path template {*}, two segments',
      istio: '"{*}" in a path matches exactly one segment',
      policies: [allow('shop/tpl', { to: [{ paths: ['/api/{*}/items'] }] })],
      request: conn({ http: { path: '/api/v1/v2/items' } }),
      expect: { allowed: false }
    },
    {
      name: 'path template {**}',
      istio: '"{**}", last, matches the rest of the path',
      policies: [allow('shop/tpl', { to: [{ paths: ['/static/{**}'] }] })],
      request: conn({ http: { path: '/static/css/site.css' } }),
      expect: { allowed: true, policy: 'shop/tpl', rule: 0 }
    },
    {
      name: 'header condition at L7',
      istio: 'request.headers[name] matches the header value; names are case-insensitive',
      policies: [allowHeader],
      request: conn({ http: { headers: { 'x-user': 'bobby' } } }),
      expect: { allowed: true, policy: 'shop/header', rule: 0 }
    },
    {
      name: 'header condition at L7, absent header',
      istio: 'an absent header matches no value',
      policies: [allowHeader],
      request: conn({ http: {} }),
      expect: { allowed: false }
    },
    {
      name: 'header condition at L7, repeated header',
      istio: 'repeated header values are joined with "," as Envoy does',
      policies: [allow('shop/h', { when: [{ key: 'request.headers[x-tag]', values: ['a,b'] }] })],
      request: conn({ http: { headers: { 'x-tag': ['a', 'b'] } } }),
      expect: { allowed: true, policy: 'shop/h', rule: 0 }
    },
    {
      name: 'hosts are case-insensitive',
      istio: 'hosts: case-insensitive string match on the Host header',
      policies: [allow('shop/host', { to: [{ hosts: ['*.Example.com'] }] })],
      request: conn({ http: { host: 'API.example.COM' } }),
      expect: { allowed: true, policy: 'shop/host', rule: 0 }
    },
    {
      name: 'notHosts',
      istio: 'notHosts: the host must match none of them',
      policies: [deny('shop/host', { to: [{ notHosts: ['api.shop', 'api.shop:*'] }] })],
      request: conn({ http: { host: 'api.shop:8080' } }),
      expect: { allowed: true }
    },
    {
      name: 'requestPrincipals at L7',
      istio: 'requestPrincipals match the JWT principal iss/sub',
      policies: [allow('shop/jwt', { from: [{ requestPrincipals: ['https://issuer.example/*'] }] })],
      request: conn({ http: { requestPrincipal: 'https://issuer.example/alice' } }),
      expect: { allowed: true, policy: 'shop/jwt', rule: 0 }
    },
    {
      name: 'requestPrincipals at L7, no JWT',
      istio: 'a request without a JWT has no request principal',
      policies: [allow('shop/jwt', { from: [{ requestPrincipals: ['*'] }] })],
      request: conn({ http: {} }),
      expect: { allowed: false }
    },
    {
      name: 'notMethods and request.auth.principal',
      istio: 'not-fields and request.auth.principal at L7',
      policies: [deny('shop/ro', { to: [{ notMethods: ['GET', 'HEAD'] }], when: [{ key: 'request.auth.principal', notValues: ['*'] }] })],
      request: conn({ http: { method: 'POST' } }),
      expect: { allowed: false, policy: 'shop/ro', rule: 0, reason: /rule 0$/ }
    },
    {
      name: 'L4 fields still apply at L7',
      istio: 'an L7 evaluation checks the L4 fields too',
      policies: [allow('shop/both', { from: [{ namespaces: ['ops'] }], to: [{ methods: ['GET'] }] })],
      request: conn({ http: { method: 'GET' } }),
      expect: { allowed: false }
    }
  ])
})

t.test('values that cannot be checked fail closed', async (t) => {
  const badPort = allow('shop/bad-port', { to: [{ ports: ['http'] }] })
  t.same(badPort.problems, ["rules[0].to[0].operation.ports: invalid value 'http'"])
  const claims = allow('shop/claims', { when: [{ key: 'request.auth.claims[groups]', values: ['admin'] }] })
  t.same(claims.problems, ["rules[0].when[0]: key 'request.auth.claims[groups]' is not supported"])
  t.same(allow('shop/good', { from: [{ ipBlocks: ['10.0.0.0/8', '::1'] }] }).problems, [])

  runCases(t, [
    {
      name: 'ALLOW with an invalid port',
      istio: 'istiod drops ports it cannot parse; ambit fails closed instead: the ALLOW rule never matches',
      policies: [badPort],
      request: conn({ http: {} }),
      expect: { allowed: false, reason: /invalid or unsupported values never match/ }
    },
    {
      name: 'DENY with an invalid CIDR',
      istio: 'fail closed: a DENY rule counts what it cannot check as matched',
      policies: [deny('shop/bad-ip', { from: [{ notIpBlocks: ['10.0.0.0/33'] }] })],
      request: conn(),
      expect: { allowed: false, policy: 'shop/bad-ip', rule: 0, reason: /invalid or unsupported values count as matched/ }
    },
    {
      name: 'ALLOW on JWT claims at L7',
      istio: 'ambit does not evaluate JWT claims: the ALLOW rule never matches',
      policies: [claims],
      request: conn({ http: {} }),
      expect: { allowed: false }
    },
    {
      name: 'DENY on JWT claims at L7',
      istio: 'ambit does not evaluate JWT claims: the DENY rule counts them as matched',
      policies: [deny('shop/claims', { when: [{ key: 'request.auth.claims[groups]', values: ['guest'] }] })],
      request: conn({ http: {} }),
      expect: { allowed: false, policy: 'shop/claims', rule: 0 }
    }
  ])
})

t.test('considered lists every policy verdict', async (t) => {
  const d = evaluatePolicies([
    deny('shop/deny-ops', { from: [{ namespaces: ['ops'] }] }),
    audit('shop/audit', ALL),
    allow('shop/allow-a', { from: [{ namespaces: ['a'] }] }),
    allow('shop/allow-shop', { from: [{ namespaces: ['x'] }] }, { from: [{ namespaces: ['shop'] }] })
  ], conn())
  t.same(d.considered, [
    { policy: 'shop/deny-ops', action: 'DENY' },
    { policy: 'shop/audit', action: 'AUDIT', matchedRule: 0 },
    { policy: 'shop/allow-a', action: 'ALLOW' },
    { policy: 'shop/allow-shop', action: 'ALLOW', matchedRule: 1 }
  ])
  t.equal(d.action, 'ALLOW')
  t.equal(d.policy, 'shop/allow-shop')
})

t.test('addresses and CIDR blocks', async (t) => {
  const contains: [string, string, boolean][] = [
    ['10.0.0.0/8', '10.255.255.255', true],
    ['10.0.0.0/8', '11.0.0.0', false],
    ['10.1.2.3/8', '10.9.9.9', true], // host bits in the block are ignored, as Envoy does
    ['192.168.1.128/25', '192.168.1.127', false],
    ['192.168.1.128/25', '192.168.1.200', true],
    ['255.255.255.255/32', '255.255.255.255', true],
    ['2001:db8::/127', '2001:db8::1', true],
    ['2001:db8::/128', '2001:db8::1', false],
    ['2001:db8:0:1::/64', '2001:db8:0:1:ffff:ffff:ffff:ffff', true],
    ['2001:db8:0:1::/64', '2001:db8:0:2::', false],
    ['::ffff:10.0.0.0/104', '10.1.1.1', true],
    ['::/0', '::1', true],
    ['fe80::1', 'fe80::1%eth0', true]
  ]
  for (const [cidr, ip, expected] of contains) {
    const block = parseCidr(cidr)
    const address = parseIp(ip)
    if (block === undefined || address === undefined) {
      t.fail(`${cidr} / ${ip} should parse`)
      continue
    }
    t.equal(cidrContains(block, address), expected, `${cidr} contains ${ip}: ${expected}`)
  }
  const invalid = ['', '10.0.0', '10.0.0.256', '10.0.0.01', '10.0.0.0/33', '10.0.0.0/', '10.0.0.0/-1',
    '1:2:3:4:5:6:7:8:9', '1::2::3', ':1::', 'g::1', '::/129', '12345::', 'abc']
  for (const text of invalid) t.equal(parseCidr(text), undefined, `'${text}' is not a CIDR`)
  t.same(parseIp('::ffff:192.0.2.1'), { family: 4, words: [0xc0000201] })
  t.same(parseIp('1:2:3:4:5:6:1.2.3.4'), { family: 6, words: [0x00010002, 0x00030004, 0x00050006, 0x01020304] })
  t.same(parseIp('::'), { family: 6, words: [0, 0, 0, 0] })
})
