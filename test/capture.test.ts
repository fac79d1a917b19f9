import t, { type Test } from 'tap'
import { fileURLToPath } from 'node:url'
import { ConfigError } from '../policy/errors.js'
import {
  CaptureRules, captureRuleLines, detectIptables, jumpsToOurChains, renderInstall, renderUninstall,
  type CaptureConfig, type CommandRunner, type Iptables
} from '../ztunnel/capture.js'
import { createTopology, type Topology } from './helpers/netns.js'
import type { ListenerAnswer } from './fixtures/capture-listener.js'

const LISTENER = fileURLToPath(new URL('./fixtures/capture-listener.ts', import.meta.url))
const MARKED_CONNECT = fileURLToPath(new URL('./fixtures/marked-connect.ts', import.meta.url))

const CONFIG: CaptureConfig = {
  outboundPort: 15001,
  inboundPort: 15006,
  inboundExcludedPorts: [15008],
  ztunnelMark: 0x539,
  ztunnelMarkMask: 0xfff,
  exemptUid: undefined
}

t.test('rules, as iptables-save prints them', async (t) => {
  t.same(captureRuleLines(CONFIG, new Set(['10.0.0.9', '10.0.0.2'])), [
    '-A AMBIT_PREROUTING -m mark --mark 0x539/0xfff -j RETURN',
    '-A AMBIT_PREROUTING -s 10.0.0.2/32 -p tcp -j REDIRECT --to-ports 15001',
    '-A AMBIT_PREROUTING -s 10.0.0.9/32 -p tcp -j REDIRECT --to-ports 15001',
    '-A AMBIT_PREROUTING -d 10.0.0.2/32 -p tcp -m multiport ! --dports 15008 -j REDIRECT --to-ports 15006',
    '-A AMBIT_PREROUTING -d 10.0.0.9/32 -p tcp -m multiport ! --dports 15008 -j REDIRECT --to-ports 15006',
    '-A AMBIT_OUTPUT -m mark --mark 0x539/0xfff -j RETURN',
    '-A AMBIT_OUTPUT -s 10.0.0.2/32 -p tcp -j REDIRECT --to-ports 15001',
    '-A AMBIT_OUTPUT -s 10.0.0.9/32 -p tcp -j REDIRECT --to-ports 15001'
  ], 'outbound capture before inbound, so pod-to-pod is captured once')

  const variant = captureRuleLines({ ...CONFIG, exemptUid: 1337, ztunnelMarkMask: 0xffffffff, inboundExcludedPorts: [] }, new Set(['10.0.0.2']))
  t.ok(variant.includes('-A AMBIT_OUTPUT -m owner --uid-owner 1337 -j RETURN'), 'uid exemption')
  t.ok(variant.includes('-A AMBIT_OUTPUT -m mark --mark 0x539 -j RETURN'), 'a full mask is not printed')
  t.ok(variant.includes('-A AMBIT_PREROUTING -d 10.0.0.2/32 -p tcp -j REDIRECT --to-ports 15006'), 'no excluded ports')

  const saved = [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':AMBIT_OUTPUT - [0:0]',
    '-A PREROUTING -j KUBE-SERVICES',
    '-A OUTPUT -j AMBIT_OUTPUT',
    '-A OUTPUT -p tcp -j AMBIT_OUTPUT',
    '-A AMBIT_OUTPUT -j RETURN',
    'COMMIT'
  ].join('\n')
  t.same(jumpsToOurChains(saved), ['-A OUTPUT -j AMBIT_OUTPUT', '-A OUTPUT -p tcp -j AMBIT_OUTPUT'])
  const install = renderInstall(CONFIG, new Set(), saved)
  t.match(install, /^\*nat\n:AMBIT_PREROUTING - \[0:0\]\n:AMBIT_OUTPUT - \[0:0\]\n-D OUTPUT -j AMBIT_OUTPUT\n-D OUTPUT -p tcp -j AMBIT_OUTPUT\n-I PREROUTING 1 -j AMBIT_PREROUTING\n-I OUTPUT 1 -j AMBIT_OUTPUT\n/)
  t.match(install, /COMMIT\n$/)
  t.equal(renderUninstall(saved), '*nat\n-D OUTPUT -j AMBIT_OUTPUT\n-D OUTPUT -p tcp -j AMBIT_OUTPUT\n-F AMBIT_OUTPUT\n-X AMBIT_OUTPUT\nCOMMIT\n')
  t.equal(renderUninstall('*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j KUBE-SERVICES\nCOMMIT\n'), undefined, 'nothing of ours: nothing to do')
})

/** Commands of the code under test, run inside one namespace of the topology. */
function runnerIn (topo: Topology, ns: string): CommandRunner {
  return (command, args, input) => topo.exec(ns, command, args, input === undefined ? {} : { input })
}

function ruleLines (saved: string): string[] {
  return saved.split('\n').filter((line) => line.startsWith('-A '))
}

/** Our chains' rules, chain by chain (iptables-save lists chains in creation order). */
function ourRules (saved: string): string[] {
  return ['AMBIT_PREROUTING', 'AMBIT_OUTPUT'].flatMap((chain) => ruleLines(saved).filter((line) => line.startsWith(`-A ${chain} `)))
}

const NFT: Iptables = { save: 'iptables-nft-save', restore: 'iptables-nft-restore' }
const LEGACY: Iptables = { save: 'iptables-legacy-save', restore: 'iptables-legacy-restore' }

t.test('detectIptables follows the backend that already holds rules, else nft', async (t) => {
  const topo = await createTopology(t, { namespaces: ['clean', 'legacy'] })
  t.same(await detectIptables(runnerIn(topo, 'clean')), NFT)
  await topo.exec('legacy', 'iptables-legacy', ['-w', '-t', 'nat', '-A', 'OUTPUT', '-d', '192.0.2.1/32', '-j', 'RETURN'])
  t.same(await detectIptables(runnerIn(topo, 'legacy')), LEGACY)
})

for (const iptables of [NFT, LEGACY]) {
  t.test(`install, pods, uninstall in a network namespace (${iptables.save})`, (t) => lifecycle(t, iptables))
}

async function lifecycle (t: Test, iptables: Iptables): Promise<void> {
  const topo = await createTopology(t, { namespaces: ['node'] })
  const exec = runnerIn(topo, 'node')
  const save = async (): Promise<string> => await exec(iptables.save, ['-t', 'nat'])
  const restore = (script: string): Promise<string> => exec(iptables.restore, ['-w', '--noflush'], script)

  // Someone else's rule, and what a crashed earlier run left: a stale rule and two jumps.
  await restore([
    '*nat',
    ':AMBIT_OUTPUT - [0:0]',
    '-A OUTPUT -d 192.0.2.9/32 -j RETURN',
    '-A OUTPUT -j AMBIT_OUTPUT',
    '-A OUTPUT -j AMBIT_OUTPUT',
    '-A AMBIT_OUTPUT -s 192.0.2.50/32 -j RETURN',
    'COMMIT',
    ''
  ].join('\n'))
  const foreign = '-A OUTPUT -d 192.0.2.9/32 -j RETURN'

  const rules = new CaptureRules({ exec, iptables })
  await rules.addPod('10.201.0.2')
  t.notMatch(await save(), /AMBIT_PREROUTING/, 'before install() a pod is only recorded')
  await rules.install()
  await rules.install()
  const saved = await save()
  let lines = ruleLines(saved)
  t.same(lines.filter((line) => line.startsWith('-A PREROUTING')), ['-A PREROUTING -j AMBIT_PREROUTING'], 'one jump from PREROUTING')
  t.same(lines.filter((line) => line.startsWith('-A OUTPUT')), ['-A OUTPUT -j AMBIT_OUTPUT', foreign], 'one jump from OUTPUT, first, foreign rule kept')
  t.same(ourRules(saved), captureRuleLines(CONFIG, new Set(['10.201.0.2'])), 'exactly our rules, stale one gone')
  t.same(ruleLines(rules.rulesDump()), captureRuleLines(CONFIG, new Set(['10.201.0.2'])), 'rulesDump shows them')

  await rules.addPod('10.201.0.3')
  await rules.removePod('10.201.0.2')
  lines = ruleLines(await save())
  t.ok(lines.includes('-A AMBIT_PREROUTING -s 10.201.0.3/32 -p tcp -j REDIRECT --to-ports 15001'), 'added pod captured')
  t.notOk(lines.some((line) => line.includes('10.201.0.2')), 'removed pod released')

  const many = Array.from({ length: 20 }, (_, i) => `10.210.0.${i + 1}`)
  await Promise.all(many.map((ip) => rules.addPod(ip)))
  t.same(ourRules(await save()),
    captureRuleLines(CONFIG, new Set(['10.201.0.3', ...many])), 'concurrent changes all land')

  await rules.syncPods(new Set(['10.201.0.7']))
  t.same(ourRules(await save()),
    captureRuleLines(CONFIG, new Set(['10.201.0.7'])), 'syncPods replaces the set')

  await t.rejects(rules.addPod('fd00::7'), ConfigError, 'IPv6 pods are refused, not ignored')
  await t.rejects(rules.syncPods(new Set(['not-an-ip'])), ConfigError)
  t.same(ourRules(await save()), captureRuleLines(CONFIG, new Set(['10.201.0.7'])), 'and change nothing')

  await rules.uninstall()
  const after = await save()
  t.notMatch(after, /AMBIT/, 'no chain, rule or jump of ours is left')
  t.ok(ruleLines(after).includes(foreign), 'the foreign rule stays')
  await rules.uninstall()
  t.pass('uninstall twice is fine')

  const failing = new CaptureRules({ exec, iptables: { save: iptables.save, restore: 'false' } })
  await t.rejects(failing.install(), 'a failing command rejects')
}

t.test('end to end: pods behind a node are captured, the ztunnel is not', async (t) => {
  const topo = await createTopology(t, {
    namespaces: ['node', 'pod', 'ext'],
    links: [
      { a: { ns: 'node', address: '10.201.0.1/24' }, b: { ns: 'pod', address: '10.201.0.2/24' } },
      { a: { ns: 'node', address: '10.202.0.1/24' }, b: { ns: 'ext', address: '10.202.0.2/24' } }
    ],
    // A second pod whose address is local to the node, as in local mode.
    addresses: [{ ns: 'node', address: '10.203.0.5/32' }],
    routes: [
      { ns: 'pod', to: 'default', via: '10.201.0.1' },
      { ns: 'ext', to: 'default', via: '10.202.0.1' }
    ],
    forwarding: ['node']
  })
  const ztunnel = topo.spawnNode('node', LISTENER, ['15001', '15006'])
  const app = topo.spawnNode('pod', LISTENER, ['8080', '15008'])
  await Promise.all([ztunnel.waitForOutput('ready'), app.waitForOutput('ready')])

  const rules = new CaptureRules({ exec: runnerIn(topo, 'node') })
  t.teardown(() => rules.uninstall().catch(() => {}))
  await rules.install()
  await rules.syncPods(new Set(['10.201.0.2', '10.203.0.5']))

  const get = async (ns: string, url: string): Promise<ListenerAnswer> =>
    JSON.parse(await topo.exec(ns, 'curl', ['-sS', '-m', '10', url])) as ListenerAnswer
  const markedGet = async (mark: number, url: { host: string, port: number }, from: string): Promise<ListenerAnswer> =>
    JSON.parse(await topo.exec('node', process.execPath, [...process.execArgv, MARKED_CONNECT, String(mark), url.host, String(url.port), from])) as ListenerAnswer

  t.same(await get('pod', 'http://10.99.0.1:80/'),
    { listenPort: 15001, remote: '10.201.0.2', original: { ip: '10.99.0.1', port: 80 }, redirected: true },
    'outbound: a pod\'s connection reaches 15001 with its original destination')
  t.same(await get('pod', 'http://10.201.0.1:15001/'),
    { listenPort: 15001, remote: '10.201.0.2', original: { ip: '10.201.0.1', port: 15001 }, redirected: false },
    'a pod connecting to 15001 itself is recognizably not redirected')
  t.same(await get('ext', 'http://10.201.0.2:8080/'),
    { listenPort: 15006, remote: '10.202.0.2', original: { ip: '10.201.0.2', port: 8080 }, redirected: true },
    'inbound: a plaintext client reaches 15006 with the pod as original destination')
  t.match(await get('ext', 'http://10.201.0.2:15008/'), { listenPort: 15008, remote: '10.202.0.2', redirected: false },
    'the pod\'s 15008 is never captured')
  t.match(await get('node', 'http://10.201.0.2:8080/'), { listenPort: 8080, remote: '10.201.0.1', redirected: false },
    'the node (ztunnel) reaches the pod untouched')

  t.match(await markedGet(0, { host: '10.201.0.2', port: 8080 }, '10.203.0.5'),
    { listenPort: 15001, remote: '10.203.0.5', original: { ip: '10.201.0.2', port: 8080 }, redirected: true },
    'a node-local pod address is captured (OUTPUT)')
  t.match(await markedGet(0x539, { host: '10.201.0.2', port: 8080 }, '10.203.0.5'),
    { listenPort: 8080, remote: '10.203.0.5', redirected: false },
    'the same connection with the ztunnel mark goes out untouched')

  await rules.removePod('10.201.0.2')
  t.match(await get('ext', 'http://10.201.0.2:8080/'), { listenPort: 8080, remote: '10.202.0.2' }, 'a removed pod is reached directly')
  const escaped = await topo.run('pod', 'curl', ['-sS', '-m', '5', 'http://10.99.0.1:80/'])
  t.not(escaped.code, 0, 'and its outbound traffic is no longer captured (10.99.0.1 does not exist)')

  await rules.addPod('10.201.0.2')
  t.match(await get('ext', 'http://10.201.0.2:8080/'), { listenPort: 15006 }, 'captured again')
  await rules.uninstall()
  t.match(await get('ext', 'http://10.201.0.2:8080/'), { listenPort: 8080 }, 'after uninstall, nothing is captured')
})
