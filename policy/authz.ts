/**
 * AuthorizationPolicy evaluation, as Istio documents it
 * (https://istio.io/latest/docs/reference/config/security/authorization-policy/):
 *
 *   1. if any DENY policy matches, deny;
 *   2. if no ALLOW policy applies, allow;
 *   3. if any ALLOW policy matches, allow;
 *   4. otherwise deny.
 *   AUDIT policies only record which rule matched. CUSTOM is not supported.
 *
 * A policy matches when any of its rules matches (no rules: never). A rule matches when
 * its `from` (any source), `to` (any operation) and `when` (every condition) all hold;
 * inside a source or operation every field must hold; a field holds when the value
 * matches any of its values and none of its not-values.
 *
 * One engine serves both proxies: the ztunnel evaluates a connection (L4, no `http` in the
 * request), the waypoint evaluates an HTTP request (L7, `http` present). Policies are
 * compiled once (compilePolicy) and evaluated per connection (evaluatePolicies), which
 * is a hot path: evaluation compares precompiled values and allocates little.
 */
import type {
  AuthorizationAction, AuthorizationCondition, AuthorizationOperation, AuthorizationPolicyResource,
  AuthorizationRule, AuthorizationSource
} from './resources.js'
import {
  compileExactMatch, compileHostMatch, compileIpMatch, compilePathMatch, compilePortMatch,
  compileStringMatch, parseIp, type IpAddress, type Matcher
} from './match.js'

// ---- the request ----

export interface AuthzRequest {
  readonly source: {
    /** The peer's SPIFFE id without 'spiffe://' (e.g. 'cluster.local/ns/shop/sa/web'); absent for plaintext. */
    readonly principal?: string
    /** The peer's namespace, taken from its authenticated identity; absent for plaintext. */
    readonly namespace?: string
    readonly ip: string
  }
  readonly destination: { readonly ip: string, readonly port: number }
  /** TLS server name the client asked for, if any. */
  readonly sni?: string
  /** Present only when evaluating an HTTP request (in the waypoint). */
  readonly http?: HttpAttributes
}

export interface HttpAttributes {
  readonly method: string
  /** The request target; a query string is ignored, as Istio matches paths without it. */
  readonly path: string
  /** The Host / :authority value, port included if the client sent one. */
  readonly host: string
  /** Lower-case header names, as Node gives them; several values are joined with ','. */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>
  /** The authenticated JWT principal ('iss/sub'), if any. */
  readonly requestPrincipal?: string
}

/** The facts a policy can test, read from an AuthzRequest once and on demand. */
class RequestFacts {
  readonly principal: string | undefined
  readonly namespace: string | undefined
  readonly port: number
  readonly sni: string | undefined
  readonly http: HttpAttributes | undefined
  private readonly request: AuthzRequest
  private parsedSourceIp: IpAddress | undefined | null = null
  private parsedDestinationIp: IpAddress | undefined | null = null
  private lowerHost: string | undefined
  private pathOnly: string | undefined

  constructor (request: AuthzRequest) {
    this.request = request
    const principal = request.source.principal
    // Tolerate a full SPIFFE URI: Istio policies name principals without the scheme.
    this.principal = principal?.startsWith('spiffe://') === true ? principal.slice(9) : principal
    this.namespace = request.source.namespace
    this.port = request.destination.port
    this.sni = request.sni
    this.http = request.http
  }

  get sourceIp (): IpAddress | undefined {
    if (this.parsedSourceIp === null) this.parsedSourceIp = parseIp(this.request.source.ip)
    return this.parsedSourceIp
  }

  get destinationIp (): IpAddress | undefined {
    if (this.parsedDestinationIp === null) this.parsedDestinationIp = parseIp(this.request.destination.ip)
    return this.parsedDestinationIp
  }

  get host (): string | undefined {
    if (this.lowerHost === undefined && this.http !== undefined) this.lowerHost = this.http.host.toLowerCase()
    return this.lowerHost
  }

  get path (): string | undefined {
    if (this.pathOnly === undefined && this.http !== undefined) this.pathOnly = stripQuery(this.http.path)
    return this.pathOnly
  }

  header (name: string): string | undefined {
    const value = this.http?.headers[name]
    return typeof value === 'string' || value === undefined ? value : value.join(',')
  }
}

const QUERY_OR_FRAGMENT = /[?#]/

function stripQuery (path: string): string {
  const end = path.search(QUERY_OR_FRAGMENT)
  return end < 0 ? path : path.slice(0, end)
}

// ---- attributes: what a policy field or `when` key tests ----

/**
 * Where a check can be evaluated: 'L4' on any connection, 'L7' only on an HTTP request,
 * 'never' when the policy value could not be compiled (an invalid value or an unknown
 * `when` key), so the check fails closed everywhere.
 */
type Layer = 'L4' | 'L7' | 'never'

type FactTest = (facts: RequestFacts) => boolean

interface Attribute {
  readonly layer: 'L4' | 'L7'
  /** One policy value as a test of the request; undefined when the value is invalid. */
  readonly compile: (pattern: string) => FactTest | undefined
}

function attribute<T> (
  layer: 'L4' | 'L7',
  compileValue: (pattern: string) => Matcher<T> | undefined,
  read: (facts: RequestFacts) => T | undefined
): Attribute {
  return {
    layer,
    compile (pattern) {
      const matches = compileValue(pattern)
      return matches === undefined ? undefined : (facts) => matches(read(facts))
    }
  }
}

const SOURCE_PRINCIPAL = attribute('L4', compileStringMatch, (f) => f.principal)
const SOURCE_NAMESPACE = attribute('L4', compileStringMatch, (f) => f.namespace)
const SOURCE_IP = attribute('L4', compileIpMatch, (f) => f.sourceIp)
const DESTINATION_IP = attribute('L4', compileIpMatch, (f) => f.destinationIp)
const DESTINATION_PORT = attribute('L4', compilePortMatch, (f) => f.port)
const CONNECTION_SNI = attribute('L4', compileStringMatch, (f) => f.sni)
const REQUEST_PRINCIPAL = attribute('L7', compileStringMatch, (f) => f.http?.requestPrincipal)
const HOST = attribute('L7', compileHostMatch, (f) => f.host)
const METHOD = attribute('L7', compileExactMatch, (f) => f.http?.method)
const PATH = attribute('L7', compilePathMatch, (f) => f.path)

function headerAttribute (name: string): Attribute {
  const lowerName = name.toLowerCase()
  return attribute('L7', compileStringMatch, (f) => f.header(lowerName))
}

interface FieldSpec<T> {
  readonly values: keyof T
  readonly notValues: keyof T
  readonly attribute: Attribute
}

/**
 * remoteIpBlocks test the source address: ambit does not trust X-Forwarded-For, so the
 * remote address is the peer's, at L4 and L7 alike.
 */
const SOURCE_FIELDS: readonly FieldSpec<AuthorizationSource>[] = [
  { values: 'principals', notValues: 'notPrincipals', attribute: SOURCE_PRINCIPAL },
  { values: 'requestPrincipals', notValues: 'notRequestPrincipals', attribute: REQUEST_PRINCIPAL },
  { values: 'namespaces', notValues: 'notNamespaces', attribute: SOURCE_NAMESPACE },
  { values: 'ipBlocks', notValues: 'notIpBlocks', attribute: SOURCE_IP },
  { values: 'remoteIpBlocks', notValues: 'notRemoteIpBlocks', attribute: SOURCE_IP }
]

const OPERATION_FIELDS: readonly FieldSpec<AuthorizationOperation>[] = [
  { values: 'hosts', notValues: 'notHosts', attribute: HOST },
  { values: 'ports', notValues: 'notPorts', attribute: DESTINATION_PORT },
  { values: 'methods', notValues: 'notMethods', attribute: METHOD },
  { values: 'paths', notValues: 'notPaths', attribute: PATH }
]

const CONDITION_KEYS: ReadonlyMap<string, Attribute> = new Map([
  ['source.ip', SOURCE_IP],
  ['remote.ip', SOURCE_IP],
  ['source.namespace', SOURCE_NAMESPACE],
  ['source.principal', SOURCE_PRINCIPAL],
  ['destination.ip', DESTINATION_IP],
  ['destination.port', DESTINATION_PORT],
  ['connection.sni', CONNECTION_SNI],
  ['request.auth.principal', REQUEST_PRINCIPAL]
])

const HEADER_KEY = /^request\.headers\[(.+)\]$/

/** The attribute a `when` key tests; undefined for keys ambit cannot evaluate (JWT claims, audiences...). */
function conditionAttribute (key: string): Attribute | undefined {
  const header = HEADER_KEY.exec(key)
  return header === null ? CONDITION_KEYS.get(key) : headerAttribute(header[1])
}

// ---- compiled policies ----

interface Check {
  readonly layer: Layer
  readonly test: FactTest
}

export interface CompiledRule {
  /** Position in the policy's `rules`. */
  readonly index: number
  /** Any one source must hold (each an AND of checks); empty: no constraint. */
  readonly from: readonly (readonly Check[])[]
  /** Any one operation must hold; empty: no constraint. */
  readonly to: readonly (readonly Check[])[]
  /** Every condition must hold. */
  readonly when: readonly Check[]
  /** Some check needs the HTTP request (cannot be decided by the ztunnel). */
  readonly needsHttp: boolean
  /** Some check can never be decided (an invalid value or unknown key). */
  readonly undecidable: boolean
}

export interface CompiledPolicy {
  /** 'namespace/name'. */
  readonly key: string
  readonly action: AuthorizationAction
  readonly rules: readonly CompiledRule[]
  /** Values that could not be compiled; their rules fail closed. Empty for a valid policy. */
  readonly problems: readonly string[]
  /** Some rule needs the HTTP request. */
  readonly needsHttp: boolean
  /** Some rule has a value that could not be compiled. */
  readonly undecidable: boolean
}

export function compilePolicy (key: string, resource: AuthorizationPolicyResource): CompiledPolicy {
  const problems: string[] = []
  const rules = resource.rules.map((rule, index) => compileRule(rule, index, problems))
  return {
    key,
    action: resource.action,
    rules,
    problems,
    needsHttp: rules.some((rule) => rule.needsHttp),
    undecidable: rules.some((rule) => rule.undecidable)
  }
}

function compileRule (rule: AuthorizationRule, index: number, problems: string[]): CompiledRule {
  const where = `rules[${index}]`
  const from = rule.from.map((source, i) =>
    compileFields(source, SOURCE_FIELDS, `${where}.from[${i}].source`, problems))
  const to = rule.to.map((operation, i) =>
    compileFields(operation, OPERATION_FIELDS, `${where}.to[${i}].operation`, problems))
  const when = rule.when.flatMap((condition, i) =>
    compileCondition(condition, `${where}.when[${i}]`, problems))
  const checks = [...from.flat(), ...to.flat(), ...when]
  return {
    index,
    from,
    to,
    when,
    needsHttp: checks.some((check) => check.layer === 'L7'),
    undecidable: checks.some((check) => check.layer === 'never')
  }
}

function compileFields<T extends object> (
  object: T, fields: readonly FieldSpec<T>[], where: string, problems: string[]
): Check[] {
  return fields.flatMap((field) => compileValueLists(
    field.attribute,
    object[field.values] as readonly string[] | undefined,
    object[field.notValues] as readonly string[] | undefined,
    `${where}.${String(field.values)}`, `${where}.${String(field.notValues)}`, problems))
}

function compileCondition (condition: AuthorizationCondition, where: string, problems: string[]): Check[] {
  const attr = conditionAttribute(condition.key)
  if (attr === undefined) {
    problems.push(`${where}: key '${condition.key}' is not supported`)
    return [NEVER]
  }
  return compileValueLists(attr, condition.values, condition.notValues,
    `${where}.values`, `${where}.notValues`, problems)
}

/** A field: any-of `values` and none-of `notValues`; an absent or empty list is no constraint. */
function compileValueLists (
  attr: Attribute, values: readonly string[] | undefined, notValues: readonly string[] | undefined,
  valuesWhere: string, notValuesWhere: string, problems: string[]
): Check[] {
  const checks: Check[] = []
  if (values !== undefined && values.length > 0) {
    checks.push(compileAnyOf(attr, values, false, valuesWhere, problems))
  }
  if (notValues !== undefined && notValues.length > 0) {
    checks.push(compileAnyOf(attr, notValues, true, notValuesWhere, problems))
  }
  return checks
}

const NEVER: Check = { layer: 'never', test: () => false }

function compileAnyOf (
  attr: Attribute, patterns: readonly string[], negate: boolean, where: string, problems: string[]
): Check {
  const tests: FactTest[] = []
  for (const pattern of patterns) {
    const test = attr.compile(pattern)
    if (test === undefined) {
      problems.push(`${where}: invalid value '${pattern}'`)
      return NEVER
    }
    tests.push(test)
  }
  const test: FactTest = negate ? (facts) => !anyHolds(tests, facts) : (facts) => anyHolds(tests, facts)
  return { layer: attr.layer, test }
}

function anyHolds (tests: readonly FactTest[], facts: RequestFacts): boolean {
  for (let i = 0; i < tests.length; i++) {
    if (tests[i](facts)) return true
  }
  return false
}

// ---- matching ----

/**
 * Whether a rule matches, failing closed on what cannot be checked here.
 *
 * Istio's ztunnel cannot see HTTP, so it cannot check L7 fields (requestPrincipals,
 * hosts, methods, paths, `when` on request.*). Istio's "Use Layer 4 security policy"
 * doc and istiod's ztunnel translation resolve that towards denying: within an ALLOW
 * policy such a rule is omitted (it never matches), and a DENY policy is enforced
 * without its HTTP parts (they count as matched, so the rule matches whenever its L4
 * parts do; a DENY rule made only of L7 fields denies everything). ambit does the same,
 * and treats a value it cannot compile the same way at every layer. AUDIT is treated as
 * ALLOW: it records only matches it could check.
 */
function ruleMatches (rule: CompiledRule, action: AuthorizationAction, facts: RequestFacts): boolean {
  const decidable = !rule.undecidable && (!rule.needsHttp || facts.http !== undefined)
  if (!decidable && action !== 'DENY') return false
  return anyClauseHolds(rule.from, facts) && anyClauseHolds(rule.to, facts) && allHold(rule.when, facts)
}

function anyClauseHolds (clauses: readonly (readonly Check[])[], facts: RequestFacts): boolean {
  if (clauses.length === 0) return true
  for (let i = 0; i < clauses.length; i++) {
    if (allHold(clauses[i], facts)) return true
  }
  return false
}

function allHold (checks: readonly Check[], facts: RequestFacts): boolean {
  for (let i = 0; i < checks.length; i++) {
    if (!checkHolds(checks[i], facts)) return false
  }
  return true
}

function checkHolds (check: Check, facts: RequestFacts): boolean {
  // Only reached for a DENY rule (see ruleMatches): what cannot be checked counts as matched.
  if (check.layer === 'never' || (check.layer === 'L7' && facts.http === undefined)) return true
  return check.test(facts)
}

/** The first rule of the policy that matches, if any. */
function firstMatchingRule (policy: CompiledPolicy, facts: RequestFacts): CompiledRule | undefined {
  for (const rule of policy.rules) {
    if (ruleMatches(rule, policy.action, facts)) return rule
  }
  return undefined
}

// ---- the decision ----

export interface RuleRef {
  /** 'namespace/name' of the policy. */
  readonly policy: string
  readonly rule: number
}

export interface PolicyVerdict {
  readonly policy: string
  readonly action: AuthorizationAction
  /** The first rule that matched; absent when none did. */
  readonly matchedRule?: number
}

export interface Decision {
  readonly allowed: boolean
  /** One human-readable line. */
  readonly reason: string
  /** The policy that decided, absent for the default allow. */
  readonly policy?: string
  readonly rule?: number
  readonly action?: 'ALLOW' | 'DENY'
  /** AUDIT rules that matched; they never change the verdict. */
  readonly audit: readonly RuleRef[]
  /** Every policy evaluated, in the order given, with the rule that matched (for `ambit explain`). */
  readonly considered: readonly PolicyVerdict[]
}

/**
 * Why a rule could not be fully checked by this evaluation, if it could not: 'http' for
 * HTTP fields at L4, 'invalid' for values that could not be compiled.
 */
type Unchecked = 'http' | 'invalid' | undefined

function uncheckedPart (rule: CompiledRule, facts: RequestFacts): Unchecked {
  if (rule.undecidable) return 'invalid'
  if (rule.needsHttp && facts.http === undefined) return 'http'
  return undefined
}

const DENY_NOTES = {
  http: ' (its HTTP fields cannot be checked at L4 and count as matched)',
  invalid: ' (its invalid or unsupported values count as matched)'
} as const

const ALLOW_LIST_NOTES = {
  http: '; rules with HTTP fields never match at L4',
  invalid: '; rules with invalid or unsupported values never match'
} as const

/**
 * The verdict of the policies that apply to a destination (selected elsewhere) on one
 * connection (`request.http` absent) or HTTP request. Every policy is evaluated, so the
 * decision can show each one's verdict; among several matches the first given decides.
 */
export function evaluatePolicies (policies: readonly CompiledPolicy[], request: AuthzRequest): Decision {
  const facts = new RequestFacts(request)
  const considered: PolicyVerdict[] = []
  const audit: RuleRef[] = []
  let denied: { policy: CompiledPolicy, rule: CompiledRule } | undefined
  let allowed: RuleRef | undefined
  let allowPolicies = 0
  for (const policy of policies) {
    const rule = firstMatchingRule(policy, facts)
    if (policy.action === 'ALLOW') allowPolicies++
    if (rule === undefined) {
      considered.push({ policy: policy.key, action: policy.action })
      continue
    }
    considered.push({ policy: policy.key, action: policy.action, matchedRule: rule.index })
    if (policy.action === 'DENY') denied ??= { policy, rule }
    else if (policy.action === 'ALLOW') allowed ??= { policy: policy.key, rule: rule.index }
    else audit.push({ policy: policy.key, rule: rule.index })
  }

  if (denied !== undefined) {
    const ref = { policy: denied.policy.key, rule: denied.rule.index }
    const unchecked = uncheckedPart(denied.rule, facts)
    const note = unchecked === undefined ? '' : DENY_NOTES[unchecked]
    return decided(false, 'DENY', ref, `denied by DENY policy ${ref.policy} rule ${ref.rule}${note}`, audit, considered)
  }
  if (allowed !== undefined) {
    return decided(true, 'ALLOW', allowed, `allowed by ALLOW policy ${allowed.policy} rule ${allowed.rule}`, audit, considered)
  }
  if (allowPolicies === 0) {
    return { allowed: true, reason: 'allowed: no ALLOW policy applies', audit, considered }
  }
  return { allowed: false, reason: allowListReason(policies, facts), audit, considered }
}

function decided (
  allowed: boolean, action: 'ALLOW' | 'DENY', ref: RuleRef, reason: string,
  audit: readonly RuleRef[], considered: readonly PolicyVerdict[]
): Decision {
  return { allowed, reason, policy: ref.policy, rule: ref.rule, action, audit, considered }
}

/** The allow-list denial names every ALLOW policy and why some of their rules could not match. */
function allowListReason (policies: readonly CompiledPolicy[], facts: RequestFacts): string {
  let names = ''
  let http = false
  let invalid = false
  for (const policy of policies) {
    if (policy.action !== 'ALLOW') continue
    names = names === '' ? policy.key : `${names}, ${policy.key}`
    http ||= policy.needsHttp && facts.http === undefined
    invalid ||= policy.undecidable
  }
  return `denied: no rule of the ALLOW policies ${names} matches` +
    (http ? ALLOW_LIST_NOTES.http : '') + (invalid ? ALLOW_LIST_NOTES.invalid : '')
}
