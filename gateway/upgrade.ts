/**
 * HTTP/1.1 upgrades (WebSocket and friends) through the waypoint: the request is authorized
 * and routed like any other, then the connection becomes a byte pipe to the chosen endpoint
 * (the handshake and everything after it pass through untouched).
 */
import type http from 'node:http'
import type { Duplex } from 'node:stream'
import type { MeshRegistry } from '../policy/registry.js'
import { pipeBidirectional } from '../proxy/pipe.js'
import type { HttpIngress } from './http-ingress.js'
import type { ServiceRuntimes } from './service-runtime.js'
import type { TunnelOpener } from './upstream.js'
import { allowedAtWaypoint } from './l7-authz.js'
import type { RuleHits } from '../proxy/rule-hits.js'
import { chooseBackendService, endpointsServing } from './pipeline.js'

export interface UpgradeDeps {
  registry (): MeshRegistry
  readonly runtimes: ServiceRuntimes
  readonly ingress: HttpIngress
  readonly open: TunnelOpener
  readonly ruleHits: RuleHits
}

export async function passUpgrade (deps: UpgradeDeps, request: http.IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
  client.on('error', () => client.destroy())
  const tunnel = deps.ingress.contextOf(request)
  if (tunnel === undefined) return refuse(client, 500, 'Internal Server Error')
  const registry = deps.registry()
  const frontend = deps.runtimes.frontend(registry.state, tunnel.service, tunnel.port.port)
  const method = request.method ?? 'GET'
  const path = request.url ?? '/'
  if (!allowedAtWaypoint(frontend.policies, tunnel, { method, path, headers: request.headers }, deps.ruleHits)) return refuse(client, 403, 'Forbidden')
  const routed = frontend.routes === undefined || frontend.routes.empty
  const match = routed ? undefined : frontend.routes!.match({ method, path, headers: request.headers })
  if (!routed && match === undefined) return refuse(client, 404, 'Not Found')
  const { backend, port } = chooseBackendService(registry, match, tunnel.service, tunnel.port.port)
  const runtime = backend === undefined ? undefined : deps.runtimes.backend(registry.state, backend)
  const serving = backend === undefined ? [] : endpointsServing(backend, port)
  const endpoint = runtime?.balancer.pick(runtime.outlier?.healthy(serving) ?? serving, { headers: request.headers })
  if (endpoint === undefined) return refuse(client, 503, 'Service Unavailable')
  let upstream: Duplex
  try {
    upstream = await deps.open(endpoint.ip, endpoint.ports[String(port)]!)
  } catch {
    return refuse(client, 503, 'Service Unavailable')
  }
  upstream.write(requestHead(request))
  if (head.length > 0) upstream.write(head)
  void pipeBidirectional(client, upstream)
}

/** The request line and headers as the client sent them (raw, so nothing is reordered or merged). */
function requestHead (request: http.IncomingMessage): Buffer {
  const lines = [`${request.method ?? 'GET'} ${request.url ?? '/'} HTTP/1.1`]
  for (let i = 0; i < request.rawHeaders.length; i += 2) lines.push(`${request.rawHeaders[i]}: ${request.rawHeaders[i + 1]}`)
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1')
}

function refuse (client: Duplex, status: number, reason: string): void {
  client.end(`HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`)
}
