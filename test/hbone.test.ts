/**
 * HBONE (ztunnel/hbone-*.ts, pool.ts, pipe.ts): real mutual TLS on 127.0.0.1 with certificates
 * made by the real openssl, tunnels to real TCP servers, and raw HTTP/2 and TCP clients for
 * what a well-behaved client never sends.
 */
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import http2, { constants as h2, type ClientHttp2Session } from 'node:http2'
import { connect as netConnect, createServer as createNetServer, type Server, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect } from 'node:tls'
import { setTimeout as sleep } from 'node:timers/promises'
import { HboneConnectError, HboneRefusedError, PeerCertificateError } from '../policy/errors.js'
import {
  formatAuthority, ipFromServerName, parseAuthority, parseForwardedFor, formatForwarded, serverNameFor,
  type SocketAddress
} from '../proxy/hbone-protocol.js'
import {
  startHboneServer, RateWindow, type HboneRequest, type HboneServer, type HboneServerLimits,
  type SessionFailureReason, type StreamRefusal, type TlsFailureReason
} from '../proxy/hbone-server.js'
import { uriSans } from '../proxy/hbone-tls.js'
import { pipeBidirectional, type PipeResult } from '../proxy/pipe.js'
import { HbonePool, type HbonePoolOptions } from '../proxy/pool.js'
import { createTestCa, spiffeIdFor, testIdentity, type TestIdentity } from './helpers/certs.js'

const ca = await createTestCa(t, 'mesh root')
const otherCa = await createTestCa(t, 'unrelated root')
const bundle = [ca.certPem]
const serverIdentity = testIdentity(await ca.issue({ namespace: 'shop', serviceAccount: 'cart' }), bundle)
const neighbourIdentity = testIdentity(await ca.issue({ namespace: 'shop', serviceAccount: 'payments' }), bundle)
const clientIdentity = testIdentity(await ca.issue({ namespace: 'web', serviceAccount: 'frontend' }), bundle)
const foreignIdentity = testIdentity(await otherCa.issue({ namespace: 'web', serviceAccount: 'frontend' }), bundle)
const anonymousLeaf = await ca.issue({ namespace: 'web', serviceAccount: 'anon', uriSan: null })

/** 127.0.0.1 is the pod served with serverIdentity, 127.0.0.2 one with neighbourIdentity. */
const POD = '127.0.0.1'
const NEIGHBOUR_POD = '127.0.0.2'
/** The test policy refuses CONNECTs to this port with 403. */
const DENIED_PORT = 4403
/** The test handler never decides on CONNECTs to this port; it waits for the client to give up. */
const UNDECIDED_PORT = 4408

interface Fixture {
  readonly hbone: HboneServer
  readonly echo: SocketAddress
  readonly pool: HbonePool
  readonly requests: HboneRequest[]
  readonly pipes: Array<Promise<PipeResult>>
  readonly tlsErrors: TlsFailureReason[]
  readonly sessionErrors: SessionFailureReason[]
  readonly refusals: StreamRefusal[]
  /** Counts TLS connections the HBONE server accepted. */
  readonly handshakes: () => number
  openEcho (overrides?: { identity?: TestIdentity, expectedPeer?: string, pool?: HbonePool }): Promise<Duplex>
}

async function listen (server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

async function startEcho (test: Test): Promise<SocketAddress> {
  const sockets = new Set<Socket>()
  const server = createNetServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.pipe(socket)
  })
  test.teardown(() => {
    for (const socket of sockets) socket.destroy()
    server.close()
  })
  return { ip: POD, port: await listen(server) }
}

async function connectTcp (address: SocketAddress): Promise<Socket> {
  const socket = netConnect({ host: address.ip, port: address.port, allowHalfOpen: true })
  await once(socket, 'connect')
  return socket
}

async function setup (
  test: Test, options: { limits?: Partial<HboneServerLimits>, pool?: HbonePoolOptions } = {}
): Promise<Fixture> {
  const echo = await startEcho(test)
  const requests: HboneRequest[] = []
  const pipes: Array<Promise<PipeResult>> = []
  const tlsErrors: TlsFailureReason[] = []
  const sessionErrors: SessionFailureReason[] = []
  const refusals: StreamRefusal[] = []
  const hbone = await startHboneServer({
    host: '127.0.0.1',
    port: 0,
    identityFor: (ip) => ip === POD ? serverIdentity : ip === NEIGHBOUR_POD ? neighbourIdentity : undefined,
    async onStream (request) {
      requests.push(request)
      if (request.destination.port === DENIED_PORT) {
        request.refuse(403, 'test policy denies this port')
        return
      }
      if (request.destination.port === UNDECIDED_PORT) {
        await new Promise((resolve) => request.signal.addEventListener('abort', resolve))
        return
      }
      const upstream = await connectTcp(request.destination)
      pipes.push(pipeBidirectional(request.accept(), upstream))
    },
    onTlsError: (reason) => tlsErrors.push(reason),
    onSessionError: (reason) => sessionErrors.push(reason),
    onStreamRefused: (refusal) => refusals.push(refusal),
    ...(options.limits === undefined ? {} : { limits: options.limits })
  })
  let handshakes = 0
  hbone.server.on('secureConnection', () => handshakes++)
  const pool = new HbonePool({ connectTimeoutMs: 10_000, ...options.pool })
  test.teardown(async () => {
    pool.destroy()
    await hbone.close(0)
  })
  return {
    hbone,
    echo,
    pool,
    requests,
    pipes,
    tlsErrors,
    sessionErrors,
    refusals,
    handshakes: () => handshakes,
    async openEcho (overrides = {}) {
      return await (overrides.pool ?? pool).open({
        sourceIdentity: overrides.identity ?? clientIdentity,
        expectedPeer: overrides.expectedPeer ?? serverIdentity.spiffeId,
        address: '127.0.0.1',
        port: hbone.port,
        destination: echo
      })
    }
  }
}

/** Writes `data`, ends, and resolves with everything read back until the far end ends. */
async function roundTrip (tunnel: Duplex, data: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = []
  tunnel.on('data', (chunk: Buffer) => chunks.push(chunk))
  const ended = once(tunnel, 'end')
  tunnel.end(data)
  await ended
  return Buffer.concat(chunks)
}

/** A raw HTTP/2 client, for requests the pool never makes. */
function rawClient (port: number, tls: { key?: string, cert?: string } = {}): ClientHttp2Session {
  const session = http2.connect(`https://127.0.0.1:${port}`, {
    ca: bundle,
    servername: serverNameFor(POD),
    checkServerIdentity: () => undefined,
    ...tls
  })
  session.on('error', () => {})
  return session
}

async function rawConnectStatus (session: ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<number> {
  const stream = session.request(headers, { endStream: headers[':method'] !== 'CONNECT' })
  stream.on('error', () => {})
  const [response] = await once(stream, 'response') as [http2.IncomingHttpHeaders]
  stream.close()
  return Number(response[':status'])
}

/** Resolves on 'close' (events.once would reject on the 'error' these sockets are expected to emit). */
async function closed (emitter: Socket | ClientHttp2Session | Duplex): Promise<void> {
  await new Promise<void>((resolve) => emitter.once('close', () => resolve()))
}

async function waitFor (what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const start = Date.now()
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

t.test('protocol helpers', async (t) => {
  t.same(parseAuthority('10.0.0.5:8080'), { ip: '10.0.0.5', port: 8080 })
  t.same(parseAuthority('[fd00::5]:80'), { ip: 'fd00::5', port: 80 })
  for (const bad of ['example.com:80', '10.0.0.5', '10.0.0.5:0', '10.0.0.5:70000', 'fd00::5:80', '[10.0.0.5]:80', '10.0.0.256:1']) {
    t.equal(parseAuthority(bad), undefined, `${bad} is not an HBONE authority`)
  }
  t.equal(formatAuthority({ ip: 'fd00::5', port: 80 }), '[fd00::5]:80')
  for (const ip of ['10.0.0.5', 'fd00::5', '::1']) t.equal(ipFromServerName(serverNameFor(ip)), ip, `${ip} survives SNI`)
  t.equal(ipFromServerName('cart.shop.svc.cluster.local'), undefined)
  t.equal(ipFromServerName('999-0-0-1.ipv4.hbone.invalid'), undefined)
  t.equal(parseForwardedFor(formatForwarded('10.1.2.3')), '10.1.2.3')
  t.equal(parseForwardedFor(formatForwarded('fd00::7')), 'fd00::7')
  t.equal(parseForwardedFor('proto=https;for="[fd00::9]:4711", for=10.0.0.1'), undefined, 'a port makes it no bare IP')
  t.equal(parseForwardedFor('for=unknown'), undefined)
  t.same(uriSans('DNS:a.b, URI:spiffe://cluster.local/ns/a/sa/b, URI:"spiffe://x/y,z"'),
    ['spiffe://cluster.local/ns/a/sa/b', 'spiffe://x/y,z'])
  const window = new RateWindow(2)
  t.same([window.record(0), window.record(10), window.record(20), window.record(1020)], [false, false, true, false])
})

t.test('a tunnel carries bytes both ways to the destination and tells the server who is calling', async (t) => {
  const f = await setup(t)
  const tunnel = await f.pool.open({
    sourceIdentity: clientIdentity,
    expectedPeer: serverIdentity.spiffeId,
    address: '127.0.0.1',
    port: f.hbone.port,
    destination: f.echo,
    headers: { forwardedFor: '10.9.8.7', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', baggage: 'k=v' }
  })
  const payload = randomBytes(1024 * 1024 + 17)
  const echoed = await roundTrip(tunnel, payload)
  t.ok(echoed.equals(payload), 'what came back is what was sent')

  const [request] = f.requests
  t.equal(request?.peerSpiffeId, clientIdentity.spiffeId, 'server sees the client SPIFFE id')
  t.equal(request?.localSpiffeId, serverIdentity.spiffeId, 'server presented the destination identity')
  t.same(request?.destination, f.echo, 'server sees the CONNECT authority')
  t.same(request?.headers, {
    forwardedFor: '10.9.8.7', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', baggage: 'k=v'
  })
  const result = await f.pipes[0]
  t.equal(result?.error, undefined, 'the server side pipe ended cleanly')
  t.equal(result?.bytesAtoB, payload.length, 'server counted the bytes sent into the tunnel')
  t.equal(result?.bytesBtoA, payload.length, 'server counted the bytes sent back')
})

t.test('concurrent streams share one TLS connection, up to the per-connection limit', async (t) => {
  const f = await setup(t)
  const results = await Promise.all(Array.from({ length: 50 }, async (_, i) => {
    const message = Buffer.from(`stream ${i} `.repeat(100))
    return (await roundTrip(await f.openEcho(), message)).equals(message)
  }))
  t.same(results, Array(50).fill(true), 'every stream echoed its own bytes')
  t.equal(f.handshakes(), 1, 'fifty streams, one TLS handshake')
  t.equal(f.pool.sessionCount, 1)

  const small = new HbonePool({ maxStreamsPerConnection: 5 })
  t.teardown(() => small.destroy())
  const held = await Promise.all(Array.from({ length: 12 }, async () => await f.openEcho({ pool: small })))
  t.equal(small.sessionCount, 3, '12 streams at 5 per connection take 3 connections')
  t.equal(f.handshakes(), 4)
  for (const tunnel of held) tunnel.destroy()
})

t.test('a peer that is not a trusted mesh workload is turned away with a distinct reason', async (t) => {
  const f = await setup(t)

  const noCert = rawClient(f.hbone.port)
  const [code, , debug] = await once(noCert, 'goaway') as [number, number, Buffer]
  t.equal(code, h2.NGHTTP2_INADEQUATE_SECURITY, 'a client without a certificate gets INADEQUATE_SECURITY')
  t.match(debug.toString(), /client certificate required/)
  noCert.destroy()

  const foreign = await f.openEcho({ identity: foreignIdentity }).catch((error: unknown) => error)
  t.type(foreign, HboneConnectError, 'a client certificate from another CA is refused')
  t.equal((foreign as HboneConnectError).problem, 'rejected-by-peer')
  t.match((foreign as Error).message, /INADEQUATE_SECURITY.*client certificate not trusted/)

  const anonymous = testIdentity(anonymousLeaf, bundle)
  const noSpiffe = await f.openEcho({ identity: anonymous }).catch((error: unknown) => error)
  t.match((noSpiffe as Error).message, /carries no SPIFFE id/)

  const impostor = await f.openEcho({ expectedPeer: spiffeIdFor('shop', 'checkout') }).catch((error: unknown) => error)
  t.type(impostor, PeerCertificateError, 'a server with another identity is refused by the client')
  t.equal((impostor as PeerCertificateError).problem, 'unexpected-identity')
  t.match((impostor as Error).message, /presented spiffe:\/\/cluster.local\/ns\/shop\/sa\/cart, expected .*checkout/)

  const distrustful = testIdentity(await otherCa.issue({ namespace: 'web', serviceAccount: 'x' }), [otherCa.certPem])
  const untrusted = await f.openEcho({ identity: distrustful }).catch((error: unknown) => error)
  t.type(untrusted, PeerCertificateError, 'a server chain outside our bundle is refused by the client')
  t.equal((untrusted as PeerCertificateError).problem, 'untrusted')

  await waitFor('server reports', () => f.tlsErrors.length >= 3)
  t.same(f.tlsErrors.slice(0, 3), ['no-client-certificate', 'untrusted-client-certificate', 'no-spiffe-id'])
  t.equal(f.requests.length, 0, 'no stream of a rejected peer reached the handler')

  const payload = Buffer.from('still serving')
  t.ok((await roundTrip(await f.openEcho(), payload)).equals(payload), 'a good client keeps working')
})

t.test('the server needs a server name it holds a certificate for, and h2', async (t) => {
  const f = await setup(t)
  const attempt = async (options: { servername?: string, ALPNProtocols?: string[] }): Promise<void> => {
    const socket = tlsConnect({
      host: '127.0.0.1', port: f.hbone.port, ca: bundle, key: clientIdentity.key, cert: clientIdentity.certChain,
      checkServerIdentity: () => undefined, ...options
    })
    socket.on('error', () => {})
    await closed(socket)
  }
  await attempt({ servername: serverNameFor('10.77.0.1') })
  await attempt({ ALPNProtocols: ['h2'] })
  await attempt({ servername: serverNameFor(POD) })
  await waitFor('three reports', () => f.tlsErrors.length >= 3)
  t.same(f.tlsErrors, ['no-server-identity', 'no-server-identity', 'alpn-mismatch'])
})

t.test('a refused stream fails alone; the session keeps carrying the others', async (t) => {
  const f = await setup(t)
  const open = await f.openEcho()
  const refused = await f.pool.open({
    sourceIdentity: clientIdentity,
    expectedPeer: serverIdentity.spiffeId,
    address: '127.0.0.1',
    port: f.hbone.port,
    destination: { ip: POD, port: DENIED_PORT }
  }).catch((error: unknown) => error)
  t.type(refused, HboneRefusedError)
  t.equal((refused as HboneRefusedError).status, 403, 'the client sees the status the handler chose')
  t.match(f.refusals, [{ status: 403, reason: 'test policy denies this port', peerSpiffeId: clientIdentity.spiffeId }])

  const payload = Buffer.from('unaffected')
  t.ok((await roundTrip(open, payload)).equals(payload), 'the stream opened before still works')
  t.ok((await roundTrip(await f.openEcho(), payload)).equals(payload), 'and new ones open')
  t.equal(f.handshakes(), 1, 'all on the same session')
})

t.test('requests that are not a CONNECT to ip:port get an error status, the session survives', async (t) => {
  const f = await setup(t)
  const session = rawClient(f.hbone.port, { key: clientIdentity.key, cert: clientIdentity.certChain })
  t.teardown(() => session.destroy())
  t.equal(await rawConnectStatus(session, { ':method': 'GET', ':path': '/' }), 405)
  t.equal(await rawConnectStatus(session, { ':method': 'CONNECT', ':authority': 'cart.shop:80' }), 400)
  t.equal(await rawConnectStatus(session, { ':method': 'CONNECT', ':authority': `${NEIGHBOUR_POD}:${f.echo.port}` }), 421,
    'a pod with another identity than the one presented is misdirected')
  const oversized = session.request({ ':method': 'CONNECT', ':authority': formatAuthority(f.echo), baggage: 'x'.repeat(32 * 1024) })
  oversized.on('error', () => {})
  await closed(oversized)
  t.equal(oversized.rstCode, h2.NGHTTP2_ENHANCE_YOUR_CALM, 'a header list over the limit resets the stream')
  t.equal(await rawConnectStatus(session, { ':method': 'CONNECT', ':authority': formatAuthority(f.echo) }), 200)
  t.same(f.refusals.map((refusal) => refusal.status), [405, 400, 421])
  t.equal(f.handshakes(), 1)
})

t.test('a rapid-reset flood closes that session only', async (t) => {
  const f = await setup(t, { limits: { maxPrematureResetsPerSecond: 100 } })
  const bystander = await f.openEcho()

  const attacker = rawClient(f.hbone.port, { key: clientIdentity.key, cert: clientIdentity.certChain })
  t.teardown(() => attacker.destroy())
  await once(attacker, 'remoteSettings')
  const attackerClosed = closed(attacker)
  let goawayCode: number | undefined
  attacker.on('goaway', (code: number) => { goawayCode = code })
  for (let sent = 0; sent < 5000 && !attacker.closed && !attacker.destroyed; sent++) {
    const stream = attacker.request({ ':method': 'CONNECT', ':authority': formatAuthority(f.echo) })
    stream.on('error', () => {})
    stream.close(h2.NGHTTP2_CANCEL)
    if (sent % 50 === 49) await new Promise((resolve) => setImmediate(resolve))
  }
  await attackerClosed
  t.equal(goawayCode, h2.NGHTTP2_ENHANCE_YOUR_CALM, 'the attacker was told ENHANCE_YOUR_CALM')
  t.equal(f.sessionErrors.filter((reason) => reason === 'rapid-reset').length, 1, 'the guard named the attack, once')
  await waitFor('the server to drop the session', () => f.hbone.sessionCount === 1)

  const payload = Buffer.from('bystander')
  t.ok((await roundTrip(bystander, payload)).equals(payload), 'a stream on another session is unaffected')
  t.ok((await roundTrip(await f.openEcho(), payload)).equals(payload), 'and the pool still opens streams')
})

t.test('a receiver that stops reading holds the sender back (bounded memory)', async (t) => {
  const f = await setup(t)
  const TOTAL = 200 * 1024 * 1024
  let received = 0
  let sink: Socket | undefined
  const sinkServer = createNetServer((socket) => {
    sink = socket
    socket.pause()
  })
  t.teardown(() => {
    sink?.destroy()
    sinkServer.close()
  })
  const sinkPort = await listen(sinkServer)
  const tunnel = await f.pool.open({
    sourceIdentity: clientIdentity,
    expectedPeer: serverIdentity.spiffeId,
    address: '127.0.0.1',
    port: f.hbone.port,
    destination: { ip: POD, port: sinkPort }
  })

  const chunk = Buffer.alloc(64 * 1024, 7)
  let written = 0
  let maxInFlight = 0
  const writer = (async () => {
    while (written < TOTAL) {
      const more = tunnel.write(chunk)
      written += chunk.length
      maxInFlight = Math.max(maxInFlight, written - received)
      if (!more) await once(tunnel, 'drain')
    }
    tunnel.end()
  })()

  // Phase 1: nobody reads. The writer must stall after a few MB, not buffer 200 MB.
  let last = -1
  await waitFor('the writer to stall', () => {
    const stalled = written === last
    last = written
    return stalled && written > 0
  })
  await sleep(300)
  t.ok(written < 32 * 1024 * 1024, `the writer stalled after ${(written / 1048576).toFixed(1)} MB`)
  t.ok(written === last, 'and makes no progress while the receiver does not read')

  // Phase 2: the receiver reads; everything arrives and in-flight bytes stay bounded.
  await waitFor('the sink connection', () => sink !== undefined)
  const done = new Promise<void>((resolve) => {
    sink?.on('data', (data: Buffer) => { received += data.length })
    sink?.on('end', resolve)
  })
  sink?.resume()
  await writer
  await done
  t.equal(received, TOTAL, 'all 200 MB arrived')
  t.ok(maxInFlight < 32 * 1024 * 1024, `at most ${(maxInFlight / 1048576).toFixed(1)} MB were ever in flight`)
})

t.test('timeouts, unreachable peers and a client that gives up', async (t) => {
  const f = await setup(t, { pool: { connectTimeoutMs: 500 } })
  const openTo = async (port: number, destinationPort: number): Promise<unknown> => await f.pool.open({
    sourceIdentity: clientIdentity,
    expectedPeer: serverIdentity.spiffeId,
    address: '127.0.0.1',
    port,
    destination: { ip: POD, port: destinationPort }
  }).catch((error: unknown) => error)

  const started = Date.now()
  const undecided = await openTo(f.hbone.port, UNDECIDED_PORT)
  t.type(undecided, HboneConnectError)
  t.equal((undecided as HboneConnectError).problem, 'timeout', 'no answer to the CONNECT in time')
  t.ok(Date.now() - started < 5000, 'the open gave up near its deadline')
  await waitFor('the handler to see the cancel',
    () => f.requests.find((request) => request.destination.port === UNDECIDED_PORT)?.signal.aborted === true)
  t.same(f.refusals, [], 'a stream the client cancelled is not reported as refused')

  const closedServer = createNetServer()
  const closedPort = await listen(closedServer)
  await new Promise((resolve) => closedServer.close(resolve))
  const unreachable = await openTo(closedPort, f.echo.port)
  t.equal((unreachable as HboneConnectError).problem, 'network', 'nothing listening')

  const mute = createNetServer((socket) => socket.on('error', () => {}))
  t.teardown(() => mute.close())
  const mutePort = await listen(mute)
  const silent = await openTo(mutePort, f.echo.port)
  t.equal((silent as HboneConnectError).problem, 'timeout', 'a peer that never answers the TLS handshake')
  t.match((silent as Error).message, /no TLS session/)
})

t.test('closing drains: open tunnels finish, new ones are refused', async (t) => {
  const f = await setup(t)
  const tunnel = await f.openEcho()
  const poolClosed = f.pool.close()
  const refused = await f.openEcho().catch((error: unknown) => error)
  t.equal((refused as HboneConnectError).problem, 'pool-closed')
  const serverClosed = f.hbone.close(20_000)
  const payload = Buffer.from('last words')
  t.ok((await roundTrip(tunnel, payload)).equals(payload), 'the open tunnel still carries data')
  await Promise.all([poolClosed, serverClosed])
  t.equal(f.pool.sessionCount, 0)
  t.equal(f.hbone.sessionCount, 0)
})

t.test('garbage does not crash the server', async (t) => {
  const f = await setup(t, { limits: { handshakeTimeoutMs: 300 } })

  const notTls = netConnect({ host: '127.0.0.1', port: f.hbone.port })
  notTls.on('error', () => {})
  notTls.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
  await closed(notTls)

  const silent = netConnect({ host: '127.0.0.1', port: f.hbone.port })
  silent.on('error', () => {})
  const silentStart = Date.now()
  await closed(silent)
  t.ok(Date.now() - silentStart < 5000, 'a connection that never handshakes is closed by the handshake timeout')

  const garbage = tlsConnect({
    host: '127.0.0.1', port: f.hbone.port, ca: bundle, key: clientIdentity.key, cert: clientIdentity.certChain,
    servername: serverNameFor(POD), ALPNProtocols: ['h2'], checkServerIdentity: () => undefined
  })
  await once(garbage, 'secureConnect')
  garbage.resume() // read the server's GOAWAY and FIN
  garbage.write(randomBytes(4096))
  await closed(garbage)

  await waitFor('reports', () => f.tlsErrors.length >= 2 && f.sessionErrors.length >= 1)
  t.same(f.tlsErrors, ['handshake-failed', 'handshake-timeout'])
  t.ok(f.sessionErrors.includes('protocol-error'), 'garbage after the handshake is a protocol error')
  const payload = Buffer.from('alive')
  t.ok((await roundTrip(await f.openEcho(), payload)).equals(payload), 'the server still serves')
})

t.test('idle sessions close on both ends', async (t) => {
  const f = await setup(t, { limits: { idleSessionTimeoutMs: 60_000 }, pool: { idleTimeoutMs: 200 } })
  await roundTrip(await f.openEcho(), Buffer.from('x'))
  await waitFor('the pool to close its idle session', () => f.pool.sessionCount === 0, 5000)
  await waitFor('the server to see it go', () => f.hbone.sessionCount === 0, 5000)

  const g = await setup(t, { limits: { idleSessionTimeoutMs: 200 }, pool: { idleTimeoutMs: 60_000 } })
  await roundTrip(await g.openEcho(), Buffer.from('x'))
  await waitFor('the server to close the idle session', () => g.hbone.sessionCount === 0, 5000)
  await waitFor('the pool to drop it', () => g.pool.sessionCount === 0, 5000)
  const payload = Buffer.from('again')
  t.ok((await roundTrip(await g.openEcho(), payload)).equals(payload), 'the pool opens a new session afterwards')
  t.equal(g.handshakes(), 2)
})

t.test('pipeBidirectional', async (t) => {
  /** Two connected TCP sockets that allow half-close: [client, server]. */
  async function socketPair (): Promise<[Socket, Socket]> {
    const server = createNetServer({ allowHalfOpen: true })
    const port = await listen(server)
    const accepted = once(server, 'connection') as Promise<[Socket]>
    const client = await connectTcp({ ip: '127.0.0.1', port })
    const [serverSide] = await accepted
    server.close()
    client.on('error', () => {})
    serverSide.on('error', () => {})
    t.teardown(() => {
      client.destroy()
      serverSide.destroy()
    })
    return [client, serverSide]
  }

  t.test('propagates half-close and counts bytes', async (t) => {
    const [left, a] = await socketPair()
    const [b, right] = await socketPair()
    const metered = { aToB: 0, bToA: 0 }
    const piping = pipeBidirectional(a, b, {
      aToB: (n) => { metered.aToB += n },
      bToA: (n) => { metered.bToA += n }
    })
    const rightGot: Buffer[] = []
    right.on('data', (data: Buffer) => rightGot.push(data))
    left.end('hello')
    await once(right, 'end')
    t.equal(Buffer.concat(rightGot).toString(), 'hello', 'the end travelled after the data')
    const leftGot: Buffer[] = []
    left.on('data', (data: Buffer) => leftGot.push(data))
    right.end('a reply after the half-close')
    await once(left, 'end')
    t.equal(Buffer.concat(leftGot).toString(), 'a reply after the half-close', 'the other direction kept flowing')
    const result = await piping
    t.same(result, { bytesAtoB: 5, bytesBtoA: 28 })
    t.same(metered, { aToB: 5, bToA: 28 })
  })

  t.test('an error on one side destroys the other', async (t) => {
    const [, a] = await socketPair()
    const [b, right] = await socketPair()
    const piping = pipeBidirectional(a, b)
    a.destroy(new Error('boom'))
    const result = await piping
    t.match(result.error?.message, /boom/)
    t.ok(b.destroyed, 'the other side was destroyed')
    const farEnd = new Promise((resolve) => {
      right.once('end', resolve)
      right.once('close', resolve)
    })
    right.resume()
    await farEnd
    t.pass('the peer beyond it saw the connection end')
  })
})
