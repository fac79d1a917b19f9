/**
 * The demo's live summary: one line per destination Service over the last window. Pure
 * formatting; examples/demo.ts collects the numbers.
 */

export interface ServiceWindow {
  readonly service: string
  /** Client-side latencies (ms) of the calls finished in the window. */
  readonly latenciesMs: readonly number[]
  readonly succeeded: number
  /** Connections the destination ztunnels opened for it in the window, and how many were mutual TLS. */
  readonly connections: number
  readonly mutualTls: number
  /** Connections refused by authorization policy (response_flags UAEX). */
  readonly denied: number
}

const COLUMNS = ['service', 'req/s', 'success', 'p99', 'mTLS', 'denied'] as const
const WIDTHS = [10, 7, 8, 9, 6, 6] as const

export function formatSummary (windows: readonly ServiceWindow[], windowMs: number): string {
  const rows = windows.map((w) => [
    w.service,
    (w.latenciesMs.length / (windowMs / 1000)).toFixed(1),
    percent(w.succeeded, w.latenciesMs.length),
    w.latenciesMs.length === 0 ? '-' : `${p99(w.latenciesMs).toFixed(1)}ms`,
    percent(w.mutualTls, w.connections),
    String(w.denied)
  ])
  return [COLUMNS, ...rows].map((cells) => cells.map((cell, i) => cell.padEnd(WIDTHS[i]!)).join(' ').trimEnd()).join('\n')
}

function percent (part: number, whole: number): string {
  return whole === 0 ? '-' : `${Math.round(100 * part / whole)}%`
}

/** The nearest-rank 99th percentile. */
export function p99 (values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.max(0, Math.ceil(0.99 * sorted.length) - 1)] ?? 0
}
