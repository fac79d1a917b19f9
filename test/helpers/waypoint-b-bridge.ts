/**
 * A pod's way into the mesh for clients that cannot speak SOCKS5 (grpc-js only knows HTTP
 * CONNECT proxies; Node's http and http2 clients know neither): a small TCP server on the
 * pod's address that, for each connection it accepts, opens a SOCKS5 CONNECT to the node's
 * ztunnel from the pod's address, then copies bytes both ways. Whatever the client writes
 * (gRPC, HTTP/1.1, h2c, or hostile raw bytes) crosses the mesh untouched.
 *
 *   const bridge = await startMeshBridge(t, { podIp: '127.0.7.11', socks, host: 'echo.ns.svc.cluster.local', port: 80 })
 *   const { status, body } = await meshRequest(bridge, { path: '/hello' })
 */
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import { socks5Connect, type SocketAddress } from './socks5-client.js'
import type { Teardown } from './redis.js'

export interface MeshBridge extends SocketAddress {
  /** The Service hostname every connection is sent to. */
  readonly target: string
  /** Connections the bridge has accepted from clients so far. */
  readonly accepted: number
  /** SOCKS5 replies other than 0 (succeeded), one per refused connection. */
  readonly refusals: readonly number[]
}

export interface MeshBridgeOptions {
  /** The client pod's address: the bridge listens there and the ztunnel sees it as the source. */
  readonly podIp: string
  /** The pod's node's ztunnel SOCKS5 port. */
  readonly socks: SocketAddress
  /** Where each connection goes: a Service hostname (or VIP, or pod IP) and port. */
  readonly host: string
  readonly port: number
}

export async function startMeshBridge (t: Teardown, options: MeshBridgeOptions): Promise<MeshBridge> {
  const refusals: number[] = []
  const sockets = new Set<net.Socket>()
  const track = (socket: net.Socket): void => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
  }
  let accepted = 0
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    accepted++
    track(client)
    socks5Connect({ proxy: options.socks, localAddress: options.podIp, host: options.host, port: options.port }).then(({ reply, socket }) => {
      track(socket)
      if (reply !== 0 || client.destroyed) {
        refusals.push(reply)
        socket.destroy()
        client.resetAndDestroy()
        return
      }
      client.pipe(socket)
      socket.pipe(client)
      // One side gone for good: the other goes too (half-closes are passed on by pipe).
      client.once('close', () => socket.destroy())
      socket.once('close', () => client.destroy())
      socket.resume()
      client.resume()
    }, () => client.resetAndDestroy())
  })
  server.listen(0, options.podIp)
  await once(server, 'listening')
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  return { host: options.podIp, port: (server.address() as net.AddressInfo).port, target: options.host, refusals, get accepted () { return accepted } }
}

export interface MeshResponse {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
}

export interface MeshRequest {
  readonly method?: string
  readonly path?: string
  readonly headers?: http.OutgoingHttpHeaders
  readonly body?: string
  /** A keep-alive agent to reuse connections (each connection is one tunnel); default: a new connection. */
  readonly agent?: http.Agent
  readonly timeoutMs?: number
}

/** One HTTP/1.1 request through the bridge, addressed to the bridge's Service by its Host header. */
export async function meshRequest (bridge: MeshBridge, request: MeshRequest = {}): Promise<MeshResponse> {
  return await new Promise((resolve, reject) => {
    const req = http.request({
      host: bridge.host,
      port: bridge.port,
      method: request.method ?? 'GET',
      path: request.path ?? '/',
      headers: { host: bridge.target, ...request.headers },
      agent: request.agent ?? false,
      timeout: request.timeoutMs ?? 15_000
    }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      res.once('error', reject)
    })
    req.once('timeout', () => req.destroy(new Error(`${request.method ?? 'GET'} ${request.path ?? '/'} through the mesh: no answer within ${request.timeoutMs ?? 15_000} ms`)))
    req.once('error', reject)
    req.end(request.body)
  })
}
