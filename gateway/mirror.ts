/**
 * RequestMirror: a copy of the request goes to one endpoint of each mirror backend, and its
 * answer is read and dropped; the client only ever sees the primary backend's answer. Only
 * requests without a body are mirrored: a streamed body can be read once.
 */
import type { Dispatcher } from 'undici'
import type { MeshRegistry } from '../policy/registry.js'
import type { BackendRef } from '../policy/resources.js'
import type { HeaderRecord } from './filters.js'

export interface MirroredRequest {
  readonly method: string
  readonly path: string
  readonly headers: HeaderRecord
}

const MIRROR_TIMEOUT_MS = 10_000

export function mirrorRequest (upstream: Dispatcher, registry: MeshRegistry, refs: readonly BackendRef[], namespace: string, request: MirroredRequest): void {
  for (const ref of refs) {
    const service = registry.service(`${ref.namespace ?? namespace}/${ref.name}`)
    const port = ref.port ?? service?.ports[0]?.port
    const endpoints = service?.endpoints.filter((e) => port !== undefined && e.ports[String(port)] !== undefined) ?? []
    const endpoint = endpoints[Math.floor(Math.random() * endpoints.length)]
    if (endpoint === undefined || port === undefined) continue
    const host = endpoint.ip.includes(':') ? `[${endpoint.ip}]` : endpoint.ip
    upstream.request({
      origin: `http://${host}:${endpoint.ports[String(port)]}`,
      method: request.method as Dispatcher.HttpMethod,
      path: request.path,
      headers: { ...request.headers, host: `${service!.hostnames[0] ?? ref.name}-shadow` },
      headersTimeout: MIRROR_TIMEOUT_MS,
      bodyTimeout: MIRROR_TIMEOUT_MS
    }).then(async (answer) => { await answer.body.dump() }, () => {})
  }
}
