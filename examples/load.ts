/**
 * The sample's load generator: a steady mix of calls every ~100 ms, each made from a source
 * pod's address through its node's ztunnel SOCKS5 port, as a pod's traffic would be.
 */
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import type { MeshState } from '../policy/state.js'
import { socks5Connect, type SocksRoute } from './socks5.js'
import { paymentsClient, type PaymentsClient, type PayReply } from './grpc-payments.js'

/** One finished call, as the client saw it. */
export interface CallSample {
  /** The destination Service's name. */
  readonly service: string
  readonly ok: boolean
  readonly latencyMs: number
}

interface Route {
  readonly service: string
  readonly socks: SocksRoute
  readonly grpc: boolean
}

/** web → catalog, web → cart (HTTP); cart → payments (allowed), web → payments (denied) over gRPC. */
const MIX = [
  { from: 'shop/web', to: 'shop/catalog' },
  { from: 'shop/web', to: 'shop/cart' },
  { from: 'shop/cart', to: 'shop/payments' },
  { from: 'shop/web', to: 'shop/payments' }
] as const

const INTERVAL_MS = 100
const CALL_TIMEOUT_MS = 2_000

export class LoadGenerator {
  private samples: CallSample[] = []
  private readonly timer: NodeJS.Timeout
  private readonly bridges: GrpcBridge[]
  private next = 0

  private constructor (private readonly routes: readonly Route[], bridges: GrpcBridge[]) {
    this.bridges = bridges
    this.timer = setInterval(() => { this.callNext() }, INTERVAL_MS)
  }

  static async start (state: MeshState): Promise<LoadGenerator> {
    const routes = MIX.flatMap(({ from, to }) => {
      const source = state.workloads[from]
      const service = state.services[to]
      const port = service?.ports[0]
      if (source === undefined || service === undefined || port === undefined) return []
      const proxy = state.nodes[source.node]?.address
      if (proxy === undefined) return []
      return [{ service: service.name, grpc: port.appProtocol === 'grpc', socks: { from: source.ip, proxy, host: service.hostnames[0]!, port: port.port } }]
    })
    const bridges = await Promise.all(routes.map((route) => GrpcBridge.open(route.socks)))
    return new LoadGenerator(routes, bridges)
  }

  /** The calls finished since the last take(). */
  take (): CallSample[] {
    const taken = this.samples
    this.samples = []
    return taken
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    await Promise.all(this.bridges.map((bridge) => bridge.close()))
  }

  private callNext (): void {
    const index = this.next++ % this.routes.length
    const route = this.routes[index]!
    const started = performance.now()
    const call = route.grpc ? this.bridges[index]!.pay() : httpGet(route.socks)
    call.then(() => true, () => false).then((ok) => {
      this.samples.push({ service: route.service, ok, latencyMs: performance.now() - started })
    }).catch(() => { /* recording cannot fail */ })
  }
}

async function httpGet (route: SocksRoute): Promise<void> {
  const socket = await socks5Connect(route, CALL_TIMEOUT_MS)
  const request = http.get({ host: route.host, path: '/', createConnection: () => socket, headers: { connection: 'close' }, timeout: CALL_TIMEOUT_MS })
  request.on('timeout', () => request.destroy(new Error('HTTP call timed out')))
  socket.resume() // socks5Connect hands it over paused; the request's parser reads from it now
  const [response] = await once(request, 'response') as [http.IncomingMessage]
  response.resume()
  await once(response, 'end')
  if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode}`)
}

/**
 * gRPC needs a channel, not a socket: a loopback listener whose every connection is carried
 * through SOCKS5 from the source pod, and a grpc-js client of that listener (the :authority is
 * the Service's hostname). Routes that are not gRPC open the listener but never use it.
 */
class GrpcBridge {
  private client: PaymentsClient | undefined

  private constructor (private readonly server: net.Server, private readonly route: SocksRoute, private readonly sockets: Set<net.Socket>) {}

  static async open (route: SocksRoute): Promise<GrpcBridge> {
    const sockets = new Set<net.Socket>()
    const server = net.createServer((downstream) => {
      sockets.add(downstream)
      downstream.on('close', () => sockets.delete(downstream))
      socks5Connect(route, CALL_TIMEOUT_MS).then((upstream) => {
        downstream.pipe(upstream).pipe(downstream)
        upstream.on('error', () => downstream.destroy())
        downstream.on('error', () => upstream.destroy())
        downstream.on('close', () => upstream.destroy())
        upstream.resume()
      }, () => downstream.destroy())
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return new GrpcBridge(server, route, sockets)
  }

  async pay (): Promise<PayReply> {
    this.client ??= paymentsClient(`127.0.0.1:${(this.server.address() as net.AddressInfo).port}`, {
      'grpc.default_authority': `${this.route.host}:${this.route.port}`,
      // A refused connection should be retried on the next call, not after a growing backoff.
      'grpc.initial_reconnect_backoff_ms': INTERVAL_MS,
      'grpc.max_reconnect_backoff_ms': INTERVAL_MS
    })
    const client = this.client
    return await new Promise((resolve, reject) => {
      client.Pay({ order: 'demo', cents: 100 }, { deadline: Date.now() + CALL_TIMEOUT_MS },
        (err, reply) => err === null && reply !== undefined ? resolve(reply) : reject(err ?? new Error('no reply')))
    })
  }

  async close (): Promise<void> {
    this.client?.close()
    for (const socket of this.sockets) socket.destroy()
    await new Promise((resolve) => this.server.close(resolve))
  }
}
