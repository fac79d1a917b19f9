/**
 * docs/kubernetes.md: it walks the whole journey with commands that exist, its YAML is valid
 * (Kubernetes objects are fenced ```yaml, other YAML ```yml), its overlays patch what k8s/ has,
 * and its root CA recipe makes a root ambit can sign with.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parse } from 'yaml'
import { REPO_ROOT } from './helpers/mesh.js'
import { typeKey, type KubernetesObject } from './helpers/k8s-models.js'
import { installedObjects, objectProblems, parseObjects, sortedUnique, trafficPolicySchema, validateTsProblem } from './helpers/k8s-manifests.js'
import { schemaProblems } from './helpers/openapi-schema.js'
import { CA_ROOT_SECRET } from '../control/kubernetes-access.js'
import { CertificateAuthority } from '../control/ca.js'
import { OUTPUT_CHAIN, PREROUTING_CHAIN } from '../ztunnel/capture.js'
import { isResourceKind } from '../policy/validate.js'
import { AMBIENT_LABEL, AMBIENT_VALUE } from '../policy/resources.js'

/** The part of a Kustomization the docs' overlays use: JSON 6902 patches with a target, and strategic-merge deletes. */
interface Overlay {
  readonly patches: ReadonlyArray<{ readonly target?: { readonly kind: string, readonly name: string }, readonly patch: string }>
}

interface JsonPatchOp { readonly op: 'test' | 'replace' | 'add' | 'remove', readonly path: string, readonly value?: unknown }

/** Applies RFC 6902 operations (test, replace, add, remove) to a copy of `object`, as kustomize does. */
function applyJsonPatch (object: unknown, ops: readonly JsonPatchOp[]): unknown {
  const copy = structuredClone(object)
  for (const { op, path, value } of ops) {
    const keys = path.split('/').slice(1).map((k) => k.replaceAll('~1', '/').replaceAll('~0', '~'))
    const last = keys.pop()
    let parent: unknown = copy
    for (const key of keys) parent = (parent as Record<string, unknown> | undefined)?.[key]
    if (typeof parent !== 'object' || parent === null || last === undefined) throw new Error(`${op} ${path}: no such path`)
    const container = parent as Record<string, unknown>
    if (op !== 'add' && !(last in container)) throw new Error(`${op} ${path}: no such path`)
    if (op === 'test' && JSON.stringify(container[last]) !== JSON.stringify(value)) throw new Error(`test ${path}: is ${JSON.stringify(container[last])}, not ${JSON.stringify(value)}`)
    if (op === 'replace' || op === 'add') container[last] = value
    if (op === 'remove') delete container[last]
  }
  return copy
}

/** Why an overlay of k8s/ would not build, or would build objects the API server refuses. */
async function overlayProblems (overlay: Overlay): Promise<string[]> {
  const installed = await installedObjects()
  const problems: string[] = []
  for (const { target, patch } of overlay.patches) {
    if (target !== undefined) {
      const object = installed.find((o) => o.kind === target.kind && o.metadata.name === target.name)
      if (object === undefined) { problems.push(`no ${target.kind} ${target.name} in k8s/`); continue }
      try {
        problems.push(...await objectProblems(applyJsonPatch(object, parse(patch) as JsonPatchOp[]) as KubernetesObject))
      } catch (err) {
        problems.push(`${target.kind} ${target.name}: ${(err as Error).message}`)
      }
      continue
    }
    const deletion = parse(patch) as KubernetesObject & { $patch?: string }
    if (deletion.$patch !== 'delete') { problems.push(`a strategic-merge patch other than a delete: ${patch}`); continue }
    const exists = installed.some((o) => typeKey(o) === typeKey(deletion) && o.metadata.name === deletion.metadata.name && o.metadata.namespace === deletion.metadata.namespace)
    if (!exists) problems.push(`$patch: delete names ${typeKey(deletion)} ${deletion.metadata.name}, which k8s/ does not have`)
  }
  return problems
}

const DOC = join(REPO_ROOT, 'docs/kubernetes.md')

function codeBlocks (markdown: string, language: string): string[] {
  return [...markdown.matchAll(new RegExp('```' + language + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!)
}

t.test('docs/kubernetes.md walks the user\'s journey', async (t) => {
  const doc = await readFile(DOC, 'utf8')
  const shell = codeBlocks(doc, 'sh').join('\n')
  const steps: ReadonlyArray<[string, RegExp]> = [
    ['builds and loads the image', /docker build -f docker\/Dockerfile -t ambit \./],
    ['installs the Gateway API CRDs', /kubectl apply .*gateway-api\/releases\/download\/v[\d.]+\/standard-install\.yaml/],
    ['installs the Istio security CRDs', /kubectl apply .*istio\/istio\/.*crd-all\.gen\.yaml/],
    ['installs ambit', /kubectl apply -k k8s\//],
    ['labels a namespace', new RegExp(`kubectl label namespace shop ${AMBIENT_LABEL.replace('.', '\\.')}=${AMBIENT_VALUE}`)],
    ['adds a waypoint', /ambit waypoint apply -n shop/],
    ['removes a waypoint', /ambit waypoint delete -n shop/],
    ['installs the PodMonitor', /kubectl apply -f k8s\/extras\/podmonitor\.yaml/],
    ['shows the CA root Secret', new RegExp(`kubectl -n ${CA_ROOT_SECRET.namespace} get secret ${CA_ROOT_SECRET.name}`)],
    ['uninstalls', /kubectl delete -k k8s\//]
  ]
  for (const [what, command] of steps) t.match(shell, command, `it ${what}`)
  for (const heading of ['Install', 'Enrol a namespace', 'Add a waypoint', 'Authorization', 'Metrics', 'Rotating the root CA', 'Uninstall']) {
    t.match(doc, new RegExp(`^#+ .*${heading}`, 'm'), `it has a section on ${heading}`)
  }
  t.match(doc, new RegExp(CA_ROOT_SECRET.trustBundleKey.replace('.', '\\.')), 'rotation names the trust bundle key')
})

t.test('the YAML in docs/kubernetes.md is valid', async (t) => {
  const doc = await readFile(DOC, 'utf8')
  const blocks = codeBlocks(doc, 'yaml')
  t.ok(blocks.length >= 3)
  const schema = await trafficPolicySchema()
  const kinds = new Set<string>()
  for (const [i, block] of blocks.entries()) {
    for (const object of parseObjects(block, `docs block ${i}`)) {
      kinds.add(object.kind)
      const label = `block ${i}: ${object.kind} ${object.metadata?.name ?? ''}`
      if (object.kind === 'Kustomization') {
        t.equal(object.apiVersion, 'kustomize.config.k8s.io/v1beta1', label)
        t.strictSame(object.resources, ['../k8s'], `${label} builds on k8s/`)
        t.strictSame(await overlayProblems(object as unknown as Overlay), [], `${label}: its patches apply to k8s/`)
      } else if (isResourceKind(object.kind)) {
        t.equal(validateTsProblem(object), undefined, `ambit accepts ${label}`)
        if (object.kind === 'TrafficPolicy') t.strictSame(schemaProblems(object, schema), [], `the CRD accepts ${label}`)
      } else {
        t.strictSame(await objectProblems(object), [], label)
      }
    }
  }
  t.match(await overlayProblems({ patches: [{ target: { kind: 'DaemonSet', name: 'ambit-ztunnel' }, patch: '- {op: test, path: /spec/template/spec/containers/0/env/0/name, value: AMBIT_STORE_URL}' }] }),
    [/is "NODE_NAME", not "AMBIT_STORE_URL"/], 'an overlay whose patch misses its mark is caught')
  t.ok(kinds.has('AuthorizationPolicy'), 'it shows an AuthorizationPolicy')
  t.ok(kinds.has('Kustomization'), 'and how to point at an external Redis')
})

t.test('the root CA the docs make is one ambit loads', async (t) => {
  const doc = await readFile(DOC, 'utf8')
  const commands = codeBlocks(doc, 'sh').join('\n').split('\n').map((line) => line.trim()).filter((line) => line.startsWith('openssl '))
  t.equal(commands.length, 2, 'a key and a self-signed certificate')
  const dir = await mkdtemp(join(tmpdir(), 'ambit-k8s-docs-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  for (const command of commands) await promisify(execFile)('sh', ['-c', command], { cwd: dir, timeout: 60_000 })
  const ca = await CertificateAuthority.fromPem({
    trustDomain: 'cluster.local',
    certificate: await readFile(join(dir, 'new-root.pem'), 'utf8'),
    key: await readFile(join(dir, 'new-root.key'), 'utf8')
  })
  t.equal(ca.trustBundle.length, 1, 'it is a root ambit can sign with')
  t.ok(ca.notAfter.getTime() > Date.now() + 9 * 365 * 24 * 3600_000, 'valid for ten years')
})

t.test('the manual capture clean-up names the ztunnel\'s chains', async (t) => {
  const shell = codeBlocks(await readFile(DOC, 'utf8'), 'sh').join('\n')
  const chains = sortedUnique([...shell.matchAll(/iptables -t nat .*?\b(AMBIT_[A-Z]+)/g)].map((m) => m[1]!))
  t.strictSame(chains, sortedUnique([PREROUTING_CHAIN, OUTPUT_CHAIN]))
})
