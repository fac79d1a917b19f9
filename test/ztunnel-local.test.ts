/**
 * Acceptance of the ztunnel in local mode (DESIGN §4), on loopback addresses:
 *  - the canonical test: `ambit up` on the issue's addresses (127.0.0.2/.3 nodes, 127.0.0.11
 *    client, 127.0.0.21 server); curl through node-a's SOCKS5 reaches the server on node-b,
 *    whose metrics count the connection with exact bytes both ways;
 *  - 15008 refuses a client without a certificate, with another CA's, and one the policy
 *    denies, each with its own response flag and log reason, while a good client carries on;
 *  - `promtool check metrics` accepts /metrics;
 *  - readiness is 503 until the certificates are there, the admin pages hold no private key;
 *  - SIGTERM drains an in-flight transfer, unready ("draining") meanwhile, and exits 0.
 * Apart from the canonical test, addresses are 127.0.5.x (fixtures in fixtures/ztunnel-local/).
 */
import t from 'tap'
import { once } from 'node:events'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ChildProcess } from 'node:child_process'
import { constants as h2 } from 'node:http2'
import { startCli } from './helpers/cli.js'
import { createTestCa, testIdentity } from './helpers/certs.js'
import { openHboneSession, hboneConnect, type HboneOutcome } from './helpers/hbone-probe.js'
import { startLocalMesh, type LocalMesh } from './helpers/local-mesh.js'
import { startEchoPod, startHttpPod, startTcpPod, httpResponse } from './helpers/pods.js'
import { fetchMetrics, parseMetrics, promtoolCheckMetrics, samplesOf, scrape, sumOf } from './helpers/prometheus.js'
import { curlViaSocks, sendAndCollect, socks5Connect } from './helpers/socks5-client.js'
import { waitFor } from './helpers/wait.js'
import { holdSampleAddresses } from './helpers/sample-addresses.js'
import type { Teardown } from './helpers/redis.js'

const FIXTURES = fileURLToPath(new URL('./fixtures/ztunnel-local/', import.meta.url))
const SERVICE_HOST = 'echo.demo.svc.cluster.local'
const HTTP_PORT = 80
const ECHO_PORT = 7
/** The server pod's ports behind the Service's 80 and 7. */
const POD_HTTP_PORT = 18080
const POD_ECHO_PORT = 17070
const CLIENT_PRINCIPAL = 'spiffe://cluster.local/ns/demo/sa/client'
const BODY = 'hello from the server pod\n'

interface Readiness {
  readonly status: number
  readonly body: { ready: boolean, reason?: string }
}

async function readiness (address: string): Promise<Readiness> {
  const response = await fetch(`http://${address}:15021/healthz/ready`)
  return { status: response.status, body: await response.json() as Readiness['body'] }
}

async function waitReady (address: string): Promise<void> {
  await waitFor(`${address}:15021 ready`, async () => (await readiness(address).catch(() => undefined))?.status === 200, 30_000)
}

async function exitCode (child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const [code] = await once(child, 'exit') as [number | null]
  clearTimeout(timer)
  return code
}

/** Labels of the connections node-b counted for the client's calls to the Service. */
const CLIENT_TO_SERVICE = {
  source_principal: CLIENT_PRINCIPAL,
  destination_service: SERVICE_HOST,
  connection_security_policy: 'mutual_tls',
  response_flags: '-'
}

t.test('canonical: curl --socks5-hostname through node-a reaches the server on node-b, counted exactly', async (t) => {
  const nodeA = '127.0.0.2'
  const nodeB = '127.0.0.3'
  const client = '127.0.0.11'
  const serverIp = '127.0.0.21'
  // The README test runs the sample shop on these addresses too: take turns.
  await holdSampleAddresses(t)
  const httpPod = await startHttpPod(t, serverIp, POD_HTTP_PORT, BODY)
  const echoPod = await startEchoPod(t, serverIp, POD_ECHO_PORT)
  const up = startCli(t, ['up', '-f', `${FIXTURES}canonical`, '--ca-port', '0', '--status-port', '0'])
  await up.waitFor(/Ctrl-C to stop/, 30_000)
  await waitReady(nodeA)
  await waitReady(nodeB)
  const proxy = { host: nodeA, port: 15080 }

  const curl = await curlViaSocks({ proxy, clientIp: client, url: `http://${SERVICE_HOST}:${HTTP_PORT}/` })
  t.equal(curl.code, 0, `curl succeeded ${curl.stderr}`)
  t.equal(curl.stdout, BODY, 'curl got the server pod\'s answer')

  const payload = Buffer.alloc(100_000 + 17, 'ambit')
  const { reply, socket } = await socks5Connect({ proxy, localAddress: client, host: SERVICE_HOST, port: ECHO_PORT })
  t.equal(reply, 0, 'SOCKS5 CONNECT to the echo port succeeded')
  const echoed = await sendAndCollect(socket, payload)
  t.ok(echoed.equals(payload), 'the echo came back whole')

  await waitFor('both pod connections closed', () => httpPod.closed.length === 1 && echoPod.closed.length === 1)
  const http = httpPod.closed[0]!
  const echo = echoPod.closed[0]!
  t.equal(http.bytesWritten, httpResponse(BODY).length, 'the HTTP pod sent exactly its response')
  t.equal(echo.bytesRead, payload.length)
  t.equal(echo.bytesWritten, payload.length)
  const expected = { received: http.bytesRead + echo.bytesRead, sent: http.bytesWritten + echo.bytesWritten }

  for (const [reporter, address] of [['destination', nodeB], ['source', nodeA]] as const) {
    const labels = { ...CLIENT_TO_SERVICE, reporter }
    const url = `http://${address}:15020/metrics`
    await waitFor(`${reporter} metrics of both connections closed`, async () =>
      sumOf(await scrape(url), 'istio_tcp_connections_closed_total', labels) === 2)
    const samples = await scrape(url)
    t.equal(sumOf(samples, 'istio_tcp_connections_opened_total', labels), 2, `${reporter}: 2 connections opened`)
    t.equal(sumOf(samples, 'istio_tcp_received_bytes_total', labels), expected.received, `${reporter}: received bytes = bytes the pods read`)
    t.equal(sumOf(samples, 'istio_tcp_sent_bytes_total', labels), expected.sent, `${reporter}: sent bytes = bytes the pods wrote`)
  }
  const destination = samplesOf(await scrape(`http://${nodeB}:15020/metrics`), 'istio_tcp_connections_opened_total', { reporter: 'destination' })
  t.same(destination.map((s) => [s.labels.source_principal, s.labels.connection_security_policy, s.labels.destination_workload]),
    [[CLIENT_PRINCIPAL, 'mutual_tls', 'server']], 'node-b saw only the client, over mutual TLS')

  t.equal(await up.stop('SIGTERM'), 0, 'ambit up exits 0 on SIGTERM')
})

// -------------------------------------------------------------------------------------------
// In-process mesh: node-a 127.0.5.2 (client 127.0.5.11, intruder 127.0.5.12), node-b 127.0.5.3
// (server 127.0.5.21), node-c 127.0.5.4 (started by the readiness test).

const LOCAL = { nodeA: '127.0.5.2', nodeB: '127.0.5.3', nodeC: '127.0.5.4', client: '127.0.5.11', server: '127.0.5.21' }

t.test('in-process mesh', async (t) => {
  const mesh = await startLocalMesh(t, `${FIXTURES}local`, ['node-a', 'node-b'])
  await startHttpPod(t, LOCAL.server, POD_HTTP_PORT, BODY)
  await startEchoPod(t, LOCAL.server, POD_ECHO_PORT)
  const proxy = { host: LOCAL.nodeA, port: 15080 }
  const curlWorks = async (): Promise<boolean> => {
    const result = await curlViaSocks({ proxy, clientIp: LOCAL.client, url: `http://${SERVICE_HOST}/` })
    return result.code === 0 && result.stdout === BODY
  }

  t.test('15008 refuses bad clients, each with its own flag and log reason; a good client carries on', async (t) => {
    const { reply, socket: good } = await socks5Connect({ proxy, localAddress: LOCAL.client, host: SERVICE_HOST, port: ECHO_PORT })
    t.equal(reply, 0)
    t.teardown(() => good.destroy())
    good.resume()
    let pings = 0
    const goodClientWorks = async (): Promise<boolean> => {
      const message = `ping ${++pings}\n`
      good.write(message)
      const [chunk] = await once(good, 'data') as [Buffer]
      return chunk.toString() === message
    }
    t.ok(await goodClientWorks(), 'the good client works before')

    const trustBundle = mesh.state.mesh.trustBundle
    const otherCa = await createTestCa(t, 'another root')
    const foreign = testIdentity(await otherCa.issue({ namespace: 'demo', serviceAccount: 'client' }), [otherCa.certPem])
    const intruder = await mesh.issue('node-a', 'demo', 'intruder')
    const attempt = async (client?: { key: string, certChain: string }): Promise<HboneOutcome> => {
      const probe = await openHboneSession({ address: LOCAL.nodeB, destinationIp: LOCAL.server, trustBundle, ...(client !== undefined && { client }) })
      t.teardown(() => probe.session.destroy())
      return await hboneConnect(probe, { ip: LOCAL.server, port: POD_ECHO_PORT })
    }

    const anonymous = await attempt()
    t.match(anonymous, { kind: 'goaway', code: h2.NGHTTP2_INADEQUATE_SECURITY, debug: /certificate required/ }, 'no certificate: GOAWAY')
    t.ok(await goodClientWorks(), 'the good client works meanwhile')
    const untrusted = await attempt(foreign)
    t.match(untrusted, { kind: 'goaway', code: h2.NGHTTP2_INADEQUATE_SECURITY, debug: /not trusted/ }, 'another CA: GOAWAY')
    t.ok(await goodClientWorks(), 'the good client works meanwhile')
    const denied = await attempt(intruder)
    t.match(denied, { kind: 'response', status: 403 }, 'denied identity: 403')
    t.ok(await goodClientWorks(), 'the good client works after')
    t.ok(await curlWorks(), 'a new curl works after')

    const metrics = await scrape(`http://${LOCAL.nodeB}:15020/metrics`)
    const refusals = samplesOf(metrics, 'istio_tcp_connections_closed_total', { reporter: 'destination' }).filter((s) => s.labels.response_flags !== '-')
    const flagOf = (principal: string): string[] => refusals.filter((s) => s.labels.source_principal === principal).map((s) => s.labels.response_flags!)
    t.same(refusals.map((s) => s.value), [1, 1, 1], 'three refusals, one connection each')
    t.same(flagOf('unknown').sort(), ['TLS_NO_CLIENT_CERT', 'TLS_UNTRUSTED_CERT'], 'the TLS refusals carry their own flags')
    t.same(flagOf('spiffe://cluster.local/ns/demo/sa/intruder'), ['UAEX'], 'the policy refusal is UAEX, with the intruder\'s principal')
    t.same(samplesOf(metrics, 'ambit_authorization_rule_hits_total', { policy: 'demo/deny-intruder' }).map((s) => [s.labels.rule, s.labels.action, s.value]),
      [['0', 'DENY', 1]], 'the deciding rule counted its hit')

    const reasons = mesh.logs.filter((r) => r.node === 'node-b' && /refused/.test(r.msg))
    t.ok(reasons.some((r) => r.msg === 'HBONE connection refused' && r.reason === 'no-client-certificate'), 'logged: no-client-certificate')
    t.ok(reasons.some((r) => r.msg === 'HBONE connection refused' && r.reason === 'untrusted-client-certificate'), 'logged: untrusted-client-certificate')
    t.ok(reasons.some((r) => r.msg === 'inbound connection refused' && r.flag === 'UAEX' && /deny-intruder/.test(String(r.reason))), 'logged: denied by demo/deny-intruder')

    const echoed = await sendAndCollect(good, Buffer.from('bye\n'))
    t.equal(echoed.toString(), 'bye\n', 'the good client ends cleanly')
  })

  t.test('promtool check metrics accepts /metrics of both nodes', async (t) => {
    t.ok(await curlWorks())
    for (const address of [LOCAL.nodeA, LOCAL.nodeB]) {
      const text = await fetchMetrics(`http://${address}:15020/metrics`)
      t.ok(parseMetrics(text).some((s) => s.name === 'istio_tcp_connections_opened_total'), 'has the TCP metrics')
      const result = await promtoolCheckMetrics(text)
      t.equal(result.code, 0, `promtool on ${address}: ${result.output}`)
      t.equal(result.output, '', 'no lint remarks')
    }
  })

  t.test('readiness is 503 until certificates are loaded, 200 after; no admin page shows a private key', async (t) => {
    const gate = await startCaGate(t, mesh)
    const ztunnel = await mesh.startZtunnel('node-c', {
      certificateSource: () => mesh.caClient('node-c', gate.url),
      certificateWaitMs: 0
    })
    t.equal(ztunnel.ports.readiness, 15021)
    const admin = `http://${LOCAL.nodeC}:15000`
    await waitFor('a failed certificate request', async () =>
      (await (await fetch(`${admin}/certificates`)).json() as Array<{ state: string }>)[0]?.state === 'failed')
    for (let i = 0; i < 3; i++) {
      const before = await readiness(LOCAL.nodeC)
      t.match(before, { status: 503, body: { ready: false, reason: 'waiting for workload certificates' } }, 'unready while the CA is out of reach')
      await sleep(200)
    }
    gate.open()
    const opened = Date.now()
    await waitFor('readiness 200', async () => (await readiness(LOCAL.nodeC)).status === 200, 20_000)
    t.ok(Date.now() - opened < 15_000, 'ready soon after the CA is reachable')
    t.match(await readiness(LOCAL.nodeC), { status: 200, body: { ready: true } })

    const certificates = await (await fetch(`${admin}/certificates`)).json() as Array<Record<string, string>>
    t.match(certificates, [{ spiffeId: 'spiffe://cluster.local/ns/demo/sa/lonely', state: 'ready', notAfter: /^\d{4}-/ }], '/certificates lists the workload certificate')
    const index = await fetch(`${admin}/no-such-page`)
    t.equal(index.status, 404)
    const { pages } = await index.json() as { pages: string[] }
    t.ok(pages.includes('/certificates') && pages.includes('/config_dump'), `admin pages: ${pages.join(' ')}`)
    const everyPage = [...pages.map((p) => `${admin}${p}`), `http://${LOCAL.nodeC}:15020/metrics`, `http://${LOCAL.nodeC}:15021/healthz/ready`]
    for (const url of everyPage) {
      const text = await (await fetch(url)).text()
      t.notMatch(text, /PRIVATE KEY/, `${url} holds no private key`)
    }
    t.match(await (await fetch(`${admin}/certificates`)).text(), /BEGIN|notAfter/, 'the pages were really read')
  })
})

/**
 * A TCP door in front of the mesh CA: closed (every connection reset) until open(), so a
 * ztunnel's CA is out of reach at first.
 */
async function startCaGate (t: Teardown, mesh: LocalMesh): Promise<{ url: string, open (): void }> {
  const ca = new URL(mesh.plane.caServer.url)
  let isOpen = false
  const pod = await startTcpPod(t, '127.0.0.1', 0, (socket) => {
    if (!isOpen) {
      socket.resetAndDestroy()
      return
    }
    const upstream = net.connect({ host: ca.hostname, port: Number(ca.port) })
    upstream.on('error', () => socket.destroy())
    socket.pipe(upstream).pipe(socket)
  })
  return { url: `https://127.0.0.1:${pod.port}`, open: () => { isOpen = true } }
}

t.test('SIGTERM drains an in-flight transfer to completion, unready meanwhile, and exits 0', async (t) => {
  const nodes = ['127.0.5.102', '127.0.5.103']
  const client = '127.0.5.111'
  const chunk = Buffer.alloc(64 * 1024, 'x')
  const chunks = 40
  // A slow server: 40 chunks of 64 KiB, one every 75 ms (about 3 s).
  await startTcpPod(t, '127.0.5.121', POD_HTTP_PORT, (socket) => {
    let sent = 0
    const timer = setInterval(() => {
      if (socket.destroyed) return clearInterval(timer)
      socket.write(chunk)
      if (++sent === chunks) {
        clearInterval(timer)
        socket.end()
      }
    }, 75)
    socket.resume()
  })
  const up = startCli(t, ['up', '-f', `${FIXTURES}drain`, '--ca-port', '0', '--status-port', '0'])
  await up.waitFor(/Ctrl-C to stop/, 30_000)
  for (const node of nodes) await waitReady(node)

  const { reply, socket } = await socks5Connect({ proxy: { host: nodes[0]!, port: 15080 }, localAddress: client, host: SERVICE_HOST, port: HTTP_PORT })
  t.equal(reply, 0)
  let received = 0
  let ended = false
  const transfer = new Promise<void>((resolve, reject) => {
    socket.on('data', (data: Buffer) => { received += data.length })
    socket.once('end', () => { ended = true; resolve() })
    socket.once('error', reject)
  })
  socket.resume()
  await waitFor('the first bytes', () => received > 0)
  up.child.kill('SIGTERM')

  const draining = new Set<string>()
  while (draining.size < nodes.length && !ended) {
    for (const node of nodes) {
      const state = await readiness(node).catch(() => undefined)
      if (state?.status === 503 && state.body.reason === 'draining' && !ended) draining.add(node)
    }
    await sleep(20)
  }
  t.same([...draining].sort(), nodes, 'both ztunnels answered 503 "draining" while the transfer ran')
  await transfer
  t.equal(received, chunk.length * chunks, 'every byte arrived')
  t.equal(up.child.exitCode, null, 'ambit up was still draining when the transfer ended')
  socket.end()
  t.equal(await exitCode(up.child, 20_000), 0, 'ambit up exited 0')
  t.match(up.output(), /Ctrl-C to stop/)
})
