/**
 * The demo's live summary: one line per destination Service over the last window. Pure:
 * examples/demo.ts collects the callers' samples and the ztunnels' byte counts.
 */
import type { CallSample } from './load.js'

export interface ServiceWindow {
  readonly service: string
  /** Client-side latencies (ms) of the calls finished in the window. */
  readonly latenciesMs: readonly number[]
  readonly succeeded: number
  /** Calls refused by authorization policy, as the callers saw them. */
  readonly denied: number
  /** Calls answered by a retry: a try failed, the waypoint tried again, the caller never saw the failure. */
  readonly retried: number
  /** Answered calls per version of the answering pods (0 for a version that answered none); empty when the pods have no version. */
  readonly versions: Readonly<Record<string, number>>
  /** Bytes the destination ztunnels carried for the Service in the window, and how many in mutual TLS. */
  readonly bytes: number
  readonly mutualTlsBytes: number
}

/** The destination ztunnels' view of a Service's traffic in the window. */
export interface Traffic {
  readonly bytes: number
  readonly mutualTlsBytes: number
}

/** One Service's window from its callers' samples; `versions` are the versions its pods run. */
export function serviceWindow (service: string, samples: readonly CallSample[], versions: readonly string[], traffic: Traffic): ServiceWindow {
  const mine = samples.filter((s) => s.service === service)
  const answered = mine.filter((s) => s.outcome === 'ok')
  return {
    service,
    latenciesMs: mine.map((s) => s.latencyMs),
    succeeded: answered.length,
    denied: mine.filter((s) => s.outcome === 'denied').length,
    retried: answered.filter((s) => s.retried === true).length,
    versions: Object.fromEntries(versions.map((v) => [v, answered.filter((s) => s.version === v).length])),
    ...traffic
  }
}

const COLUMNS = ['service', 'req/s', 'success', 'p99', 'mTLS', 'denied', 'retried', 'versions'] as const
const WIDTHS = [10, 7, 8, 9, 6, 7, 8, 0] as const

export function formatSummary (windows: readonly ServiceWindow[], windowMs: number): string {
  const rows = windows.map((w) => [
    w.service,
    (w.latenciesMs.length / (windowMs / 1000)).toFixed(1),
    percent(w.succeeded, w.latenciesMs.length),
    w.latenciesMs.length === 0 ? '-' : `${p99(w.latenciesMs).toFixed(1)}ms`,
    percent(w.mutualTlsBytes, w.bytes),
    String(w.denied),
    String(w.retried),
    split(w.versions)
  ])
  return [COLUMNS, ...rows].map((cells) => cells.map((cell, i) => cell.padEnd(WIDTHS[i]!)).join(' ').trimEnd()).join('\n')
}

/** 'v1 90% / v2 10%': each version's share of the answered calls, by version name. */
function split (versions: Readonly<Record<string, number>>): string {
  const entries = Object.entries(versions).sort(([a], [b]) => a.localeCompare(b))
  const total = entries.reduce((sum, [, count]) => sum + count, 0)
  if (total === 0) return '-'
  return entries.map(([version, count]) => `${version} ${percent(count, total)}`).join(' / ')
}

function percent (part: number, whole: number): string {
  return whole === 0 ? '-' : `${Math.round(100 * part / whole)}%`
}

/** The nearest-rank 99th percentile. */
export function p99 (values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.max(0, Math.ceil(0.99 * sorted.length) - 1)] ?? 0
}
