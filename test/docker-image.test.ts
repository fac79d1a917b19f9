/**
 * docker/Dockerfile and .dockerignore, read rather than built (no container engine runs here):
 * the build compiles everything tsconfig.build.json names, the runtime holds only dist/,
 * production dependencies and iptables, and runs the CLI the manifests call, as non-root.
 */
import t from 'tap'
import { existsSync } from 'node:fs'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { REPO_ROOT } from './helpers/mesh.js'
import { sortedUnique } from './helpers/k8s-manifests.js'
import { cliNodeFlags } from '../bench/lib/node-flags.js'

interface Stage { readonly from: string, readonly name?: string, readonly instructions: ReadonlyArray<{ op: string, args: string }> }

/** Dockerfile stages, with continuation lines joined and comments dropped. */
function dockerStages (text: string): Stage[] {
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'))
  const stages: Array<{ from: string, name?: string, instructions: Array<{ op: string, args: string }> }> = []
  for (const line of lines) {
    const [op = '', ...rest] = line.split(/\s+/)
    const args = rest.join(' ')
    if (op.toUpperCase() === 'FROM') {
      const [from = '', as, name] = args.split(/\s+/)
      stages.push({ from, ...(as?.toUpperCase() === 'AS' && name !== undefined && { name }), instructions: [] })
    } else {
      stages.at(-1)?.instructions.push({ op: op.toUpperCase(), args })
    }
  }
  return stages
}

/** Top-level folders with TypeScript sources, but the tests. */
async function sourceDirs (): Promise<string[]> {
  const entries = await readdir(REPO_ROOT, { withFileTypes: true })
  const dirs = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.') && !['node_modules', 'dist', 'test'].includes(e.name))
  const withSources = await Promise.all(dirs.map(async (d) => {
    const files = await readdir(join(REPO_ROOT, d.name), { recursive: true })
    return files.some((f) => f.endsWith('.ts')) ? [d.name] : []
  }))
  return withSources.flat()
}

t.test('the CLI runs with the same node flags however it is started: shebang, npm start, the image', async (t) => {
  const flags = await cliNodeFlags(join(REPO_ROOT, 'cli/main.ts'))
  t.ok(flags.includes('--no-memory-reducer'), 'the shebang turns V8\'s memory reducer off (bench/RESULTS.md says why)')
  const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  t.match(pkg.scripts.start, new RegExp(`^node ${flags.join(' ')} dist/cli/main\\.js `), 'npm start passes them too')
})

t.test('the Dockerfile builds what the manifests run', async (t) => {
  const stages = dockerStages(await readFile(join(REPO_ROOT, 'docker/Dockerfile'), 'utf8'))
  const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>, engines: { node: string } }
  t.equal(stages.length, 2, 'a build stage and a runtime stage')
  const [build, runtime] = stages as [Stage, Stage]
  for (const stage of stages) t.equal(stage.from, 'node:20-bookworm-slim', `${stage.name} is Debian bookworm with Node 20`)
  t.match(pkg.engines.node, />=\s*20\b/, 'which package.json\'s engines allows')
  const runs = (stage: Stage): string[] => stage.instructions.filter((i) => i.op === 'RUN').map((i) => i.args)
  const copies = (stage: Stage): string[][] => stage.instructions.filter((i) => i.op === 'COPY').map((i) => i.args.split(/\s+/))

  t.ok(runs(build).some((r) => /\bnpm ci\b/.test(r)), 'the build stage installs with npm ci')
  t.ok(runs(build).some((r) => r.includes('npm run build')), 'and compiles the TypeScript')
  const tsconfig = JSON.parse(await readFile(join(REPO_ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] }
  const copied = copies(build).flatMap((args) => args.slice(0, -1))
  for (const dir of tsconfig.include) t.ok(copied.includes(dir), `the build stage copies ${dir}/, which the build compiles`)
  // The compiler also follows imports out of those folders: every folder of sources goes in.
  for (const dir of await sourceDirs()) t.ok(copied.includes(dir), `the build stage copies ${dir}/, which holds sources`)

  t.ok(copies(build).some(([from, to]) => from === 'control/dashboard' && to === './dist/control/dashboard'),
    'the dashboard\'s page goes next to the compiled controller, where control/dashboard.ts looks for it')

  t.ok(runs(runtime).some((r) => /npm ci --omit=dev/.test(r)), 'the runtime holds only production dependencies')
  t.ok(runs(runtime).some((r) => /apt-get install .*\biptables\b/.test(r)), 'and iptables, for capture')
  t.strictSame(copies(runtime).filter((args) => args[0]?.startsWith('--from=')), [[`--from=${build.name}`, '/app/dist', './dist']], 'it takes only dist/ from the build stage')
  t.ok(copies(runtime).every((args) => args[0]?.startsWith('--from=') || args.slice(0, -1).every((f) => f.startsWith('package'))), 'and nothing from the sources but package*.json')
  t.strictSame(runtime.instructions.filter((i) => i.op === 'USER').map((i) => i.args), ['node'], 'it runs as the non-root node user')
  const entrypoint = runtime.instructions.find((i) => i.op === 'ENTRYPOINT')?.args
  t.strictSame(JSON.parse(entrypoint ?? 'null'), ['node', ...await cliNodeFlags(join(REPO_ROOT, 'cli/main.ts')), pkg.bin.ambit], 'its entrypoint is the ambit CLI, with the node flags of its shebang')

  // .dockerignore keeps everything out but what the COPYs name.
  const ignore = (await readFile(join(REPO_ROOT, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
  t.equal(ignore[0], '*', '.dockerignore starts from nothing')
  const allowed = ignore.slice(1).map((l) => l.replace(/^!/, '').replace(/\/$/, ''))
  const sources = stages.flatMap(copies).filter((args) => !args[0]?.startsWith('--from=')).flatMap((args) => args.slice(0, -1))
  t.strictSame(sortedUnique(sources), sortedUnique(allowed), 'and lets in exactly what the Dockerfile copies')
  for (const source of sortedUnique(sources)) t.ok(existsSync(join(REPO_ROOT, source)), `${source} exists`)
})
