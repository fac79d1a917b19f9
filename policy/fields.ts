/**
 * Typed readers for untyped input (parsed YAML or JSON). A reader checks one value and
 * returns it typed, or throws InvalidFieldError naming the value's path
 * (`spec.rules[0].from[1].source.ipBlocks[2]`), so that validators read like a schema
 * and every error says exactly where it is.
 */
import { isIP } from 'node:net'
import { InvalidFieldError } from './errors.js'

/** A value from the input and the path that leads to it. */
export interface Field {
  readonly value: unknown
  readonly path: string
}

/** Checks a field and returns its typed value, or throws InvalidFieldError. */
export type Reader<T> = (field: Field) => T

export function fail (path: string, reason: string): never {
  throw new InvalidFieldError(path, reason)
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/

/** `spec.ports[0]`; keys that are not identifiers are quoted: `metadata.labels["app.kubernetes.io/name"]`. */
function childPath (path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`
  if (!IDENTIFIER.test(key)) return `${path}[${JSON.stringify(key)}]`
  return path === '' ? key : `${path}.${key}`
}

function typeName (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'list'
  return typeof value
}

function isRecord (value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** An object (YAML mapping) of the input, read key by key. A key set to null counts as absent, as in Kubernetes. */
export class ObjectReader {
  readonly path: string
  private readonly entries: Readonly<Record<string, unknown>>

  private constructor (path: string, entries: Readonly<Record<string, unknown>>) {
    this.path = path
    this.entries = entries
  }

  static read (field: Field): ObjectReader {
    if (!isRecord(field.value)) fail(field.path, `expected an object, got ${typeName(field.value)}`)
    return new ObjectReader(field.path, field.value)
  }

  pathOf (key: string): string {
    return childPath(this.path, key)
  }

  has (key: string): boolean {
    return Object.hasOwn(this.entries, key) && this.entries[key] !== undefined && this.entries[key] !== null
  }

  keys (): string[] {
    return Object.keys(this.entries).filter((key) => this.has(key))
  }

  field (key: string): Field {
    return { value: this.has(key) ? this.entries[key] : undefined, path: this.pathOf(key) }
  }

  required<T> (key: string, read: Reader<T>): T {
    if (!this.has(key)) fail(this.pathOf(key), 'is required')
    return read(this.field(key))
  }

  optional<T> (key: string, read: Reader<T>): T | undefined {
    return this.has(key) ? read(this.field(key)) : undefined
  }

  withDefault<T> (key: string, read: Reader<T>, fallback: T): T {
    return this.has(key) ? read(this.field(key)) : fallback
  }

  /** A nested object that may be absent: absent reads as empty, so its own fields take their defaults. */
  objectOrEmpty (key: string): ObjectReader {
    return this.has(key) ? ObjectReader.read(this.field(key)) : new ObjectReader(this.pathOf(key), {})
  }

  /** For schemas we own: a misspelt field is an error rather than a silently ignored setting. */
  rejectUnknownKeys (known: readonly string[]): void {
    const unknown = this.keys().find((key) => !known.includes(key))
    if (unknown !== undefined) fail(this.pathOf(unknown), `unknown field (expected one of ${known.join(', ')})`)
  }
}

// ---- Combinators ----

export function objectOf<T> (build: (object: ObjectReader) => T): Reader<T> {
  return (field) => build(ObjectReader.read(field))
}

/** objectOf for schemas we own, where unknown fields are errors. */
export function strictObjectOf<T> (known: readonly string[], build: (object: ObjectReader) => T): Reader<T> {
  return objectOf((object) => {
    object.rejectUnknownKeys(known)
    return build(object)
  })
}

export function listOf<T> (read: Reader<T>): Reader<T[]> {
  return (field) => {
    if (!Array.isArray(field.value)) fail(field.path, `expected a list, got ${typeName(field.value)}`)
    return field.value.map((value, index) => read({ value, path: childPath(field.path, index) }))
  }
}

/** A string-keyed map whose keys and values are both checked (the key's path is the entry's path). */
export function mapOf<V> (readKey: Reader<string>, readValue: Reader<V>): Reader<Record<string, V>> {
  return (field) => {
    const object = ObjectReader.read(field)
    const entries = object.keys().map((key): [string, V] => {
      const entry = object.field(key)
      return [readKey({ value: key, path: entry.path }), readValue(entry)]
    })
    return Object.fromEntries(entries)
  }
}

/** One of a fixed set of values; `unsupported` ones get a plainer message (valid elsewhere, not in ambit). */
export function oneOf<const T extends string | number> (values: readonly T[], unsupported: readonly string[] = []): Reader<T> {
  return (field) => {
    const found = values.find((value) => value === field.value)
    if (found !== undefined) return found
    if (typeof field.value === 'string' && unsupported.includes(field.value)) fail(field.path, `${field.value} is not supported`)
    const expected = values.map((value) => JSON.stringify(value)).join(', ')
    fail(field.path, `${JSON.stringify(field.value)} is not one of ${expected}`)
  }
}

/** A string that also passes `check`, which returns the reason it does not (or undefined). */
export function checkedText (check: (text: string) => string | undefined): Reader<string> {
  return (field) => {
    const value = text(field)
    const problem = check(value)
    if (problem !== undefined) fail(field.path, problem)
    return value
  }
}

/** A string matching `pattern`; `what` completes "is not ...". */
export function matching (pattern: RegExp, what: string, maxLength = Infinity): Reader<string> {
  return checkedText((value) => pattern.test(value) && value.length <= maxLength
    ? undefined
    : `${JSON.stringify(value)} is not ${what}`)
}

// ---- Scalars ----

export const text: Reader<string> = (field) => {
  if (typeof field.value !== 'string') fail(field.path, `expected a string, got ${typeName(field.value)}`)
  return field.value
}

export const nonEmptyText: Reader<string> = checkedText((value) => value === '' ? 'must not be empty' : undefined)

/** A number in [min, max]. */
export function decimal (min = -Infinity, max = Infinity): Reader<number> {
  return (field) => {
    if (typeof field.value !== 'number' || Number.isNaN(field.value)) {
      fail(field.path, `expected a number, got ${typeName(field.value)}`)
    }
    const problem = outOfRange(field.value, min, max)
    if (problem !== undefined) fail(field.path, problem)
    return field.value
  }
}

function outOfRange (value: number, min: number, max: number): string | undefined {
  if (value >= min && value <= max) return undefined
  if (max === Infinity) return `must be at least ${min} (got ${value})`
  if (min === -Infinity) return `must be at most ${max} (got ${value})`
  return `${value} is not in ${min}..${max}`
}

/** An integer in [min, max]. */
export function integer (min = -Infinity, max = Infinity): Reader<number> {
  const inRange = decimal(min, max)
  return (field) => {
    if (typeof field.value === 'number' && !Number.isInteger(field.value)) fail(field.path, `${field.value} is not an integer`)
    return inRange(field)
  }
}

// ---- Network ----

export const port: Reader<number> = integer(1, 65535)

/** A port written as a string (Istio) or a number; always returned as a string of digits. */
export const portText: Reader<string> = (field) => {
  if (typeof field.value === 'number') return String(port(field))
  const value = text(field)
  if (!/^\d{1,5}$/.test(value)) fail(field.path, `${JSON.stringify(value)} is not a port number`)
  return String(port({ value: Number(value), path: field.path }))
}

export const ipAddress: Reader<string> = checkedText((value) => isIP(value) === 0
  ? `${JSON.stringify(value)} is not an IP address`
  : undefined)

/** An IPv4/IPv6 address or CIDR ("10.0.0.0/8", "fd00::/64"). */
export const ipOrCidr: Reader<string> = checkedText((value) => isIpOrCidr(value)
  ? undefined
  : `${JSON.stringify(value)} is not an IP address or CIDR`)

export function isIpOrCidr (value: string): boolean {
  const slash = value.indexOf('/')
  if (slash < 0) return isIP(value) !== 0
  const family = isIP(value.slice(0, slash))
  const bits = value.slice(slash + 1)
  if (family === 0 || !/^\d{1,3}$/.test(bits)) return false
  return Number(bits) <= (family === 4 ? 32 : 128)
}

// ---- Kubernetes names and labels ----

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/

/** RFC 1123 label: Namespace and Service names, which become parts of hostnames. */
export const dnsLabel: Reader<string> = matching(DNS_LABEL, 'a DNS-1123 label (lowercase letters, digits and "-", at most 63)', 63)

/** RFC 1123 subdomain: most object names. */
export const dnsSubdomain: Reader<string> = matching(DNS_SUBDOMAIN, 'a DNS-1123 subdomain (lowercase letters, digits, "-" and ".", at most 253)', 253)

/** `[prefix/]name` as label and annotation keys are. */
export const labelKey: Reader<string> = checkedText((value) => {
  const slash = value.lastIndexOf('/')
  const prefix = slash < 0 ? undefined : value.slice(0, slash)
  const name = value.slice(slash + 1)
  const valid = (prefix === undefined || (DNS_SUBDOMAIN.test(prefix) && prefix.length <= 253)) &&
    LABEL_NAME.test(name) && name.length <= 63
  return valid ? undefined : `${JSON.stringify(value)} is not a valid label key`
})

export const labelValue: Reader<string> = checkedText((value) => value === '' || (LABEL_NAME.test(value) && value.length <= 63)
  ? undefined
  : `${JSON.stringify(value)} is not a valid label value`)

export const labels: Reader<Record<string, string>> = mapOf(labelKey, labelValue)

export const annotations: Reader<Record<string, string>> = mapOf(labelKey, text)

// ---- HTTP ----

/** Gateway API's HTTPHeaderName: an RFC 7230 token. */
export const httpHeaderName: Reader<string> = matching(/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/, 'a valid HTTP header name', 256)

export const regularExpression: Reader<string> = checkedText((value) => {
  try {
    new RegExp(value) // compiled only to learn whether it is valid
    return undefined
  } catch (err) {
    return (err as Error).message
  }
})

// ---- Durations ----

/** GEP-2257: up to four of h, m, s, ms in that order, each with 1 to 5 digits ("1h", "1m30s", "200ms"). */
const DURATION = /^(?:(\d{1,5})h)?(?:(\d{1,5})m)?(?:(\d{1,5})s)?(?:(\d{1,5})ms)?$/

/** Milliseconds, or undefined when `value` is not a Gateway API duration. */
export function parseDuration (value: string): number | undefined {
  const parts = value === '' ? null : DURATION.exec(value)
  if (parts === null) return undefined
  const [hours, minutes, seconds, millis] = parts.slice(1).map((part) => Number(part ?? 0))
  return ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis
}

/** A Gateway API duration string, read as milliseconds. */
export const duration: Reader<number> = (field) => {
  const value = text(field)
  const millis = parseDuration(value)
  if (millis === undefined) fail(field.path, `${JSON.stringify(value)} is not a duration like "200ms", "1s" or "1m30s"`)
  return millis
}

/** A duration that must be longer than zero (an interval). */
export const positiveDuration: Reader<number> = (field) => {
  const millis = duration(field)
  if (millis === 0) fail(field.path, 'must be longer than 0s')
  return millis
}
