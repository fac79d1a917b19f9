/**
 * Clients of a ztunnel's SOCKS5 port (15080) as a pod would be: a Node socket bound to the
 * pod's address (`localAddress`), and the real `curl --interface POD --socks5-hostname`.
 *
 *   const { reply, socket } = await socks5Connect({ proxy, localAddress: POD, host: 'echo.demo.svc.cluster.local', port: 7 })
 *   const { stdout } = await curlViaSocks({ proxy, clientIp: POD, url: 'http://echo.demo.svc.cluster.local/' })
 */
import { execFile } from 'node:child_process'
import net from 'node:net'

export interface SocketAddress {
  readonly host: string
  readonly port: number
}

export interface Socks5Target {
  readonly proxy: SocketAddress
  /** The source address (the pod's IP). */
  readonly localAddress?: string
  /** A hostname (sent as SOCKS5 DOMAINNAME, resolved by the proxy) or an IPv4 literal. */
  readonly host: string
  readonly port: number
  readonly timeoutMs?: number
}

export interface Socks5Result {
  /** The SOCKS5 reply code: 0 succeeded, 2 not allowed, 4 host unreachable, 5 refused, 7 command not supported... */
  readonly reply: number
  /** Open and ready to carry the connection when reply is 0 (paused: resume() it); otherwise already ending. */
  readonly socket: net.Socket
}

/** The CONNECT request bytes for host:port (DOMAINNAME unless host is an IPv4 literal). */
export function socks5Request (host: string, port: number, command = 1): Buffer {
  const portBytes = Buffer.from([port >> 8, port & 0xff])
  if (net.isIPv4(host)) return Buffer.concat([Buffer.from([5, command, 0, 1, ...host.split('.').map(Number)]), portBytes])
  const name = Buffer.from(host, 'latin1')
  return Buffer.concat([Buffer.from([5, command, 0, 3, name.length]), name, portBytes])
}

/** Connects, does the SOCKS5 handshake (no authentication) and resolves with the reply. */
export async function socks5Connect (target: Socks5Target): Promise<Socks5Result> {
  const socket = net.connect({ host: target.proxy.host, port: target.proxy.port, ...(target.localAddress !== undefined && { localAddress: target.localAddress }), allowHalfOpen: true })
  const reader = new ExactReader(socket, target.timeoutMs ?? 10_000)
  try {
    socket.write(Buffer.from([5, 1, 0]))
    const method = await reader.read(2)
    if (method[0] !== 5 || method[1] !== 0) throw new Error(`SOCKS5 proxy chose method ${method.toString('hex')}`)
    socket.write(socks5Request(target.host, target.port))
    const head = await reader.read(4)
    const addressLength = head[3] === 4 ? 16 : head[3] === 3 ? (await reader.read(1))[0]! : 4
    await reader.read(addressLength + 2)
    return { reply: head[1]!, socket: reader.release() }
  } catch (err) {
    socket.destroy()
    throw err
  }
}

/** Reads exact byte counts from a socket, then hands the socket back with any extra bytes unread. */
class ExactReader {
  private buffered = Buffer.alloc(0)
  private wanted: { size: number, resolve: (b: Buffer) => void, reject: (e: Error) => void } | undefined
  private failure: Error | undefined
  private readonly timer: NodeJS.Timeout
  private readonly onData = (chunk: Buffer): void => {
    this.buffered = Buffer.concat([this.buffered, chunk])
    this.deliver()
  }

  private readonly onEnd = (): void => this.fail(new Error('the SOCKS5 proxy closed the connection during the handshake'))

  constructor (private readonly socket: net.Socket, timeoutMs: number) {
    socket.on('data', this.onData)
    socket.on('end', this.onEnd)
    socket.on('error', (err) => this.fail(err))
    this.timer = setTimeout(() => this.fail(new Error(`SOCKS5 handshake not done within ${timeoutMs} ms`)), timeoutMs)
  }

  read (size: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.wanted = { size, resolve, reject }
      this.deliver()
    })
  }

  release (): net.Socket {
    clearTimeout(this.timer)
    this.socket.off('data', this.onData)
    this.socket.off('end', this.onEnd)
    this.socket.pause()
    if (this.buffered.length > 0) this.socket.unshift(this.buffered)
    return this.socket
  }

  private deliver (): void {
    if (this.wanted === undefined) return
    if (this.buffered.length >= this.wanted.size) {
      const { size, resolve } = this.wanted
      this.wanted = undefined
      const bytes = this.buffered.subarray(0, size)
      this.buffered = this.buffered.subarray(size)
      resolve(bytes)
    } else if (this.failure !== undefined) {
      this.wanted.reject(this.failure)
      this.wanted = undefined
    }
  }

  private fail (err: Error): void {
    clearTimeout(this.timer)
    this.failure ??= err
    this.deliver()
  }
}

export interface CurlResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** `curl --interface CLIENT_IP --socks5-hostname PROXY URL`; never rejects (see `code`). */
export function curlViaSocks (options: { proxy: SocketAddress, clientIp: string, url: string, maxTimeSeconds?: number }): Promise<CurlResult> {
  const args = ['-sS', '--max-time', String(options.maxTimeSeconds ?? 15), '--interface', options.clientIp,
    '--socks5-hostname', `${options.proxy.host}:${options.proxy.port}`, options.url]
  return new Promise((resolve) => {
    execFile('curl', args, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1
      resolve({ code, stdout, stderr })
    })
  })
}

/** Writes `payload`, ends the writing side, and resolves with everything received until the peer ends. */
export async function sendAndCollect (socket: net.Socket, payload: Buffer, timeoutMs = 15_000): Promise<Buffer> {
  const chunks: Buffer[] = []
  const done = new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no end from the peer within ${timeoutMs} ms`)), timeoutMs)
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.once('end', () => { clearTimeout(timer); resolve(Buffer.concat(chunks)) })
    socket.once('error', (err) => { clearTimeout(timer); reject(err) })
  })
  socket.resume()
  socket.end(payload)
  return await done
}
