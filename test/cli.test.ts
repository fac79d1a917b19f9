import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli } from './helpers/cli.js'
import { loadCommands } from '../cli/commands/index.js'
import { SHOP_DIR } from './helpers/mesh.js'

t.test('every command has --help listing each of its flags', async (t) => {
  const commands = await loadCommands()
  const overview = await runCli(['--help'])
  t.equal(overview.code, 0)
  for (const command of commands) {
    t.match(overview.stdout, command.name)
    const help = await runCli([...command.name.split(' '), '--help'])
    t.equal(help.code, 0, `${command.name} --help exits 0`)
    for (const flag of Object.keys(command.flags)) t.match(help.stdout, `--${flag}`, `${command.name} --help shows --${flag}`)
  }
})

t.test('errors exit non-zero with one line naming the problem', async (t) => {
  const unknown = await runCli(['frobnicate'])
  t.equal(unknown.code, 2)
  t.equal(unknown.stderr.trim().split('\n').length, 1)
  t.match(unknown.stderr, /unknown command "frobnicate"/)
  const badFlag = await runCli(['get', 'workloads', '--bogus'])
  t.equal(badFlag.code, 2)
  t.match(badFlag.stderr, /bogus/)
  t.equal(badFlag.stderr.trim().split('\n').length, 1)
  const badKind = await runCli(['get', 'gizmos', '-f', SHOP_DIR])
  t.equal(badKind.code, 2)
  t.match(badKind.stderr, /unknown kind "gizmos"/)
  const memoryGet = await runCli(['get', 'workloads'])
  t.not(memoryGet.code, 0)
  t.match(memoryGet.stderr, /give -f PATH or --store/)
  const missing = await runCli(['explain', '--from', 'web', '-f', SHOP_DIR])
  t.equal(missing.code, 2)
  t.match(missing.stderr, /--to is required/)
  const noSuchFile = await runCli(['get', 'workloads', '-f', '/nonexistent/mesh.yaml'])
  t.equal(noSuchFile.code, 2)
  t.match(noSuchFile.stderr, /nonexistent/)
})

t.test('get shows the resolved mesh from files', async (t) => {
  const workloads = await runCli(['get', 'workloads', '-f', SHOP_DIR])
  t.equal(workloads.code, 0)
  t.match(workloads.stdout, /shop\s+web\s+node-a\s+127\.0\.0\.11\s+spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web\s+STRICT/)
  const services = await runCli(['get', 'services', '-f', SHOP_DIR, '-o', 'json'])
  const parsed = JSON.parse(services.stdout) as { key: string }[]
  t.same(parsed.map((s) => s.key).sort(), ['shop/cart', 'shop/catalog', 'shop/catalog-v1', 'shop/catalog-v2', 'shop/payments', 'shop/web'])
  const policies = await runCli(['get', 'policies', '-f', SHOP_DIR])
  t.match(policies.stdout, /deny-web-to-payments\s+DENY\s+app=payments/)
})

t.test('explain names the deciding rule for the sample pairs', async (t) => {
  const allowed = await runCli(['explain', '--from', 'shop/cart', '--to', 'payments.shop:9090', '-f', SHOP_DIR])
  t.equal(allowed.code, 0)
  t.match(allowed.stdout, /verdict:\s+ALLOW: allowed by ALLOW policy shop\/payments-from-cart rule 0/)
  t.match(allowed.stdout, /result:\s+ALLOWED/)
  const denied = await runCli(['explain', '--from', 'shop/web', '--to', 'payments.shop:9090', '-f', SHOP_DIR])
  t.match(denied.stdout, /verdict:\s+DENY: denied by DENY policy shop\/deny-web-to-payments rule 0/)
  t.match(denied.stdout, /mTLS:\s+STRICT/)
  const notListed = await runCli(['explain', '--from', 'shop/catalog-v1', '--to', 'payments.shop:9090', '-f', SHOP_DIR])
  t.match(notListed.stdout, /verdict:\s+DENY: .*payments-from-cart/)
  t.match(notListed.stdout, /result:\s+DENIED/)
})

t.test('the README keeps its two commands, and CI runs the second', async (t) => {
  const readme = await readFile(join(SHOP_DIR, '../../README.md'), 'utf8')
  const ci = await readFile(join(SHOP_DIR, '../../.ci/run'), 'utf8')
  const pkg = JSON.parse(await readFile(join(SHOP_DIR, '../../package.json'), 'utf8')) as { scripts: Record<string, string> }
  const block = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''
  const commandsInReadme = block.split('\n').filter((l) => l !== '' && !l.startsWith('#'))
  t.same(commandsInReadme, ['npm ci && npm start', './scripts/install.sh && npm test'])
  t.match(ci, './scripts/install.sh && npm test', 'CI runs the README\'s test command')
  t.match(pkg.scripts.start, /up -f examples\/shop/)
})
