/**
 * Reads resources from YAML (or JSON) text, files and directories: what stands in for the
 * API server in local mode. Every document is validated on its own, so a bad one is
 * reported without hiding the good ones; whether to apply anything when some are bad is
 * the caller's decision.
 */
import { readFile, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { text as readAll } from 'node:stream/consumers'
import { parseAllDocuments } from 'yaml'
import { ConfigError, InvalidResourceError, YamlSyntaxError, type ResourceLocation } from './errors.js'
import type { Resource } from './resources.js'
import { validateResource } from './validate.js'

/**
 * Kubernetes kinds that commonly share files with ambit's resources (`kubectl get all -o yaml`,
 * Helm output) and that ambit does not read: skipped silently. Any other unknown kind is an error.
 */
export const SKIPPED_KINDS: readonly string[] = [
  'Endpoints', 'ConfigMap', 'Secret', 'Deployment', 'ReplicaSet', 'StatefulSet', 'DaemonSet',
  'ServiceAccount', 'CustomResourceDefinition', 'GatewayClass', 'ReferenceGrant'
]

export interface LoadResult {
  readonly resources: Resource[]
  readonly errors: InvalidResourceError[]
}

/** Files read from a directory; other files in it are left alone. */
const RESOURCE_FILE = /\.(ya?ml|json)$/

export const STDIN_PATH = '-'
const STDIN_NAME = '<stdin>'

/**
 * Parses a stream of YAML documents (`---` separated; JSON is YAML too). Empty documents are
 * skipped; `kind: List` and `*List` documents contribute each of their items.
 * Throws YamlSyntaxError when the text is not YAML: a broken file is rejected whole, since
 * what a broken document was meant to say cannot be known.
 */
export function parseResources (text: string, file: string): LoadResult {
  const result: LoadResult = { resources: [], errors: [] }
  parseDocuments(text, file).forEach((value, document) => {
    if (value !== null && value !== undefined) collectDocument(value, { file, document, object: '' }, result)
  })
  return result
}

/** The plain values of every document, after checking that all of them are valid YAML. */
function parseDocuments (text: string, file: string): unknown[] {
  // merge: Kubernetes (go-yaml) accepts `<<` merge keys.
  const documents = parseAllDocuments(text, { merge: true })
  documents.forEach((document, index) => {
    const error = document.errors[0]
    if (error !== undefined) throw new YamlSyntaxError(file, index, firstLine(error.message))
  })
  return documents.map((document, index) => {
    try {
      return document.toJS()
    } catch (err) { // e.g. too many aliases (a "billion laughs" document)
      throw new YamlSyntaxError(file, index, (err as Error).message)
    }
  })
}

/** yaml's messages go on with a picture of the place; the first line ("... at line 3, column 1") says it. */
function firstLine (message: string): string {
  return message.split('\n', 1)[0].replace(/:$/, '')
}

function collectDocument (value: unknown, location: ResourceLocation, into: LoadResult): void {
  const kind = kindOf(value)
  if (isObject(value) && kind?.endsWith('List') === true) {
    collectListItems(value, kind, location, into)
  } else {
    collectObject(value, location, '', into)
  }
}

/** `kind: List` (what kubectl prints) or a typed list such as PodList (what the API server returns). */
function collectListItems (list: Record<string, unknown>, listKind: string, location: ResourceLocation, into: LoadResult): void {
  const { items } = list
  if (items === undefined || items === null) return
  if (!Array.isArray(items)) {
    into.errors.push(new InvalidResourceError({ ...location, object: listKind }, 'items', 'expected a list'))
    return
  }
  // Items of a typed list may leave out their kind and apiVersion, as the API server does.
  const itemKind = listKind.slice(0, -'List'.length)
  const itemDefaults = itemKind === '' ? {} : { apiVersion: list.apiVersion, kind: itemKind }
  items.forEach((item: unknown, index) => {
    collectObject(isObject(item) ? { ...itemDefaults, ...item } : item, location, `items[${index}]`, into)
  })
}

function collectObject (value: unknown, location: ResourceLocation, path: string, into: LoadResult): void {
  const kind = kindOf(value)
  if (kind !== undefined && SKIPPED_KINDS.includes(kind)) return
  try {
    into.resources.push(validateResource(value, location, path))
  } catch (err) {
    if (!(err instanceof InvalidResourceError)) throw err
    into.errors.push(err)
  }
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function kindOf (value: unknown): string | undefined {
  return isObject(value) && typeof value.kind === 'string' ? value.kind : undefined
}

export interface LoadOptions {
  /** What `-` reads; process.stdin unless given (tests give their own). */
  readonly stdin?: NodeJS.ReadableStream
}

/**
 * Loads every path in order: a file, a directory (recursively, its *.yaml, *.yml and *.json
 * files in name order, hidden entries skipped), or `-` for standard input.
 * Throws ConfigError for a path that cannot be read and YamlSyntaxError for text that is not YAML.
 */
export async function loadResourceFiles (paths: readonly string[], options: LoadOptions = {}): Promise<LoadResult> {
  const result: LoadResult = { resources: [], errors: [] }
  for (const path of paths) {
    for (const { file, text } of await readSources(path, options)) {
      const parsed = parseResources(text, file)
      result.resources.push(...parsed.resources)
      result.errors.push(...parsed.errors)
    }
  }
  return result
}

async function readSources (path: string, options: LoadOptions): Promise<Array<{ file: string, text: string }>> {
  if (path === STDIN_PATH) return [{ file: STDIN_NAME, text: await readAll(options.stdin ?? process.stdin) }]
  try {
    const files = (await stat(path)).isDirectory() ? await listResourceFiles(path) : [path]
    return await Promise.all(files.map(async (file) => ({ file, text: await readFile(file, 'utf8') })))
  } catch (err) {
    throw new ConfigError(`cannot read resources from ${path}: ${(err as Error).message}`)
  }
}

async function listResourceFiles (directory: string): Promise<string[]> {
  const found: string[] = []
  for (const name of (await readdir(directory)).sort()) {
    // Hidden entries include a mounted ConfigMap's `..data` links, which would load every file twice.
    if (name.startsWith('.')) continue
    const path = join(directory, name)
    const info = await stat(path) // follows symbolic links, as a mounted ConfigMap's files are
    if (info.isDirectory()) found.push(...await listResourceFiles(path))
    else if (info.isFile() && RESOURCE_FILE.test(name)) found.push(path)
  }
  return found
}
