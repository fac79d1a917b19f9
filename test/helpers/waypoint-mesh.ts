/**
 * A local-mode mesh with a waypoint, inside the test process, wired as `ambit up` wires it:
 * the control plane (controller and CA on a free port) over a MemoryStore loaded from a fixture
 * directory, one Ztunnel per Node and one Waypoint per waypoint instance, all on the fixture's
 * loopback addresses. Plus what the tests need around it:
 *
 *  - backends: one small HTTP server per backend pod (its pod IP, port 8080) whose answer each
 *    test sets (`mesh.backend('echo-v1').handler = failEveryOther(503)`); every request it
 *    receives is recorded;
 *  - a client: HTTP/1.1 with keep-alive through node-a's SOCKS5 port, from the client pod's
 *    address, so a request takes the real path client → ztunnel → waypoint → ztunnel → backend;
 *  - apply / remove: resources committed to the store's 'resources' keyspace (what `ambit apply`
 *    does), returning once the waypoint serves the new state;
 *  - the waypoint's access log lines and its /metrics page.
 *
 *   const mesh = await startWaypointMesh(t, fixtureDir)
 *   await mesh.apply(`kind: HTTPRoute ...`)
 *   const response = await mesh.client.request({ path: '/hello' })
 */
import http from 'node:http'
import { once } from 'node:events'
import type { Duplex } from 'node:stream'
import { pino, type Logger } from 'pino'
import { ControlPlane } from '../../control/control-plane.js'
import { MemoryStore } from '../../control/memory-store.js'
import { CaClient } from '../../policy/ca-client.js'
import { parseResources } from '../../policy/load.js'
import { resourceKey } from '../../policy/resources.js'
import { DEFAULT_ROOT_NAMESPACE, DEFAULT_TRUST_DOMAIN, type MeshState } from '../../policy/state.js'
import { Ztunnel } from '../../ztunnel/ztunnel.js'
import { Waypoint } from '../../gateway/waypoint.js'
import { socks5Connect, type SocketAddress } from './socks5-client.js'
import { scrape, type Sample } from './prometheus.js'
import { waitFor } from './wait.js'
import type { Teardown } from './redis.js'

/** The port every backend pod serves (the fixtures' Service targetPort). */
export const BACKEND_PORT = 8080
/** How long stop() waits for open connections: the tests close their clients first. */
const TEST_DRAIN_MS = 500
/** Generous: the test machine may be loaded. */
const READY_TIMEOUT_MS = 20_000

// ---- Backends ----

/** One request as a backend received it (the body read whole). */
export interface ReceivedRequest {
  readonly pod: string
  readonly method: string
  /** Path and query string. */
  readonly path: string
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
  /** Which of the backend's connections it came on (1, 2...): a new number is a new connection. */
  readonly connection: number
}

/** How a backend answers; the default, `echo`, answers 200 with the request as JSON. */
export type BackendHandler = (request: ReceivedRequest, res: http.ServerResponse) => void

/** What `echo` answers (JSON): the request as the backend saw it. */
export type EchoBody = ReceivedRequest

export const echo: BackendHandler = (request, res) => {
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(request))
}

/** Answers `status` to every other request (the 1st, 3rd...), `then` to the others. */
export function failEveryOther (status: number, then: BackendHandler = echo): BackendHandler {
  let count = 0
  return (request, res) => {
    count++
    if (count % 2 === 1) res.writeHead(status, { 'content-type': 'text/plain' }).end(`failing (${request.pod})\n`)
    else then(request, res)
  }
}

/** Answers `status` to every request. */
export function always (status: number): BackendHandler {
  return (request, res) => { res.writeHead(status, { 'content-type': 'text/plain' }).end(`${status} from ${request.pod}\n`) }
}

/** Waits `ms` before answering as `then` does. */
export function slow (ms: number, then: BackendHandler = echo): BackendHandler {
  return (request, res) => { setTimeout(() => { if (!res.destroyed) then(request, res) }, ms) }
}

export class Backend {
  /** Every request received since the last reset(), oldest first. */
  readonly received: ReceivedRequest[] = []
  /** What an HTTP/1.1 Upgrade request gets (default: the connection is closed). */
  upgradeHandler: (request: http.IncomingMessage, socket: Duplex, head: Buffer) => void = (_request, socket) => socket.destroy()
  handler: BackendHandler = echo
  private readonly server: http.Server
  private readonly connections = new WeakMap<object, number>()
  private connectionCount = 0

  constructor (readonly pod: string, readonly ip: string) {
    this.server = http.createServer((req, res) => { void this.serve(req, res) })
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.upgradeHandler(req, socket, head))
    // The waypoint keeps connections to backends; a short idle timeout would race with reuse.
    this.server.keepAliveTimeout = 60_000
  }

  async listen (): Promise<void> {
    this.server.listen(BACKEND_PORT, this.ip)
    await once(this.server, 'listening')
  }

  /** Back to `echo`, nothing received. */
  reset (): void {
    this.handler = echo
    this.received.length = 0
  }

  async close (): Promise<void> {
    this.server.closeAllConnections()
    await new Promise((resolve) => this.server.close(resolve))
  }

  private async serve (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    let connection = this.connections.get(req.socket)
    if (connection === undefined) {
      connection = ++this.connectionCount
      this.connections.set(req.socket, connection)
    }
    const request: ReceivedRequest = { pod: this.pod, method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString(), connection }
    this.received.push(request)
    this.handler(request, res)
  }
}

// ---- The client: HTTP through a ztunnel's SOCKS5 port ----

export interface MeshRequest {
  readonly path: string
  readonly method?: string
  /** Default: the fixtures' `echo.shop.svc.cluster.local`. */
  readonly host?: string
  readonly port?: number
  readonly headers?: http.OutgoingHttpHeaders
  readonly body?: string
  readonly timeoutMs?: number
}

export interface MeshResponse {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
  /** From the request's start to the end of the response body, as the client measured it. */
  readonly ms: number
}

export const ECHO_HOST = 'echo.shop.svc.cluster.local'

/** An http.Agent whose connections are SOCKS5 CONNECTs (by hostname) from one pod's address. */
class Socks5Agent extends http.Agent {
  constructor (private readonly proxy: SocketAddress, private readonly localAddress: string, maxSockets: number) {
    super({ keepAlive: true, maxSockets })
  }

  override createConnection (options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | undefined {
    const failed = (err: Error): void => callback?.(err, undefined as unknown as Duplex)
    socks5Connect({ proxy: this.proxy, localAddress: this.localAddress, host: options.host ?? '', port: Number(options.port) }).then(({ reply, socket }) => {
      if (reply !== 0) {
        socket.destroy()
        failed(new Error(`SOCKS5 refused ${options.host}:${options.port} (reply ${reply})`))
        return
      }
      // socks5Connect hands the socket back paused; the http client only adds a 'data' listener.
      socket.resume()
      callback?.(null, socket)
    }, failed)
    return undefined
  }
}

export class MeshClient {
  private readonly agent: Socks5Agent

  /** `maxSockets`: how many keep-alive connections (tunnels) requests may use at once. */
  constructor (proxy: SocketAddress, localAddress: string, maxSockets = 16) {
    this.agent = new Socks5Agent(proxy, localAddress, maxSockets)
  }

  request (request: MeshRequest): Promise<MeshResponse> {
    const started = performance.now()
    const body = request.body
    return new Promise((resolve, reject) => {
      const req = http.request({
        agent: this.agent,
        host: request.host ?? ECHO_HOST,
        port: request.port ?? 80,
        method: request.method ?? 'GET',
        path: request.path,
        // A body goes with its length, unless the request asks for chunked framing.
        headers: { ...request.headers, ...(body !== undefined && request.headers?.['transfer-encoding'] === undefined && { 'content-length': Buffer.byteLength(body) }) }
      }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString(), ms: performance.now() - started }))
        res.on('error', reject)
      })
      req.setTimeout(request.timeoutMs ?? 15_000, () => req.destroy(new Error(`${request.method ?? 'GET'} ${request.path}: no answer within ${request.timeoutMs ?? 15_000} ms`)))
      req.on('error', reject)
      req.end(body)
    })
  }

  /** `count` requests, at most `concurrency` at a time; answers in request order. */
  async many (count: number, concurrency: number, build: (index: number) => MeshRequest): Promise<MeshResponse[]> {
    const responses: MeshResponse[] = new Array<MeshResponse>(count)
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < count) {
        const index = next++
        responses[index] = await this.request(build(index))
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
    return responses
  }

  close (): void {
    this.agent.destroy()
  }
}

// ---- The mesh ----

export interface WaypointMesh {
  readonly store: MemoryStore
  readonly plane: ControlPlane
  /** The state the controller resolved from the fixture (before any apply). */
  readonly state: MeshState
  readonly waypoint: Waypoint
  /** From the client pod, through node-a's ztunnel. */
  readonly client: MeshClient
  /** The waypoint's access log, one parsed JSON record per request. */
  readonly accessLog: readonly Record<string, unknown>[]
  /** Warnings and errors any component logged. */
  readonly logs: readonly Record<string, unknown>[]
  /** The backend server of pod `pod` (say 'echo-v1'). */
  backend (pod: string): Backend
  /** Every backend back to `echo`, with nothing received. */
  resetBackends (): void
  /** Upserts the resources of a YAML text into the store; resolves once the waypoint serves them. */
  apply (yaml: string): Promise<void>
  /** Deletes resources ('HTTPRoute/shop/name'...); resolves once the waypoint serves the result. */
  remove (...keys: string[]): Promise<void>
  /** The waypoint's /metrics (port 15020 on its address), parsed. */
  metrics (): Promise<Sample[]>
}

export interface WaypointMeshOptions {
  /** The pod requests come from (default 'client'), through its node's ztunnel. */
  readonly clientPod?: string
  /** Pods of this name prefix get a backend server (default 'echo'). */
  readonly backendPrefix?: string
  /** The client's keep-alive connections at most (default 16). */
  readonly maxSockets?: number
}

/** Starts everything; t.teardown stops it all, in reverse order, even when the test fails. */
export async function startWaypointMesh (t: Teardown, fixtureDir: string, options: WaypointMeshOptions = {}): Promise<WaypointMesh> {
  const logs: Record<string, unknown>[] = []
  const accessLog: Record<string, unknown>[] = []
  const logger = capturingLogger('warn', logs)
  const store = new MemoryStore()
  const stops: (() => Promise<void> | void)[] = [() => store.close()]
  t.teardown(async () => {
    for (const stop of stops.reverse()) await stop()
  })
  const plane = await ControlPlane.start({
    store, files: [fixtureDir], trustDomain: DEFAULT_TRUST_DOMAIN, rootNamespace: DEFAULT_ROOT_NAMESPACE, logger, caPort: 0, watchFiles: false
  })
  stops.push(() => plane.stop())
  const state = plane.controller.state!
  const caClient = (node: string): CaClient => new CaClient({ url: plane.caServer.url, token: plane.nodeTokens.tokenFor(node), trustBundle: state.mesh.trustBundle })

  const backends = new Map<string, Backend>()
  for (const workload of Object.values(state.workloads)) {
    if (!workload.name.startsWith(options.backendPrefix ?? 'echo')) continue
    const backend = new Backend(workload.name, workload.ip)
    await backend.listen()
    backends.set(workload.name, backend)
    stops.push(() => backend.close())
  }

  for (const node of Object.values(state.nodes)) {
    const ztunnel = await Ztunnel.start({ node: node.name, store, certificateSource: () => caClient(node.name), logger, capture: false, drainMs: TEST_DRAIN_MS })
    stops.push(() => ztunnel.stop())
  }
  const instance = Object.values(state.waypoints)[0]?.instances[0]
  if (instance === undefined) throw new Error(`the fixture ${fixtureDir} has no waypoint instance`)
  const wp = Object.values(state.waypoints)[0]!
  const waypoint = await Waypoint.start({
    name: wp.name,
    namespace: wp.namespace,
    store,
    listenAddress: instance.ip,
    certificateSource: () => caClient(instance.node),
    logger,
    accessLog: capturingLogger('info', accessLog),
    drainMs: TEST_DRAIN_MS
  })
  stops.push(() => waypoint.stop())
  await waitFor('the waypoint to be ready', () => waypoint.notReadyReason() === undefined, READY_TIMEOUT_MS)

  const clientWorkload = Object.values(state.workloads).find((w) => w.name === (options.clientPod ?? 'client'))
  if (clientWorkload === undefined) throw new Error(`the fixture ${fixtureDir} has no pod ${options.clientPod ?? 'client'}`)
  const client = new MeshClient({ host: state.nodes[clientWorkload.node]!.address, port: 15080 }, clientWorkload.ip, options.maxSockets)
  stops.push(() => client.close())

  const adminUrl = `http://${instance.ip}:${waypoint.ports.admin}`
  /** Resolves once the controller wrote a state newer than `before` and the waypoint serves it. */
  const converged = async (before: number, what: string): Promise<void> => {
    await waitFor(`the controller to resolve ${what}`, async () => (await store.revision('state')) > before, READY_TIMEOUT_MS)
    const wanted = await store.revision('state')
    await waitFor(`the waypoint to serve state revision ${wanted}`, async () => (await waypointRevision(adminUrl)) >= wanted, READY_TIMEOUT_MS)
  }

  return {
    store,
    plane,
    state,
    waypoint,
    client,
    accessLog,
    logs,
    backend (pod) {
      const backend = backends.get(pod)
      if (backend === undefined) throw new Error(`no backend pod ${pod} (have ${[...backends.keys()].join(', ')})`)
      return backend
    },
    resetBackends () {
      for (const backend of backends.values()) backend.reset()
    },
    async apply (yaml) {
      const { resources, errors } = parseResources(yaml, 'test')
      if (errors.length > 0) throw new Error(errors.map((e) => e.message).join('\n'))
      const before = await store.revision('state')
      await store.commit('resources', { upserts: new Map(resources.map((r) => [resourceKey(r), r])), deletes: [] })
      await converged(before, resources.map(resourceKey).join(', '))
    },
    async remove (...keys) {
      const before = await store.revision('state')
      await store.commit('resources', { upserts: new Map(), deletes: keys })
      await converged(before, `the removal of ${keys.join(', ')}`)
    },
    metrics: () => scrape(`http://${instance.ip}:${waypoint.ports.metrics}/metrics`)
  }
}

/** A pino logger whose records land, parsed, in `records`. */
function capturingLogger (level: string, records: Record<string, unknown>[]): Logger {
  return pino({ level }, { write: (line: string) => { records.push(JSON.parse(line) as Record<string, unknown>) } })
}

async function waypointRevision (adminUrl: string): Promise<number> {
  const response = await fetch(`${adminUrl}/config_dump`)
  const dump = await response.json() as { revision?: number }
  return dump.revision ?? -1
}
