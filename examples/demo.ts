/**
 * `ambit up --demo`: the sample's apps, a load generator through the ztunnels, and a summary
 * on stdout every 2 s built from the callers' samples and the ztunnels' TCP metrics.
 */
import type { Counter } from 'prom-client'
import type { MeshState, ServiceState } from '../policy/state.js'
import type { Ztunnel } from '../ztunnel/ztunnel.js'
import { startApps } from './runner.js'
import { LoadGenerator } from './load.js'
import { formatSummary, serviceWindow, type Traffic } from './summary.js'

const SUMMARY_EVERY_MS = 2_000

export interface Demo {
  stop (): Promise<void>
}

export async function startDemo (state: MeshState, ztunnels: readonly Ztunnel[]): Promise<Demo> {
  const apps = await startApps(state)
  const load = await LoadGenerator.start(state)
  let previous = await trafficTotals(ztunnels)
  let printing = Promise.resolve()
  const timer = setInterval(() => {
    printing = printing.then(async () => {
      const totals = await trafficTotals(ztunnels)
      const samples = load.take()
      const called = Object.values(state.services).filter((service) => samples.some((s) => s.service === service.name))
      const windows = called.map((service) =>
        serviceWindow(service.name, samples, versionsOf(state, service), trafficDelta(service, totals, previous)))
      console.log(formatSummary(windows, SUMMARY_EVERY_MS) + '\n')
      previous = totals
    }).catch(() => { /* a failed read skips one summary */ })
  }, SUMMARY_EVERY_MS)
  return {
    stop: async () => {
      clearInterval(timer)
      await printing
      await load.stop()
      await apps.stop()
    }
  }
}

/** The `version` labels of the Service's pods, for its canary split. */
function versionsOf (state: MeshState, service: ServiceState): string[] {
  const versions = service.endpoints.map((e) => state.workloads[e.workload]?.labels.version ?? '')
  return [...new Set(versions.filter((v) => v !== ''))].sort()
}

/**
 * Cumulative bytes (both directions) per destination_service hostname, as the destination
 * ztunnels report them. Bytes, not connections: the waypoint and gRPC keep their connections
 * open, so a window may open none while plenty of traffic flows.
 */
async function trafficTotals (ztunnels: readonly Ztunnel[]): Promise<Map<string, Traffic>> {
  const totals = new Map<string, Traffic>()
  for (const ztunnel of ztunnels) {
    for (const name of ['istio_tcp_received_bytes_total', 'istio_tcp_sent_bytes_total']) {
      const counter = ztunnel.metrics.registry.getSingleMetric(name) as Counter | undefined
      for (const { labels, value } of (await counter?.get())?.values ?? []) {
        if (labels.reporter !== 'destination') continue
        const key = String(labels.destination_service)
        const entry = totals.get(key) ?? { bytes: 0, mutualTlsBytes: 0 }
        const mutualTls = labels.connection_security_policy === 'mutual_tls' ? value : 0
        totals.set(key, { bytes: entry.bytes + value, mutualTlsBytes: entry.mutualTlsBytes + mutualTls })
      }
    }
  }
  return totals
}

function trafficDelta (service: ServiceState, now: Map<string, Traffic>, before: Map<string, Traffic>): Traffic {
  const hostname = service.hostnames[0] ?? ''
  const delta = (field: keyof Traffic): number => (now.get(hostname)?.[field] ?? 0) - (before.get(hostname)?.[field] ?? 0)
  return { bytes: delta('bytes'), mutualTlsBytes: delta('mutualTlsBytes') }
}
