/**
 * `ambit up --demo`: the sample's apps, a load generator through the ztunnels, and a summary
 * on stdout every 2 s built from the client's samples and the ztunnels' TCP metrics.
 */
import type { Counter } from 'prom-client'
import type { MeshState } from '../policy/state.js'
import type { Ztunnel } from '../ztunnel/ztunnel.js'
import { ResponseFlags } from '../ztunnel/metrics.js'
import { startApps } from './runner.js'
import { LoadGenerator, type CallSample } from './load.js'
import { formatSummary, type ServiceWindow } from './summary.js'

const SUMMARY_EVERY_MS = 2_000

export interface Demo {
  stop (): Promise<void>
}

export async function startDemo (state: MeshState, ztunnels: readonly Ztunnel[]): Promise<Demo> {
  const apps = await startApps(state)
  const load = await LoadGenerator.start(state)
  let previous = await connectionTotals(ztunnels)
  let printing = Promise.resolve()
  const timer = setInterval(() => {
    printing = printing.then(async () => {
      const totals = await connectionTotals(ztunnels)
      console.log(formatSummary(serviceWindows(state, load.take(), totals, previous), SUMMARY_EVERY_MS) + '\n')
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

/** Cumulative counts per destination_service hostname, as the destination ztunnels report them. */
interface ConnectionTotals { opened: number, mutualTls: number, denied: number }

async function connectionTotals (ztunnels: readonly Ztunnel[]): Promise<Map<string, ConnectionTotals>> {
  const totals = new Map<string, ConnectionTotals>()
  for (const ztunnel of ztunnels) {
    const opened = ztunnel.metrics.registry.getSingleMetric('istio_tcp_connections_opened_total') as Counter | undefined
    for (const { labels, value } of (await opened?.get())?.values ?? []) {
      if (labels.reporter !== 'destination') continue
      const key = String(labels.destination_service)
      const entry = totals.get(key) ?? { opened: 0, mutualTls: 0, denied: 0 }
      entry.opened += value
      if (labels.connection_security_policy === 'mutual_tls') entry.mutualTls += value
      if (labels.response_flags === ResponseFlags.denied) entry.denied += value
      totals.set(key, entry)
    }
  }
  return totals
}

function serviceWindows (state: MeshState, samples: readonly CallSample[], now: Map<string, ConnectionTotals>, before: Map<string, ConnectionTotals>): ServiceWindow[] {
  const called = new Set(samples.map((s) => s.service))
  return Object.values(state.services).filter((service) => called.has(service.name)).map((service) => {
    const mine = samples.filter((s) => s.service === service.name)
    const hostname = service.hostnames[0] ?? ''
    const delta = (field: keyof ConnectionTotals): number => (now.get(hostname)?.[field] ?? 0) - (before.get(hostname)?.[field] ?? 0)
    return {
      service: service.name,
      latenciesMs: mine.map((s) => s.latencyMs),
      succeeded: mine.filter((s) => s.ok).length,
      connections: delta('opened'),
      mutualTls: delta('mutualTls'),
      denied: delta('denied')
    }
  })
}
