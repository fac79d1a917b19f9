import t from 'tap'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { ConfigError, InvalidResourceError, YamlSyntaxError } from '../policy/errors.js'
import { SKIPPED_KINDS, loadResourceFiles, parseResources } from '../policy/load.js'
import { resourceKey } from '../policy/resources.js'

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures')

const keys = (result: { resources: ReadonlyArray<Parameters<typeof resourceKey>[0]> }): string[] => result.resources.map(resourceKey)

async function tempDir (t: { teardown: (fn: () => unknown) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-load-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

t.test('a multi-document file with one bad document: the good ones plus exactly one error', async (t) => {
  const file = join(FIXTURES, 'bad-multi.yaml')
  const result = parseResources(await readFile(file, 'utf8'), file)
  t.strictSame(keys(result), ['Namespace/shop', 'Service/shop/web', 'HTTPRoute/shop/web'], 'ConfigMap and Deployment skipped, empty document skipped')
  t.equal(result.errors.length, 1)
  const [error] = result.errors
  t.ok(error instanceof InvalidResourceError)
  t.strictSame(error.location, { file, document: 3, object: 'Pod/web-1' })
  t.equal(error.message, `${file} document 3 (Pod/web-1): status.podIP: "10.1.2.300" is not an IP address`)
})

t.test('kind: List as kubectl prints it: each item is its own object', async (t) => {
  const file = join(FIXTURES, 'bad-list.yaml')
  const result = parseResources(await readFile(file, 'utf8'), file)
  t.strictSame(keys(result), ['Pod/shop/web-1', 'Service/shop/api'], 'the ReplicaSet is skipped')
  t.match(result.resources[0], { kind: 'Pod', podIP: '10.1.0.5', serviceAccountName: 'web', namedPorts: { http: 8080 } })
  t.equal(result.errors.length, 1)
  t.equal(result.errors[0].message, `${file} document 0 (Service/web): items[1].spec.selector.app: expected a string, got list`)
})

t.test('a typed list (PodList) whose items leave out kind and apiVersion, as the API server prints them', async (t) => {
  const result = parseResources(`
apiVersion: v1
kind: PodList
items:
- metadata: {name: a, namespace: shop}
  status: {podIP: 10.1.0.1}
- metadata: {name: b, namespace: shop}
  status: {podIP: bad}
`, 'pods.yaml')
  t.strictSame(keys(result), ['Pod/shop/a'])
  t.equal(result.errors.length, 1)
  t.equal(result.errors[0].message, 'pods.yaml document 0 (Pod/b): items[1].status.podIP: "bad" is not an IP address')
  t.strictSame(parseResources('apiVersion: apps/v1\nkind: DeploymentList\nitems:\n- metadata: {name: x}\n', 'd.yaml'),
    { resources: [], errors: [] }, 'a list of a skipped kind is skipped')
  t.strictSame(parseResources('apiVersion: v1\nkind: List\nitems: []\n', 'e.yaml'), { resources: [], errors: [] }, 'an empty list')
  const notAList = parseResources('apiVersion: v1\nkind: List\nitems: {a: 1}\n', 'f.yaml')
  t.equal(notAList.errors[0]?.message, 'f.yaml document 0 (List): items: expected a list')
})

t.test('JSON (kubectl get -o json) loads as YAML', async (t) => {
  const json = JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [{ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: '172.18.0.2' }] } }]
  }, null, '\t')
  const result = parseResources(json, 'nodes.json')
  t.strictSame(result.errors, [])
  t.match(result.resources, [{ kind: 'Node', metadata: { name: 'node-a', namespace: '' }, internalIP: '172.18.0.2' }])
})

t.test('unknown kinds are errors; the kinds that share files with ours are skipped', async (t) => {
  const result = parseResources('apiVersion: bar/v1\nkind: Foo\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n', 'mixed.yaml')
  t.strictSame(result.resources, [])
  t.equal(result.errors.length, 1)
  t.equal(result.errors[0].message, 'mixed.yaml document 0 (Foo/x): kind: Unknown kind "Foo" (apiVersion bar/v1)')
  for (const kind of SKIPPED_KINDS) {
    t.strictSame(parseResources(`apiVersion: v1\nkind: ${kind}\nmetadata: {name: x}\n`, 'skip.yaml'), { resources: [], errors: [] }, kind)
  }
})

t.test('empty text and empty documents give nothing', async (t) => {
  t.strictSame(parseResources('', 'a.yaml'), { resources: [], errors: [] })
  t.strictSame(parseResources('# only a comment\n---\n---\n~\n', 'b.yaml'), { resources: [], errors: [] })
})

t.test('YAML syntax errors reject the whole file, naming the document', async (t) => {
  const file = join(FIXTURES, 'bad-syntax.yaml')
  const error = t.throws(() => parseResources(readFileSync(file, 'utf8'), file), YamlSyntaxError)
  t.match(error, { code: 'AMBIT_YAML_SYNTAX' })
  t.match((error as Error).message, new RegExp(`^${escape(file)} document 1: invalid YAML: .*at line \\d+, column \\d+$`))
  t.throws(() => parseResources('a: 1\na: 2\n', 'dup.yaml'), { message: /^dup\.yaml document 0: invalid YAML: Map keys must be unique/ })
})

t.test('merge keys work as in Kubernetes YAML', async (t) => {
  const result = parseResources(`
base: &base {apiVersion: v1, kind: Namespace}
---
<<: {apiVersion: v1, kind: Namespace}
metadata: {name: merged}
`, 'merge.yaml')
  t.equal(result.errors.length, 1, 'the anchor document is not a resource')
  t.strictSame(keys(result), ['Namespace/merged'])
})

t.test('loadResourceFiles reads files, directories (sorted, recursive) and stdin', async (t) => {
  const dir = await tempDir(t)
  const ns = (name: string): string => `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}}\n`
  await mkdir(join(dir, 'b', 'c'), { recursive: true })
  await mkdir(join(dir, '.hidden'))
  await mkdir(join(dir, '..2024_05_01'))
  await writeFile(join(dir, 'z.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'z' } }))
  await writeFile(join(dir, 'a.yaml'), ns('a'))
  await writeFile(join(dir, 'b', 'c', 'deep.yml'), ns('deep'))
  await writeFile(join(dir, 'b', 'b.yaml'), ns('b'))
  await writeFile(join(dir, 'README.md'), 'not a resource')
  await writeFile(join(dir, '.hidden', 'h.yaml'), ns('hidden'))
  // A mounted ConfigMap: the real file in a hidden timestamped directory, reached by a symbolic link.
  await writeFile(join(dir, '..2024_05_01', 'mounted.yaml'), ns('mounted'))
  await symlink(join('..2024_05_01', 'mounted.yaml'), join(dir, 'mounted.yaml'))
  const single = join(dir, 'single.txt')
  await writeFile(single, ns('single'))

  const result = await loadResourceFiles([dir, single, '-'], { stdin: Readable.from([ns('from-stdin')]) })
  t.strictSame(result.errors, [])
  t.strictSame(keys(result), [
    'Namespace/a', 'Namespace/b', 'Namespace/deep', 'Namespace/mounted', 'Namespace/z', // the directory, sorted
    'Namespace/single', // a file named explicitly, whatever its extension
    'Namespace/from-stdin'
  ])
})

t.test('loadResourceFiles names the file of each error and keeps going', async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'bad.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: Shop}\n')
  await writeFile(join(dir, 'good.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n')
  const fromStdin = await loadResourceFiles(['-'], { stdin: Readable.from(['kind: Pod\napiVersion: v1\nmetadata: {name: q, labels: {a: 1}}\n']) })
  t.equal(fromStdin.errors[0]?.message, '<stdin> document 0 (Pod/q): metadata.labels.a: expected a string, got number')
  const result = await loadResourceFiles([dir])
  t.strictSame(keys(result), ['Namespace/shop'])
  t.strictSame(result.errors.map((e) => e.message), [
    `${join(dir, 'bad.yaml')} document 0 (Pod/p): metadata.namespace: "Shop" is not a DNS-1123 label (lowercase letters, digits and "-", at most 63)`
  ])
})

t.test('loadResourceFiles: a path that cannot be read is a ConfigError; broken YAML a YamlSyntaxError', async (t) => {
  const dir = await tempDir(t)
  await t.rejects(loadResourceFiles([join(dir, 'missing.yaml')]), ConfigError)
  await t.rejects(loadResourceFiles([join(dir, 'missing.yaml')]), { message: /^cannot read resources from .*missing\.yaml: ENOENT/ })
  await t.rejects(loadResourceFiles([join(FIXTURES, 'bad-syntax.yaml')]), YamlSyntaxError)
})

function escape (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
