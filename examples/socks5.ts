/**
 * A pod's way into the mesh in local mode: a TCP connection from the pod's address to its
 * node's ztunnel SOCKS5 port (RFC 1928, no authentication, CONNECT by hostname).
 */
import net from 'node:net'

export interface SocksRoute {
  /** The source pod's IP: the ztunnel identifies the caller by it. */
  readonly from: string
  /** The node's ztunnel address (SOCKS5 on port 15080). */
  readonly proxy: string
  readonly host: string
  readonly port: number
}

export const SOCKS5_PORT = 15080

/** RFC 1928's reply 2, "connection not allowed by ruleset": the ztunnel's answer when policy denies the connection. */
export const SOCKS5_NOT_ALLOWED = 2

/** Thrown when the ztunnel answers the CONNECT with a non-zero reply (2: not allowed, 5: refused...). */
export class SocksRefusedError extends Error {
  constructor (readonly reply: number) {
    super(`SOCKS5 CONNECT refused with reply ${reply}`)
  }

  get deniedByPolicy (): boolean {
    return this.reply === SOCKS5_NOT_ALLOWED
  }
}

/** Resolves with a socket carrying the connection once the ztunnel has set it up. */
export async function socks5Connect (route: SocksRoute, timeoutMs = 5_000): Promise<net.Socket> {
  const socket = net.connect({ host: route.proxy, port: SOCKS5_PORT, localAddress: route.from })
  socket.setTimeout(timeoutMs, () => socket.destroy(new Error('SOCKS5 handshake timed out')))
  const name = Buffer.from(route.host, 'latin1')
  socket.write(Buffer.from([5, 1, 0]))
  socket.write(Buffer.concat([Buffer.from([5, 1, 0, 3, name.length]), name, Buffer.from([route.port >> 8, route.port & 0xff])]))
  try {
    // Method choice (2 bytes), then the reply head (4) and, for an IPv4 bound address, 6 more.
    const reply = await readBytes(socket, 2 + 4 + 6)
    if (reply[3] !== 0) throw new SocksRefusedError(reply[3]!)
    socket.setTimeout(0)
    return socket
  } catch (err) {
    socket.destroy()
    throw err
  }
}

async function readBytes (socket: net.Socket, count: number): Promise<Buffer> {
  return await new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk])
      if (buffered.length >= 4 && buffered[3] !== 0) return done(undefined, buffered)
      if (buffered.length < count) return
      if (buffered.length > count) socket.unshift(buffered.subarray(count))
      done(undefined, buffered.subarray(0, count))
    }
    const onEnd = (): void => done(new Error('SOCKS5 proxy closed the connection'))
    const done = (err: Error | undefined, bytes?: Buffer): void => {
      socket.off('data', onData).off('error', done).off('end', onEnd).off('close', onEnd)
      socket.pause()
      if (err !== undefined) reject(err)
      else resolve(bytes!)
    }
    socket.on('data', onData).on('error', done).on('end', onEnd).on('close', onEnd)
  })
}
