import t from 'tap'
import {
  compileRoutes, isGrpcRequest, routesForPort, splitAuthority, type AttachedRoute, type HeaderMap, type RouteMatch,
  type RouteRequest
} from '../policy/route-match.js'
import { validateResource } from '../policy/validate.js'

// ---- builders: routes go through validation, so the defaults are the real ones ----

const LOCATION = { file: '<inline>', document: 0, object: '' }
const PARENT = { group: '', kind: 'Service', name: 'svc', port: 80 }

type Spec = Record<string, unknown>

function route (kind: 'HTTPRoute' | 'GRPCRoute', key: string, spec: Spec): AttachedRoute {
  const [namespace, name] = key.split('/')
  const resource = validateResource({
    apiVersion: 'gateway.networking.k8s.io/v1', kind, metadata: { name, namespace }, spec: { parentRefs: [PARENT], ...spec }
  }, LOCATION)
  if (resource.kind !== 'HTTPRoute' && resource.kind !== 'GRPCRoute') throw new Error(`not a route: ${resource.kind}`)
  return resource
}

const http = (key: string, ...rules: Spec[]): AttachedRoute => route('HTTPRoute', key, { rules })
const grpc = (key: string, ...rules: Spec[]): AttachedRoute => route('GRPCRoute', key, { rules })

/** One rule with one match. */
const when = (match: Spec): Spec => ({ matches: [match] })
const prefix = (value: string, more: Spec = {}): Spec => when({ path: { type: 'PathPrefix', value }, ...more })
const exact = (value: string, more: Spec = {}): Spec => when({ path: { type: 'Exact', value }, ...more })
const regex = (value: string, more: Spec = {}): Spec => when({ path: { type: 'RegularExpression', value }, ...more })
const headers = (...names: string[]): Spec => ({ headers: names.map((name) => ({ name, value: 'yes' })) })
const query = (...names: string[]): Spec => ({ queryParams: names.map((name) => ({ name, value: 'yes' })) })

function request (path: string, options: { method?: string, headers?: HeaderMap, host?: string } = {}): RouteRequest {
  return { method: options.method ?? 'GET', path, headers: options.headers ?? {}, host: options.host }
}

function grpcRequest (path: string, headers: HeaderMap = {}): RouteRequest {
  return request(path, { method: 'POST', headers: { 'content-type': 'application/grpc', ...headers } })
}

/** "HTTPRoute/ns/name#rule", or 'none'. */
function describe (match: RouteMatch | undefined): string {
  return match === undefined ? 'none' : `${match.route}#${match.ruleIndex}`
}

function matched (routes: AttachedRoute[], req: RouteRequest): string {
  return describe(compileRoutes(routes).match(req))
}

// ---- precedence ----

const A = 'HTTPRoute/shop/a'
const B = 'HTTPRoute/shop/b'
const YES = { a: 'yes', b: 'yes', c: 'yes' }

interface PrecedenceCase {
  readonly name: string
  readonly rule: string
  readonly routes: AttachedRoute[]
  readonly request: RouteRequest
  readonly expected: string
}

const PRECEDENCE: PrecedenceCase[] = [
  {
    name: 'exact path over prefix',
    rule: 'gateway-api: precedence goes first to an "Exact" path match',
    routes: [http('shop/a', prefix('/foo/bar'), exact('/foo/bar'))],
    request: request('/foo/bar'),
    expected: `${A}#1`
  },
  {
    name: 'exact path over a longer-looking prefix in another route',
    rule: 'gateway-api: precedence goes first to an "Exact" path match, across all routes',
    routes: [http('shop/a', prefix('/foo/bar')), http('shop/b', exact('/foo/bar'))],
    request: request('/foo/bar'),
    expected: `${B}#0`
  },
  {
    name: 'longest prefix',
    rule: 'gateway-api: then to the "Prefix" path match with the largest number of characters',
    routes: [http('shop/a', prefix('/'), prefix('/foo/bar'), prefix('/foo'))],
    request: request('/foo/bar/baz'),
    expected: `${A}#1`
  },
  {
    name: 'longest prefix, a shorter one matching',
    rule: 'gateway-api: then to the "Prefix" path match with the largest number of characters',
    routes: [http('shop/a', prefix('/'), prefix('/foo/bar'), prefix('/foo'))],
    request: request('/foo/other'),
    expected: `${A}#2`
  },
  {
    name: 'longest prefix across routes beats route order',
    rule: 'gateway-api: path precedence applies across all rules of all routes, before route age or name',
    routes: [http('shop/a', prefix('/api')), http('shop/b', prefix('/api/v1'))],
    request: request('/api/v1/items'),
    expected: `${B}#0`
  },
  {
    name: 'trailing slash does not lengthen a prefix',
    rule: 'gateway-api: a trailing "/" of a PathPrefix is ignored, so "/foo/" and "/foo" tie and the first rule wins',
    routes: [http('shop/a', prefix('/foo'), prefix('/foo/'))],
    request: request('/foo/x'),
    expected: `${A}#0`
  },
  {
    name: 'method match',
    rule: 'gateway-api: then to a match with a method',
    routes: [http('shop/a', prefix('/foo'), prefix('/foo', { method: 'POST' }))],
    request: request('/foo', { method: 'POST' }),
    expected: `${A}#1`
  },
  {
    name: 'method match, other method',
    rule: 'gateway-api: a method match only applies to its method',
    routes: [http('shop/a', prefix('/foo'), prefix('/foo', { method: 'POST' }))],
    request: request('/foo'),
    expected: `${A}#0`
  },
  {
    name: 'path before method',
    rule: 'gateway-api: the path criteria come before the method',
    routes: [http('shop/a', prefix('/foo', { method: 'GET' }), prefix('/foo/bar'))],
    request: request('/foo/bar'),
    expected: `${A}#1`
  },
  {
    name: 'most headers',
    rule: 'gateway-api: then to the largest number of header matches',
    routes: [http('shop/a', prefix('/', headers('a')), prefix('/', headers('a', 'b')))],
    request: request('/', { headers: YES }),
    expected: `${A}#1`
  },
  {
    name: 'most headers, only one present',
    rule: 'gateway-api: header matches are ANDed, so a rule with a missing header does not match',
    routes: [http('shop/a', prefix('/', headers('a')), prefix('/', headers('a', 'b')))],
    request: request('/', { headers: { a: 'yes' } }),
    expected: `${A}#0`
  },
  {
    name: 'method before headers',
    rule: 'gateway-api: a method match comes before the number of header matches',
    routes: [http('shop/a', prefix('/', headers('a', 'b')), prefix('/', { method: 'GET' }))],
    request: request('/', { headers: YES }),
    expected: `${A}#1`
  },
  {
    name: 'most query params',
    rule: 'gateway-api: then to the largest number of query param matches',
    routes: [http('shop/a', prefix('/', query('a')), prefix('/', query('a', 'b')))],
    request: request('/?a=yes&b=yes'),
    expected: `${A}#1`
  },
  {
    name: 'headers before query params',
    rule: 'gateway-api: the number of header matches comes before the number of query param matches',
    routes: [http('shop/a', prefix('/', query('a', 'b')), prefix('/', headers('a')))],
    request: request('/?a=yes&b=yes', { headers: YES }),
    expected: `${A}#1`
  },
  {
    name: 'first rule wins within a route',
    rule: 'gateway-api: on ties within an HTTPRoute, the FIRST matching rule (in list order) wins',
    routes: [http('shop/a', prefix('/foo'), prefix('/foo'), prefix('/'))],
    request: request('/foo'),
    expected: `${A}#0`
  },
  {
    name: 'ties across routes: alphabetical namespace/name',
    rule: 'gateway-api: on ties across routes, the oldest route, then "{namespace}/{name}" alphabetically (ambit has no timestamps)',
    routes: [http('shop/b', prefix('/foo')), http('shop/a', prefix('/foo'))],
    request: request('/foo'),
    expected: `${A}#0`
  },
  {
    name: 'ties across routes: namespace first',
    rule: 'gateway-api: the alphabetical order is of "{namespace}/{name}"',
    routes: [http('zeta/a', prefix('/foo')), http('alpha/z', prefix('/foo'))],
    request: request('/foo'),
    expected: 'HTTPRoute/alpha/z#0'
  },
  {
    name: 'a later rule with more specific match beats an earlier rule',
    rule: 'gateway-api: rule order only breaks ties left by the precedence criteria',
    routes: [http('shop/a', prefix('/'), prefix('/foo', headers('a')))],
    request: request('/foo', { headers: YES }),
    expected: `${A}#1`
  },
  {
    name: 'regex ranks after every prefix',
    rule: 'gateway-api: RegularExpression precedence is implementation-specific; ambit (like Istio) ranks it after prefixes',
    routes: [http('shop/a', regex('/foo/[0-9]+'), prefix('/'))],
    request: request('/foo/42'),
    expected: `${A}#1`
  },
  {
    name: 'regex applies when no exact or prefix match does',
    rule: 'gateway-api: a RegularExpression path match matches like any other',
    routes: [http('shop/a', regex('/foo/[0-9]+'), prefix('/bar'))],
    request: request('/foo/42'),
    expected: `${A}#0`
  },
  {
    name: 'longer regex first',
    rule: 'gateway-api: RegularExpression precedence is implementation-specific; ambit (like Istio) puts longer patterns first',
    routes: [http('shop/a', regex('/.*'), regex('/foo/.*'))],
    request: request('/foo/x'),
    expected: `${A}#1`
  },
  {
    name: 'exact over regex',
    rule: 'gateway-api: precedence goes first to an "Exact" path match',
    routes: [http('shop/a', regex('/foo/[a-z]+'), exact('/foo/bar'))],
    request: request('/foo/bar'),
    expected: `${A}#1`
  },
  {
    name: 'regex matches the whole path',
    rule: 'gateway-api: RegularExpression matching follows the data plane; ambit (like Envoy) matches the whole path',
    routes: [http('shop/a', regex('/foo'))],
    request: request('/foo/bar'),
    expected: 'none'
  }
]

t.test('Gateway API matching precedence', async (t) => {
  for (const c of PRECEDENCE) {
    t.equal(matched(c.routes, c.request), c.expected, `${c.name} (${c.rule})`)
  }
})

t.test('within a rule, the most specific of its matches is the one reported', async (t) => {
  // gateway-api: precedence is given to the match (not the rule) with the most header matches
  const table = compileRoutes([http('shop/a', { matches: [{ headers: [{ name: 'a', value: 'yes' }] }, { headers: [{ name: 'a', value: 'yes' }, { name: 'b', value: 'yes' }] }] })])
  t.equal(table.match(request('/', { headers: YES }))?.match.headers.length, 2)
  t.equal(table.match(request('/', { headers: { a: 'yes' } }))?.match.headers.length, 1)
})

// ---- match semantics ----

interface SemanticsCase {
  readonly name: string
  readonly routes: AttachedRoute[]
  readonly matches: RouteRequest[]
  readonly misses: RouteRequest[]
}

const SEMANTICS: SemanticsCase[] = [
  {
    // gateway-api: PathPrefix matches element by element: "/abc" matches "/abc", "/abc/" and "/abc/def", not "/abcd"
    name: 'PathPrefix is element-wise',
    routes: [http('shop/a', prefix('/foo'))],
    matches: [request('/foo'), request('/foo/'), request('/foo/bar'), request('/foo?x=1')],
    misses: [request('/foobar'), request('/fo'), request('/'), request('/bar/foo')]
  },
  {
    // gateway-api: a trailing "/" of a PathPrefix value is ignored
    name: 'PathPrefix with a trailing slash',
    routes: [http('shop/a', prefix('/foo/'))],
    matches: [request('/foo'), request('/foo/'), request('/foo/bar')],
    misses: [request('/foobar')]
  },
  {
    // gateway-api: PathPrefix "/" matches every path
    name: 'PathPrefix /',
    routes: [http('shop/a', prefix('/'))],
    matches: [request('/'), request('/anything/at/all?q=1')],
    misses: []
  },
  {
    // gateway-api: Exact matches the path exactly (case-sensitive), the query string aside
    name: 'Exact path',
    routes: [http('shop/a', exact('/foo'))],
    matches: [request('/foo'), request('/foo?x=1')],
    misses: [request('/foo/'), request('/Foo'), request('/foo/bar')]
  },
  {
    // gateway-api: header names match case-insensitively, values exactly
    name: 'header names are case-insensitive, values exact',
    routes: [http('shop/a', when({ headers: [{ name: 'X-Env', value: 'Prod' }] }))],
    matches: [request('/', { headers: { 'x-env': 'Prod' } })],
    misses: [request('/', { headers: { 'x-env': 'prod' } }), request('/', { headers: { 'x-env': 'Prod2' } }), request('/')]
  },
  {
    // gateway-api: RegularExpression header values (ambit: the whole value must match)
    name: 'header regex',
    routes: [http('shop/a', when({ headers: [{ type: 'RegularExpression', name: 'x-version', value: 'v[0-9]+' }] }))],
    matches: [request('/', { headers: { 'x-version': 'v12' } })],
    misses: [request('/', { headers: { 'x-version': 'v12-beta' } }), request('/')]
  },
  {
    // gateway-api: a repeated header follows RFC 7230 (values combined with commas)
    name: 'repeated header values are joined',
    routes: [http('shop/a', when({ headers: [{ name: 'x-tag', value: 'a, b' }] }))],
    matches: [request('/', { headers: { 'x-tag': ['a', 'b'] } })],
    misses: [request('/', { headers: { 'x-tag': ['a'] } })]
  },
  {
    // gateway-api: of entries naming the same header, only the first is considered
    name: 'duplicate header names: the first entry counts',
    routes: [http('shop/a', when({ headers: [{ name: 'x-a', value: 'one' }, { name: 'X-A', value: 'two' }] }))],
    matches: [request('/', { headers: { 'x-a': 'one' } })],
    misses: [request('/', { headers: { 'x-a': 'two' } })]
  },
  {
    // gateway-api: query param names match exactly (case-sensitive), values exactly
    name: 'query params: exact, case-sensitive names',
    routes: [http('shop/a', when({ queryParams: [{ name: 'env', value: 'prod' }] }))],
    matches: [request('/?env=prod'), request('/x?a=1&env=prod'), request('/?env=pr%6Fd')],
    misses: [request('/?Env=prod'), request('/?env=Prod'), request('/?env='), request('/'), request('/?env')]
  },
  {
    // gateway-api: a repeated query param SHOULD match on its first value
    name: 'repeated query param: the first value counts',
    routes: [http('shop/a', when({ queryParams: [{ name: 'v', value: '1' }] }))],
    matches: [request('/?v=1&v=2')],
    misses: [request('/?v=2&v=1')]
  },
  {
    // gateway-api: RegularExpression query param values
    name: 'query param regex',
    routes: [http('shop/a', when({ queryParams: [{ type: 'RegularExpression', name: 'id', value: '[0-9]+' }] }))],
    matches: [request('/?id=42')],
    misses: [request('/?id=42a'), request('/?id=%zz')]
  },
  {
    // gateway-api: all conditions of one match are ANDed
    name: 'path, method, header and query together',
    routes: [http('shop/a', prefix('/api', { method: 'PUT', headers: [{ name: 'a', value: '1' }], queryParams: [{ name: 'q', value: '1' }] }))],
    matches: [request('/api/x?q=1', { method: 'PUT', headers: { a: '1' } })],
    misses: [
      request('/api/x?q=1', { headers: { a: '1' } }), request('/api/x', { method: 'PUT', headers: { a: '1' } }),
      request('/api/x?q=1', { method: 'PUT' }), request('/other?q=1', { method: 'PUT', headers: { a: '1' } })
    ]
  },
  {
    // gateway-api: the matches of a rule are ORed
    name: 'any match of a rule',
    routes: [http('shop/a', { matches: [{ path: { type: 'Exact', value: '/a' } }, { path: { type: 'Exact', value: '/b' } }] })],
    matches: [request('/a'), request('/b')],
    misses: [request('/c')]
  },
  {
    // gateway-api: the CRD defaults a rule without matches to a "/" prefix: every request
    name: 'a rule without matches',
    routes: [http('shop/a', { backendRefs: [{ name: 'v2', port: 80 }] })],
    matches: [request('/'), request('/x/y?z', { method: 'DELETE' })],
    misses: []
  },
  {
    // gateway-api: hostnames match the Host header without its port, and case-insensitively (DNS)
    name: 'route hostnames',
    routes: [route('HTTPRoute', 'shop/a', { hostnames: ['api.example.com'] })],
    matches: [
      request('/', { host: 'api.example.com' }), request('/', { host: 'API.example.com:8080' }),
      request('/', { headers: { host: 'api.example.com' } }), request('/', { headers: { ':authority': 'api.example.com:443' } })
    ],
    misses: [request('/', { host: 'www.example.com' }), request('/')]
  },
  {
    // gateway-api: "*.example.com" matches one or more labels before the suffix, never "example.com"
    name: 'wildcard hostnames',
    routes: [route('HTTPRoute', 'shop/a', { hostnames: ['*.example.com'] })],
    matches: [request('/', { host: 'a.example.com' }), request('/', { host: 'a.b.example.com' })],
    misses: [request('/', { host: 'example.com' }), request('/', { host: 'aexample.com' }), request('/', { host: '.example.com' })]
  }
]

t.test('match semantics', async (t) => {
  for (const c of SEMANTICS) {
    const table = compileRoutes(c.routes)
    for (const req of c.matches) t.not(table.match(req), undefined, `${c.name}: ${req.method} ${req.path} ${JSON.stringify(req.headers)} ${req.host ?? ''} matches`)
    for (const req of c.misses) t.equal(table.match(req), undefined, `${c.name}: ${req.method} ${req.path} ${JSON.stringify(req.headers)} ${req.host ?? ''} does not match`)
  }
})

t.test('hostname specificity comes before path precedence', async (t) => {
  // gateway-api: among routes with intersecting hostnames, the most characters of a matching non-wildcard
  // hostname win, then the most characters of a matching hostname; then the match precedence applies
  const routes = [
    route('HTTPRoute', 'shop/a-none', { rules: [exact('/x')] }),
    route('HTTPRoute', 'shop/b-wild', { hostnames: ['*.example.com'], rules: [prefix('/')] }),
    route('HTTPRoute', 'shop/c-longer-wild', { hostnames: ['*.api.example.com'], rules: [prefix('/')] }),
    route('HTTPRoute', 'shop/d-exact', { hostnames: ['v1.api.example.com', 'other.test'], rules: [prefix('/')] })
  ]
  t.equal(matched(routes, request('/x', { host: 'v1.api.example.com' })), 'HTTPRoute/shop/d-exact#0')
  t.equal(matched(routes, request('/x', { host: 'v2.api.example.com' })), 'HTTPRoute/shop/c-longer-wild#0')
  t.equal(matched(routes, request('/x', { host: 'www.example.com' })), 'HTTPRoute/shop/b-wild#0')
  t.equal(matched(routes, request('/x', { host: 'elsewhere.test' })), 'HTTPRoute/shop/a-none#0')
  t.equal(matched(routes, request('/y', { host: 'elsewhere.test' })), 'none', 'a route without hostnames still needs its match')
})

t.test('routes without rules match everything; an empty table matches nothing', async (t) => {
  // gateway-api: an HTTPRoute's rules default to one rule matching every request; a GRPCRoute
  // rule without matches MUST match every gRPC request
  const httpNoRules = route('HTTPRoute', 'shop/a', {})
  const result = compileRoutes([httpNoRules]).match(request('/whatever'))
  t.equal(describe(result), `${A}#0`)
  t.same(result?.rule.backendRefs, [], 'no backendRefs: the caller routes to the parent Service')

  const grpcNoRules = route('GRPCRoute', 'shop/g', {})
  t.equal(describe(compileRoutes([grpcNoRules]).match(grpcRequest('/pkg.Svc/Do'))), 'GRPCRoute/shop/g#0', 'a GRPCRoute without rules')
  t.equal(describe(compileRoutes([grpc('shop/g', { backendRefs: [{ name: 'x', port: 80 }] })]).match(grpcRequest('/a.B/C'))),
    'GRPCRoute/shop/g#0', 'a GRPCRoute rule without matches')

  const empty = compileRoutes([])
  t.equal(empty.empty, true)
  t.equal(empty.match(request('/')), undefined)
  t.equal(compileRoutes([httpNoRules]).empty, false)
})

t.test('the result carries the matched rule and match', async (t) => {
  const routes = [http('shop/a', { matches: [{ path: { type: 'PathPrefix', value: '/v2' } }], backendRefs: [{ name: 'v2', port: 80 }], timeouts: { request: '2s' } })]
  const result = compileRoutes(routes).match(request('/v2/items'))
  t.equal(result?.kind, 'HTTPRoute')
  if (result?.kind !== 'HTTPRoute') return
  t.same(result.match.path, { type: 'PathPrefix', value: '/v2' })
  t.equal(result.rule.backendRefs[0]?.name, 'v2')
  t.equal(result.rule.timeouts?.request, 2000)
})

// ---- gRPC ----

const G = 'GRPCRoute/shop/g'
const method = (type: string, service?: string, name?: string, more: Spec = {}): Spec =>
  when({ method: { type, ...(service === undefined ? {} : { service }), ...(name === undefined ? {} : { method: name }) }, ...more })

t.test('GRPCRoute matching', async (t) => {
  const routes = [grpc('shop/g', method('Exact', 'shop.Cart', 'Add'), method('Exact', 'shop.Cart'), method('RegularExpression', 'shop\\..*', 'Get.*'))]
  const table = compileRoutes(routes)
  const cases: Array<[RouteRequest, string, string]> = [
    // gateway-api: GRPCRoute matches the service and method of the :path /service/method
    [grpcRequest('/shop.Cart/Add'), `${G}#0`, 'exact service and method'],
    [grpcRequest('/shop.Cart/Remove'), `${G}#1`, 'exact service, any method'],
    [grpcRequest('/shop.Catalog/GetItem'), `${G}#2`, 'regex service and method'],
    [grpcRequest('/shop.Catalog/ListItems'), 'none', 'regex method does not match'],
    [grpcRequest('/other.Cart/Add'), 'none', 'other service'],
    [grpcRequest('/shop.Cart/Add/extra'), 'none', 'not a gRPC path'],
    [request('/shop.Cart/Add', { method: 'POST', headers: { 'content-type': 'application/grpc+proto' } }), `${G}#0`, 'application/grpc+proto is gRPC'],
    [request('/shop.Cart/Add', { method: 'POST', headers: { 'content-type': 'application/json' } }), 'none', 'not gRPC: content-type'],
    [request('/shop.Cart/Add', { headers: { 'content-type': 'application/grpc' } }), 'none', 'not gRPC: GET']
  ]
  for (const [req, expected, name] of cases) t.equal(describe(table.match(req)), expected, name)
})

t.test('GRPCRoute precedence', async (t) => {
  const cases: Array<[string, AttachedRoute[], RouteRequest, string]> = [
    ['gateway-api: most characters in a matching service first',
      [grpc('shop/g', method('Exact', undefined, 'Add'), method('Exact', 'shop.Cart'))], grpcRequest('/shop.Cart/Add'), `${G}#1`],
    ['gateway-api: then most characters in a matching method',
      [grpc('shop/g', method('Exact', 'shop.Cart'), method('Exact', 'shop.Cart', 'Add'))], grpcRequest('/shop.Cart/Add'), `${G}#1`],
    ['gateway-api: then most header matches',
      [grpc('shop/g', method('Exact', 'shop.Cart', undefined, headers('a')), method('Exact', 'shop.Cart', undefined, headers('a', 'b')))],
      grpcRequest('/shop.Cart/Add', YES), `${G}#1`],
    ['gateway-api: characters of a service count for Exact matches; ambit counts 0 for a regex',
      [grpc('shop/g', method('RegularExpression', 'shop\\.Cart.*'), method('Exact', 'shop.Cart'))], grpcRequest('/shop.Cart/Add'), `${G}#1`],
    ['gateway-api: then the first matching rule of the route',
      [grpc('shop/g', method('Exact', 'shop.Cart'), method('Exact', 'shop.Cart'))], grpcRequest('/shop.Cart/Add'), `${G}#0`],
    ['gateway-api: then "{namespace}/{name}" alphabetically across routes',
      [grpc('shop/z', method('Exact', 'shop.Cart')), grpc('shop/g', method('Exact', 'shop.Cart'))], grpcRequest('/shop.Cart/Add'), `${G}#0`]
  ]
  for (const [rule, routes, req, expected] of cases) t.equal(matched(routes, req), expected, rule)
})

t.test('GRPCRoutes take a Service port over HTTPRoutes', async (t) => {
  // gateway-api (GEP-1426): when route types conflict on a Service port, GRPCRoute wins and the
  // HTTPRoute is not applied (Accepted=False, reason Conflicted)
  const table = compileRoutes([http('shop/a', prefix('/')), grpc('shop/g', method('Exact', 'shop.Cart'))])
  t.same(table.conflicted, [A])
  t.equal(table.grpc, true)
  t.equal(describe(table.match(grpcRequest('/shop.Cart/Add'))), `${G}#0`)
  t.equal(table.match(request('/')), undefined, 'plain HTTP does not fall back to the conflicted HTTPRoute')
  t.equal(describe(compileRoutes([http('shop/a', prefix('/'))]).match(grpcRequest('/shop.Cart/Add'))), `${A}#0`,
    'without GRPCRoutes, an HTTPRoute routes gRPC requests too')
})

t.test('isGrpcRequest', async (t) => {
  t.equal(isGrpcRequest({ method: 'POST', headers: { 'content-type': 'application/grpc' } }), true)
  t.equal(isGrpcRequest({ method: 'POST', headers: { 'content-type': 'application/grpc-web' } }), true)
  t.equal(isGrpcRequest({ method: 'POST', headers: {} }), false)
  t.equal(isGrpcRequest({ method: 'PUT', headers: { 'content-type': 'application/grpc' } }), false)
})

// ---- helpers ----

t.test('routesForPort keeps the routes attached to one Service port', async (t) => {
  const attach = (key: string, parentRefs: Spec[]): AttachedRoute => route('HTTPRoute', key, { parentRefs, rules: [prefix('/')] })
  const routes = [
    attach('shop/port-80', [{ kind: 'Service', group: '', name: 'svc', port: 80 }]),
    attach('shop/port-8080', [{ kind: 'Service', group: '', name: 'svc', port: 8080 }]),
    attach('shop/any-port', [{ kind: 'Service', group: '', name: 'svc' }]),
    attach('shop/other-service', [{ kind: 'Service', group: '', name: 'other' }]),
    attach('web/consumer', [{ kind: 'Service', group: '', name: 'svc', namespace: 'shop' }]),
    attach('web/same-name-elsewhere', [{ kind: 'Service', group: '', name: 'svc' }]),
    attach('shop/gateway', [{ name: 'svc' }])
  ]
  t.same(routesForPort(routes, { namespace: 'shop', name: 'svc' }, 80).map((r) => r.metadata.name),
    ['port-80', 'any-port', 'consumer'])
})

t.test('splitAuthority', async (t) => {
  t.same(splitAuthority('example.com'), { hostname: 'example.com' })
  t.same(splitAuthority('example.com:8080'), { hostname: 'example.com', port: 8080 })
  t.same(splitAuthority('[::1]:443'), { hostname: '[::1]', port: 443 })
  t.same(splitAuthority('[::1]'), { hostname: '[::1]' })
})
