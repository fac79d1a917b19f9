/**
 * The sample's load generator: a steady mix of calls every 50 ms, each made from a source pod's
 * address through its node's ztunnel SOCKS5 port, as a pod's traffic would be. It records each
 * call as the caller saw it: its outcome (and whether policy denied it), and for an answer the
 * version of the pod that gave it and whether it came from a retry.
 */
import http from 'node:http'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { MeshState } from '../policy/state.js'
import { socks5Connect, SocksRefusedError, type SocksRoute } from './socks5.js'
import { paymentsClient, type PaymentsClient } from './grpc-payments.js'
import { RETRIED_HEADER } from './runner.js'

/** ok; denied: refused by policy (the ztunnel refused the connection, or a waypoint answered 403); error: any other failure. */
export type CallOutcome = 'ok' | 'denied' | 'error'

/** One finished call, as the client saw it. */
export interface CallSample {
  /** The destination Service's name. */
  readonly service: string
  readonly outcome: CallOutcome
  readonly latencyMs: number
  /** The answering pod's `version` label ('' when it has none); set for answered calls. */
  readonly version?: string
  /** The answer came from a retry, after a try that failed (see examples/runner.ts). */
  readonly retried?: boolean
}

interface Answer {
  readonly version: string
  readonly retried: boolean
}

interface Route {
  readonly service: string
  readonly socks: SocksRoute
  /** gRPC routes call through a bridge; the others are plain HTTP GETs. */
  readonly bridge?: GrpcBridge
}

/**
 * One cycle of calls: web browses the catalog most (its canary split needs the numbers), and
 * calls cart; cart calls payments (allowed) and web tries payments too (denied), over gRPC.
 */
const MIX = [
  { from: 'shop/web', to: 'shop/catalog', perCycle: 5 },
  { from: 'shop/web', to: 'shop/cart', perCycle: 1 },
  { from: 'shop/cart', to: 'shop/payments', perCycle: 1 },
  { from: 'shop/web', to: 'shop/payments', perCycle: 1 }
] as const

const INTERVAL_MS = 50
/**
 * How often a gRPC channel whose connection was refused tries again. Meanwhile its calls fail at
 * once (UNAVAILABLE), and the bridge still knows why: a denied caller makes one refused
 * connection a second, not one per call or faster.
 */
const RECONNECT_BACKOFF_MS = 1000
const CALL_TIMEOUT_MS = 2_000

export class LoadGenerator {
  private samples: CallSample[] = []
  private readonly timer: NodeJS.Timeout
  private readonly cycle: readonly Route[]
  private next = 0

  private constructor (private readonly routes: readonly Route[], perCycle: readonly number[]) {
    this.cycle = interleave(perCycle).map((i) => routes[i]!)
    this.timer = setInterval(() => { this.callNext() }, INTERVAL_MS)
  }

  static async start (state: MeshState): Promise<LoadGenerator> {
    const planned = MIX.flatMap(({ from, to, perCycle }) => {
      const source = state.workloads[from]
      const service = state.services[to]
      const port = service?.ports[0]
      if (source === undefined || service === undefined || port === undefined) return []
      const proxy = state.nodes[source.node]?.address
      if (proxy === undefined) return []
      const socks = { from: source.ip, proxy, host: service.hostnames[0]!, port: port.port }
      return [{ service: service.name, socks, grpc: port.appProtocol === 'grpc', perCycle }]
    })
    const routes = await Promise.all(planned.map(async ({ service, socks, grpc }) =>
      grpc ? { service, socks, bridge: await GrpcBridge.open(socks) } : { service, socks }))
    return new LoadGenerator(routes, planned.map((p) => p.perCycle))
  }

  /** The calls finished since the last take(). */
  take (): CallSample[] {
    const taken = this.samples
    this.samples = []
    return taken
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    await Promise.all(this.routes.map((route) => route.bridge?.close()))
  }

  private callNext (): void {
    const route = this.cycle[this.next++ % this.cycle.length]!
    const started = performance.now()
    this.call(route).then((result) => {
      this.samples.push({ service: route.service, latencyMs: performance.now() - started, ...result })
    }).catch(() => { /* call() never rejects */ })
  }

  private async call (route: Route): Promise<Pick<CallSample, 'outcome' | 'version' | 'retried'>> {
    try {
      const answer = route.bridge !== undefined ? await route.bridge.pay() : await httpGet(route.socks)
      return { outcome: 'ok', ...answer }
    } catch (err) {
      return { outcome: route.bridge?.failure() ?? failureOf(err) }
    }
  }
}

/** [5, 1, 1] → [0, 1, 2, 0, 0, 0, 0]: each index as many times as its count, spread round by round. */
export function interleave (counts: readonly number[]): number[] {
  const order: number[] = []
  for (let round = 0; round < Math.max(0, ...counts); round++) {
    counts.forEach((count, index) => { if (round < count) order.push(index) })
  }
  return order
}

class HttpStatusError extends Error {
  constructor (readonly status: number) {
    super(`HTTP ${status}`)
  }
}

function failureOf (err: unknown): CallOutcome {
  const denied = (err instanceof SocksRefusedError && err.deniedByPolicy) || (err instanceof HttpStatusError && err.status === 403)
  return denied ? 'denied' : 'error'
}

/** A fresh W3C trace per call: a proxy's retry of the call keeps its trace id. */
function newTraceparent (): string {
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`
}

async function httpGet (route: SocksRoute): Promise<Answer> {
  const socket = await socks5Connect(route, CALL_TIMEOUT_MS)
  const request = http.get({
    host: route.host,
    path: '/',
    createConnection: () => socket,
    headers: { connection: 'close', traceparent: newTraceparent() },
    timeout: CALL_TIMEOUT_MS
  })
  request.on('timeout', () => request.destroy(new Error('HTTP call timed out')))
  socket.resume() // socks5Connect hands it over paused; the request's parser reads from it now
  const [response] = await once(request, 'response') as [http.IncomingMessage]
  let body = ''
  response.setEncoding('utf8').on('data', (chunk: string) => { body += chunk })
  await once(response, 'end')
  if (response.statusCode !== 200) throw new HttpStatusError(response.statusCode ?? 0)
  return { version: versionIn(body), retried: response.headers[RETRIED_HEADER] === 'true' }
}

/** The `version` field of the sample apps' JSON answer ('' when there is none). */
function versionIn (body: string): string {
  try {
    const version = (JSON.parse(body) as { version?: unknown }).version
    return typeof version === 'string' ? version : ''
  } catch {
    return ''
  }
}

/**
 * gRPC needs a channel, not a socket: a loopback listener whose every connection is carried
 * through SOCKS5 from the source pod, and a grpc-js client of that listener (the :authority is
 * the Service's hostname). grpc-js sees a refused connection only as UNAVAILABLE, so the bridge
 * remembers how its latest SOCKS5 connection went: a call that fails after a refusal by policy
 * was denied.
 */
class GrpcBridge {
  private client: PaymentsClient | undefined
  private readonly sockets = new Set<net.Socket>()
  private readonly server: net.Server
  private lastConnection: CallOutcome = 'ok'

  private constructor (private readonly route: SocksRoute) {
    this.server = net.createServer((downstream) => { this.carry(downstream) })
  }

  static async open (route: SocksRoute): Promise<GrpcBridge> {
    const bridge = new GrpcBridge(route)
    bridge.server.listen(0, '127.0.0.1')
    await once(bridge.server, 'listening')
    return bridge
  }

  async pay (): Promise<Answer> {
    this.client ??= paymentsClient(`127.0.0.1:${(this.server.address() as net.AddressInfo).port}`, {
      'grpc.default_authority': `${this.route.host}:${this.route.port}`,
      'grpc.initial_reconnect_backoff_ms': RECONNECT_BACKOFF_MS,
      'grpc.max_reconnect_backoff_ms': RECONNECT_BACKOFF_MS
    })
    const client = this.client
    const reply = await new Promise<{ version: string }>((resolve, reject) => {
      client.Pay({ order: 'demo', cents: 100 }, { deadline: Date.now() + CALL_TIMEOUT_MS },
        (err, reply) => err === null && reply !== undefined ? resolve(reply) : reject(err ?? new Error('no reply')))
    })
    return { version: reply.version, retried: false }
  }

  /** Why the latest call failed, as far as the bridge can tell. */
  failure (): CallOutcome {
    return this.lastConnection === 'denied' ? 'denied' : 'error'
  }

  async close (): Promise<void> {
    this.client?.close()
    for (const socket of this.sockets) socket.destroy()
    await new Promise((resolve) => this.server.close(resolve))
  }

  private carry (downstream: net.Socket): void {
    this.sockets.add(downstream)
    downstream.on('close', () => this.sockets.delete(downstream))
    socks5Connect(this.route, CALL_TIMEOUT_MS).then((upstream) => {
      this.lastConnection = 'ok'
      downstream.pipe(upstream).pipe(downstream)
      upstream.on('error', () => downstream.destroy())
      downstream.on('error', () => upstream.destroy())
      downstream.on('close', () => upstream.destroy())
      upstream.resume()
    }, (err: unknown) => {
      this.lastConnection = failureOf(err)
      downstream.destroy()
    })
  }
}
