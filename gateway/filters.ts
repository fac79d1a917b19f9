/**
 * The filters of a matched route rule (Gateway API HTTPRouteFilter), applied in the order the
 * rule lists them: header modifiers, redirects, URL rewrites and request mirrors.
 *
 * A header modifier removes, then sets (replaces), then adds; `add` appends to an existing value
 * with "," as the spec's example shows ("foo" + add "bar" → "foo,bar"), or as one more array
 * element for a header Node keeps as an array (set-cookie).
 *
 * Paths keep their query string through rewrites and redirects.
 */
import type { BackendRef, HTTPPathMatch, HTTPRouteFilter, HeaderModifier, PathModifier } from '../policy/resources.js'
import type { Random } from './random.js'
import {
  hasPathPrefix, normalizePrefix, requestAuthority, splitAuthority, splitTarget, type HeaderMap
} from '../policy/route-match.js'

/** Headers the filters produced: a copy the caller may change and pass to http.request. */
export type HeaderRecord = Record<string, string | string[] | undefined>

export interface FilterRequest {
  /** Path and query string. */
  readonly path: string
  readonly headers: HeaderMap
  /** The authority; the Host (or :authority) header when absent. */
  readonly host?: string
  /** The scheme the client used; 'http' when absent (mesh traffic is plain HTTP inside HBONE). */
  readonly scheme?: string
  /** The port the client addressed (the Service port): a redirect keeps it unless it changes the scheme. */
  readonly port?: number
}

export interface Redirect {
  readonly status: number
  readonly location: string
}

export interface FilteredRequest {
  readonly headers: HeaderRecord
  /** Path and query string to send upstream. */
  readonly path: string
  /** The authority to send upstream (also in headers.host when a rewrite changed it). */
  readonly host?: string
  /** Set: answer with this redirect instead of forwarding. */
  readonly redirect?: Redirect
  /** Backends that also get a copy of the request (their answers are ignored). */
  readonly mirrors: readonly BackendRef[]
}

/**
 * `matchedPath` is the path match of the matched rule: ReplacePrefixMatch replaces what it
 * matched. The spec allows ReplacePrefixMatch only with a PathPrefix match; with an Exact one
 * the whole path is replaced, and with a regex (or no path match) the path is left as it is.
 */
export function applyRequestFilters (
  filters: readonly HTTPRouteFilter[], request: FilterRequest, matchedPath?: HTTPPathMatch, random: Random = Math.random
): FilteredRequest {
  const headers = copyHeaders(request.headers)
  let path = request.path
  let host = requestAuthority(request)
  let redirect: Redirect | undefined
  const mirrors: BackendRef[] = []
  for (const filter of filters) {
    switch (filter.type) {
      case 'RequestHeaderModifier':
        modifyHeaders(headers, filter.requestHeaderModifier)
        break
      case 'URLRewrite': {
        const { hostname, path: pathModifier } = filter.urlRewrite
        if (hostname !== undefined) host = headers.host = hostname
        if (pathModifier !== undefined) path = withModifiedPath(path, pathModifier, matchedPath)
        break
      }
      case 'RequestRedirect':
        redirect = redirectOf(filter.requestRedirect, { ...request, path, host }, matchedPath)
        break
      case 'RequestMirror':
        if (mirrored(filter.requestMirror.percent, random)) mirrors.push(filter.requestMirror.backendRef)
        break
      case 'ResponseHeaderModifier':
        break
    }
  }
  return { headers, path, host, redirect, mirrors }
}

/** The rule's ResponseHeaderModifier filters, applied to a copy of the backend's response headers. */
export function applyResponseFilters (filters: readonly HTTPRouteFilter[], headers: HeaderMap): HeaderRecord {
  const result = copyHeaders(headers)
  for (const filter of filters) {
    if (filter.type === 'ResponseHeaderModifier') modifyHeaders(result, filter.responseHeaderModifier)
  }
  return result
}

/**
 * ReplacePrefixMatch (the spec's table): the matched prefix and the replacement both ignore
 * trailing slashes, and what followed the prefix is kept ("/foo/bar", prefix "/foo", "/xyz" →
 * "/xyz/bar"; "/foo/" → "/xyz/"; "/foo" with replacement "/" → "/").
 * `prefix` is normalized (see normalizePrefix); a path outside it is returned unchanged.
 */
export function replacePrefix (path: string, prefix: string, replacement: string): string {
  if (!hasPathPrefix(path, prefix)) return path
  const replaced = normalizePrefix(replacement) + path.slice(prefix.length)
  return replaced === '' ? '/' : replaced
}

function copyHeaders (headers: HeaderMap): HeaderRecord {
  const copy: HeaderRecord = {}
  for (const [name, value] of Object.entries(headers)) {
    copy[name] = typeof value === 'string' || value === undefined ? value : [...value]
  }
  return copy
}

/** Changes `headers` in place; names are matched case-insensitively (Node's are lower-case). */
function modifyHeaders (headers: HeaderRecord, modifier: HeaderModifier): void {
  for (const name of modifier.remove) delete headers[name.toLowerCase()]
  for (const { name, value } of modifier.set) headers[name.toLowerCase()] = value
  for (const { name, value } of modifier.add) {
    const key = name.toLowerCase()
    headers[key] = appended(headers[key], value)
  }
}

function appended (existing: string | string[] | undefined, value: string): string | string[] {
  if (existing === undefined) return value
  return typeof existing === 'string' ? `${existing},${value}` : [...existing, value]
}

/** `target` is path and query; the query is kept. */
function withModifiedPath (target: string, modifier: PathModifier, matchedPath: HTTPPathMatch | undefined): string {
  const { path, query } = splitTarget(target)
  return modifiedPath(path, modifier, matchedPath) + query
}

function modifiedPath (path: string, modifier: PathModifier, matchedPath: HTTPPathMatch | undefined): string {
  if (modifier.type === 'ReplaceFullPath') return modifier.replaceFullPath
  switch (matchedPath?.type) {
    case 'PathPrefix': return replacePrefix(path, normalizePrefix(matchedPath.value), modifier.replacePrefixMatch)
    case 'Exact': return path === matchedPath.value ? modifier.replacePrefixMatch : path
    default: return path
  }
}

const WELL_KNOWN_PORTS: Readonly<Record<string, number>> = { http: 80, https: 443 }

type RequestRedirect = Extract<HTTPRouteFilter, { type: 'RequestRedirect' }>['requestRedirect']

/**
 * The spec's port rules: an explicit port wins; a new scheme takes its well-known port;
 * otherwise the port the client addressed stays. The port is left out of Location when it is
 * the scheme's well-known one (http:80, https:443).
 */
function redirectOf (
  redirect: RequestRedirect, request: FilterRequest & { host: string | undefined }, matchedPath: HTTPPathMatch | undefined
): Redirect {
  const scheme = redirect.scheme ?? request.scheme ?? 'http'
  const authority = splitAuthority(request.host ?? '')
  const hostname = redirect.hostname ?? authority.hostname
  const port = redirect.port ??
    (redirect.scheme !== undefined ? WELL_KNOWN_PORTS[redirect.scheme] : request.port ?? authority.port)
  const shownPort = port === undefined || port === WELL_KNOWN_PORTS[scheme] ? '' : `:${port}`
  const path = redirect.path === undefined ? request.path : withModifiedPath(request.path, redirect.path, matchedPath)
  return { status: redirect.statusCode, location: `${scheme}://${hostname}${shownPort}${path}` }
}

/** RequestMirror `percent`: absent means every request. */
function mirrored (percent: number | undefined, random: Random): boolean {
  return percent === undefined || random() * 100 < percent
}
