/**
 * The TrafficPolicy CRD (k8s/crd-trafficpolicy.yaml): a structural schema that the API server
 * accepts, and that accepts and refuses the same documents as policy/validate.ts.
 */
import t from 'tap'
import { join, relative } from 'node:path'
import { REPO_ROOT } from './helpers/mesh.js'
import type { KubernetesObject } from './helpers/k8s-models.js'
import { SCHEMA_DIR, loadObjects, trafficPolicyCrd, trafficPolicySchema, validateTsProblem, yamlFiles } from './helpers/k8s-manifests.js'
import { schemaProblems, structuralProblems, unsupportedKeywords } from './helpers/openapi-schema.js'
import { isResourceKind } from '../policy/validate.js'

t.test('the TrafficPolicy CRD is a structural schema of ambit.dev/v1alpha1 TrafficPolicy', async (t) => {
  const crd = await trafficPolicyCrd()
  t.equal(crd.metadata.name, `${crd.spec.names.plural}.${crd.spec.group}`)
  t.equal(`${crd.spec.group}/${crd.spec.versions[0]?.name}`, 'ambit.dev/v1alpha1')
  t.ok(isResourceKind(crd.spec.names.kind), 'the kind is one ambit reads')
  t.equal(crd.spec.scope, 'Namespaced')
  t.equal(crd.spec.versions.length, 1)
  t.match(crd.spec.versions[0], { served: true, storage: true, subresources: { status: {} } }, 'served, stored, with a status subresource')
  const schema = await trafficPolicySchema()
  t.strictSame(structuralProblems(schema), [], 'structural')
  t.strictSame(unsupportedKeywords(schema), [], 'every keyword is one the checker enforces')
  const spec = schema.properties?.spec
  t.strictSame(Object.keys(spec?.properties ?? {}).sort(),
    ['circuitBreaker', 'faultInjection', 'loadBalancer', 'outlierDetection', 'rateLimit', 'targetRef', 'targetRefs'])
  t.strictSame(Object.keys(schema.properties?.status?.properties?.conditions?.items?.properties ?? {}).sort(),
    ['lastTransitionTime', 'message', 'observedGeneration', 'reason', 'status', 'type'], 'status holds metav1.Conditions')
  // The CRD cannot share definitions ($ref is not allowed): the copies must stay identical.
  t.strictSame(spec?.properties?.targetRef, spec?.properties?.targetRefs?.items, 'targetRef and targetRefs[] are the same reference')
  const rateLimit = spec?.properties?.rateLimit?.properties
  t.strictSame(rateLimit?.local, rateLimit?.global, 'local and global rate limits have one shape')
  const fault = spec?.properties?.faultInjection?.properties
  t.strictSame(fault?.delay?.properties?.percentage, fault?.abort?.properties?.percentage)
  const outlier = spec?.properties?.outlierDetection?.properties
  t.strictSame(outlier?.interval, outlier?.baseEjectionTime)
  t.strictSame(outlier?.interval, rateLimit?.local?.properties?.interval, 'positive durations have one shape')
})

const POLICY_HEADER = { apiVersion: 'ambit.dev/v1alpha1', kind: 'TrafficPolicy', metadata: { name: 'reviews', namespace: 'shop' } }
const TARGET = { targetRefs: [{ name: 'reviews' }] }

/** Documents both the CRD and policy/validate.ts must accept. */
const GOOD_POLICIES: ReadonlyArray<{ name: string, spec: object }> = [
  { name: 'only a target', spec: TARGET },
  { name: 'the singular targetRef', spec: { targetRef: { group: '', kind: 'Service', name: 'reviews', sectionName: 'http' } } },
  {
    name: 'everything',
    spec: {
      targetRefs: [{ group: '', kind: 'Service', name: 'reviews' }, { name: 'ratings' }],
      loadBalancer: { type: 'ConsistentHash', consistentHash: { header: 'x-user' } },
      circuitBreaker: { maxConnections: 100, maxPendingRequests: 10, maxRequestsPerConnection: 5, maxParallelRetries: 3, maxParallelRequests: 50 },
      outlierDetection: { consecutive5xxErrors: 5, consecutiveGatewayErrors: 0, interval: '5s', baseEjectionTime: '1m30s', maxEjectionPercent: 50 },
      faultInjection: { delay: { fixedDelay: '200ms', percentage: 0.5 }, abort: { httpStatus: 503, percentage: 100 } },
      rateLimit: { local: { requests: 100, interval: '1s' }, global: { requests: 6000, unit: 'Minute' } }
    }
  },
  { name: 'cookie hashing', spec: { ...TARGET, loadBalancer: { type: 'ConsistentHash', consistentHash: { cookie: 'session' } } } },
  { name: 'least request', spec: { ...TARGET, loadBalancer: { type: 'LeastRequest' } } },
  { name: 'a zero fixed delay', spec: { ...TARGET, faultInjection: { delay: { fixedDelay: '0s' } } } },
  { name: 'empty sections', spec: { ...TARGET, circuitBreaker: {}, faultInjection: {}, rateLimit: {} } }
]

/** Documents both must refuse: one broken rule each. */
const BAD_POLICIES: ReadonlyArray<{ name: string, spec: object }> = [
  { name: 'no target', spec: { loadBalancer: { type: 'RoundRobin' } } },
  { name: 'an empty targetRefs', spec: { targetRefs: [] } },
  { name: 'targetRef with targetRefs', spec: { ...TARGET, targetRef: { name: 'reviews' } } },
  { name: 'a target that is not a Service', spec: { targetRefs: [{ kind: 'Deployment', name: 'reviews' }] } },
  { name: 'a target in another namespace', spec: { targetRefs: [{ name: 'reviews', namespace: 'other' }] } },
  { name: 'a target name that is not a DNS label', spec: { targetRefs: [{ name: 'Reviews' }] } },
  { name: 'an unknown field', spec: { ...TARGET, retries: 3 } },
  { name: 'an unknown load balancer', spec: { ...TARGET, loadBalancer: { type: 'Random' } } },
  { name: 'ConsistentHash without a key', spec: { ...TARGET, loadBalancer: { type: 'ConsistentHash' } } },
  { name: 'a hash key with RoundRobin', spec: { ...TARGET, loadBalancer: { type: 'RoundRobin', consistentHash: { header: 'x-user' } } } },
  { name: 'header and cookie', spec: { ...TARGET, loadBalancer: { type: 'ConsistentHash', consistentHash: { header: 'x-user', cookie: 'c' } } } },
  { name: 'a header name with a space', spec: { ...TARGET, loadBalancer: { type: 'ConsistentHash', consistentHash: { header: 'x user' } } } },
  { name: 'a zero connection limit', spec: { ...TARGET, circuitBreaker: { maxConnections: 0 } } },
  { name: 'a fractional limit', spec: { ...TARGET, circuitBreaker: { maxPendingRequests: 1.5 } } },
  { name: 'a limit written as text', spec: { ...TARGET, circuitBreaker: { maxConnections: '100' } } },
  { name: 'a duration without unit', spec: { ...TARGET, outlierDetection: { interval: '10' } } },
  { name: 'a zero interval', spec: { ...TARGET, outlierDetection: { interval: '0s' } } },
  { name: 'units out of order', spec: { ...TARGET, outlierDetection: { baseEjectionTime: '30s1m' } } },
  { name: 'an ejection percentage above 100', spec: { ...TARGET, outlierDetection: { maxEjectionPercent: 101 } } },
  { name: 'a negative error count', spec: { ...TARGET, outlierDetection: { consecutive5xxErrors: -1 } } },
  { name: 'a delay without fixedDelay', spec: { ...TARGET, faultInjection: { delay: { percentage: 10 } } } },
  { name: 'a fault percentage above 100', spec: { ...TARGET, faultInjection: { delay: { fixedDelay: '1s', percentage: 150 } } } },
  { name: 'an abort status below 200', spec: { ...TARGET, faultInjection: { abort: { httpStatus: 100 } } } },
  { name: 'an abort without status', spec: { ...TARGET, faultInjection: { abort: { percentage: 10 } } } },
  { name: 'a rate limit without interval or unit', spec: { ...TARGET, rateLimit: { local: { requests: 10 } } } },
  { name: 'a rate limit with interval and unit', spec: { ...TARGET, rateLimit: { local: { requests: 10, interval: '1s', unit: 'Second' } } } },
  { name: 'a rate limit of zero requests', spec: { ...TARGET, rateLimit: { global: { requests: 0, unit: 'Second' } } } },
  { name: 'an unknown rate limit unit', spec: { ...TARGET, rateLimit: { global: { requests: 1, unit: 'Day' } } } },
  { name: 'a third kind of rate limit', spec: { ...TARGET, rateLimit: { perClient: { requests: 1, unit: 'Second' } } } }
]

t.test('the CRD and policy/validate.ts agree on good and bad TrafficPolicies', async (t) => {
  const schema = await trafficPolicySchema()
  for (const { name, spec } of GOOD_POLICIES) {
    const policy = { ...POLICY_HEADER, spec }
    t.strictSame(schemaProblems(policy, schema), [], `the CRD accepts ${name}`)
    t.equal(validateTsProblem(policy), undefined, `validate.ts accepts ${name}`)
  }
  for (const { name, spec } of BAD_POLICIES) {
    const policy = { ...POLICY_HEADER, spec }
    t.not(schemaProblems(policy, schema).length, 0, `the CRD refuses ${name}`)
    t.ok(validateTsProblem(policy), `validate.ts refuses ${name}`)
  }
  t.not(schemaProblems({ ...POLICY_HEADER }, schema).length, 0, 'the CRD refuses a policy without spec')
  t.ok(validateTsProblem({ ...POLICY_HEADER }), 'so does validate.ts')
})

/** Every TrafficPolicy document under `dir`. */
async function trafficPolicies (dir: string): Promise<Array<{ source: string, object: KubernetesObject }>> {
  const found = []
  for (const file of await yamlFiles(dir)) {
    for (const object of await loadObjects(file)) {
      if (object.kind === 'TrafficPolicy') found.push({ source: relative(REPO_ROOT, file), object })
    }
  }
  return found
}

t.test('the example TrafficPolicies pass both the CRD and validate.ts', async (t) => {
  const schema = await trafficPolicySchema()
  const policies = [...await trafficPolicies(join(REPO_ROOT, 'examples')), ...await trafficPolicies(SCHEMA_DIR)]
  t.ok(policies.some((p) => p.source.startsWith('test/fixtures/')), 'the fixture is among them')
  for (const { source, object } of policies) {
    t.strictSame(schemaProblems(object, schema), [], `the CRD accepts ${source} ${object.metadata.name}`)
    t.equal(validateTsProblem(object), undefined, `validate.ts accepts ${source} ${object.metadata.name}`)
  }
})
