import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { REPO_ROOT } from './helpers/mesh.js'
import { holdSampleAddresses, isListening, SAMPLE_NODE_ADDRESSES, ZTUNNEL_PORTS } from './helpers/sample-addresses.js'
import { curlViaSocks } from './helpers/socks5-client.js'
import { waitFor } from './helpers/wait.js'

// The README's first command is `npm ci && npm start`; CI has run `npm ci` already.
t.test('npm start runs the sample mesh with its demo load on the embedded store and Ctrl-C stops it cleanly', async (t) => {
  await holdSampleAddresses(t)
  const child = spawn('npm', ['start'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let output = ''
  child.stdout.on('data', (d: Buffer) => { output += d.toString() })
  child.stderr.on('data', (d: Buffer) => { output += d.toString() })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  t.teardown(() => {
    try { process.kill(-child.pid!, 'SIGKILL') } catch { /* already gone */ }
  })
  await waitFor('the mesh to be up', () => output.includes('Ctrl-C to stop'), 60_000)
  t.match(output, /2 nodes, 5 workloads, 4 services on memory/)

  // --demo: the sample's apps answer, the load flows through the ztunnels and a summary follows.
  // A summary line: service, req/s, success, p99, mTLS share, denied connections.
  const catalogLine = /^catalog +[\d.]+ +\d+% +\S+ +100% +0$/m
  const cartLine = /^cart +[\d.]+ +\d+% +\S+ +100% +0$/m
  const paymentsDeniedLine = /^payments +[\d.]+ +\d+% +\S+ +\S+ +[1-9]\d*$/m
  // The first summary comes 2 s after start; a loaded machine may need a few more.
  await waitFor('a summary with the demo traffic', () => [catalogLine, cartLine, paymentsDeniedLine].every((line) => line.test(output)), 60_000)
  t.match(output, catalogLine, 'web → catalog flows, all mutual TLS')
  t.match(output, cartLine, 'web → cart flows, all mutual TLS')
  t.match(output, paymentsDeniedLine, 'web → payments is denied')

  // The web pod calls the cart Service through node-a's ztunnel; the runner's cart pod (node-b) answers.
  const answer = await curlViaSocks({ clientIp: '127.0.0.11', proxy: { host: '127.0.0.2', port: 15080 }, url: 'http://cart.shop.svc.cluster.local/orders' })
  t.same(JSON.parse(answer.stdout), { service: 'cart', pod: 'cart', version: '', path: '/orders' }, answer.stderr)

  process.kill(-child.pid!, 'SIGINT')
  const [code, signal] = await exited
  // npm passes the terminal's SIGINT on and then ends the same way; ambit itself exits 0.
  t.ok(code === 0 || signal === 'SIGINT', `npm start ended cleanly (code ${code}, signal ${signal})`)
  t.notMatch(output, /Error|ERR!/, 'nothing failed on the way out')
  for (const address of SAMPLE_NODE_ADDRESSES) {
    for (const port of ZTUNNEL_PORTS) t.notOk(await isListening(address, port), `${address}:${port} released`)
  }
  t.notOk(await isListening('127.0.0.1', 15012), 'the CA port is released')
  for (const [pod, port] of [['127.0.0.11', 8080], ['127.0.0.12', 8080], ['127.0.0.21', 8080], ['127.0.0.22', 8080], ['127.0.0.23', 9090]] as const) {
    t.notOk(await isListening(pod, port), `the demo app on ${pod}:${port} stopped`)
  }
})
