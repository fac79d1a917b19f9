/**
 * A small checker for the OpenAPI v3 schemas of CustomResourceDefinitions: it answers what the
 * API server answers for a custom object under `kubectl apply` (strict field validation, so
 * unknown fields are errors), for the keywords our CRD and the schema fixtures use. A schema
 * with a keyword it does not know is refused outright (unsupportedKeywords), so a constraint
 * can never be skipped in silence.
 *
 * structuralProblems() checks the rules that make a schema "structural", which the API server
 * requires of every CRD (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema).
 */

export interface Schema {
  readonly type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean'
  readonly description?: string
  readonly properties?: Readonly<Record<string, Schema>>
  readonly additionalProperties?: Schema
  readonly required?: readonly string[]
  readonly items?: Schema
  readonly enum?: readonly unknown[]
  readonly minimum?: number
  readonly maximum?: number
  readonly minLength?: number
  readonly maxLength?: number
  readonly minItems?: number
  readonly maxItems?: number
  readonly pattern?: string
  readonly format?: string
  readonly oneOf?: readonly Schema[]
  readonly anyOf?: readonly Schema[]
  readonly allOf?: readonly Schema[]
  readonly not?: Schema
  readonly 'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map'
  readonly 'x-kubernetes-list-map-keys'?: readonly string[]
}

/** Keywords that only describe or merge, and so constrain nothing this checker must test. */
const ANNOTATIONS = ['description', 'x-kubernetes-map-type']

const CHECKED = ['type', 'properties', 'additionalProperties', 'required', 'items', 'enum', 'minimum', 'maximum',
  'minLength', 'maxLength', 'minItems', 'maxItems', 'pattern', 'format', 'oneOf', 'anyOf', 'allOf', 'not',
  'x-kubernetes-list-type', 'x-kubernetes-list-map-keys']

const FORMATS = ['date-time']

const COMBINATORS = ['oneOf', 'anyOf', 'allOf'] as const

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Every sub-schema with its path, the schema itself first. */
function * walk (schema: Schema, path: string): Generator<{ schema: Schema, path: string }> {
  yield { schema, path }
  for (const [name, child] of Object.entries(schema.properties ?? {})) yield * walk(child, `${path}.properties.${name}`)
  if (schema.additionalProperties !== undefined) yield * walk(schema.additionalProperties, `${path}.additionalProperties`)
  if (schema.items !== undefined) yield * walk(schema.items, `${path}.items`)
  for (const combinator of COMBINATORS) {
    for (const [i, child] of (schema[combinator] ?? []).entries()) yield * walk(child, `${path}.${combinator}[${i}]`)
  }
  if (schema.not !== undefined) yield * walk(schema.not, `${path}.not`)
}

/** Keywords (and formats) of `schema` this checker would not enforce. */
export function unsupportedKeywords (schema: Schema, path = '$'): string[] {
  return [...walk(schema, path)].flatMap(({ schema: s, path: p }) => [
    ...Object.keys(s).filter((k) => !CHECKED.includes(k) && !ANNOTATIONS.includes(k)).map((k) => `${p}: ${k}`),
    ...(s.format !== undefined && !FORMATS.includes(s.format) ? [`${p}: format ${s.format}`] : [])
  ])
}

/** Why `value` does not conform to `schema` ([] when it does). */
export function schemaProblems (value: unknown, schema: Schema, path = ''): string[] {
  const typeProblem = checkType(value, schema, path)
  if (typeProblem !== undefined) return [typeProblem]
  return [
    ...checkEnum(value, schema, path),
    ...checkScalar(value, schema, path),
    ...(Array.isArray(value) ? checkArray(value, schema, path) : []),
    ...(isRecord(value) ? checkObject(value, schema, path) : []),
    ...checkCombinators(value, schema, path)
  ]
}

function where (path: string): string {
  return path === '' ? '(root)' : path
}

function checkType (value: unknown, schema: Schema, path: string): string | undefined {
  if (schema.type === undefined) return undefined
  const ok = {
    object: isRecord(value),
    array: Array.isArray(value),
    string: typeof value === 'string',
    integer: Number.isInteger(value),
    number: typeof value === 'number' && Number.isFinite(value),
    boolean: typeof value === 'boolean'
  }[schema.type]
  return ok ? undefined : `${where(path)}: expected ${schema.type}, got ${JSON.stringify(value)}`
}

function checkEnum (value: unknown, schema: Schema, path: string): string[] {
  if (schema.enum === undefined || schema.enum.some((allowed) => allowed === value)) return []
  return [`${where(path)}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`]
}

function checkScalar (value: unknown, schema: Schema, path: string): string[] {
  const problems: string[] = []
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) problems.push(`${where(path)}: ${value} is below ${schema.minimum}`)
    if (schema.maximum !== undefined && value > schema.maximum) problems.push(`${where(path)}: ${value} is above ${schema.maximum}`)
  }
  if (typeof value === 'string') {
    const length = [...value].length
    if (schema.minLength !== undefined && length < schema.minLength) problems.push(`${where(path)}: shorter than ${schema.minLength}`)
    if (schema.maxLength !== undefined && length > schema.maxLength) problems.push(`${where(path)}: longer than ${schema.maxLength}`)
    if (schema.pattern !== undefined && !new RegExp(schema.pattern).test(value)) problems.push(`${where(path)}: ${JSON.stringify(value)} does not match ${schema.pattern}`)
    if (schema.format === 'date-time' && Number.isNaN(Date.parse(value))) problems.push(`${where(path)}: ${JSON.stringify(value)} is not a date-time`)
  }
  return problems
}

function checkArray (value: readonly unknown[], schema: Schema, path: string): string[] {
  const problems: string[] = []
  if (schema.minItems !== undefined && value.length < schema.minItems) problems.push(`${where(path)}: fewer than ${schema.minItems} items`)
  if (schema.maxItems !== undefined && value.length > schema.maxItems) problems.push(`${where(path)}: more than ${schema.maxItems} items`)
  const { items } = schema
  if (items !== undefined) problems.push(...value.flatMap((item, i) => schemaProblems(item, items, `${path}[${i}]`)))
  const identity = listIdentity(schema)
  if (identity !== undefined) {
    const seen = value.map(identity)
    const duplicate = seen.find((id, i) => seen.indexOf(id) !== i)
    if (duplicate !== undefined) problems.push(`${where(path)}: duplicate entry ${duplicate}`)
  }
  return problems
}

/** What must be unique in a list: whole items in a set, the key fields in a map. */
function listIdentity (schema: Schema): ((item: unknown) => string) | undefined {
  const listType = schema['x-kubernetes-list-type']
  if (listType === 'set') return (item) => JSON.stringify(item)
  if (listType === 'map') {
    const keys = schema['x-kubernetes-list-map-keys'] ?? []
    return (item) => JSON.stringify(keys.map((key) => isRecord(item) ? item[key] : undefined))
  }
  return undefined
}

function checkObject (value: Readonly<Record<string, unknown>>, schema: Schema, path: string): string[] {
  const problems = (schema.required ?? [])
    .filter((key) => value[key] === undefined)
    .map((key) => `${path === '' ? key : `${path}.${key}`}: is required`)
  for (const [key, child] of Object.entries(value)) {
    const childPath = path === '' ? key : `${path}.${key}`
    const childSchema = schema.properties?.[key] ?? schema.additionalProperties
    // Neither properties nor additionalProperties (metadata): the API server checks it elsewhere.
    if (childSchema === undefined && schema.properties === undefined) continue
    if (childSchema === undefined) {
      // A combinator branch only restates fields the outer schema declares.
      if (schema.type !== undefined) problems.push(`${childPath}: unknown field`)
      continue
    }
    problems.push(...schemaProblems(child, childSchema, childPath))
  }
  return problems
}

function checkCombinators (value: unknown, schema: Schema, path: string): string[] {
  const problems: string[] = []
  const passes = (branch: Schema): boolean => schemaProblems(value, branch, path).length === 0
  if (schema.oneOf !== undefined) {
    const matched = schema.oneOf.filter(passes).length
    if (matched !== 1) problems.push(`${where(path)}: matches ${matched} of the oneOf alternatives, not exactly 1`)
  }
  if (schema.anyOf !== undefined && !schema.anyOf.some(passes)) problems.push(`${where(path)}: matches none of the anyOf alternatives`)
  for (const branch of schema.allOf ?? []) problems.push(...schemaProblems(value, branch, path))
  if (schema.not !== undefined && passes(schema.not)) problems.push(`${where(path)}: must not match ${JSON.stringify(schema.not)}`)
  return problems
}

/** Keywords Kubernetes forbids inside oneOf/anyOf/allOf/not: those branches may only restrict values. */
const FORBIDDEN_IN_BRANCHES = ['type', 'description', 'default', 'additionalProperties', 'nullable']

/** Why `schema` is not a structural schema ([] when it is). */
export function structuralProblems (schema: Schema, path = '$'): string[] {
  const problems: string[] = []
  const raw = schema as Readonly<Record<string, unknown>>
  for (const keyword of ['$ref', 'definitions']) if (keyword in raw) problems.push(`${path}: ${keyword} is not allowed in a CRD`)
  if (schema.type === undefined) problems.push(`${path}: has no type`)
  if (schema.properties !== undefined && schema.additionalProperties !== undefined) problems.push(`${path}: properties and additionalProperties together`)
  for (const [name, child] of Object.entries(schema.properties ?? {})) problems.push(...structuralProblems(child, `${path}.properties.${name}`))
  if (schema.additionalProperties !== undefined) problems.push(...structuralProblems(schema.additionalProperties, `${path}.additionalProperties`))
  if (schema.items !== undefined) problems.push(...structuralProblems(schema.items, `${path}.items`))
  const branches = [...COMBINATORS.flatMap((c) => (schema[c] ?? []).map((b, i) => ({ branch: b, at: `${path}.${c}[${i}]` }))),
    ...(schema.not === undefined ? [] : [{ branch: schema.not, at: `${path}.not` }])]
  for (const { branch, at } of branches) problems.push(...branchProblems(branch, schema, at))
  return problems
}

/** A value-only branch: no forbidden keyword, and every field it names is declared outside it. */
function branchProblems (branch: Schema, outer: Schema, path: string): string[] {
  const problems: string[] = []
  for (const { schema: s, path: p } of walk(branch, path)) {
    for (const keyword of FORBIDDEN_IN_BRANCHES) if (keyword in s) problems.push(`${p}: ${keyword} is not allowed in a value-only branch`)
  }
  for (const name of Object.keys(branch.properties ?? {})) {
    if (outer.properties?.[name] === undefined) problems.push(`${path}.properties.${name}: not declared outside the branch`)
  }
  for (const name of branch.required ?? []) {
    if (outer.properties?.[name] === undefined) problems.push(`${path}.required: ${name} is not declared outside the branch`)
  }
  return problems
}
