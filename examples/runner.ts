/**
 * The sample's apps: for every workload and every Service port it serves, a small real server
 * on podIP:targetPort. HTTP ports answer JSON {service, pod, version, path}; gRPC ports serve
 * shop.Payments/Pay (shop/payments.proto).
 */
import http from 'node:http'
import { once } from 'node:events'
import grpc from '@grpc/grpc-js'
import type { MeshState, ServiceState, WorkloadState } from '../policy/state.js'
import { paymentsDefinition, type PayReply, type PayRequest } from './grpc-payments.js'

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

/** Every (workload, Service port) pair to serve, once per ip:port. */
export function appPorts (state: MeshState): AppPort[] {
  const byAddress = new Map<string, AppPort>()
  for (const service of Object.values(state.services)) {
    for (const endpoint of service.endpoints) {
      const workload = state.workloads[endpoint.workload]
      if (workload === undefined) continue
      for (const servicePort of service.ports) {
        const port = endpoint.ports[String(servicePort.port)]
        if (port === undefined) continue
        byAddress.set(`${workload.ip}:${port}`, { workload, service, port, grpc: servicePort.appProtocol === 'grpc' })
      }
    }
  }
  return [...byAddress.values()]
}

export async function startApps (state: MeshState): Promise<RunningApps> {
  const ports = appPorts(state)
  const stops = await Promise.all(ports.map((app) => app.grpc ? startGrpc(app) : startHttp(app)))
  return {
    addresses: ports.map((app) => `${app.workload.ip}:${app.port}`),
    stop: async () => { await Promise.all(stops.map((stop) => stop())) }
  }
}

function identity (app: AppPort): Omit<PayReply, 'order'> {
  return { service: app.service.name, pod: app.workload.name, version: app.workload.labels.version ?? '' }
}

async function startHttp (app: AppPort): Promise<() => Promise<void>> {
  const server = http.createServer((req, res) => {
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
