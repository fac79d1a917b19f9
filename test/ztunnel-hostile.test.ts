/**
 * Hostile input does not crash or starve the ztunnel (DESIGN §4): SOCKS5 garbage and
 * unsupported commands, unknown hostnames, garbage HTTP/2 on 15008 (with and without TLS), an
 * HTTP/2 rapid-reset flood (CVE-2023-44487), thousands of idle connections, and a peer that
 * stops reading. After each, a normal curl through the mesh still works.
 *
 * In-process mesh (fixtures/ztunnel-local/hostile): node-a 127.0.5.202 with the client pod
 * 127.0.5.211, node-b 127.0.5.203 with the server pod 127.0.5.221 behind echo.demo.
 */
import t, { type Test } from 'tap'
import { once } from 'node:events'
import { constants as h2 } from 'node:http2'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { setTimeout as sleep } from 'node:timers/promises'
import { connectHboneTls, openHboneSession, hboneConnect } from './helpers/hbone-probe.js'
import { CLIENT_PREFACE, connectHeaders, frame, goawayCode, rstStream, settingsFrame } from './helpers/h2-frames.js'
import { startLocalMesh } from './helpers/local-mesh.js'
import { startEchoPod, startHttpPod, startTcpPod } from './helpers/pods.js'
import { scrape, sumOf } from './helpers/prometheus.js'
import { curlViaSocks, sendAndCollect, socks5Connect, socks5Request } from './helpers/socks5-client.js'
import { waitFor } from './helpers/wait.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/ztunnel-local/hostile', import.meta.url))
const NODE_A = '127.0.5.202'
const NODE_B = '127.0.5.203'
const CLIENT = '127.0.5.211'
const SERVER = '127.0.5.221'
const SERVICE_HOST = 'echo.demo.svc.cluster.local'
const SOCKS = { host: NODE_A, port: 15080 }
const BODY = 'still here\n'
const POD_ECHO_PORT = 17070
/** A request through the mesh must take less than this, whatever else is going on. */
const PROMPT_MS = 3_000

/** HBONE keepalive: how a session the peer broke gets closed (Node leaves it open after its GOAWAY). */
const KEEPALIVE = { keepaliveIntervalMs: 1_000, keepaliveTimeoutMs: 3_000 }

const mesh = await startLocalMesh(t, FIXTURE, ['node-a', 'node-b'], { hboneLimits: KEEPALIVE })
await startHttpPod(t, SERVER, 18080, BODY)
const echoPod = await startEchoPod(t, SERVER, POD_ECHO_PORT)
const trustBundle = mesh.state.mesh.trustBundle
const clientIdentity = await mesh.issue('node-a', 'demo', 'client')

/** A normal curl through node-a's SOCKS5 to the server on node-b works, promptly. */
async function meshStillWorks (t: Test, what = 'a normal curl through the mesh still works', promptMs = PROMPT_MS): Promise<void> {
  const started = Date.now()
  const result = await curlViaSocks({ proxy: SOCKS, clientIp: CLIENT, url: `http://${SERVICE_HOST}/` })
  const elapsed = Date.now() - started
  t.equal(result.code, 0, `${what} (${result.stderr.trim()})`)
  t.equal(result.stdout, BODY)
  t.ok(elapsed < promptMs, `the curl took ${elapsed} ms (< ${promptMs})`)
}

/** Resolves once the server closes `socket` (after reading what it sent back, if anything). */
async function closedByServer (socket: net.Socket, timeoutMs = 10_000): Promise<Buffer> {
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  socket.on('error', () => {}) // a reset is a way of closing too
  let timedOut = false
  const timer = setTimeout(() => { timedOut = true; socket.destroy() }, timeoutMs)
  if (!socket.destroyed) await new Promise((resolve) => socket.once('close', resolve))
  clearTimeout(timer)
  if (timedOut) throw new Error(`the server did not close the connection within ${timeoutMs} ms`)
  return Buffer.concat(chunks)
}

/** A raw TCP connection that sends `bytes` (then nothing more). */
async function rawSend (host: string, port: number, bytes: Buffer, localAddress?: string): Promise<net.Socket> {
  const socket = net.connect({ host, port, ...(localAddress !== undefined && { localAddress }) })
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write(bytes)
  return socket
}

t.test('SOCKS5 garbage and unsupported commands are refused', async (t) => {
  for (const [what, bytes] of [
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['random bytes', randomBytes(4096)],
    ['a megabyte of zeros', Buffer.alloc(1024 * 1024)],
    ['SOCKS4', Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0])]
  ] as const) {
    await closedByServer(await rawSend(NODE_A, 15080, bytes, CLIENT))
    t.pass(`${what}: closed`)
  }
  const greeting = Buffer.from([5, 1, 0])
  for (const [what, request, reply] of [
    ['BIND', socks5Request(SERVICE_HOST, 80, 2), 7],
    ['UDP ASSOCIATE', socks5Request(SERVICE_HOST, 80, 3), 7],
    ['address type 9', Buffer.from([5, 1, 0, 9, 1, 2, 3, 4, 0, 80]), 8]
  ] as const) {
    const answer = await closedByServer(await rawSend(NODE_A, 15080, Buffer.concat([greeting, request]), CLIENT))
    t.same([...answer.subarray(0, 4)], [5, 0, 5, reply], `${what}: method chosen, then reply ${reply}, then closed`)
  }
  await meshStillWorks(t)
})

t.test('unknown hostnames get SOCKS5 reply 4; sources outside the mesh reply 2', async (t) => {
  for (const host of ['nope.demo.svc.cluster.local', 'no-such-host.example', 'echo.elsewhere.svc.cluster.local']) {
    const { reply, socket } = await socks5Connect({ proxy: SOCKS, localAddress: CLIENT, host, port: 80 })
    socket.destroy()
    t.equal(reply, 4, `${host}: host unreachable`)
  }
  const wrongPort = await socks5Connect({ proxy: SOCKS, localAddress: CLIENT, host: SERVICE_HOST, port: 9999 })
  wrongPort.socket.destroy()
  t.equal(wrongPort.reply, 4, 'a port the Service does not declare: host unreachable')
  const stranger = await socks5Connect({ proxy: SOCKS, localAddress: '127.0.5.250', host: SERVICE_HOST, port: 80 })
  stranger.socket.destroy()
  t.equal(stranger.reply, 2, 'a source that is no pod of node-a: not allowed')
  await meshStillWorks(t)
})

t.test('garbage on 15008: HTTP/2 garbage after a valid mTLS handshake, and plain garbage without TLS', async (t) => {
  const tls = (): Promise<net.Socket> => connectHboneTls({ address: NODE_B, destinationIp: SERVER, trustBundle, client: clientIdentity })

  const noPreface = await tls()
  noPreface.write(randomBytes(8192))
  await closedByServer(noPreface)
  t.pass('TLS, then random bytes instead of the HTTP/2 preface: closed')

  const badFrames = await tls()
  badFrames.write(Buffer.concat([
    CLIENT_PREFACE,
    settingsFrame(),
    frame(0, 0, 0).fill(0xff, 0, 3), // announces a 16 MiB DATA frame on stream 0
    randomBytes(4096)
  ]))
  const answer = await closedByServer(badFrames, 10_000)
  t.equal(answer[3], 4, 'the server\'s SETTINGS came first')
  t.ok(goawayCode(answer) !== undefined && goawayCode(answer) !== h2.NGHTTP2_NO_ERROR, `then a GOAWAY with an error (code ${goawayCode(answer)})`)
  t.pass('TLS, the preface, then malformed frames: closed (by the keepalive: Node itself leaves the socket open)')
  t.ok(mesh.logs.some((r) => r.node === 'node-b' && r.reason === 'unresponsive'), 'logged with reason unresponsive')

  const before = sumOf(await scrape(`http://${NODE_B}:15020/metrics`), 'istio_tcp_connections_closed_total', { response_flags: 'TLS_HANDSHAKE_FAILURE' })
  for (const bytes of [randomBytes(8192), CLIENT_PREFACE, Buffer.from('GET / HTTP/1.1\r\n\r\n')]) {
    await closedByServer(await rawSend(NODE_B, 15008, bytes))
  }
  t.pass('plain garbage without TLS: closed')
  await waitFor('the failed handshakes counted', async () =>
    sumOf(await scrape(`http://${NODE_B}:15020/metrics`), 'istio_tcp_connections_closed_total', { response_flags: 'TLS_HANDSHAKE_FAILURE' }) === before + 3)
  t.pass('each failed handshake counted as TLS_HANDSHAKE_FAILURE')
  await meshStillWorks(t)
})

t.test('an HTTP/2 rapid-reset flood (CVE-2023-44487) loses its session; others are unaffected', async (t) => {
  const { reply, socket: bystander } = await socks5Connect({ proxy: SOCKS, localAddress: CLIENT, host: SERVICE_HOST, port: 7 })
  t.equal(reply, 0)
  t.teardown(() => bystander.destroy())
  await waitFor('the bystander\'s connection at the echo pod', () => echoPod.open === 1)

  const probe = await openHboneSession({ address: NODE_B, destinationIp: SERVER, trustBundle, client: clientIdentity })
  t.teardown(() => probe.session.destroy())
  const ok = await hboneConnect(probe, { ip: SERVER, port: POD_ECHO_PORT })
  t.match(ok, { kind: 'response', status: 200 }, 'the attacker\'s certificate is a genuine one: its CONNECT works')
  probe.session.destroy()

  // The attack itself in raw frames, so that every stream really is opened then cancelled
  // (a client library may drop a HEADERS frame whose stream was cancelled before it left).
  const streams = 2_000
  const dialsBefore = echoPod.closed.length + echoPod.open
  const attacker = await connectHboneTls({ address: NODE_B, destinationIp: SERVER, trustBundle, client: clientIdentity })
  const flood = Array.from({ length: streams }, (_, i) => Buffer.concat([connectHeaders(2 * i + 1, `${SERVER}:${POD_ECHO_PORT}`), rstStream(2 * i + 1)]))
  attacker.write(Buffer.concat([CLIENT_PREFACE, settingsFrame(), ...flood]))
  const answer = await closedByServer(attacker, 15_000)
  t.equal(goawayCode(answer), h2.NGHTTP2_ENHANCE_YOUR_CALM, 'GOAWAY ENHANCE_YOUR_CALM, then the connection closed')
  const dials = echoPod.closed.length + echoPod.open - dialsBefore
  t.ok(dials < streams / 2, `the flood was cut short: ${dials} of ${streams} streams reached the pod`)
  t.ok(mesh.logs.some((r) => r.node === 'node-b' && r.reason === 'rapid-reset'), 'logged with reason rapid-reset')
  await waitFor('no upstream connection left over from the flood', () => echoPod.open === 1, 10_000)
  t.pass('only the bystander\'s connection is open at the echo pod')

  bystander.resume()
  t.equal((await sendAndCollect(bystander, Buffer.from('unaffected\n'))).toString(), 'unaffected\n', 'the bystander\'s connection still works')
  await meshStillWorks(t)
})

t.test('thousands of idle connections to 15080 and 15008 do not starve the ztunnel', async (t) => {
  const idle: IdleConnection[] = []
  t.teardown(() => { for (const { socket } of idle) socket.destroy() })
  const open = async (host: string, port: number, count: number): Promise<void> => {
    for (let batch = 0; batch < count; batch += 100) {
      await Promise.all(Array.from({ length: Math.min(100, count - batch) }, async () => {
        const connection = { socket: net.connect({ host, port }), port, connectedAt: 0, closedAt: 0 }
        connection.socket.on('error', () => {})
        connection.socket.once('close', () => { connection.closedAt = Date.now() })
        idle.push(connection)
        await once(connection.socket, 'connect')
        connection.connectedAt = Date.now()
      }))
    }
  }
  // Both at once: a listener's accept queue (backlog 511) overflows now and then, costing a
  // 1 s SYN retransmit; in parallel those waits overlap.
  const started = Date.now()
  await Promise.all([open(NODE_A, 15080, 2000), open(NODE_B, 15008, 2000)])
  t.comment(`4000 connections opened in ${Date.now() - started} ms`)
  // The ztunnel closes a connection that stays silent through its 10 s handshake timeout, and
  // must close none before: count, per port, those open while the curls run.
  const openOn = (port: number): number => idle.filter((c) => c.port === port && c.closedAt === 0).length
  await meshStillWorks(t, 'a curl through the mesh works among thousands of idle connections')
  await meshStillWorks(t, 'and again')
  for (const port of [15080, 15008]) {
    t.ok(openOn(port) >= 1500, `${openOn(port)} of 2000 idle connections to ${port} open during the curls`)
  }
  const early = idle.filter((c) => c.closedAt !== 0 && c.closedAt - c.connectedAt < 9_000)
  t.equal(early.length, 0, 'the ztunnel closed no idle connection before its handshake timeout')
  await Promise.all(idle.map(async ({ socket }) => {
    socket.destroy()
    if (!socket.closed) await once(socket, 'close')
  }))
  // Meanwhile the ztunnel handles 4000 closes (and logs 2000 aborted handshakes): not prompt.
  await meshStillWorks(t, 'a normal curl through the mesh still works', 10_000)
})

interface IdleConnection {
  readonly socket: net.Socket
  readonly port: number
  connectedAt: number
  /** 0 while open. */
  closedAt: number
}

t.test('a peer that stops reading: the ztunnel does not buffer what the server tries to send', async (t) => {
  const total = 500 * 1024 * 1024
  const chunk = Buffer.alloc(1024 * 1024, 'b')
  let written = 0
  const bulkPod = await startTcpPod(t, SERVER, 19000, (socket) => {
    // Writes as fast as the connection takes it, and no faster (so only the ztunnel could pile bytes up).
    const pump = (): void => {
      while (written < total && !socket.destroyed) {
        written += chunk.length
        if (!socket.write(chunk)) return
      }
      if (written >= total) socket.end()
    }
    socket.on('drain', pump)
    socket.resume()
    pump()
  })
  const gc = exposeGc()
  const retained = (): number => {
    gc()
    const usage = process.memoryUsage()
    return usage.heapUsed + usage.arrayBuffers
  }
  const baseline = retained()
  const { reply, socket } = await socks5Connect({ proxy: SOCKS, localAddress: CLIENT, host: SERVICE_HOST, port: 9000 })
  t.equal(reply, 0)
  t.teardown(() => socket.destroy())
  let received = 0
  socket.on('data', (data: Buffer) => {
    received += data.length
    if (received >= 4 * 1024 * 1024) socket.pause() // then never read again
  })
  socket.resume()
  await waitFor('the first 4 MiB', () => received >= 4 * 1024 * 1024)

  let peak = 0
  let lastWritten = -1
  const stalledAt = Date.now() + 8_000
  // Until the server is stuck (nothing more for 1 s), or 8 s; sampling what the process retains.
  while (Date.now() < stalledAt) {
    peak = Math.max(peak, retained() - baseline)
    if (written === lastWritten) break
    lastWritten = written
    await sleep(1000)
  }
  peak = Math.max(peak, retained() - baseline)
  t.ok(written < 128 * 1024 * 1024, `the server could only write ${mib(written)} of ${mib(total)} (backpressure reached it)`)
  t.ok(peak < 64 * 1024 * 1024, `heap + buffers grew by ${mib(peak)} at most (< 64 MiB)`)

  socket.destroy()
  await waitFor('the server\'s connection closed after the client left', () => bulkPod.open === 0, 10_000)
  t.pass('closing the client closed the whole tunnel')
  await meshStillWorks(t)
})

function mib (bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`
}

/** The V8 `gc()` function, so memory is measured after collection (what is retained, not garbage). */
function exposeGc (): () => void {
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}
