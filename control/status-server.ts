/**
 * The controller's monitoring port (15014, istiod's): plain HTTP, read-only.
 *   GET /healthz/ready → 200 once the first mesh state is committed, 503 with the reason before
 *   GET /metrics       → Prometheus text exposition
 *   GET /, /api/mesh, /api/events → the live mesh dashboard (dashboard.ts), when given one
 */
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Registry } from 'prom-client'
import type { Dashboard } from './dashboard.js'

export const STATUS_PORT = 15014

export interface StatusServerOptions {
  readonly metrics: Registry
  /** undefined when ready; otherwise why not (shown to the prober). */
  readonly notReadyReason: () => string | undefined
  /** Default 127.0.0.1; give 0.0.0.0 for the kubelet's probes and Prometheus. */
  readonly host?: string
  /** Default 15014; 0 picks a free port. */
  readonly port?: number
  readonly dashboard?: Pick<Dashboard, 'handle'>
}

export interface StatusServer {
  /** http://host:port */
  readonly url: string
  readonly port: number
  close (): Promise<void>
}

export async function startStatusServer (options: StatusServerOptions): Promise<StatusServer> {
  const host = options.host ?? '127.0.0.1'
  const server = createServer((req, res) => {
    respond(options, req, res).catch((err: Error) => send(res, 500, 'text/plain', `${err.message}\n`))
  })
  server.headersTimeout = 5_000
  server.requestTimeout = 10_000
  server.listen(options.port ?? STATUS_PORT, host)
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    close: async () => {
      const closed = once(server, 'close')
      server.close()
      server.closeAllConnections()
      await closed
    }
  }
}

async function respond (options: StatusServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD')
    return send(res, 405, 'text/plain', 'method not allowed\n')
  }
  const path = new URL(req.url ?? '/', 'http://status').pathname
  switch (path) {
    case '/healthz/ready': {
      const reason = options.notReadyReason()
      return reason === undefined ? send(res, 200, 'text/plain', 'ready\n') : send(res, 503, 'text/plain', `not ready: ${reason}\n`)
    }
    case '/metrics':
      return send(res, 200, options.metrics.contentType, await options.metrics.metrics())
    default:
      if (await options.dashboard?.handle(req, res, path) === true) return
      return send(res, 404, 'text/plain', 'not found: try /healthz/ready or /metrics\n')
  }
}

function send (res: ServerResponse, status: number, type: string, body: string): void {
  if (res.headersSent) return
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
  res.end(body)
}
