/**
 * Validation at the edge: turns one parsed Kubernetes object into the typed Resource of
 * resources.ts, or throws InvalidResourceError naming the file, document, object, field
 * path and reason. Nothing past this point re-checks a resource.
 *
 * There is one small reader per kind (the KINDS table); the shapes several kinds share
 * (metadata, selectors, references, route matches and filters) are readers of their own,
 * built on the path-carrying readers of fields.ts.
 *
 * Kubernetes, Gateway API and Istio objects may carry fields ambit does not use (status,
 * managedFields...): those are ignored. Our own TrafficPolicy rejects unknown fields, and
 * so do AuthorizationPolicy rules, where ignoring a constraint would silently widen a policy.
 */
import { InvalidFieldError, InvalidResourceError, type ResourceLocation } from './errors.js'
import {
  ObjectReader, annotations, decimal, dnsLabel, dnsSubdomain, duration, fail, httpHeaderName, integer,
  ipAddress, ipOrCidr, labels, listOf, mapOf, matching, nonEmptyText, objectOf, oneOf, port, portText,
  positiveDuration, regularExpression, strictObjectOf, text, type Field, type Reader
} from './fields.js'
import type {
  AuthorizationCondition, AuthorizationOperation, AuthorizationPolicyResource, AuthorizationRule, AuthorizationSource,
  BackendRef, EndpointConditions, EndpointPort, EndpointSliceResource, EndpointTargetRef, GRPCMethodMatch, GRPCRouteResource, GRPCRouteRule, GRPCRouteMatch, GatewayListener, GatewayResource,
  HTTPHeader, HTTPHeaderMatch, HTTPPathMatch, HTTPRouteFilter, HTTPRouteMatch, HTTPRouteResource, HTTPRouteRule,
  HeaderModifier, Labels, MtlsMode, NamespaceResource, NodeResource, ObjectMeta, ObjectRef, PathModifier,
  PeerAuthenticationResource, PodResource, RateLimitRule, Resource, ResourceKind, RouteRetry, RouteTimeouts,
  ServicePort, ServiceResource, SliceEndpoint, TrafficPolicyResource, TrafficPolicySpec
} from './resources.js'

type ResourceOf<K extends ResourceKind> = Extract<Resource, { kind: K }>

/** What every resource has, read before the kind's own fields. */
interface Header<K extends ResourceKind> {
  readonly apiVersion: ResourceOf<K>['apiVersion']
  readonly kind: K
  readonly metadata: ObjectMeta
}

interface KindSchema<K extends ResourceKind> {
  readonly apiVersions: ReadonlyArray<ResourceOf<K>['apiVersion']>
  /** Cluster-scoped objects have namespace ''. */
  readonly clusterScoped?: boolean
  /** How metadata.name is checked; a DNS-1123 subdomain unless said otherwise. */
  readonly name?: Reader<string>
  readonly read: (object: ObjectReader, header: Header<K>) => ResourceOf<K>
}

const GATEWAY_API = 'gateway.networking.k8s.io'

const KINDS: { readonly [K in ResourceKind]: KindSchema<K> } = {
  Namespace: { apiVersions: ['v1'], clusterScoped: true, name: dnsLabel, read: readNamespace },
  Node: { apiVersions: ['v1'], clusterScoped: true, read: readNode },
  Pod: { apiVersions: ['v1'], read: readPod },
  Service: { apiVersions: ['v1'], name: dnsLabel, read: readService },
  EndpointSlice: { apiVersions: ['discovery.k8s.io/v1'], read: readEndpointSlice },
  Gateway: { apiVersions: [`${GATEWAY_API}/v1`, `${GATEWAY_API}/v1beta1`], read: readGateway },
  HTTPRoute: { apiVersions: [`${GATEWAY_API}/v1`, `${GATEWAY_API}/v1beta1`], read: readHTTPRoute },
  GRPCRoute: { apiVersions: [`${GATEWAY_API}/v1`], read: readGRPCRoute },
  AuthorizationPolicy: { apiVersions: ['security.istio.io/v1', 'security.istio.io/v1beta1'], read: readAuthorizationPolicy },
  PeerAuthentication: { apiVersions: ['security.istio.io/v1', 'security.istio.io/v1beta1'], read: readPeerAuthentication },
  TrafficPolicy: { apiVersions: ['ambit.dev/v1alpha1'], read: readTrafficPolicy }
}

export function isResourceKind (kind: string): kind is ResourceKind {
  return Object.hasOwn(KINDS, kind)
}

/**
 * Checks one parsed object and returns it typed. `path` prefixes every field path, for
 * objects nested in another document (`items[3]` of a `kind: List`).
 * location.object is replaced by the object's own 'Kind/name' whenever the object says it.
 */
export function validateResource (raw: unknown, location: ResourceLocation, path = ''): Resource {
  try {
    return readResource({ value: raw, path })
  } catch (err) {
    if (!(err instanceof InvalidFieldError)) throw err
    const object = describeObject(raw) ?? (location.object === '' ? '<unknown>' : location.object)
    throw new InvalidResourceError({ ...location, object }, err.field === '' ? '(document)' : err.field, err.reason)
  }
}

/** 'Kind/name', or as much of it as the object has. */
function describeObject (raw: unknown): string | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined
  const { kind, metadata } = raw as { kind?: unknown, metadata?: { name?: unknown } }
  if (typeof kind !== 'string') return undefined
  const name = typeof metadata === 'object' && metadata !== null ? metadata.name : undefined
  return typeof name === 'string' ? `${kind}/${name}` : kind
}

function readResource (root: Field): Resource {
  const object = ObjectReader.read(root)
  const kind = object.required('kind', text)
  if (!isResourceKind(kind)) {
    const apiVersion = object.has('apiVersion') ? String(object.field('apiVersion').value) : '<none>'
    fail(object.pathOf('kind'), `Unknown kind ${JSON.stringify(kind)} (apiVersion ${apiVersion})`)
  }
  return readKind(kind, object)
}

function readKind<K extends ResourceKind> (kind: K, object: ObjectReader): ResourceOf<K> {
  const schema: KindSchema<K> = KINDS[kind]
  const apiVersion = object.required('apiVersion', text)
  const known = schema.apiVersions.find((version) => version === apiVersion)
  if (known === undefined) {
    fail(object.pathOf('apiVersion'), `${apiVersion} is not an apiVersion of ${kind} (expected ${schema.apiVersions.join(' or ')})`)
  }
  const metadata = readMetadata(object.required('metadata', ObjectReader.read), schema)
  return schema.read(object, { apiVersion: known, kind, metadata })
}

function readMetadata (metadata: ObjectReader, schema: Pick<KindSchema<ResourceKind>, 'name' | 'clusterScoped'>): ObjectMeta {
  return {
    name: metadata.required('name', schema.name ?? dnsSubdomain),
    namespace: schema.clusterScoped === true ? '' : metadata.withDefault('namespace', dnsLabel, 'default'),
    labels: metadata.withDefault('labels', labels, {}),
    annotations: metadata.withDefault('annotations', annotations, {}),
    uid: metadata.optional('uid', text),
    resourceVersion: metadata.optional('resourceVersion', text),
    generation: metadata.optional('generation', integer(0))
  }
}

// ---- Shared shapes ----

/** Istio's WorkloadSelector: matchLabels only. */
const workloadSelector: Reader<Labels> = objectOf((selector) => {
  // Ignoring matchExpressions would select more workloads than the author meant.
  if (selector.has('matchExpressions')) fail(selector.pathOf('matchExpressions'), 'is not supported (Istio selects workloads by matchLabels)')
  return selector.withDefault('matchLabels', labels, {})
})

/** A reference to another object, as Gateway API parentRefs and Istio targetRefs are. A `kind` default of undefined makes kind required. */
function objectRef (defaults: { group: string, kind?: string }): Reader<ObjectRef> {
  return objectOf((ref) => ({
    group: ref.withDefault('group', text, defaults.group),
    kind: defaults.kind === undefined ? ref.required('kind', nonEmptyText) : ref.withDefault('kind', nonEmptyText, defaults.kind),
    name: ref.required('name', dnsSubdomain),
    namespace: ref.optional('namespace', dnsLabel),
    port: ref.optional('port', port),
    sectionName: ref.optional('sectionName', dnsSubdomain)
  }))
}

/** `targetRefs`, or the older singular `targetRef` (Istio and Envoy Gateway accept both, never together). */
function readTargetRefs (spec: ObjectReader, read: Reader<ObjectRef>): ObjectRef[] {
  if (spec.has('targetRef') && spec.has('targetRefs')) fail(spec.pathOf('targetRef'), 'cannot be set together with targetRefs')
  if (spec.has('targetRef')) return [spec.required('targetRef', read)]
  return spec.withDefault('targetRefs', listOf(read), [])
}

// ---- Namespace, Node, Pod, Service ----

function readNamespace (_object: ObjectReader, header: Header<'Namespace'>): NamespaceResource {
  return header
}

/** Only an InternalIP must be an IP address: that is where the node's ztunnel listens. */
const nodeAddress = objectOf((address) => {
  const type = address.required('type', text)
  return { type, address: address.required('address', type === 'InternalIP' ? ipAddress : text) }
})

function readNode (object: ObjectReader, header: Header<'Node'>): NodeResource {
  const addresses = object.objectOrEmpty('status').withDefault('addresses', listOf(nodeAddress), [])
  return { ...header, internalIP: addresses.find((a) => a.type === 'InternalIP')?.address }
}

/** IANA_SVC_NAME, as container port names and Service targetPort names are. */
const portName = matching(/^(?=.*[a-z])(?!.*--)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a port name (IANA service name: lowercase letters, digits and "-", at most 15)', 15)

const containerPort = objectOf((entry) => ({
  name: entry.optional('name', portName),
  containerPort: entry.required('containerPort', port)
}))

const containerPorts = objectOf((container) => container.withDefault('ports', listOf(containerPort), []))

const POD_PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'] as const

function readPod (object: ObjectReader, header: Header<'Pod'>): PodResource {
  const spec = object.objectOrEmpty('spec')
  const status = object.objectOrEmpty('status')
  const ports = spec.withDefault('containers', listOf(containerPorts), []).flat()
  return {
    ...header,
    nodeName: spec.optional('nodeName', dnsSubdomain),
    serviceAccountName: spec.optional('serviceAccountName', dnsSubdomain) ?? spec.optional('serviceAccount', dnsSubdomain) ?? 'default',
    podIP: status.optional('podIP', ipAddress),
    phase: status.optional('phase', oneOf(POD_PHASES)),
    namedPorts: Object.fromEntries(ports.flatMap((p) => p.name === undefined ? [] : [[p.name, p.containerPort]]))
  }
}

/** A port number, or the name of a container port; a string of digits is read as the number. */
const targetPort: Reader<number | string> = (field) => {
  if (typeof field.value === 'string' && /^\d+$/.test(field.value)) return port({ value: Number(field.value), path: field.path })
  return typeof field.value === 'number' ? port(field) : portName(field)
}

const servicePort = objectOf((entry): ServicePort => {
  const number = entry.required('port', port)
  return {
    name: entry.optional('name', dnsLabel),
    port: number,
    targetPort: entry.withDefault('targetPort', targetPort, number),
    protocol: entry.withDefault('protocol', oneOf(['TCP', 'UDP', 'SCTP']), 'TCP'),
    appProtocol: entry.optional('appProtocol', nonEmptyText)
  }
})

/** 'None' (headless) and '' (not allocated yet, ExternalName) have no virtual IP. */
const clusterIP: Reader<string | undefined> = (field) => {
  const value = text(field)
  return value === 'None' || value === '' ? undefined : ipAddress(field)
}

function readService (object: ObjectReader, header: Header<'Service'>): ServiceResource {
  const spec = object.objectOrEmpty('spec')
  const selector = spec.optional('selector', labels)
  return {
    ...header,
    // As in Kubernetes, an empty selector selects nothing (endpoints are managed elsewhere).
    selector: selector === undefined || Object.keys(selector).length === 0 ? undefined : selector,
    clusterIP: spec.optional('clusterIP', clusterIP),
    ports: spec.withDefault('ports', listOf(servicePort), [])
  }
}

// ---- EndpointSlice ----

const flag: Reader<boolean> = (field) =>
  typeof field.value === 'boolean' ? field.value : fail(field.path, `expected true or false, got ${JSON.stringify(field.value)}`)

const endpointConditions = objectOf((conditions): EndpointConditions => ({
  ready: conditions.optional('ready', flag),
  serving: conditions.optional('serving', flag),
  terminating: conditions.optional('terminating', flag)
}))

const endpointTargetRef = objectOf((ref): EndpointTargetRef => ({
  kind: ref.withDefault('kind', text, ''),
  name: ref.required('name', dnsSubdomain),
  namespace: ref.optional('namespace', dnsLabel)
}))

const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'] as const

function sliceEndpoint (addressType: EndpointSliceResource['addressType']): Reader<SliceEndpoint> {
  const address = addressType === 'FQDN' ? dnsSubdomain : ipAddress
  return objectOf((endpoint) => {
    const addresses = endpoint.required('addresses', listOf(address))
    if (addresses.length === 0) fail(endpoint.pathOf('addresses'), 'must not be empty')
    return {
      addresses,
      conditions: endpoint.withDefault('conditions', endpointConditions, {}),
      nodeName: endpoint.optional('nodeName', dnsSubdomain),
      targetRef: endpoint.optional('targetRef', endpointTargetRef)
    }
  })
}

/** Kubernetes writes an unnamed port as name ''. */
const endpointPortName: Reader<string | undefined> = (field) => field.value === '' ? undefined : dnsLabel(field)

/** A port without a number means "all ports" in Kubernetes; no Service port maps to it, so it reads as undefined. */
const endpointPort = objectOf((entry): EndpointPort | undefined => {
  const number = entry.optional('port', port)
  const name = entry.optional('name', endpointPortName)
  const protocol = entry.withDefault('protocol', oneOf(['TCP', 'UDP', 'SCTP']), 'TCP')
  return number === undefined ? undefined : { ...(name !== undefined && { name }), port: number, protocol }
})

function readEndpointSlice (object: ObjectReader, header: Header<'EndpointSlice'>): EndpointSliceResource {
  const addressType = object.required('addressType', oneOf(ADDRESS_TYPES))
  return {
    ...header,
    addressType,
    endpoints: object.withDefault('endpoints', listOf(sliceEndpoint(addressType)), []),
    ports: object.withDefault('ports', listOf(endpointPort), []).filter((p) => p !== undefined)
  }
}

// ---- Gateway ----

const listener = objectOf((entry): GatewayListener => ({
  name: entry.required('name', dnsSubdomain),
  port: entry.required('port', port),
  protocol: entry.required('protocol', nonEmptyText)
}))

function readGateway (object: ObjectReader, header: Header<'Gateway'>): GatewayResource {
  const spec = object.required('spec', ObjectReader.read)
  return {
    ...header,
    gatewayClassName: spec.required('gatewayClassName', dnsSubdomain),
    listeners: spec.withDefault('listeners', listOf(listener), [])
  }
}

// ---- HTTPRoute and GRPCRoute ----

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const
const STRING_MATCH_TYPES = ['Exact', 'RegularExpression'] as const

/** Gateway API Hostname: lowercase DNS name, optionally with a leading "*." wildcard. */
const hostname = matching(/^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, 'a hostname', 253)
const preciseHostname = matching(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, 'a hostname without wildcard', 253)
const absolutePath = matching(/^\//, 'an absolute path (starting with "/")', 1024)

const parentRef = objectRef({ group: GATEWAY_API, kind: 'Gateway' })

const backendRef = objectOf((ref): BackendRef => {
  const group = ref.withDefault('group', text, '')
  const kind = ref.withDefault('kind', nonEmptyText, 'Service')
  const backendPort = ref.optional('port', port)
  // The same rule as the Gateway API CRD's validation.
  if (group === '' && kind === 'Service' && backendPort === undefined) fail(ref.pathOf('port'), 'is required when the backend is a Service')
  return {
    group,
    kind,
    name: ref.required('name', dnsSubdomain),
    namespace: ref.optional('namespace', dnsLabel),
    port: backendPort,
    weight: ref.withDefault('weight', integer(0, 1_000_000), 1)
  }
})

/** Exact values are plain text; RegularExpression values must compile. */
function matchValue (type: (typeof STRING_MATCH_TYPES)[number] | HTTPPathMatch['type'], plain: Reader<string>): Reader<string> {
  return type === 'RegularExpression' ? regularExpression : plain
}

const headerMatch = objectOf((match): HTTPHeaderMatch => {
  const type = match.withDefault('type', oneOf(STRING_MATCH_TYPES), 'Exact')
  return { type, name: match.required('name', httpHeaderName), value: match.required('value', matchValue(type, text)) }
})

const pathMatch = objectOf((match): HTTPPathMatch => {
  const type = match.withDefault('type', oneOf(['Exact', 'PathPrefix', 'RegularExpression']), 'PathPrefix')
  return { type, value: match.withDefault('value', matchValue(type, absolutePath), '/') }
})

const DEFAULT_PATH: HTTPPathMatch = { type: 'PathPrefix', value: '/' }

/** As the CRD defaults it: a match without a path matches every path. */
const httpRouteMatch = objectOf((match): HTTPRouteMatch => ({
  path: match.withDefault('path', pathMatch, DEFAULT_PATH),
  headers: match.withDefault('headers', listOf(headerMatch), []),
  queryParams: match.withDefault('queryParams', listOf(headerMatch), []),
  method: match.optional('method', oneOf(HTTP_METHODS))
}))

const header = objectOf((entry): HTTPHeader => ({
  name: entry.required('name', httpHeaderName),
  value: entry.required('value', text)
}))

const headerModifier = objectOf((modifier): HeaderModifier => ({
  set: modifier.withDefault('set', listOf(header), []),
  add: modifier.withDefault('add', listOf(header), []),
  remove: modifier.withDefault('remove', listOf(httpHeaderName), [])
}))

const pathModifier = objectOf((modifier): PathModifier => {
  const type = modifier.required('type', oneOf(['ReplaceFullPath', 'ReplacePrefixMatch']))
  return type === 'ReplaceFullPath'
    ? { type, replaceFullPath: modifier.required('replaceFullPath', absolutePath) }
    : { type, replacePrefixMatch: modifier.required('replacePrefixMatch', absolutePath) }
})

const requestRedirect = objectOf((redirect) => ({
  scheme: redirect.optional('scheme', oneOf(['http', 'https'])),
  hostname: redirect.optional('hostname', preciseHostname),
  path: redirect.optional('path', pathModifier),
  port: redirect.optional('port', port),
  statusCode: redirect.withDefault('statusCode', oneOf([301, 302, 303, 307, 308]), 302)
}))

const urlRewrite = objectOf((rewrite) => ({
  hostname: rewrite.optional('hostname', preciseHostname),
  path: rewrite.optional('path', pathModifier)
}))

const requestMirror = objectOf((mirror) => ({
  backendRef: mirror.required('backendRef', backendRef),
  percent: mirror.optional('percent', integer(0, 100))
}))

type FilterType = HTTPRouteFilter['type']
const HTTP_FILTERS: readonly FilterType[] = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'RequestMirror']
const GRPC_FILTERS: readonly FilterType[] = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror']
const UNSUPPORTED_FILTERS = ['ExtensionRef', 'CORS', 'ExternalAuth']

/** A filter of one of `allowed` types; the object named after the type (e.g. `urlRewrite`) is required. */
function routeFilter (allowed: readonly FilterType[]): Reader<HTTPRouteFilter> {
  const unsupported = [...UNSUPPORTED_FILTERS, ...HTTP_FILTERS.filter((type) => !allowed.includes(type))]
  return objectOf((filter): HTTPRouteFilter => {
    const type = filter.required('type', oneOf(allowed, unsupported))
    switch (type) {
      case 'RequestHeaderModifier': return { type, requestHeaderModifier: filter.required('requestHeaderModifier', headerModifier) }
      case 'ResponseHeaderModifier': return { type, responseHeaderModifier: filter.required('responseHeaderModifier', headerModifier) }
      case 'RequestRedirect': return { type, requestRedirect: filter.required('requestRedirect', requestRedirect) }
      case 'URLRewrite': return { type, urlRewrite: filter.required('urlRewrite', urlRewrite) }
      case 'RequestMirror': return { type, requestMirror: filter.required('requestMirror', requestMirror) }
    }
  })
}

const routeTimeouts = objectOf((timeouts): RouteTimeouts => {
  const request = timeouts.optional('request', duration)
  const backendRequest = timeouts.optional('backendRequest', duration)
  // GEP-1742: 0s disables a timeout; otherwise one backend attempt cannot outlast the whole request.
  if (request !== undefined && request > 0 && backendRequest !== undefined && backendRequest > request) {
    fail(timeouts.pathOf('backendRequest'), 'must not be longer than request')
  }
  return { request, backendRequest }
})

/** GEP-1731 leaves the number of attempts to the implementation; 2 is Istio's and Envoy Gateway's. */
const DEFAULT_RETRY_ATTEMPTS = 2

const routeRetry = objectOf((retry): RouteRetry => ({
  codes: retry.withDefault('codes', listOf(integer(400, 599)), []),
  attempts: retry.withDefault('attempts', integer(0), DEFAULT_RETRY_ATTEMPTS),
  backoff: retry.optional('backoff', duration)
}))

/** The CRD's default for a rule without matches: every request. */
const DEFAULT_HTTP_MATCHES: readonly HTTPRouteMatch[] = [{ path: DEFAULT_PATH, headers: [], queryParams: [] }]

const httpRouteRule = objectOf((rule): HTTPRouteRule => ({
  name: rule.optional('name', dnsSubdomain),
  matches: rule.withDefault('matches', listOf(httpRouteMatch), DEFAULT_HTTP_MATCHES),
  filters: rule.withDefault('filters', listOf(routeFilter(HTTP_FILTERS)), []),
  backendRefs: rule.withDefault('backendRefs', listOf(backendRef), []),
  timeouts: rule.optional('timeouts', routeTimeouts),
  retry: rule.optional('retry', routeRetry)
}))

function readRouteParents (spec: ObjectReader): Pick<HTTPRouteResource, 'parentRefs' | 'hostnames'> {
  return {
    parentRefs: spec.withDefault('parentRefs', listOf(parentRef), []),
    hostnames: spec.withDefault('hostnames', listOf(hostname), [])
  }
}

function readHTTPRoute (object: ObjectReader, header: Header<'HTTPRoute'>): HTTPRouteResource {
  const spec = object.objectOrEmpty('spec')
  return {
    ...header,
    ...readRouteParents(spec),
    // The CRD's default: one rule matching every request.
    rules: spec.withDefault('rules', listOf(httpRouteRule), [{ matches: DEFAULT_HTTP_MATCHES, filters: [], backendRefs: [] }])
  }
}

const grpcService = matching(/^\.?[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$/, 'a gRPC service name (package.Service)', 1024)
const grpcMethod = matching(/^[A-Za-z_][A-Za-z_0-9]*$/, 'a gRPC method name', 1024)

const grpcMethodMatch = objectOf((match): GRPCMethodMatch => {
  const type = match.withDefault('type', oneOf(STRING_MATCH_TYPES), 'Exact')
  const service = match.optional('service', matchValue(type, grpcService))
  const method = match.optional('method', matchValue(type, grpcMethod))
  if (service === undefined && method === undefined) fail(match.path, 'needs a service, a method or both')
  return { type, service, method }
})

const grpcRouteMatch = objectOf((match): GRPCRouteMatch => ({
  method: match.optional('method', grpcMethodMatch),
  headers: match.withDefault('headers', listOf(headerMatch), [])
}))

/** Without matches a GRPCRoute rule matches every request. */
const grpcRouteRule = objectOf((rule): GRPCRouteRule => ({
  name: rule.optional('name', dnsSubdomain),
  matches: rule.withDefault('matches', listOf(grpcRouteMatch), []),
  filters: rule.withDefault('filters', listOf(routeFilter(GRPC_FILTERS)), []),
  backendRefs: rule.withDefault('backendRefs', listOf(backendRef), [])
}))

function readGRPCRoute (object: ObjectReader, header: Header<'GRPCRoute'>): GRPCRouteResource {
  const spec = object.objectOrEmpty('spec')
  return {
    ...header,
    ...readRouteParents(spec),
    rules: spec.withDefault('rules', listOf(grpcRouteRule), [])
  }
}

// ---- AuthorizationPolicy ----

const strings = listOf(text)
const ipBlocks = listOf(ipOrCidr)
const ports = listOf(portText)

/** True when a rule part sets no constraint at all; Istio rejects those rather than read them as "anything". */
function isEmpty (part: object): boolean {
  return Object.values(part).every((list?: readonly string[]) => list === undefined || list.length === 0)
}

const SOURCE_FIELDS = ['principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces',
  'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks']

const source = strictObjectOf(SOURCE_FIELDS, (from): AuthorizationSource => {
  const read = {
    principals: from.optional('principals', strings),
    notPrincipals: from.optional('notPrincipals', strings),
    requestPrincipals: from.optional('requestPrincipals', strings),
    notRequestPrincipals: from.optional('notRequestPrincipals', strings),
    namespaces: from.optional('namespaces', strings),
    notNamespaces: from.optional('notNamespaces', strings),
    ipBlocks: from.optional('ipBlocks', ipBlocks),
    notIpBlocks: from.optional('notIpBlocks', ipBlocks),
    remoteIpBlocks: from.optional('remoteIpBlocks', ipBlocks),
    notRemoteIpBlocks: from.optional('notRemoteIpBlocks', ipBlocks)
  }
  if (isEmpty(read)) fail(from.path, 'must not be empty')
  return read
})

const OPERATION_FIELDS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths']

const operation = strictObjectOf(OPERATION_FIELDS, (to): AuthorizationOperation => {
  const read = {
    hosts: to.optional('hosts', strings),
    notHosts: to.optional('notHosts', strings),
    ports: to.optional('ports', ports),
    notPorts: to.optional('notPorts', ports),
    methods: to.optional('methods', strings),
    notMethods: to.optional('notMethods', strings),
    paths: to.optional('paths', strings),
    notPaths: to.optional('notPaths', strings)
  }
  if (isEmpty(read)) fail(to.path, 'must not be empty')
  return read
})

/** Istio's condition keys (https://istio.io/latest/docs/reference/config/security/conditions/). */
const CONDITION_KEYS = ['source.ip', 'remote.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port',
  'connection.sni', 'request.auth.principal', 'request.auth.audiences', 'request.auth.presenter']
const CONDITION_KEY_PATTERNS = [/^request\.headers\[[^\]]+\]$/, /^request\.auth\.claims(\[[^\]]+\])+$/, /^experimental\.envoy\.filters\./]
const IP_CONDITION_KEYS = ['source.ip', 'remote.ip', 'destination.ip']

function isConditionKey (key: string): boolean {
  return CONDITION_KEYS.includes(key) || CONDITION_KEY_PATTERNS.some((pattern) => pattern.test(key))
}

/** Values are checked as the key needs: addresses for *.ip, port numbers for destination.port. */
function conditionValues (key: string): Reader<string[]> {
  if (IP_CONDITION_KEYS.includes(key)) return ipBlocks
  if (key === 'destination.port') return ports
  return strings
}

const condition = strictObjectOf(['key', 'values', 'notValues'], (when): AuthorizationCondition => {
  const key = when.required('key', text)
  if (!isConditionKey(key)) fail(when.pathOf('key'), `${JSON.stringify(key)} is not an Istio condition key`)
  const read = { key, values: when.optional('values', conditionValues(key)), notValues: when.optional('notValues', conditionValues(key)) }
  if (read.values === undefined && read.notValues === undefined) fail(when.pathOf('values'), 'values or notValues is required')
  return read
})

const authorizationRule = strictObjectOf(['from', 'to', 'when'], (rule): AuthorizationRule => ({
  from: rule.withDefault('from', listOf(objectOf((from) => from.required('source', source))), []),
  to: rule.withDefault('to', listOf(objectOf((to) => to.required('operation', operation))), []),
  when: rule.withDefault('when', listOf(condition), [])
}))

const policyTargetRef = objectRef({ group: '' })

function readAuthorizationPolicy (object: ObjectReader, header: Header<'AuthorizationPolicy'>): AuthorizationPolicyResource {
  // An empty spec is meaningful: ALLOW with no rules allows nothing.
  const spec = object.objectOrEmpty('spec')
  const selector = spec.optional('selector', workloadSelector)
  const targetRefs = readTargetRefs(spec, policyTargetRef)
  if (selector !== undefined && targetRefs.length > 0) fail(spec.pathOf('targetRefs'), 'cannot be set together with selector')
  return {
    ...header,
    selector,
    targetRefs,
    action: spec.withDefault('action', oneOf(['ALLOW', 'DENY', 'AUDIT'], ['CUSTOM']), 'ALLOW'),
    rules: spec.withDefault('rules', listOf(authorizationRule), [])
  }
}

// ---- PeerAuthentication ----

/** UNSET (and no mode at all) inherits from the parent scope: undefined. */
const mtls = objectOf((settings): MtlsMode | undefined => {
  const mode = settings.withDefault('mode', oneOf(['STRICT', 'PERMISSIVE', 'DISABLE', 'UNSET']), 'UNSET')
  return mode === 'UNSET' ? undefined : mode
})

function readPeerAuthentication (object: ObjectReader, header: Header<'PeerAuthentication'>): PeerAuthenticationResource {
  const spec = object.objectOrEmpty('spec')
  const selector = spec.optional('selector', workloadSelector)
  const portLevelMtls = spec.withDefault('portLevelMtls', mapOf(portText, mtls), {})
  // As Istio: port numbers mean target ports of particular workloads.
  if (selector === undefined && Object.keys(portLevelMtls).length > 0) fail(spec.pathOf('portLevelMtls'), 'requires a selector')
  return { ...header, selector, mode: spec.optional('mtls', mtls), portLevelMtls }
}

// ---- TrafficPolicy (ours: unknown fields are errors) ----

/** A Service of the policy's own namespace, as Envoy Gateway's LocalPolicyTargetReference. */
const serviceTargetRef = strictObjectOf(['group', 'kind', 'name', 'sectionName'], (ref): ObjectRef => ({
  group: ref.withDefault('group', oneOf(['']), ''),
  kind: ref.withDefault('kind', oneOf(['Service']), 'Service'),
  name: ref.required('name', dnsLabel),
  sectionName: ref.optional('sectionName', dnsSubdomain)
}))

const consistentHash = strictObjectOf(['header', 'cookie'], (hash) => {
  const key = { header: hash.optional('header', httpHeaderName), cookie: hash.optional('cookie', nonEmptyText) }
  if (key.header === undefined && key.cookie === undefined) fail(hash.path, 'needs a header or a cookie')
  if (key.header !== undefined && key.cookie !== undefined) fail(hash.pathOf('cookie'), 'cannot be set together with header')
  return key
})

const loadBalancer = strictObjectOf(['type', 'consistentHash'], (balancer): NonNullable<TrafficPolicySpec['loadBalancer']> => {
  const type = balancer.required('type', oneOf(['RoundRobin', 'LeastRequest', 'ConsistentHash']))
  const hash = balancer.optional('consistentHash', consistentHash)
  if (type === 'ConsistentHash' && hash === undefined) fail(balancer.pathOf('consistentHash'), 'is required when type is ConsistentHash')
  if (type !== 'ConsistentHash' && hash !== undefined) fail(balancer.pathOf('consistentHash'), 'is only allowed when type is ConsistentHash')
  return { type, consistentHash: hash }
})

const positive = integer(1)

const circuitBreaker = strictObjectOf(
  ['maxConnections', 'maxPendingRequests', 'maxRequestsPerConnection', 'maxParallelRetries', 'maxParallelRequests'],
  (limits): NonNullable<TrafficPolicySpec['circuitBreaker']> => ({
    maxConnections: limits.optional('maxConnections', positive),
    maxPendingRequests: limits.optional('maxPendingRequests', positive),
    maxRequestsPerConnection: limits.optional('maxRequestsPerConnection', positive),
    maxParallelRetries: limits.optional('maxParallelRetries', positive),
    maxParallelRequests: limits.optional('maxParallelRequests', positive)
  }))

const outlierDetection = strictObjectOf(
  ['consecutive5xxErrors', 'consecutiveGatewayErrors', 'interval', 'baseEjectionTime', 'maxEjectionPercent'],
  (detection): NonNullable<TrafficPolicySpec['outlierDetection']> => ({
    consecutive5xxErrors: detection.optional('consecutive5xxErrors', integer(0)),
    consecutiveGatewayErrors: detection.optional('consecutiveGatewayErrors', integer(0)),
    interval: detection.withDefault('interval', positiveDuration, 10_000),
    baseEjectionTime: detection.withDefault('baseEjectionTime', positiveDuration, 30_000),
    maxEjectionPercent: detection.withDefault('maxEjectionPercent', integer(0, 100), 10)
  }))

/** Fault percentages may be fractions (0.1 = one request in a thousand); absent means every request. */
const percentage = decimal(0, 100)

const faultInjection = strictObjectOf(['delay', 'abort'], (fault): NonNullable<TrafficPolicySpec['faultInjection']> => ({
  delay: fault.optional('delay', strictObjectOf(['fixedDelay', 'percentage'], (delay) => ({
    fixedDelay: delay.required('fixedDelay', duration),
    percentage: delay.withDefault('percentage', percentage, 100)
  }))),
  abort: fault.optional('abort', strictObjectOf(['httpStatus', 'percentage'], (abort) => ({
    httpStatus: abort.required('httpStatus', integer(200, 599)),
    percentage: abort.withDefault('percentage', percentage, 100)
  })))
}))

const RATE_LIMIT_UNITS = { Second: 1_000, Minute: 60_000, Hour: 3_600_000 } as const

/** `requests` per `interval` (a duration), or per `unit` as Envoy Gateway writes it. */
const rateLimitRule = strictObjectOf(['requests', 'interval', 'unit'], (rule): RateLimitRule => {
  if (rule.has('interval') && rule.has('unit')) fail(rule.pathOf('unit'), 'cannot be set together with interval')
  const unit = rule.optional('unit', oneOf(['Second', 'Minute', 'Hour']))
  const interval = unit === undefined ? rule.optional('interval', positiveDuration) : RATE_LIMIT_UNITS[unit]
  if (interval === undefined) fail(rule.pathOf('interval'), 'is required (or unit: Second, Minute or Hour)')
  return { requests: rule.required('requests', positive), interval }
})

const rateLimit = strictObjectOf(['local', 'global'], (limits): NonNullable<TrafficPolicySpec['rateLimit']> => ({
  local: limits.optional('local', rateLimitRule),
  global: limits.optional('global', rateLimitRule)
}))

const TRAFFIC_POLICY_FIELDS = ['targetRefs', 'targetRef', 'loadBalancer', 'circuitBreaker', 'outlierDetection', 'faultInjection', 'rateLimit']

function readTrafficPolicy (object: ObjectReader, header: Header<'TrafficPolicy'>): TrafficPolicyResource {
  const spec = object.required('spec', ObjectReader.read)
  spec.rejectUnknownKeys(TRAFFIC_POLICY_FIELDS)
  const targetRefs = readTargetRefs(spec, serviceTargetRef)
  if (targetRefs.length === 0) fail(spec.pathOf('targetRefs'), 'is required (at least one Service)')
  return {
    ...header,
    targetRefs,
    spec: {
      loadBalancer: spec.optional('loadBalancer', loadBalancer),
      circuitBreaker: spec.optional('circuitBreaker', circuitBreaker),
      outlierDetection: spec.optional('outlierDetection', outlierDetection),
      faultInjection: spec.optional('faultInjection', faultInjection),
      rateLimit: spec.optional('rateLimit', rateLimit)
    }
  }
}
