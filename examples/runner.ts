/**
 * The sample's apps: for every workload and every Service port it serves, a small real server
 * on podIP:targetPort. HTTP ports answer JSON {service, pod, version, path}; gRPC ports serve
 * shop.Payments/Pay (shop/payments.proto).
 *
 * A pod labelled `demo.ambit.dev/fail-every: "N"` answers every Nth HTTP request with a 503 (the
 * sample's flaky canary). The apps remember the trace id of each request they failed: an answer
 * to a later request of the same trace (a proxy's retry keeps the trace id) carries the header
 * `x-demo-retried: true`, so the caller can count the failures a retry hid from it.
 */
import http from 'node:http'
import { once } from 'node:events'
import grpc from '@grpc/grpc-js'
import type { MeshState, ServiceState, WorkloadState } from '../policy/state.js'
import { paymentsDefinition, type PayReply, type PayRequest } from './grpc-payments.js'

export const FAIL_EVERY_LABEL = 'demo.ambit.dev/fail-every'
export const RETRIED_HEADER = 'x-demo-retried'

export interface RunningApps {
  /** 'ip:port' of each server started. */
  readonly addresses: readonly string[]
  stop (): Promise<void>
}

interface AppPort {
  readonly workload: WorkloadState
  readonly service: ServiceState
  readonly port: number
  readonly grpc: boolean
}

/** Every (workload, Service port) pair to serve, once per ip:port (named after the first Service that selects it). */
export function appPorts (state: MeshState): AppPort[] {
  const byAddress = new Map<string, AppPort>()
  for (const service of Object.values(state.services)) {
    for (const endpoint of service.endpoints) {
      const workload = state.workloads[endpoint.workload]
      if (workload === undefined) continue
      for (const servicePort of service.ports) {
        const port = endpoint.ports[String(servicePort.port)]
        if (port === undefined) continue
        const address = `${workload.ip}:${port}`
        if (!byAddress.has(address)) byAddress.set(address, { workload, service, port, grpc: servicePort.appProtocol === 'grpc' })
      }
    }
  }
  return [...byAddress.values()]
}

export async function startApps (state: MeshState): Promise<RunningApps> {
  const ports = appPorts(state)
  const failedTraces = new FailedTraces()
  const stops = await Promise.all(ports.map((app) => app.grpc ? startGrpc(app) : startHttp(app, failedTraces)))
  return {
    addresses: ports.map((app) => `${app.workload.ip}:${app.port}`),
    stop: async () => { await Promise.all(stops.map((stop) => stop())) }
  }
}

function identity (app: AppPort): Omit<PayReply, 'order'> {
  return { service: app.service.name, pod: app.workload.name, version: app.workload.labels.version ?? '' }
}

/** The trace ids of requests answered with a failure, until a retry of theirs comes (bounded: the oldest go first). */
class FailedTraces {
  private static readonly LIMIT = 1_000
  private readonly ids = new Set<string>()

  remember (traceId: string | undefined): void {
    if (traceId === undefined) return
    this.ids.add(traceId)
    if (this.ids.size > FailedTraces.LIMIT) this.ids.delete(this.ids.values().next().value!)
  }

  /** True once for a trace whose earlier request failed. */
  takeRetry (traceId: string | undefined): boolean {
    return traceId !== undefined && this.ids.delete(traceId)
  }
}

/** The trace id of a W3C traceparent header (version-traceid-spanid-flags). */
function traceIdOf (req: http.IncomingMessage): string | undefined {
  const traceparent = req.headers.traceparent
  return typeof traceparent === 'string' ? traceparent.split('-')[1] : undefined
}

async function startHttp (app: AppPort, failedTraces: FailedTraces): Promise<() => Promise<void>> {
  const failEvery = Number(app.workload.labels[FAIL_EVERY_LABEL] ?? 0)
  let requests = 0
  const server = http.createServer((req, res) => {
    const traceId = traceIdOf(req)
    requests++
    if (failEvery > 0 && requests % failEvery === 0) {
      failedTraces.remember(traceId)
      res.writeHead(503, { 'content-type': 'text/plain' }).end('the canary failed this one\n')
      return
    }
    if (failedTraces.takeRetry(traceId)) res.setHeader(RETRIED_HEADER, 'true')
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ ...identity(app), path: req.url ?? '/' }) + '\n')
  })
  server.listen(app.port, app.workload.ip)
  await once(server, 'listening')
  return async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
}

async function startGrpc (app: AppPort): Promise<() => Promise<void>> {
  const server = new grpc.Server()
  server.addService(paymentsDefinition().service, {
    Pay: (call: grpc.ServerUnaryCall<PayRequest, PayReply>, callback: grpc.sendUnaryData<PayReply>) => {
      callback(null, { ...identity(app), order: call.request.order })
    }
  })
  await new Promise<void>((resolve, reject) => server.bindAsync(`${app.workload.ip}:${app.port}`, grpc.ServerCredentials.createInsecure(),
    (err) => err === null ? resolve() : reject(err)))
  return async () => { server.forceShutdown() }
}
