import t from 'tap'
import { applyRequestFilters, applyResponseFilters, replacePrefix, type FilterRequest } from '../gateway/filters.js'
import { seededRandom } from '../gateway/random.js'
import { normalizePrefix } from '../policy/route-match.js'
import type { BackendRef, HTTPPathMatch, HTTPRouteFilter, HeaderModifier, PathModifier } from '../policy/resources.js'

// ---- builders ----

function modifier (parts: { set?: Record<string, string>, add?: Record<string, string>, remove?: string[] }): HeaderModifier {
  const list = (record: Record<string, string> = {}): Array<{ name: string, value: string }> =>
    Object.entries(record).map(([name, value]) => ({ name, value }))
  return { set: list(parts.set), add: list(parts.add), remove: parts.remove ?? [] }
}

const requestHeaders = (parts: Parameters<typeof modifier>[0]): HTTPRouteFilter =>
  ({ type: 'RequestHeaderModifier', requestHeaderModifier: modifier(parts) })
const responseHeaders = (parts: Parameters<typeof modifier>[0]): HTTPRouteFilter =>
  ({ type: 'ResponseHeaderModifier', responseHeaderModifier: modifier(parts) })
const fullPath = (value: string): PathModifier => ({ type: 'ReplaceFullPath', replaceFullPath: value })
const prefixPath = (value: string): PathModifier => ({ type: 'ReplacePrefixMatch', replacePrefixMatch: value })
const rewrite = (urlRewrite: { hostname?: string, path?: PathModifier }): HTTPRouteFilter => ({ type: 'URLRewrite', urlRewrite })
const redirect = (requestRedirect: { scheme?: string, hostname?: string, path?: PathModifier, port?: number, statusCode?: number }): HTTPRouteFilter =>
  ({ type: 'RequestRedirect', requestRedirect: { statusCode: 302, ...requestRedirect } })
const backend = (name: string): BackendRef => ({ group: '', kind: 'Service', name, port: 80, weight: 1 })
const mirror = (name: string, percent?: number): HTTPRouteFilter => ({ type: 'RequestMirror', requestMirror: { backendRef: backend(name), percent } })
const PathPrefix = (value: string): HTTPPathMatch => ({ type: 'PathPrefix', value })

const REQUEST: FilterRequest = { path: '/foo/bar?x=1', headers: { host: 'shop.example:8080', accept: 'text/html', 'x-keep': 'k' } }

// ---- header modifiers ----

t.test('RequestHeaderModifier: set, add, remove', async (t) => {
  // gateway-api: set overwrites, add appends to existing values ("foo" + "bar,baz" → "foo,bar,baz"), remove deletes;
  // header names are case-insensitive
  const headers = { 'my-header': 'foo', 'x-old': 'gone', 'x-over': 'before', cookie: 'a=1' }
  const result = applyRequestFilters([requestHeaders({
    set: { 'X-Over': 'after', 'x-new': 'set' },
    add: { 'My-Header': 'bar,baz', 'x-added': 'fresh' },
    remove: ['X-Old']
  })], { path: '/', headers })
  t.same(result.headers, { 'my-header': 'foo,bar,baz', 'x-over': 'after', 'x-new': 'set', 'x-added': 'fresh', cookie: 'a=1' })
  t.same(headers, { 'my-header': 'foo', 'x-old': 'gone', 'x-over': 'before', cookie: 'a=1' }, 'the request headers are not changed')
})

t.test('filters apply in the order listed', async (t) => {
  // gateway-api: implementations SHOULD apply filters in the order they are specified
  const result = applyRequestFilters([
    requestHeaders({ set: { 'x-step': 'one' } }),
    requestHeaders({ add: { 'x-step': 'two' } }),
    requestHeaders({ remove: ['x-keep'] })
  ], REQUEST)
  t.equal(result.headers['x-step'], 'one,two')
  t.equal(result.headers['x-keep'], undefined)
  t.equal(result.headers.accept, 'text/html')
})

t.test('ResponseHeaderModifier', async (t) => {
  const upstream = { 'content-type': 'text/plain', server: 'backend', 'set-cookie': ['a=1'], 'x-trace': 'abc' }
  const filters = [
    responseHeaders({ set: { Server: 'ambit' }, add: { 'Set-Cookie': 'b=2', 'x-trace': 'def' }, remove: ['content-type'] }),
    requestHeaders({ set: { server: 'not-a-response-filter' } })
  ]
  const result = applyResponseFilters(filters, upstream)
  t.same(result, { server: 'ambit', 'set-cookie': ['a=1', 'b=2'], 'x-trace': 'abc,def' },
    'an array header (set-cookie) gets one more element; request filters are ignored')
  t.same(upstream['set-cookie'], ['a=1'], 'the response headers are not changed')
  t.same(applyRequestFilters(filters, { path: '/', headers: {} }).headers, { server: 'not-a-response-filter' },
    'response filters do not touch the request')
})

// ---- paths ----

t.test('ReplacePrefixMatch follows the spec table', async (t) => {
  // gateway-api: the HTTPPathModifier ReplacePrefixMatch table (trailing slashes ignored on both sides)
  const table: Array<[path: string, prefix: string, replacement: string, expected: string]> = [
    ['/foo/bar', '/foo', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'],
    ['/foo', '/foo', '/xyz', '/xyz'],
    ['/foo/', '/foo', '/xyz', '/xyz/'],
    ['/foo/bar', '/foo', '', '/bar'],
    ['/foo/', '/foo', '', '/'],
    ['/foo', '/foo', '', '/'],
    ['/foo/', '/foo', '/', '/'],
    ['/foo', '/foo', '/', '/'],
    ['/foo/bar', '/', '/xyz', '/xyz/foo/bar'],
    ['/other', '/foo', '/xyz', '/other']
  ]
  for (const [path, prefix, replacement, expected] of table) {
    t.equal(replacePrefix(path, normalizePrefix(prefix), replacement), expected, `${path} with prefix ${prefix} → ${replacement}`)
  }
})

t.test('URLRewrite', async (t) => {
  const cases: Array<[string, HTTPRouteFilter, HTTPPathMatch | undefined, string, string | undefined]> = [
    // gateway-api: ReplaceFullPath replaces the whole path (ambit keeps the query string)
    ['ReplaceFullPath', rewrite({ path: fullPath('/new') }), PathPrefix('/foo'), '/new?x=1', 'shop.example:8080'],
    // gateway-api: ReplacePrefixMatch replaces the prefix the rule matched
    ['ReplacePrefixMatch', rewrite({ path: prefixPath('/v2') }), PathPrefix('/foo'), '/v2/bar?x=1', 'shop.example:8080'],
    ['ReplacePrefixMatch of an Exact match replaces it all', rewrite({ path: prefixPath('/v2') }), { type: 'Exact', value: '/foo/bar' }, '/v2?x=1', 'shop.example:8080'],
    ['ReplacePrefixMatch of a regex match leaves the path', rewrite({ path: prefixPath('/v2') }), { type: 'RegularExpression', value: '/foo/.*' }, '/foo/bar?x=1', 'shop.example:8080'],
    // gateway-api: URLRewrite hostname replaces the Host header
    ['hostname', rewrite({ hostname: 'backend.internal' }), undefined, '/foo/bar?x=1', 'backend.internal']
  ]
  for (const [name, filter, matchedPath, path, host] of cases) {
    const result = applyRequestFilters([filter], REQUEST, matchedPath)
    t.equal(result.path, path, `${name}: path`)
    t.equal(result.host, host, `${name}: host`)
    t.equal(result.headers.host, host, `${name}: Host header`)
    t.equal(result.redirect, undefined)
  }
})

// ---- redirects ----

t.test('RequestRedirect', async (t) => {
  const cases: Array<[string, HTTPRouteFilter, FilterRequest, number, string]> = [
    // gateway-api: empty fields keep the request's; statusCode defaults to 302
    ['defaults keep scheme, host, port and path', redirect({}), REQUEST, 302, 'http://shop.example:8080/foo/bar?x=1'],
    // gateway-api: a new scheme takes its well-known port, which Location leaves out
    ['http to https', redirect({ scheme: 'https', statusCode: 301 }), REQUEST, 301, 'https://shop.example/foo/bar?x=1'],
    // gateway-api: without a scheme, the port is the listener's (here: the port the client addressed)
    ['the addressed port wins over the Host header', redirect({ hostname: 'www.example' }), { ...REQUEST, port: 9090 }, 302, 'http://www.example:9090/foo/bar?x=1'],
    // gateway-api: Location leaves out port 80 for http and 443 for https
    ['port 80 is left out', redirect({ hostname: 'www.example' }), { ...REQUEST, port: 80 }, 302, 'http://www.example/foo/bar?x=1'],
    ['port 443 of https is left out', redirect({}), { ...REQUEST, scheme: 'https', port: 443 }, 302, 'https://shop.example/foo/bar?x=1'],
    ['an explicit port', redirect({ scheme: 'https', port: 8443 }), REQUEST, 302, 'https://shop.example:8443/foo/bar?x=1'],
    // gateway-api: path ReplaceFullPath / ReplacePrefixMatch apply to the Location path
    ['ReplaceFullPath', redirect({ path: fullPath('/moved'), statusCode: 308 }), REQUEST, 308, 'http://shop.example:8080/moved?x=1'],
    ['ReplacePrefixMatch', redirect({ path: prefixPath('/new') }), REQUEST, 302, 'http://shop.example:8080/new/bar?x=1'],
    ['IPv6 host', redirect({}), { path: '/', headers: { host: '[::1]:8080' } }, 302, 'http://[::1]:8080/']
  ]
  for (const [name, filter, request, status, location] of cases) {
    t.same(applyRequestFilters([filter], request, PathPrefix('/foo')).redirect, { status, location }, name)
  }
})

// ---- mirrors ----

t.test('RequestMirror', async (t) => {
  // gateway-api: without percent every request is mirrored
  t.same(applyRequestFilters([mirror('shadow'), mirror('audit')], REQUEST).mirrors.map((b) => b.name), ['shadow', 'audit'])
  t.same(applyRequestFilters([mirror('never', 0)], REQUEST, undefined, () => 0).mirrors, [], 'percent 0 mirrors nothing')
  t.same(applyRequestFilters([mirror('always', 100)], REQUEST, undefined, () => 0.999).mirrors.length, 1)

  // gateway-api: percent is the share of requests mirrored
  const random = seededRandom(7)
  let mirrored = 0
  const draws = 20_000
  for (let i = 0; i < draws; i++) mirrored += applyRequestFilters([mirror('quarter', 25)], REQUEST, undefined, random).mirrors.length
  t.ok(Math.abs(mirrored / draws - 0.25) < 0.01, `25% mirrored (got ${(100 * mirrored / draws).toFixed(2)}%)`)
})

t.test('no filters: an unchanged copy', async (t) => {
  const result = applyRequestFilters([], REQUEST)
  t.same(result, { headers: REQUEST.headers, path: REQUEST.path, host: 'shop.example:8080', redirect: undefined, mirrors: [] })
  t.not(result.headers, REQUEST.headers, 'a copy')
})
