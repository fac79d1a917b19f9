import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { lookup } from 'node:dns/promises'
import http from 'node:http'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { Socks5Error } from '../policy/errors.js'
import {
  acceptSocks5, encodeReply, METHOD_SELECTED, parseGreeting, parseRequest, Socks5Reply,
  type Socks5Destination, type Socks5Handshake
} from '../ztunnel/socks5.js'

const GREETING = Buffer.from([5, 1, 0])
const SUCCESS_REPLY = Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0])

function connectRequest (atyp: number, address: Buffer, port: number, command = 1): Buffer {
  const portBytes = Buffer.alloc(2)
  portBytes.writeUInt16BE(port)
  return Buffer.concat([Buffer.from([5, command, 0, atyp]), address, portBytes])
}

function domainRequest (name: string, port: number): Buffer {
  return connectRequest(3, Buffer.concat([Buffer.from([name.length]), Buffer.from(name)]), port)
}

const IPV4_REQUEST = connectRequest(1, Buffer.from([10, 1, 2, 3]), 8080)

t.test('parseGreeting', async (t) => {
  t.same(parseGreeting(Buffer.alloc(0)), { status: 'incomplete' })
  t.same(parseGreeting(Buffer.from([5])), { status: 'incomplete' })
  t.same(parseGreeting(Buffer.from([5, 2, 0])), { status: 'incomplete' }, 'announced two methods, sent one')
  t.same(parseGreeting(Buffer.from([5, 1, 0, 9, 9])), { status: 'complete', value: { methods: [0] }, length: 3 })
  t.same(parseGreeting(Buffer.from([5, 2, 2, 0])), { status: 'complete', value: { methods: [2, 0] }, length: 4 })

  const noMethods = parseGreeting(Buffer.from([5, 0]))
  t.equal(noMethods.status, 'invalid')
  if (noMethods.status === 'invalid') t.same(noMethods.response, Buffer.from([5, 0xff]), 'no methods at all: 0xFF')
  const passwordOnly = parseGreeting(Buffer.from([5, 1, 2]))
  if (passwordOnly.status !== 'invalid') throw new Error('username/password only must be refused')
  t.same(passwordOnly.response, Buffer.from([5, 0xff]), 'no acceptable method: 0xFF')

  const socks4 = parseGreeting(Buffer.from([4, 1, 0, 80]))
  if (socks4.status !== 'invalid') throw new Error('SOCKS4 must be refused')
  t.equal(socks4.response, undefined, 'another protocol gets no SOCKS5 answer')
  t.match(socks4.reason, /version/)
})

t.test('parseRequest', async (t) => {
  t.same(parseRequest(Buffer.concat([IPV4_REQUEST, Buffer.from('extra')])),
    { status: 'complete', value: { host: '10.1.2.3', port: 8080, kind: 'ipv4' }, length: IPV4_REQUEST.length },
    'IPv4; bytes after the request are not part of it')
  t.same(parseRequest(domainRequest('api.shop.svc.cluster.local', 443)),
    { status: 'complete', value: { host: 'api.shop.svc.cluster.local', port: 443, kind: 'domain' }, length: 7 + 26 })
  t.same(parseRequest(connectRequest(4, Buffer.from('fd000000000000000000000000000001', 'hex'), 15008)),
    { status: 'complete', value: { host: 'fd00::1', port: 15008, kind: 'ipv6' }, length: 22 })

  for (const request of [IPV4_REQUEST, domainRequest('a.b', 1), connectRequest(4, Buffer.alloc(16), 2)]) {
    for (let length = 0; length < request.length; length++) {
      t.same(parseRequest(request.subarray(0, length)), { status: 'incomplete' }, `${length} of ${request.length} bytes`)
    }
  }

  const refusals: Array<[string, Buffer, number]> = [
    ['BIND', Buffer.from([5, 2]), Socks5Reply.commandNotSupported],
    ['UDP ASSOCIATE', connectRequest(1, Buffer.alloc(4), 53, 3), Socks5Reply.commandNotSupported],
    ['wrong version', Buffer.from([4, 1, 0, 1]), Socks5Reply.generalFailure],
    ['reserved byte set', Buffer.from([5, 1, 7]), Socks5Reply.generalFailure],
    ['unknown address type', Buffer.from([5, 1, 0, 2, 0, 0]), Socks5Reply.addressTypeNotSupported],
    ['empty domain', Buffer.from([5, 1, 0, 3, 0, 0, 80]), Socks5Reply.generalFailure],
    ['control bytes in domain', domainRequest('a\nb', 80), Socks5Reply.generalFailure]
  ]
  for (const [name, bytes, code] of refusals) {
    const parsed = parseRequest(bytes)
    if (parsed.status !== 'invalid') throw new Error(`${name} must be refused`)
    t.same(parsed.response, encodeReply(code), `${name}: reply ${code}`)
  }
})

t.test('encodeReply', async (t) => {
  t.same(encodeReply(Socks5Reply.succeeded), SUCCESS_REPLY, 'no bound address: 0.0.0.0:0')
  t.same(encodeReply(Socks5Reply.hostUnreachable, { host: '10.0.0.7', port: 15080 }), Buffer.from([5, 4, 0, 1, 10, 0, 0, 7, 0x3a, 0xe8]))
  t.same(encodeReply(0, { host: '::1', port: 1 }), Buffer.concat([Buffer.from([5, 0, 0, 4]), Buffer.from('00000000000000000000000000000001', 'hex'), Buffer.from([0, 1])]))
  t.throws(() => encodeReply(0, { host: 'localhost', port: 1 }), TypeError)
})

/** A SOCKS5 server built on acceptSocks5; `onRequest` decides what to do with each request. */
async function startSocksServer (
  t: Test,
  onRequest: (handshake: Socks5Handshake, socket: net.Socket) => void,
  timeoutMs = 5000
): Promise<{ port: number, next: () => Promise<PromiseSettledResult<Socks5Destination>> }> {
  const outcomes: Array<Promise<PromiseSettledResult<Socks5Destination>>> = []
  const waiters: Array<(outcome: Promise<PromiseSettledResult<Socks5Destination>>) => void> = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    const outcome = acceptSocks5(socket, { timeoutMs }).then((handshake) => {
      socket.on('error', () => {})
      onRequest(handshake, socket)
      return { status: 'fulfilled' as const, value: handshake.destination }
    }, (reason: unknown) => ({ status: 'rejected' as const, reason }))
    const waiter = waiters.shift()
    if (waiter === undefined) outcomes.push(outcome)
    else waiter(outcome)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return {
    port: (server.address() as net.AddressInfo).port,
    next: () => outcomes.shift() ?? new Promise((resolve) => waiters.push(resolve))
  }
}

/** The caller's half of a proxy: resolve, connect, reply, pipe. */
function proxyTo (handshake: Socks5Handshake, socket: net.Socket): void {
  const { destination, reply } = handshake
  const resolved = destination.kind === 'domain'
    ? lookup(destination.host, { family: 4 }).then((r) => r.address)
    : Promise.resolve(destination.host)
  resolved.then((host) => {
    const upstream = net.connect(destination.port, host)
    upstream.once('connect', () => {
      reply(Socks5Reply.succeeded, { host: upstream.localAddress ?? '0.0.0.0', port: upstream.localPort ?? 0 })
      socket.pipe(upstream).pipe(socket)
    })
    upstream.once('error', () => reply(Socks5Reply.connectionRefused))
    socket.once('close', () => upstream.destroy())
  }, () => reply(Socks5Reply.hostUnreachable))
}

async function startHttpServer (t: Test): Promise<number> {
  const server = http.createServer((req, res) => res.end(`hello ${req.url ?? ''}`))
  await new Promise<void>((resolve) => server.listen(0, '::', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return (server.address() as net.AddressInfo).port
}

function curl (args: readonly string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '-m', '20', ...args], (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}

/** A raw client that records every byte the server sends until it closes. */
async function rawClient (t: Test, port: number): Promise<{ socket: net.Socket, received: () => Buffer, closed: Promise<Buffer> }> {
  const socket = net.connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  t.teardown(() => socket.destroy())
  let received = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => { received = Buffer.concat([received, chunk]) })
  socket.on('error', () => {})
  const closed = new Promise<Buffer>((resolve) => socket.once('close', () => resolve(received)))
  await new Promise<void>((resolve) => socket.once('connect', resolve))
  return { socket, received: () => received, closed }
}

async function rejection (outcome: Promise<PromiseSettledResult<Socks5Destination>>): Promise<Socks5Error> {
  const settled = await outcome
  if (settled.status !== 'rejected') throw new Error(`expected a refused handshake, got ${JSON.stringify(settled.value)}`)
  if (!(settled.reason instanceof Socks5Error)) throw new Error(`expected a Socks5Error, got ${String(settled.reason)}`)
  return settled.reason
}

t.test('curl through a proxy built on acceptSocks5', async (t) => {
  const httpPort = await startHttpServer(t)
  const socks = await startSocksServer(t, proxyTo)
  const proxy = `127.0.0.1:${socks.port}`

  const byAddress = await curl(['--socks5', proxy, `http://127.0.0.1:${httpPort}/v4`])
  t.equal(byAddress.stdout, 'hello /v4', `--socks5 (${byAddress.stderr})`)
  t.same(await socks.next(), { status: 'fulfilled', value: { host: '127.0.0.1', port: httpPort, kind: 'ipv4' } })

  const byName = await curl(['--socks5-hostname', proxy, `http://localhost:${httpPort}/name`])
  t.equal(byName.stdout, 'hello /name', `--socks5-hostname (${byName.stderr})`)
  t.same(await socks.next(), { status: 'fulfilled', value: { host: 'localhost', port: httpPort, kind: 'domain' } })

  const byIPv6 = await curl(['--socks5', proxy, `http://[::1]:${httpPort}/v6`])
  t.equal(byIPv6.stdout, 'hello /v6', `--socks5 to an IPv6 address (${byIPv6.stderr})`)
  t.same(await socks.next(), { status: 'fulfilled', value: { host: '::1', port: httpPort, kind: 'ipv6' } })

  const refused = await curl(['--socks5', proxy, 'http://127.0.0.1:1/'])
  t.not(refused.code, 0, 'a refused upstream fails curl')
  t.match(refused.stderr, /SOCKS5.*\(5\)/, `curl reports reply 5, connection refused (${refused.stderr.trim()})`)
  t.equal((await socks.next()).status, 'fulfilled', 'the handshake itself succeeded')
})

t.test('a failure reply ends the connection', async (t) => {
  const socks = await startSocksServer(t, ({ reply }) => reply(Socks5Reply.notAllowedByRuleset, { host: '10.0.0.1', port: 80 }))
  const client = await rawClient(t, socks.port)
  client.socket.write(Buffer.concat([GREETING, IPV4_REQUEST]))
  t.same(await client.closed, Buffer.concat([METHOD_SELECTED, encodeReply(2, { host: '10.0.0.1', port: 80 })]))
})

t.test('reply() may be called once', async (t) => {
  let second: unknown
  const socks = await startSocksServer(t, ({ reply }) => {
    reply(Socks5Reply.succeeded)
    try {
      reply(Socks5Reply.succeeded)
    } catch (err) {
      second = err
    }
  })
  const client = await rawClient(t, socks.port)
  client.socket.write(Buffer.concat([GREETING, IPV4_REQUEST]))
  await socks.next()
  t.type(second, Socks5Error)
})

t.test('refusals on a raw socket', async (t) => {
  const socks = await startSocksServer(t, proxyTo)
  const cases: Array<[string, Buffer, Buffer, RegExp]> = [
    ['garbage (an HTTP request)', Buffer.from('GET / HTTP/1.1\r\nhost: x\r\n\r\n'), Buffer.alloc(0), /not a SOCKS5 greeting/],
    ['no acceptable method', Buffer.from([5, 2, 1, 2]), Buffer.from([5, 0xff]), /no acceptable/],
    ['BIND', Buffer.concat([GREETING, connectRequest(1, Buffer.alloc(4), 0, 2)]),
      Buffer.concat([METHOD_SELECTED, encodeReply(Socks5Reply.commandNotSupported)]), /command 2/],
    ['unknown address type', Buffer.concat([GREETING, Buffer.from([5, 1, 0, 9, 1, 2, 3, 4, 0, 80])]),
      Buffer.concat([METHOD_SELECTED, encodeReply(Socks5Reply.addressTypeNotSupported)]), /address type 9/]
  ]
  for (const [name, sent, expected, reason] of cases) {
    const client = await rawClient(t, socks.port)
    client.socket.write(sent)
    t.same(await client.closed, expected, `${name}: answer, then close`)
    t.match((await rejection(socks.next())).message, reason, `${name}: reason`)
  }
})

t.test('truncated messages', async (t) => {
  const socks = await startSocksServer(t, proxyTo)
  const truncated: Array<[string, Buffer, Buffer]> = [
    ['greeting', Buffer.from([5, 3, 0]), Buffer.alloc(0)],
    ['request', Buffer.concat([GREETING, IPV4_REQUEST.subarray(0, 7)]), METHOD_SELECTED],
    ['domain name', Buffer.concat([GREETING, domainRequest('example.test', 80).subarray(0, 9)]), METHOD_SELECTED]
  ]
  for (const [name, sent, expected] of truncated) {
    const client = await rawClient(t, socks.port)
    client.socket.end(sent)
    t.same(await client.closed, expected, `half a ${name}, then EOF: closed`)
    t.match((await rejection(socks.next())).message, /client left/, name)
  }
})

t.test('a stalled handshake times out', async (t) => {
  const socks = await startSocksServer(t, proxyTo, 300)
  const client = await rawClient(t, socks.port)
  const started = Date.now()
  client.socket.write(Buffer.concat([GREETING, IPV4_REQUEST.subarray(0, 3)]))
  const error = await rejection(socks.next())
  const elapsed = Date.now() - started
  t.match(error.message, /request not received within 300 ms/)
  t.ok(elapsed >= 250, `not before the deadline (${elapsed} ms)`)
  t.ok(elapsed < 5000, `soon after it (${elapsed} ms)`)
  t.same(await client.closed, METHOD_SELECTED, 'the server closed the connection')
})

t.test('byte-by-byte writes, and bytes after the request stay readable', async (t) => {
  let forwarded = ''
  let payloadArrived = (): void => {}
  const payload = new Promise<void>((resolve) => { payloadArrived = resolve })
  const socks = await startSocksServer(t, ({ reply }, socket) => {
    reply(Socks5Reply.succeeded)
    socket.on('data', (chunk: Buffer) => {
      forwarded += chunk.toString()
      if (forwarded.length >= 4) payloadArrived()
    })
  })
  const client = await rawClient(t, socks.port)
  for (const byte of Buffer.concat([GREETING, domainRequest('example.test', 4242), Buffer.from('ping')])) {
    client.socket.write(Buffer.from([byte]))
    await sleep(3)
  }
  t.same(await socks.next(), { status: 'fulfilled', value: { host: 'example.test', port: 4242, kind: 'domain' } })
  await payload
  t.equal(forwarded, 'ping', 'the payload reached the handler')
  t.same(client.received(), Buffer.concat([METHOD_SELECTED, SUCCESS_REPLY]), 'method selection, then success')
})

t.test('greeting, request and payload in one write (IPv6 address type)', async (t) => {
  let payloadArrived = (_chunk: Buffer): void => {}
  const payload = new Promise<Buffer>((resolve) => { payloadArrived = resolve })
  const socks = await startSocksServer(t, ({ reply }, socket) => {
    reply(Socks5Reply.succeeded, { host: 'fd00::15', port: 15080 })
    socket.once('data', payloadArrived)
  })
  const client = await rawClient(t, socks.port)
  client.socket.write(Buffer.concat([GREETING, connectRequest(4, Buffer.from('fd000000000000000000000000000005', 'hex'), 8080), Buffer.from('hello')]))
  t.same(await socks.next(), { status: 'fulfilled', value: { host: 'fd00::5', port: 8080, kind: 'ipv6' } })
  t.equal((await payload).toString(), 'hello', 'leftover bytes were put back on the socket')
  const ipv6Reply = Buffer.concat([Buffer.from([5, 0, 0, 4]), Buffer.from('fd000000000000000000000000000015', 'hex'), Buffer.from([0x3a, 0xe8])])
  for (let waited = 0; waited < 10_000 && client.received().length < METHOD_SELECTED.length + ipv6Reply.length; waited += 5) await sleep(5)
  t.same(client.received(), Buffer.concat([METHOD_SELECTED, ipv6Reply]), 'the reply carries the IPv6 bound address')
})
