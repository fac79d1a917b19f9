/**
 * Loading and checking the manifests of k8s/ for the tests of the manifests, the CRD and the
 * docs: every object parsed from YAML, the objects `kubectl apply -k k8s/` creates, the
 * rendered waypoint template, and objectProblems(), which says why the API server would refuse
 * an object (built-in kinds through kubernetes-models, custom kinds through their CRD schema).
 */
import { readFile, readdir } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { parse, parseAllDocuments } from 'yaml'
import { REPO_ROOT } from './mesh.js'
import { builtInProblems, isBuiltIn, isClusterScopedBuiltIn, typeKey, type KubernetesObject } from './k8s-models.js'
import { schemaProblems, type Schema } from './openapi-schema.js'
import { WAYPOINT_TEMPLATE } from '../../control/kubernetes-access.js'
import { validateResource } from '../../policy/validate.js'
import { InvalidResourceError } from '../../policy/errors.js'

export const K8S_DIR = join(REPO_ROOT, 'k8s')
export const SCHEMA_DIR = join(REPO_ROOT, 'test/fixtures/k8s-schemas')
export const TEMPLATE_FILE = join(REPO_ROOT, WAYPOINT_TEMPLATE.file)
export const KUSTOMIZATION = 'kustomization.yaml'
export const IMAGE = 'ambit:latest'

/** What the tests substitute for the waypoint template's placeholders. */
export const GATEWAY = { name: 'waypoint', namespace: 'shop' }
export const TEMPLATE_VALUES: Readonly<Record<keyof typeof WAYPOINT_TEMPLATE.placeholders, string>> = {
  gatewayName: GATEWAY.name,
  gatewayNamespace: GATEWAY.namespace,
  image: IMAGE,
  storeUrl: 'redis://ambit-redis.ambit-system.svc:6379'
}

// ---- Loading ----

export async function yamlFiles (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true })
  return entries.filter((e) => e.isFile() && /\.ya?ml$/.test(e.name)).map((e) => join(e.parentPath, e.name)).sort()
}

export function parseObjects (text: string, source: string): KubernetesObject[] {
  return parseAllDocuments(text).flatMap((document, i) => {
    if (document.errors.length > 0) throw new Error(`${source} document ${i}: ${document.errors[0]?.message}`)
    const value: unknown = document.toJS()
    return value === null || value === undefined ? [] : [value as KubernetesObject]
  })
}

export async function loadObjects (file: string): Promise<KubernetesObject[]> {
  return parseObjects(await readFile(file, 'utf8'), relative(REPO_ROOT, file))
}

export async function renderedTemplate (): Promise<string> {
  let text = await readFile(TEMPLATE_FILE, 'utf8')
  for (const [key, placeholder] of Object.entries(WAYPOINT_TEMPLATE.placeholders)) {
    text = text.replaceAll(placeholder, TEMPLATE_VALUES[key as keyof typeof TEMPLATE_VALUES])
  }
  return text
}

/** The objects `kubectl apply -k k8s/` creates. */
export async function installedObjects (): Promise<KubernetesObject[]> {
  const kustomization = parse(await readFile(join(K8S_DIR, KUSTOMIZATION), 'utf8')) as { resources: string[] }
  return (await Promise.all(kustomization.resources.map((file) => loadObjects(join(K8S_DIR, file))))).flat()
}

export async function readSchema (file: string): Promise<Schema> {
  return parse(await readFile(join(SCHEMA_DIR, file), 'utf8')) as Schema
}

export interface Crd {
  readonly spec: {
    readonly group: string
    readonly scope: string
    readonly names: { readonly kind: string, readonly plural: string, readonly singular: string }
    readonly versions: ReadonlyArray<{ name: string, served: boolean, storage: boolean, subresources?: { status?: object }, schema: { openAPIV3Schema: Schema } }>
  }
}

export async function trafficPolicyCrd (): Promise<Crd & KubernetesObject> {
  const [crd] = await loadObjects(join(K8S_DIR, 'crd-trafficpolicy.yaml'))
  return crd as Crd & KubernetesObject
}

export async function trafficPolicySchema (): Promise<Schema> {
  return (await trafficPolicyCrd()).spec.versions[0]!.schema.openAPIV3Schema
}

/** The schemas of the custom kinds the manifests and docs use, by 'apiVersion/kind'. */
export async function customSchemas (): Promise<ReadonlyMap<string, { schema: Schema, clusterScoped: boolean }>> {
  return new Map([
    [`ambit.dev/v1alpha1/TrafficPolicy`, { schema: await trafficPolicySchema(), clusterScoped: false }],
    ['gateway.networking.k8s.io/v1/GatewayClass', { schema: await readSchema('gatewayclass.schema.yaml'), clusterScoped: true }],
    ['monitoring.coreos.com/v1/PodMonitor', { schema: await readSchema('podmonitor.schema.yaml'), clusterScoped: false }]
  ])
}

/** Why the API server would refuse the object: built-in kinds through kubernetes-models, custom ones through their CRD schema. */
export async function objectProblems (object: KubernetesObject): Promise<string[]> {
  if (typeof object.apiVersion !== 'string' || typeof object.kind !== 'string') return ['no apiVersion or kind']
  if (isBuiltIn(object)) return builtInProblems(object)
  const custom = (await customSchemas()).get(typeKey(object))
  if (custom === undefined) return [`${typeKey(object)} is not a kind these tests know`]
  const nameProblem = typeof object.metadata?.name === 'string' ? [] : ['metadata.name: is required']
  return [...nameProblem, ...schemaProblems(object, custom.schema)]
}

export async function isClusterScoped (object: KubernetesObject): Promise<boolean> {
  return isClusterScopedBuiltIn(object) || (await customSchemas()).get(typeKey(object))?.clusterScoped === true
}

export function find (objects: readonly KubernetesObject[], kind: string, name: string): KubernetesObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name)
  if (found === undefined) throw new Error(`no ${kind} ${name}`)
  return found
}

/** undefined when policy/validate.ts accepts the object, else its error message. */
export function validateTsProblem (object: unknown): string | undefined {
  try {
    validateResource(object, { file: 'test', document: 0, object: '' })
    return undefined
  } catch (err) {
    if (err instanceof InvalidResourceError) return err.message
    throw err
  }
}

export function sortedUnique (items: readonly string[]): string[] {
  return [...new Set(items)].sort()
}
