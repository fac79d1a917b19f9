/**
 * A plain TCP forwarder for the benchmark, run as its own process so its CPU is counted apart.
 * wrk cannot speak SOCKS5, so in front of ambit this bridge accepts wrk's connections and, for
 * each, opens a SOCKS5 CONNECT to node A's ztunnel from the client pod's address (the ztunnel
 * knows the source workload by that address). Without --socks it forwards straight to the
 * target, which measures what the bridge itself costs.
 *
 *   node dist/bench/lib/socks-bridge.js --listen 127.0.79.11:18000 --target 10.96.79.10:80 \
 *     [--socks 127.0.79.2:15080 --source 127.0.79.11]
 */
import net from 'node:net'
import { parseArgs } from 'node:util'
import koffi from 'koffi'

const { values } = parseArgs({
  options: {
    listen: { type: 'string' },
    target: { type: 'string' },
    socks: { type: 'string' },
    source: { type: 'string' }
  }
})

function address (text: string | undefined, flag: string): { host: string, port: number } {
  const match = /^([\d.]+):(\d+)$/.exec(text ?? '')
  if (match === null) throw new Error(`--${flag} must be IPv4:port, got ${String(text)}`)
  return { host: match[1]!, port: Number(match[2]) }
}

const listen = address(values.listen, 'listen')
const target = address(values.target, 'target')
const socks = values.socks === undefined ? undefined : address(values.socks, 'socks')

/** Greeting ("no authentication") and CONNECT to the target, sent in one write. */
function socksConnectRequest (to: { host: string, port: number }): Buffer {
  const port = Buffer.alloc(2)
  port.writeUInt16BE(to.port)
  return Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0, 1]), Buffer.from(to.host.split('.').map(Number)), port])
}
const SOCKS_REQUEST = socksConnectRequest(target)
/** Method selection (2 bytes) plus a reply with an IPv4 bound address (10 bytes). */
const SOCKS_ANSWER_BYTES = 12

function splice (client: net.Socket, upstream: net.Socket, early?: Buffer): void {
  if (early !== undefined && early.length > 0) client.write(early)
  client.pipe(upstream)
  upstream.pipe(client)
}

/** Waits for the SOCKS answer; anything after it is already the server's data. */
function afterSocksAnswer (client: net.Socket, upstream: net.Socket): void {
  let received = Buffer.alloc(0)
  const onData = (chunk: Buffer): void => {
    received = Buffer.concat([received, chunk])
    if (received.length < SOCKS_ANSWER_BYTES) return
    upstream.off('data', onData)
    upstream.pause()
    if (received[1] !== 0 || received[3] !== 0) {
      client.destroy()
      upstream.destroy()
      return
    }
    splice(client, upstream, received.subarray(SOCKS_ANSWER_BYTES))
  }
  upstream.on('data', onData)
}

/**
 * Connecting from a fixed address makes bind(2) pick the port, and it searches past every
 * TIME_WAIT socket of that address: with a new connection per request that search cost the
 * bridge several times the rest of its work. IP_BIND_ADDRESS_NO_PORT (Linux) leaves the port
 * to connect(2), which reuses TIME_WAIT ports cheaply. Node has no API for it, hence libc.
 */
const IPPROTO_IP = 0
const IP_BIND_ADDRESS_NO_PORT = 24
const libc = koffi.load('libc.so.6')
const socketCall = libc.func('int socket(int domain, int type, int protocol)')
const setsockopt = libc.func('int setsockopt(int fd, int level, int name, const uint8_t *value, uint32_t length)')

function socketForSource (): net.Socket {
  const AF_INET = 2
  const SOCK_STREAM_NONBLOCK_CLOEXEC = 1 | 0o4000 | 0o2000000
  const fd = socketCall(AF_INET, SOCK_STREAM_NONBLOCK_CLOEXEC, 0) as number
  if (fd < 0 || setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, Buffer.from([1, 0, 0, 0]), 4) !== 0) {
    throw new Error(`cannot make a socket with IP_BIND_ADDRESS_NO_PORT (errno ${koffi.errno()})`)
  }
  // manualStart: Node must not read the descriptor before it is connected.
  return new net.Socket({ fd, manualStart: true } as net.SocketConstructorOpts)
}

const server = net.createServer({ noDelay: true }, (client) => {
  const upstream = (values.source === undefined ? new net.Socket() : socketForSource()).connect({
    ...(socks ?? target),
    noDelay: true,
    ...(values.source !== undefined && { localAddress: values.source })
  })
  const destroyBoth = (): void => { client.destroy(); upstream.destroy() }
  client.on('error', destroyBoth)
  upstream.on('error', destroyBoth)
  upstream.once('connect', () => {
    if (socks === undefined) {
      splice(client, upstream)
      return
    }
    upstream.write(SOCKS_REQUEST)
    afterSocksAnswer(client, upstream)
  })
})
server.listen(listen.port, listen.host)
process.once('SIGTERM', () => process.exit(0))
