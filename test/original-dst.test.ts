import t from 'tap'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import { SocketOptionError } from '../policy/errors.js'
import { decodeSockaddrIn, decodeSockaddrIn6, originalDestination, wasRedirected } from '../ztunnel/original-dst.js'
import { ipFromBytes, ipToBytes, unmapIPv4 } from '../ztunnel/ip-address.js'
import { createTopology } from './helpers/netns.js'
import type { ListenerAnswer } from './fixtures/capture-listener.js'

const LISTENER = fileURLToPath(new URL('./fixtures/capture-listener.ts', import.meta.url))

t.test('IP addresses to and from bytes', async (t) => {
  const cases: Array<[string, string]> = [
    ['10.99.0.1', '0a630001'],
    ['::', '00000000000000000000000000000000'],
    ['::1', '00000000000000000000000000000001'],
    ['fd00:99::1', 'fd000099000000000000000000000001'],
    ['2001:db8:0:1:1:1:1:1', '20010db8000000010001000100010001'],
    ['2001:db8::1:0:0:1', '20010db8000000000001000000000001'],
    ['::ffff:10.0.0.1', '00000000000000000000ffff0a000001']
  ]
  for (const [text, hex] of cases) {
    t.equal(ipToBytes(text).toString('hex'), hex, `${text} to bytes`)
    t.equal(ipFromBytes(Buffer.from(hex, 'hex')), text, `${text} from bytes`)
  }
  t.equal(ipToBytes('FD00:0099:0:0:0:0:0:1').toString('hex'), 'fd000099000000000000000000000001', 'uncompressed, upper case')
  t.equal(ipFromBytes(ipToBytes('fd00:0:0:1::')), 'fd00:0:0:1::', 'longest zero run at the end')
  t.equal(ipFromBytes(ipToBytes('1:0:2::3')), '1:0:2::3', 'a single zero group stays')
  t.throws(() => ipToBytes('example.com'), TypeError)
  t.equal(unmapIPv4('::ffff:10.1.2.3'), '10.1.2.3')
  t.equal(unmapIPv4('fd00::1'), 'fd00::1')
})

t.test('decodes struct sockaddr_in and sockaddr_in6', async (t) => {
  const sin = Buffer.from('020000500a63000100000000000000000000', 'hex').subarray(0, 16)
  t.same(decodeSockaddrIn(sin), { ip: '10.99.0.1', port: 80 })
  const sin6 = Buffer.from('0a001f9000000000fd00009900000000000000000000000100000000', 'hex')
  t.same(decodeSockaddrIn6(sin6), { ip: 'fd00:99::1', port: 8080 })
  t.throws(() => decodeSockaddrIn(sin6), SocketOptionError, 'family must be AF_INET')
  t.throws(() => decodeSockaddrIn6(sin), SocketOptionError, 'family must be AF_INET6')
})

t.test('a connection that was not redirected is recognized as such', async (t) => {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
  const port = (server.address() as net.AddressInfo).port
  const client = net.connect(port, '127.0.0.1')
  t.teardown(() => client.destroy())
  const socket = await accepted
  t.teardown(() => socket.destroy())
  // Which answer comes depends on whether conntrack runs in this namespace (the test below
  // checks the other case in a namespace where it does).
  try {
    const original = originalDestination(socket)
    t.same(original, { ip: '127.0.0.1', port }, 'conntrack reports the connection itself')
    t.equal(wasRedirected(socket, original), false)
  } catch (err) {
    t.type(err, SocketOptionError)
    t.equal((err as SocketOptionError).errnoName, 'ENOENT', 'no conntrack entry')
    t.equal((err as SocketOptionError).code, 'AMBIT_SOCKET_OPTION')
  }
  t.equal(wasRedirected(socket, { ip: '10.0.0.1', port }), true, 'another address is a redirection')
  socket.destroy()
  t.throws(() => originalDestination(socket), SocketOptionError, 'a closed socket has no descriptor')
})

t.test('reads the original destination of a REDIRECTed connection (IPv4 and IPv6)', async (t) => {
  const topo = await createTopology(t, { namespaces: ['host'] })
  // Routes make the unassigned destinations reachable; OUTPUT nat then redirects them locally.
  await topo.exec('host', 'ip', ['route', 'add', '10.99.0.0/24', 'dev', 'lo', 'src', '127.0.0.1'])
  await topo.exec('host', 'ip', ['-6', 'route', 'add', 'fd00:99::/64', 'dev', 'lo'])
  await topo.exec('host', 'iptables', ['-w', '-t', 'nat', '-A', 'OUTPUT', '-d', '10.99.0.1', '-p', 'tcp', '--dport', '80', '-j', 'REDIRECT', '--to-ports', '18080'])
  await topo.exec('host', 'ip6tables', ['-w', '-t', 'nat', '-A', 'OUTPUT', '-d', 'fd00:99::1', '-p', 'tcp', '--dport', '443', '-j', 'REDIRECT', '--to-ports', '18080'])

  const listener = topo.spawnNode('host', LISTENER, ['18080'])
  await listener.waitForOutput('ready')

  const viaIPv4 = JSON.parse(await topo.exec('host', 'curl', ['-sS', '-m', '10', 'http://10.99.0.1:80/'])) as ListenerAnswer
  t.equal(viaIPv4.listenPort, 18080, 'the listener accepted it')
  t.same(viaIPv4.original, { ip: '10.99.0.1', port: 80 }, 'IPv4 original destination')
  t.equal(viaIPv4.redirected, true)

  const viaIPv6 = JSON.parse(await topo.exec('host', 'curl', ['-sS', '-m', '10', 'http://[fd00:99::1]:443/'])) as ListenerAnswer
  t.equal(viaIPv6.listenPort, 18080)
  t.same(viaIPv6.original, { ip: 'fd00:99::1', port: 443 }, 'IPv6 original destination')
  t.equal(viaIPv6.redirected, true)

  const direct = JSON.parse(await topo.exec('host', 'curl', ['-sS', '-m', '10', 'http://127.0.0.1:18080/'])) as ListenerAnswer
  t.same(direct.original, { ip: '127.0.0.1', port: 18080 }, 'a tracked direct connection reports its own destination')
  t.equal(direct.redirected, false, 'which wasRedirected() recognizes')
})
