/**
 * The ztunnel's operational endpoints, on three ports as Istio's ztunnel has them:
 *  15020 /metrics (Prometheus), 15021 /healthz/ready (readiness, with the reason when not
 *  ready), 15000 admin on loopback only (/config_dump, /workloads, /certificates — never keys).
 */
import http from 'node:http'
import { once } from 'node:events'
import type { Registry } from 'prom-client'

export interface AdminSources {
  readonly metrics: Registry
  /** undefined when ready; otherwise why not (shown to the prober). */
  notReadyReason (): string | undefined
  /** Extra readiness details (e.g. state staleness) that do not make the proxy unready. */
  readinessDetail (): Record<string, unknown>
  /** Named JSON documents for the admin port. */
  readonly documents: Readonly<Record<string, () => unknown>>
}

export interface AdminPorts {
  readonly metrics: number
  readonly readiness: number
  readonly admin: number
}

export const DEFAULT_ADMIN_PORTS: AdminPorts = { metrics: 15020, readiness: 15021, admin: 15000 }

export interface AdminServers {
  readonly ports: AdminPorts
  close (): Promise<void>
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>

function send (res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
  res.end(body)
}

const sendJson = (res: http.ServerResponse, status: number, value: unknown): void =>
  send(res, status, 'application/json', `${JSON.stringify(value, null, 2)}\n`)

async function listen (handler: Handler, host: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain', 'method not allowed\n')
      return
    }
    Promise.resolve(handler(req, res)).catch((err: Error) => send(res, 500, 'text/plain', `${err.message}\n`))
  })
  server.headersTimeout = 5_000
  server.requestTimeout = 10_000
  server.listen(port, host)
  await once(server, 'listening')
  return server
}

const pathOf = (req: http.IncomingMessage): string => new URL(req.url ?? '/', 'http://x').pathname

export async function startAdmin (sources: AdminSources, options: { host: string, adminHost: string, ports: AdminPorts }): Promise<AdminServers> {
  const servers: http.Server[] = []
  try {
    servers.push(await listen(async (req, res) => {
      if (pathOf(req) !== '/metrics' && pathOf(req) !== '/stats/prometheus') return send(res, 404, 'text/plain', 'not found\n')
      send(res, 200, sources.metrics.contentType, await sources.metrics.metrics())
    }, options.host, options.ports.metrics))
    servers.push(await listen((req, res) => {
      if (pathOf(req) !== '/healthz/ready') return send(res, 404, 'text/plain', 'not found\n')
      const reason = sources.notReadyReason()
      sendJson(res, reason === undefined ? 200 : 503, { ready: reason === undefined, ...(reason !== undefined && { reason }), ...sources.readinessDetail() })
    }, options.host, options.ports.readiness))
    servers.push(await listen((req, res) => {
      const name = pathOf(req).slice(1)
      const document = sources.documents[name]
      if (document === undefined) return sendJson(res, 404, { error: `unknown page /${name}`, pages: Object.keys(sources.documents).map((d) => `/${d}`) })
      sendJson(res, 200, document())
    }, options.adminHost, options.ports.admin))
  } catch (err) {
    for (const s of servers) s.close()
    throw err
  }
  const address = (s: http.Server): number => (s.address() as { port: number }).port
  return {
    ports: { metrics: address(servers[0]!), readiness: address(servers[1]!), admin: address(servers[2]!) },
    async close () {
      await Promise.all(servers.map(async (s) => {
        s.closeAllConnections()
        await new Promise((resolve) => s.close(resolve))
      }))
    }
  }
}
