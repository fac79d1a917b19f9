/**
 * A stand-in for the Kubernetes API server: a real HTTP server implementing just enough of
 * the API for @kubernetes/client-node's informers and typed clients, for the kinds ambit
 * reads (core, discovery, Gateway API, Istio security, ambit.dev) plus TokenReviews.
 *
 *   list     GET  /api/v1/pods                    → PodList with metadata.resourceVersion
 *   watch    GET  /api/v1/pods?watch=true&resourceVersion=N
 *                 → chunked JSON lines {type: ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, object}
 *   get, create, update (PUT), patch (merge patch), delete; the status subresource;
 *   create   POST /apis/authentication.k8s.io/v1/tokenreviews
 *
 * Every request is authorised as RBAC would: a bearer token names a user and the list of
 * ApiAccess it was granted (control/kubernetes-access.ts); anything else is refused with 403
 * and recorded in `calls`, so a test can prove the manifests' RBAC covers every call.
 *
 * The test drives the cluster in-process: upsert/delete objects, drop watches mid-stream,
 * expire resource versions (410 Gone), make the next requests fail.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import type { ApiAccess, Verb } from '../../control/kubernetes-access.js'
import type { Teardown } from './redis.js'

/** A Kubernetes object as JSON. */
export interface KubeObject {
  apiVersion?: string
  kind?: string
  metadata: { name: string, namespace?: string, [field: string]: unknown }
  [field: string]: unknown
}

export interface ApiCall {
  readonly user: string
  readonly verb: Verb
  readonly apiGroup: string
  readonly resource: string
  readonly namespace?: string
  readonly name?: string
  readonly status: number
}

export interface ApiUser {
  readonly name: string
  readonly access: readonly ApiAccess[]
}

interface KindInfo {
  readonly kind: string
  readonly group: string
  readonly version: string
  readonly plural: string
  readonly namespaced: boolean
}

const KINDS: readonly KindInfo[] = [
  { kind: 'Namespace', group: '', version: 'v1', plural: 'namespaces', namespaced: false },
  { kind: 'Node', group: '', version: 'v1', plural: 'nodes', namespaced: false },
  { kind: 'Pod', group: '', version: 'v1', plural: 'pods', namespaced: true },
  { kind: 'Service', group: '', version: 'v1', plural: 'services', namespaced: true },
  { kind: 'Secret', group: '', version: 'v1', plural: 'secrets', namespaced: true },
  { kind: 'ServiceAccount', group: '', version: 'v1', plural: 'serviceaccounts', namespaced: true },
  { kind: 'Deployment', group: 'apps', version: 'v1', plural: 'deployments', namespaced: true },
  { kind: 'EndpointSlice', group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', namespaced: true },
  { kind: 'Gateway', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways', namespaced: true },
  { kind: 'HTTPRoute', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', namespaced: true },
  { kind: 'GRPCRoute', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'grpcroutes', namespaced: true },
  { kind: 'AuthorizationPolicy', group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', namespaced: true },
  { kind: 'PeerAuthentication', group: 'security.istio.io', version: 'v1', plural: 'peerauthentications', namespaced: true },
  { kind: 'TrafficPolicy', group: 'ambit.dev', version: 'v1alpha1', plural: 'trafficpolicies', namespaced: true }
]
const TOKEN_REVIEWS = { group: 'authentication.k8s.io', version: 'v1', plural: 'tokenreviews' }
/** Built-in kinds' list items carry no apiVersion/kind (custom resources' do): clients must not rely on them. */
const BUILT_IN_GROUPS = new Set(['', 'discovery.k8s.io'])

const apiVersionOf = (info: Pick<KindInfo, 'group' | 'version'>): string => info.group === '' ? info.version : `${info.group}/${info.version}`

interface StoredEvent {
  readonly revision: number
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED'
  readonly plural: string
  readonly object: KubeObject
}

interface OpenWatch {
  readonly plural: string
  readonly namespace?: string
  readonly res: ServerResponse
}

interface IssuedToken {
  readonly namespace: string
  readonly pod: string
  readonly podUid: string
  readonly audiences: readonly string[]
}

/** What one request is about, read from its method and path. */
interface Target {
  readonly group: string
  readonly version: string
  readonly plural: string
  readonly namespace?: string
  readonly name?: string
  readonly subresource?: string
}

class ApiRefusal extends Error {
  constructor (readonly status: number, readonly reason: string, message: string) {
    super(message)
  }
}

export class KubeApi {
  /** Every request that named a user, in order: who, which verb on what, and the answer's status. */
  readonly calls: ApiCall[] = []
  /** Plural resources answered 404, as when their CRD is not installed. */
  readonly unserved = new Set<string>()
  private readonly server = createServer((req, res) => { void this.handle(req, res) })
  private readonly objects = new Map<string, KubeObject>()
  private readonly history: StoredEvent[] = []
  private readonly watches = new Set<OpenWatch>()
  private readonly tokens = new Map<string, IssuedToken>()
  private revision = 1
  /** Watches from a resourceVersion below this are answered 410 Gone. */
  private oldestRevision = 1
  private failures: { count: number, status: number } = { count: 0, status: 503 }
  /** How long a list waits before it is answered (a slow API server). */
  listDelayMs = 0

  private constructor (private readonly users: ReadonlyMap<string, ApiUser>) {}

  /** Serves on 127.0.0.1 (a free port) with these users (bearer token → user) and the objects of the fixture files. */
  static async start (t: Teardown, users: Record<string, ApiUser>, fixtures: readonly string[] = []): Promise<KubeApi> {
    const api = new KubeApi(new Map(Object.entries(users)))
    api.server.listen(0, '127.0.0.1')
    await once(api.server, 'listening')
    t.teardown(() => api.close())
    for (const file of fixtures) {
      for (const document of parseAllDocuments(await readFile(file, 'utf8'))) {
        const object = document.toJS() as KubeObject | null
        if (object !== null) api.upsert(object)
      }
    }
    return api
  }

  get url (): string {
    return `http://127.0.0.1:${(this.server.address() as { port: number }).port}`
  }

  /** A kubeconfig (plain http, the user's bearer token) for a client of this server. */
  async writeKubeconfig (dir: string, token: string): Promise<string> {
    const file = join(dir, `kubeconfig-${this.users.get(token)?.name.replace(/\W/g, '-') ?? 'unknown'}`)
    await writeFile(file, JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'stand-in', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'user', user: { token } }],
      contexts: [{ name: 'stand-in', context: { cluster: 'stand-in', user: 'user' } }],
      'current-context': 'stand-in'
    }), { mode: 0o600 })
    return file
  }

  // ---- the test's handles on the cluster ----

  /** Creates or replaces an object as given (status included), as a controller writing etcd would. */
  upsert (object: KubeObject): KubeObject {
    const info = kindOf(object)
    const copy = structuredClone(object)
    if (!info.namespaced) delete copy.metadata.namespace
    else copy.metadata.namespace ??= 'default'
    return this.write(info, copy)
  }

  delete (kind: string, namespace: string, name: string): void {
    const info = kindOf({ kind, metadata: { name } })
    const key = objectKey(info.plural, info.namespaced ? namespace : undefined, name)
    const existing = this.objects.get(key)
    if (existing === undefined) throw new Error(`no ${kind} ${namespace}/${name} to delete`)
    this.objects.delete(key)
    this.record(info, 'DELETED', { ...existing, metadata: { ...existing.metadata, resourceVersion: String(++this.revision) } })
  }

  get (kind: string, namespace: string, name: string): KubeObject | undefined {
    const info = kindOf({ kind, metadata: { name } })
    const found = this.objects.get(objectKey(info.plural, info.namespaced ? namespace : undefined, name))
    return found === undefined ? undefined : structuredClone(found)
  }

  /** A projected service-account token bound to a pod, as the kubelet mounts it. */
  serviceAccountToken (namespace: string, pod: string, audiences: readonly string[]): string {
    const found = this.get('Pod', namespace, pod)
    if (found === undefined) throw new Error(`no pod ${namespace}/${pod}`)
    const token = `sa.${randomBytes(24).toString('base64url')}`
    this.tokens.set(token, { namespace, pod, podUid: String(found.metadata.uid), audiences })
    return token
  }

  /** Cuts every open watch connection without ending its response (a network failure mid-stream). */
  dropWatches (): number {
    const dropped = this.watches.size
    for (const watch of this.watches) watch.res.socket?.destroy()
    this.watches.clear()
    return dropped
  }

  /**
   * Forgets the history: watches from any resourceVersion seen so far get 410 Gone (open ones an
   * ERROR event, then the end of the stream; new ones an HTTP 410), and clients must list again.
   */
  expireResourceVersions (): void {
    this.oldestRevision = ++this.revision
    this.history.length = 0
    for (const watch of this.watches) {
      writeEvent(watch.res, 'ERROR', statusObject(410, 'Expired', 'too old resource version'))
      watch.res.end()
    }
    this.watches.clear()
  }

  /** The next `count` requests fail with `status` (503: the API server is overloaded or restarting). */
  failNextRequests (count: number, status = 503): void {
    this.failures = { count, status }
  }

  get openWatches (): number {
    return this.watches.size
  }

  async close (): Promise<void> {
    for (const watch of this.watches) watch.res.end()
    this.watches.clear()
    const closed = once(this.server, 'close')
    this.server.close()
    this.server.closeAllConnections()
    await closed
  }

  // ---- storage ----

  private write (info: KindInfo, object: KubeObject): KubeObject {
    const key = objectKey(info.plural, object.metadata.namespace, object.metadata.name)
    const existing = this.objects.get(key)
    const stored: KubeObject = {
      ...object,
      apiVersion: apiVersionOf(info),
      kind: info.kind,
      metadata: {
        ...object.metadata,
        uid: existing?.metadata.uid ?? randomUUID(),
        creationTimestamp: existing?.metadata.creationTimestamp ?? new Date().toISOString(),
        resourceVersion: String(++this.revision),
        generation: nextGeneration(existing, object)
      }
    }
    this.objects.set(key, stored)
    this.record(info, existing === undefined ? 'ADDED' : 'MODIFIED', stored)
    return structuredClone(stored)
  }

  private record (info: KindInfo, type: StoredEvent['type'], object: KubeObject): void {
    const event = { revision: this.revision, type, plural: info.plural, object: structuredClone(object) }
    this.history.push(event)
    for (const watch of this.watches) {
      if (watches(watch, event)) writeEvent(watch.res, type, event.object)
    }
  }

  private list (info: KindInfo, namespace: string | undefined): KubeObject[] {
    return [...this.objects.entries()]
      .filter(([key]) => key.startsWith(`${info.plural}/${namespace === undefined ? '' : `${namespace}/`}`))
      .map(([, object]) => structuredClone(object))
  }

  // ---- HTTP ----

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url)
    const target = parsePath(url.pathname)
    if (target === undefined) return sendStatus(res, 404, 'NotFound', `the server could not find the requested resource ${url.pathname}`)
    const verb = verbOf(req.method ?? 'GET', target, url.searchParams.get('watch'))
    const user = this.users.get(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '')
    if (user === undefined) return sendStatus(res, 401, 'Unauthorized', 'Unauthorized')
    const resource = target.subresource === undefined ? target.plural : `${target.plural}/${target.subresource}`
    const call = { user: user.name, verb, apiGroup: target.group, resource, namespace: target.namespace, name: target.name }
    const refused = this.refusal(user, call)
    if (refused !== undefined) {
      this.calls.push({ ...call, status: refused.status })
      return sendStatus(res, refused.status, refused.reason, refused.message)
    }
    try {
      const body = ['POST', 'PUT', 'PATCH'].includes(req.method ?? '') ? JSON.parse(await readBody(req)) as KubeObject : undefined
      if (verb === 'watch') {
        this.calls.push({ ...call, status: this.watch(target, url.searchParams, res) })
        return
      }
      if (verb === 'list' && this.listDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.listDelayMs))
      const [code, answer] = this.answer(verb, target, body, req.headers['content-type'] ?? '')
      this.calls.push({ ...call, status: code })
      send(res, code, answer)
    } catch (err) {
      const refusal = err instanceof ApiRefusal ? err : new ApiRefusal(400, 'BadRequest', (err as Error).message)
      this.calls.push({ ...call, status: refusal.status })
      sendStatus(res, refusal.status, refusal.reason, refusal.message)
    }
  }

  /** 403 unless the user's RBAC allows the call; the injected failures after that. */
  private refusal (user: ApiUser, call: Omit<ApiCall, 'status'>): ApiRefusal | undefined {
    if (!user.access.some((rule) => allows(rule, call))) {
      return new ApiRefusal(403, 'Forbidden',
        `User "${user.name}" cannot ${call.verb} resource "${call.resource}" in API group "${call.apiGroup}"` +
        (call.namespace === undefined ? ' at the cluster scope' : ` in the namespace "${call.namespace}"`))
    }
    if (this.failures.count > 0) {
      this.failures.count--
      return new ApiRefusal(this.failures.status, 'ServiceUnavailable', 'the server is currently unable to handle the request')
    }
    return undefined
  }

  private answer (verb: Verb, target: Target, body: KubeObject | undefined, contentType: string): [number, unknown] {
    if (target.plural === TOKEN_REVIEWS.plural && target.group === TOKEN_REVIEWS.group) return [201, this.review(body)]
    const info = KINDS.find((k) => k.plural === target.plural && k.group === target.group && k.version === target.version && !this.unserved.has(k.plural))
    if (info === undefined) throw new ApiRefusal(404, 'NotFound', `the server could not find the requested resource (${target.plural})`)
    const namespace = info.namespaced ? target.namespace : undefined
    const key = objectKey(info.plural, namespace, target.name ?? '')
    const existing = this.objects.get(key)
    const missing = (): ApiRefusal => new ApiRefusal(404, 'NotFound', `${info.plural} "${target.name ?? ''}" not found`)
    switch (verb) {
      case 'list': {
        const items = this.list(info, namespace).map((item) => BUILT_IN_GROUPS.has(info.group) ? without(item, ['apiVersion', 'kind']) : item)
        return [200, { apiVersion: apiVersionOf(info), kind: `${info.kind}List`, metadata: { resourceVersion: String(this.revision) }, items }]
      }
      case 'get':
        if (existing === undefined) throw missing()
        return [200, existing]
      case 'create': {
        const object = requireObject(body)
        const created = { ...object, metadata: { ...object.metadata, ...(namespace !== undefined && { namespace }) } }
        if (this.objects.has(objectKey(info.plural, namespace, created.metadata.name))) {
          throw new ApiRefusal(409, 'AlreadyExists', `${info.plural} "${created.metadata.name}" already exists`)
        }
        return [201, this.write(info, created)]
      }
      case 'update':
      case 'patch': {
        if (existing === undefined) throw missing()
        const changed = verb === 'update' ? this.replacement(existing, requireObject(body)) : applyPatch(existing, body, contentType)
        // As the API server does: the main resource keeps its status, the status subresource changes nothing else.
        const next = target.subresource === 'status' ? { ...existing, status: changed.status } : { ...changed, status: existing.status }
        return [200, this.write(info, { ...next, metadata: { ...next.metadata, name: existing.metadata.name, namespace: existing.metadata.namespace } })]
      }
      case 'delete':
        if (existing === undefined) throw missing()
        this.delete(info.kind, namespace ?? '', existing.metadata.name)
        return [200, { ...statusObject(200, '', ''), status: 'Success' }]
      default:
        throw new ApiRefusal(405, 'MethodNotAllowed', `${verb} is not supported`)
    }
  }

  /** PUT: optimistic concurrency on metadata.resourceVersion, as the API server checks it. */
  private replacement (existing: KubeObject, body: KubeObject): KubeObject {
    const version = body.metadata.resourceVersion
    if (version !== undefined && version !== existing.metadata.resourceVersion) {
      throw new ApiRefusal(409, 'Conflict', 'the object has been modified; please apply your changes to the latest version and try again')
    }
    return body
  }

  /** Starts streaming events; returns the response's status. */
  private watch (target: Target, params: URLSearchParams, res: ServerResponse): number {
    const info = KINDS.find((k) => k.plural === target.plural && k.group === target.group && !this.unserved.has(k.plural))
    if (info === undefined) {
      sendStatus(res, 404, 'NotFound', `no resource ${target.plural}`)
      return 404
    }
    const from = params.get('resourceVersion') ?? ''
    if (from !== '' && from !== '0' && Number(from) < this.oldestRevision) {
      sendStatus(res, 410, 'Expired', `too old resource version: ${from} (${this.oldestRevision})`)
      return 410
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'cache-control': 'no-store' })
    // Clients wait for the headers before reading events; an idle watch must not hold them back.
    res.flushHeaders()
    const watch: OpenWatch = { plural: info.plural, ...(target.namespace !== undefined && { namespace: target.namespace }), res }
    if (from === '' || from === '0') {
      // No version: the current state first, as synthetic ADDED events.
      for (const object of this.list(info, target.namespace)) writeEvent(res, 'ADDED', object)
    } else {
      for (const event of this.history) {
        if (event.revision > Number(from) && watches(watch, event)) writeEvent(res, event.type, event.object)
      }
    }
    if (params.get('allowWatchBookmarks') === 'true') {
      writeEvent(res, 'BOOKMARK', { apiVersion: apiVersionOf(info), kind: info.kind, metadata: { name: '', resourceVersion: String(this.revision) } })
    }
    this.watches.add(watch)
    res.once('close', () => this.watches.delete(watch))
    return 200
  }

  private review (body: KubeObject | undefined): unknown {
    const spec = (body?.spec ?? {}) as { token?: string, audiences?: string[] }
    const reply = (status: object): unknown => ({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', metadata: {}, spec, status })
    const issued = this.tokens.get(spec.token ?? '')
    if (issued === undefined) return reply({ authenticated: false, error: 'invalid bearer token' })
    const pod = this.get('Pod', issued.namespace, issued.pod)
    // A bound token dies with its pod (and is not valid for a new pod of the same name).
    if (pod === undefined || pod.metadata.uid !== issued.podUid) {
      return reply({ authenticated: false, error: `pod ${issued.namespace}/${issued.pod} no longer exists` })
    }
    const requested = spec.audiences ?? []
    const audiences = requested.length === 0 ? [...issued.audiences] : requested.filter((a) => issued.audiences.includes(a))
    if (audiences.length === 0) return reply({ authenticated: false, error: 'token audiences are invalid for the target audiences' })
    const serviceAccount = String((pod.spec as { serviceAccountName?: string } | undefined)?.serviceAccountName ?? 'default')
    return reply({
      authenticated: true,
      audiences,
      user: {
        username: `system:serviceaccount:${issued.namespace}:${serviceAccount}`,
        uid: randomUUID(),
        groups: ['system:serviceaccounts', `system:serviceaccounts:${issued.namespace}`, 'system:authenticated'],
        extra: {
          'authentication.kubernetes.io/pod-name': [issued.pod],
          'authentication.kubernetes.io/pod-uid': [issued.podUid]
        }
      }
    })
  }
}

// ---- pure helpers ----

function kindOf (object: Pick<KubeObject, 'kind' | 'metadata'>): KindInfo {
  const info = KINDS.find((k) => k.kind === object.kind)
  if (info === undefined) throw new Error(`the stand-in does not serve kind ${String(object.kind)}`)
  return info
}

function objectKey (plural: string, namespace: string | undefined, name: string): string {
  return namespace === undefined ? `${plural}//${name}` : `${plural}/${namespace}/${name}`
}

/** As the API server counts it: the generation moves when anything but metadata and status changes. */
function nextGeneration (existing: KubeObject | undefined, next: KubeObject): number {
  if (existing === undefined) return 1
  const generation = Number(existing.metadata.generation ?? 1)
  const spec = (object: KubeObject): string => JSON.stringify(without(object, ['metadata', 'status']))
  return spec(existing) === spec(next) ? generation : generation + 1
}

function watches (watch: OpenWatch, event: StoredEvent): boolean {
  return watch.plural === event.plural && (watch.namespace === undefined || watch.namespace === event.object.metadata.namespace)
}

function without<T extends object> (object: T, keys: readonly string[]): Partial<T> {
  return Object.fromEntries(Object.entries(object).filter(([key]) => !keys.includes(key))) as Partial<T>
}

function requireObject (body: KubeObject | undefined): KubeObject {
  if (body === undefined || typeof body.metadata?.name !== 'string') throw new ApiRefusal(422, 'Invalid', 'metadata.name: Required value')
  return body
}

/** RBAC: a rule grants the verb on the resource of its group, in its namespace (if any), for its names (if any). */
export function allows (rule: ApiAccess, call: Omit<ApiCall, 'status' | 'user'>): boolean {
  return rule.apiGroup === call.apiGroup && rule.resource === call.resource && rule.verbs.includes(call.verb) &&
    (rule.namespace === undefined || rule.namespace === call.namespace) &&
    (rule.resourceNames === undefined || (call.name !== undefined && rule.resourceNames.includes(call.name)))
}

/** /api/v1/[namespaces/NS/]PLURAL[/NAME[/SUB]] and /apis/GROUP/VERSION/... */
function parsePath (pathname: string): Target | undefined {
  const parts = pathname.split('/').filter((p) => p !== '').map(decodeURIComponent)
  let group: string
  let rest: string[]
  if (parts[0] === 'api' && parts[1] === 'v1') {
    group = ''
    rest = parts.slice(2)
  } else if (parts[0] === 'apis' && parts.length >= 3) {
    group = parts[1]!
    rest = parts.slice(3)
  } else {
    return undefined
  }
  const version = group === '' ? 'v1' : parts[2]!
  const namespaced = rest[0] === 'namespaces' && rest.length >= 3
  const [plural, name, subresource] = namespaced ? rest.slice(2) : rest
  if (plural === undefined) return undefined
  return {
    group,
    version,
    plural,
    ...(namespaced && { namespace: rest[1] }),
    ...(name !== undefined && { name }),
    ...(subresource !== undefined && { subresource })
  }
}

function verbOf (method: string, target: Target, watch: string | null): Verb {
  switch (method) {
    case 'GET': return target.name !== undefined ? 'get' : watch === 'true' || watch === '1' ? 'watch' : 'list'
    case 'POST': return 'create'
    case 'PUT': return 'update'
    case 'PATCH': return 'patch'
    case 'DELETE': return 'delete'
    default: return 'get'
  }
}

/** JSON merge patch (RFC 7386); a strategic merge patch is the same for the maps ambit patches. */
function applyPatch (existing: KubeObject, patch: unknown, contentType: string): KubeObject {
  if (!/merge-patch\+json/.test(contentType)) {
    throw new ApiRefusal(415, 'UnsupportedMediaType', `the stand-in accepts merge patches only, not ${contentType}`)
  }
  return mergePatch(existing, patch) as KubeObject
}

function mergePatch (target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch
  const result: Record<string, unknown> = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...target } : {}
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key]
    else result[key] = mergePatch(result[key], value)
  }
  return result
}

function statusObject (code: number, reason: string, message: string): KubeObject {
  return { apiVersion: 'v1', kind: 'Status', metadata: { name: '' }, status: 'Failure', message, reason, code }
}

function writeEvent (res: ServerResponse, type: string, object: unknown): void {
  res.write(`${JSON.stringify({ type, object })}\n`)
}

function send (res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

function sendStatus (res: ServerResponse, status: number, reason: string, message: string): void {
  send(res, status, statusObject(status, reason, message))
}

function readBody (req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.once('end', () => resolve(Buffer.concat(chunks).toString() || '{}'))
    req.once('error', reject)
  })
}
