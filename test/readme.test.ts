import t from 'tap'
import { spawn } from 'node:child_process'
import http from 'node:http'
import { once } from 'node:events'
import { REPO_ROOT } from './helpers/mesh.js'
import { holdSampleAddresses, isListening, SAMPLE_NODE_ADDRESSES, ZTUNNEL_PORTS } from './helpers/sample-addresses.js'
import { curlViaSocks } from './helpers/socks5-client.js'
import { waitFor } from './helpers/wait.js'

// The README's first command is `npm ci && npm start`; CI has run `npm ci` already.
t.test('npm start runs the sample mesh on the embedded store and Ctrl-C stops it cleanly', async (t) => {
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

  // The web pod calls the cart Service through node-a's ztunnel; the cart pod (node-b) answers.
  const cart = http.createServer((_req, res) => res.end('cart says hi\n'))
  cart.listen(8080, '127.0.0.21')
  await once(cart, 'listening')
  t.teardown(() => { cart.close() })
  const answer = await curlViaSocks({ clientIp: '127.0.0.11', proxy: { host: '127.0.0.2', port: 15080 }, url: 'http://cart.shop.svc.cluster.local/' })
  t.equal(answer.stdout, 'cart says hi\n', answer.stderr)
  cart.closeAllConnections()
  cart.close()

  process.kill(-child.pid!, 'SIGINT')
  const [code, signal] = await exited
  // npm passes the terminal's SIGINT on and then ends the same way; ambit itself exits 0.
  t.ok(code === 0 || signal === 'SIGINT', `npm start ended cleanly (code ${code}, signal ${signal})`)
  t.notMatch(output, /Error|ERR!/, 'nothing failed on the way out')
  for (const address of SAMPLE_NODE_ADDRESSES) {
    for (const port of ZTUNNEL_PORTS) t.notOk(await isListening(address, port), `${address}:${port} released`)
  }
  t.notOk(await isListening('127.0.0.1', 15012), 'the CA port is released')
})
