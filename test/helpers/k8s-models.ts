/**
 * Checks built-in Kubernetes objects as `kubectl apply` would have the API server check them:
 *  - the schema of their apiVersion and kind (kubernetes-models: types, required fields, enums);
 *  - no unknown fields, as strict field validation (kubectl's default) refuses them. The
 *    kubernetes-models schemas allow any extra field, so the field names come from the models
 *    @kubernetes/client-node generates from the same OpenAPI document;
 *  - a valid metadata.name and labels.
 * Only the kinds listed in BUILT_IN are known: anything else is a problem, not a pass.
 */
import * as clientModels from '@kubernetes/client-node'
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from 'kubernetes-models/v1'
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1'
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1'
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1'
import { dnsSubdomain, labels } from '../../policy/fields.js'
import { InvalidFieldError } from '../../policy/errors.js'

/** A kubernetes-models class: built from the object's data, validate() throws on a schema violation. */
type ModelClass = new (data: never) => { validate (): void }

interface BuiltInKind {
  readonly model: ModelClass
  /** The @kubernetes/client-node model whose attributeTypeMap lists the kind's fields. */
  readonly fields: string
  readonly clusterScoped: boolean
}

const BUILT_IN: Readonly<Record<string, BuiltInKind>> = {
  'v1/Namespace': { model: Namespace, fields: 'V1Namespace', clusterScoped: true },
  'v1/ConfigMap': { model: ConfigMap, fields: 'V1ConfigMap', clusterScoped: false },
  'v1/Secret': { model: Secret, fields: 'V1Secret', clusterScoped: false },
  'v1/Service': { model: Service, fields: 'V1Service', clusterScoped: false },
  'v1/ServiceAccount': { model: ServiceAccount, fields: 'V1ServiceAccount', clusterScoped: false },
  'apps/v1/Deployment': { model: Deployment, fields: 'V1Deployment', clusterScoped: false },
  'apps/v1/DaemonSet': { model: DaemonSet, fields: 'V1DaemonSet', clusterScoped: false },
  'rbac.authorization.k8s.io/v1/ClusterRole': { model: ClusterRole, fields: 'V1ClusterRole', clusterScoped: true },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': { model: ClusterRoleBinding, fields: 'V1ClusterRoleBinding', clusterScoped: true },
  'rbac.authorization.k8s.io/v1/Role': { model: Role, fields: 'V1Role', clusterScoped: false },
  'rbac.authorization.k8s.io/v1/RoleBinding': { model: RoleBinding, fields: 'V1RoleBinding', clusterScoped: false },
  'apiextensions.k8s.io/v1/CustomResourceDefinition': { model: CustomResourceDefinition, fields: 'V1CustomResourceDefinition', clusterScoped: true }
}

export interface KubernetesObject {
  readonly apiVersion: string
  readonly kind: string
  readonly metadata: { readonly name: string, readonly namespace?: string, readonly labels?: Readonly<Record<string, string>> }
  readonly [field: string]: unknown
}

export function typeKey (object: Pick<KubernetesObject, 'apiVersion' | 'kind'>): string {
  return `${object.apiVersion}/${object.kind}`
}

export function isBuiltIn (object: Pick<KubernetesObject, 'apiVersion' | 'kind'>): boolean {
  return Object.hasOwn(BUILT_IN, typeKey(object))
}

export function isClusterScopedBuiltIn (object: Pick<KubernetesObject, 'apiVersion' | 'kind'>): boolean {
  return BUILT_IN[typeKey(object)]?.clusterScoped === true
}

/** Why the API server would refuse `object` ([] when it would not). */
export function builtInProblems (object: KubernetesObject): string[] {
  const kind = BUILT_IN[typeKey(object)]
  if (kind === undefined) return [`${typeKey(object)} is not a kind these tests know`]
  const problems = [...metadataProblems(object), ...portNameProblems(object), ...unknownFields(object, kind.fields, '')]
  try {
    // The model's constructor takes its own typed data; the object is what YAML parsed.
    new kind.model(object as never).validate()
  } catch (err) {
    problems.push((err as Error).message)
  }
  return problems
}

function metadataProblems (object: KubernetesObject): string[] {
  const problems: string[] = []
  const check = (value: unknown, path: string, read: (field: { value: unknown, path: string }) => unknown): void => {
    try {
      read({ value, path })
    } catch (err) {
      if (!(err instanceof InvalidFieldError)) throw err
      problems.push(`${err.field}: ${err.reason}`)
    }
  }
  check(object.metadata?.name, 'metadata.name', dnsSubdomain)
  if (object.metadata?.labels !== undefined) check(object.metadata.labels, 'metadata.labels', labels)
  return problems
}

/** IANA_SVC_NAME, which the API server requires of container port names. */
const CONTAINER_PORT_NAME = /^(?=.*[a-z])(?!.*--)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

/** Container port names of a workload's pod template: valid, and unique within the pod. */
function portNameProblems (object: KubernetesObject): string[] {
  const spec = object.spec as { template?: { spec?: { containers?: Array<{ ports?: Array<{ name?: string }> }> } } } | undefined
  const names = (spec?.template?.spec?.containers ?? []).flatMap((c) => (c.ports ?? []).flatMap((p) => p.name === undefined ? [] : [p.name]))
  return [
    ...names.filter((name) => name.length > 15 || !CONTAINER_PORT_NAME.test(name)).map((name) => `container port name ${JSON.stringify(name)} is not an IANA service name`),
    ...names.filter((name, i) => names.indexOf(name) !== i).map((name) => `container port name ${name} is used twice`)
  ]
}

interface Attribute {
  readonly baseName: string
  readonly type: string
}

/** Where a field's generated type says less than the API does. */
const TYPE_OVERRIDES: Readonly<Record<string, string>> = {
  // JSONSchemaPropsOrArray: always a single schema in a CRD of ours.
  'V1JSONSchemaProps.items': 'V1JSONSchemaProps'
}

function attributesOf (model: string): readonly Attribute[] | undefined {
  const candidate = (clientModels as Readonly<Record<string, unknown>>)[model] as { getAttributeTypeMap?: () => Attribute[] } | undefined
  return candidate?.getAttributeTypeMap?.()
}

/** Paths of fields that `model` does not have, at any depth. */
function unknownFields (value: unknown, model: string, path: string): string[] {
  const array = /^Array<(.+)>$/.exec(model)
  if (array !== null) return Array.isArray(value) ? value.flatMap((item, i) => unknownFields(item, array[1]!, `${path}[${i}]`)) : []
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(model)
  if (map !== null) return isRecord(value) ? Object.entries(value).flatMap(([k, v]) => unknownFields(v, map[1]!, `${path}.${k}`)) : []
  const attributes = attributesOf(model)
  if (attributes === undefined || !isRecord(value)) return [] // a scalar, IntOrString or free-form value
  return Object.entries(value).flatMap(([key, child]) => {
    const attribute = attributes.find((a) => a.baseName === key)
    const childPath = path === '' ? key : `${path}.${key}`
    if (attribute === undefined) return [`${childPath}: unknown field`]
    return unknownFields(child, TYPE_OVERRIDES[`${model}.${key}`] ?? attribute.type, childPath)
  })
}

function isRecord (value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
