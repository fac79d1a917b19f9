/**
 * Stand-ins for the pods of a local-mode mesh: real TCP servers on the pod's loopback address,
 * each recording the exact bytes of every connection (the socket's own counters), so a test can
 * hold the ztunnel's byte metrics against the truth. Closed at teardown, connections included.
 *
 *   const http = await startHttpPod(t, '127.0.5.21', 18080, 'hello\n')
 *   const echo = await startTcpPod(t, '127.0.5.21', 17070, (socket) => socket.pipe(socket))
 *   await waitFor('closed', () => http.closed.length === 1); http.closed[0].bytesRead
 */
import { once } from 'node:events'
import net from 'node:net'
import type { Teardown } from './redis.js'

export interface ClosedConnection {
  /** Bytes the pod received from its client. */
  readonly bytesRead: number
  /** Bytes the pod sent to its client. */
  readonly bytesWritten: number
}

export interface TcpPod {
  readonly address: string
  readonly port: number
  /** Every connection that has closed, in closing order. */
  readonly closed: readonly ClosedConnection[]
  /** Connections open now. */
  readonly open: number
}

/** A TCP server at ip:port (0: any free port) handing each connection (half-open allowed) to `onSocket`. */
export async function startTcpPod (t: Teardown, ip: string, port: number, onSocket: (socket: net.Socket) => void): Promise<TcpPod> {
  const sockets = new Set<net.Socket>()
  const closed: ClosedConnection[] = []
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.on('error', () => socket.destroy())
    socket.once('close', () => {
      sockets.delete(socket)
      closed.push({ bytesRead: socket.bytesRead, bytesWritten: socket.bytesWritten })
    })
    onSocket(socket)
  })
  server.listen(port, ip)
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => { throw err })])
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  const bound = (server.address() as net.AddressInfo).port
  return { address: ip, port: bound, closed, get open () { return sockets.size } }
}

/** A raw TCP echo: sends back everything it receives, and ends when its client ends. */
export function startEchoPod (t: Teardown, ip: string, port: number): Promise<TcpPod> {
  return startTcpPod(t, ip, port, (socket) => socket.pipe(socket))
}

/** The exact bytes an HTTP pod answers with `body` (one response, then the connection closes). */
export function httpResponse (body: string): Buffer {
  return Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
}

/**
 * A minimal HTTP/1.1 server written on raw TCP, so its byte counts are exactly what crossed the
 * wire: reads one request head, answers httpResponse(body) and closes.
 */
export function startHttpPod (t: Teardown, ip: string, port: number, body: string): Promise<TcpPod> {
  return startTcpPod(t, ip, port, (socket) => {
    let head = ''
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      socket.off('data', onData)
      socket.end(httpResponse(body))
    }
    socket.on('data', onData)
  })
}
