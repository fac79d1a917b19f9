/**
 * bench/l4's results as Markdown tables (what RESULTS.md quotes). Pure: numbers in, text out.
 */
import type { WrkResult } from './wrk.js'
import type { CpuTime } from './processes.js'

export type Mode = 'keep-alive' | 'new connection per request' | 'fixed rate'

export interface Measurement {
  readonly wrk: WrkResult
  /** CPU per request of the proxy processes (for ambit: the two ztunnel processes). */
  readonly proxyCpu?: CpuTime
}

export const totalMicros = (cpu: CpuTime | undefined): number | undefined =>
  cpu === undefined ? undefined : cpu.userMicros + cpu.systemMicros

/** `36 µs (14 user + 22 sys)`. */
export function formatCpu (cpu: CpuTime | undefined): string {
  if (cpu === undefined) return '—'
  return `${formatMicros(totalMicros(cpu))} (${cpu.userMicros.toFixed(0)} + ${cpu.systemMicros.toFixed(0)})`
}

export interface Setup {
  readonly name: string
  /** What the load goes through, in one line. */
  readonly path: string
}

export interface Row {
  readonly setup: Setup
  readonly mode: Mode
  readonly result: Measurement
}

export interface MemoryRow {
  readonly process: string
  readonly idleRssBytes: number
  readonly peakRssBytes: number
}

export const BASELINE = 'haproxy'
export const DIRECT = 'direct'

export function markdownTable (header: readonly string[], rows: readonly (readonly string[])[], rightAligned: readonly boolean[]): string {
  const rule = rightAligned.map((right) => (right ? '---:' : '---'))
  return [header, rule, ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n')
}

export function formatMicros (micros: number | undefined): string {
  if (micros === undefined || !Number.isFinite(micros)) return '—'
  const size = Math.abs(micros)
  if (size >= 1000) return `${(micros / 1000).toFixed(2)} ms`
  return `${micros.toFixed(size >= 100 ? 0 : 1)} µs`
}

const formatRate = (rps: number): string => Math.round(rps).toLocaleString('en-US')
const formatRatio = (ratio: number | undefined): string =>
  ratio === undefined || !Number.isFinite(ratio) ? '—' : `${ratio.toFixed(2)}×`
const formatMb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`

function baselineOf (rows: readonly Row[], mode: Mode): Measurement | undefined {
  return rows.find((r) => r.mode === mode && r.setup.name === BASELINE)?.result
}

/** Closed-loop throughput: one row per setup and mode, with ratios against haproxy. */
export function throughputTable (rows: readonly Row[]): string {
  const header = ['setup', 'load', 'req/s', 'p50', 'p99', 'proxy CPU/req (user + sys µs)',
    `req/s vs ${BASELINE}`, `CPU/req vs ${BASELINE}`, 'errors']
  const body = rows.filter((r) => r.mode !== 'fixed rate').map((r) => {
    const base = baselineOf(rows, r.mode)
    const { wrk, proxyCpu } = r.result
    const proxyMicros = totalMicros(proxyCpu)
    const baseMicros = totalMicros(base?.proxyCpu)
    return [
      `${r.setup.name}: ${r.setup.path}`,
      r.mode,
      formatRate(wrk.requestsPerSecond),
      formatMicros(wrk.p50Micros),
      formatMicros(wrk.p99Micros),
      formatCpu(proxyCpu),
      formatRatio(base === undefined ? undefined : wrk.requestsPerSecond / base.wrk.requestsPerSecond),
      formatRatio(baseMicros === undefined || proxyMicros === undefined ? undefined : proxyMicros / baseMicros),
      String(wrk.errors)
    ]
  })
  return markdownTable(header, body, [false, false, true, true, true, true, true, true, true])
}

/** Latency at a fixed rate, with the p99 each setup adds to the direct path. */
export function fixedRateTable (rows: readonly Row[]): string {
  const fixed = rows.filter((r) => r.mode === 'fixed rate')
  const direct = fixed.find((r) => r.setup.name === DIRECT)?.result.wrk
  const header = ['setup', 'req/s achieved', 'p50', 'p99', 'added p50', 'added p99', 'proxy CPU/req', 'errors']
  const body = fixed.map((r) => {
    const { wrk } = r.result
    return [
      `${r.setup.name}: ${r.setup.path}`,
      formatRate(wrk.requestsPerSecond),
      formatMicros(wrk.p50Micros),
      formatMicros(wrk.p99Micros),
      direct === undefined ? '—' : formatMicros(wrk.p50Micros - direct.p50Micros),
      direct === undefined ? '—' : formatMicros(wrk.p99Micros - direct.p99Micros),
      formatMicros(totalMicros(r.result.proxyCpu)),
      String(wrk.errors)
    ]
  })
  return markdownTable(header, body, [false, true, true, true, true, true, true, true])
}

export function memoryTable (rows: readonly MemoryRow[]): string {
  return markdownTable(['process', 'RSS before load', 'peak RSS'],
    rows.map((r) => [r.process, formatMb(r.idleRssBytes), formatMb(r.peakRssBytes)]), [false, true, true])
}

/** The floor and goals, each with the measured value and whether it is met. */
export function goalsTable (rows: readonly Row[], rate: number): string {
  const find = (name: string, mode: Mode): Measurement | undefined => rows.find((r) => r.setup.name === name && r.mode === mode)?.result
  const lines: string[][] = []
  const add = (goal: string, value: string, met: boolean | undefined): void => {
    lines.push([goal, value, met === undefined ? '—' : met ? 'yes' : 'no'])
  }
  for (const mode of ['keep-alive', 'new connection per request'] as const) {
    const ambit = find('ambit', mode)
    const haproxy = find(BASELINE, mode)
    if (ambit === undefined || haproxy === undefined) continue
    const ratio = ambit.wrk.requestsPerSecond / haproxy.wrk.requestsPerSecond
    add(`${mode}: req/s ≥ 0.75× haproxy (floor)`, formatRatio(ratio), ratio >= 0.75)
    add(`${mode}: req/s ≥ 1.0× haproxy`, formatRatio(ratio), ratio >= 1)
    const ambitCpu = totalMicros(ambit.proxyCpu)
    const haproxyCpu = totalMicros(haproxy.proxyCpu)
    if (ambitCpu !== undefined && haproxyCpu !== undefined) {
      add(`${mode}: ztunnel pair CPU/req ≤ haproxy pair's`, `${formatMicros(ambitCpu)} vs ${formatMicros(haproxyCpu)}`, ambitCpu <= haproxyCpu)
    }
    if (mode === 'keep-alive' && ambitCpu !== undefined) add('keep-alive: ztunnel pair CPU/req < 60 µs', formatMicros(ambitCpu), ambitCpu < 60)
  }
  const direct = find(DIRECT, 'fixed rate')
  for (const name of ['ambit', BASELINE]) {
    const fixed = find(name, 'fixed rate')
    if (direct === undefined || fixed === undefined) continue
    const added = fixed.wrk.p99Micros - direct.wrk.p99Micros
    add(`${name}: added p99 ≤ 0.2 ms at ${rate} req/s`, formatMicros(added), name === 'ambit' ? added <= 200 : undefined)
  }
  return markdownTable(['goal', 'measured', 'met'], lines, [false, true, false])
}
