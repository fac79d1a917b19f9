/**
 * bench/l7's results as Markdown tables (what RESULTS.md quotes). Pure: numbers in, text out.
 */
import type { CpuTime } from '../l4/processes.js'
import type { WrkResult } from '../l4/wrk.js'
import { formatCpu, formatMicros, markdownTable, totalMicros } from '../l4/report.js'

export interface L7Row {
  readonly name: string
  /** What the load goes through, in one line. */
  readonly path: string
  readonly wrk: WrkResult
  /** CPU per request of the proxy processes (undefined for the direct run). */
  readonly proxyCpu?: CpuTime
  /** CPU per request of the SOCKS5 bridge in front of ambit, counted apart. */
  readonly bridgeCpu?: CpuTime
  /** Peak resident memory of the proxy processes. */
  readonly peakRssBytes?: number
}

/** The reference of the ratio columns, as the issue states its goal against it. */
export const REFERENCE = 'nginx'
export const FLOOR = 'fastify'
export const WAYPOINT_ALONE = 'waypoint'
export const FULL_PATH = 'ambit L7'
/** The goal for the full path. */
export const GOAL_RATIO = 0.5
export const GOAL_CPU_MICROS = 100

const formatRate = (rps: number): string => Math.round(rps).toLocaleString('en-US')
const formatRatio = (ratio: number | undefined): string =>
  ratio === undefined || !Number.isFinite(ratio) ? '—' : `${ratio.toFixed(2)}×`
const formatMb = (bytes: number | undefined): string => bytes === undefined ? '—' : `${(bytes / 1024 / 1024).toFixed(0)} MB`
const ratioOf = (a: number | undefined, b: number | undefined): number | undefined => a === undefined || b === undefined ? undefined : a / b

export function throughputTable (rows: readonly L7Row[]): string {
  const reference = rows.find((r) => r.name === REFERENCE)
  const header = ['setup', 'req/s', 'p50', 'p99', 'proxy CPU/req (user + sys µs)', 'bridge CPU/req', 'peak RSS',
    `req/s vs ${REFERENCE}`, `CPU/req vs ${REFERENCE}`, 'errors']
  const body = rows.map((r) => [
    `${r.name}: ${r.path}`,
    formatRate(r.wrk.requestsPerSecond),
    formatMicros(r.wrk.p50Micros),
    formatMicros(r.wrk.p99Micros),
    formatCpu(r.proxyCpu),
    formatMicros(totalMicros(r.bridgeCpu)),
    formatMb(r.peakRssBytes),
    formatRatio(ratioOf(r.wrk.requestsPerSecond, reference?.wrk.requestsPerSecond)),
    formatRatio(ratioOf(totalMicros(r.proxyCpu), totalMicros(reference?.proxyCpu))),
    String(r.wrk.errors)
  ])
  return markdownTable(header, body, [false, true, true, true, true, true, true, true, true, true])
}

/** The floor and goal, each with the measured value and whether it is met. */
export function verdictTable (rows: readonly L7Row[]): string {
  const find = (name: string): L7Row | undefined => rows.find((r) => r.name === name)
  const lines: string[][] = []
  const add = (goal: string, value: string, met: boolean): void => { lines.push([goal, value, met ? 'yes' : 'no']) }
  const waypoint = find(WAYPOINT_ALONE)
  const fastify = find(FLOOR)
  const reference = find(REFERENCE)
  const full = find(FULL_PATH)
  if (waypoint !== undefined && fastify !== undefined) {
    const ratio = waypoint.wrk.requestsPerSecond / fastify.wrk.requestsPerSecond
    add(`floor: waypoint alone req/s ≥ bare ${FLOOR} proxy's`, formatRatio(ratio), ratio >= 1)
    const [w, f] = [totalMicros(waypoint.proxyCpu), totalMicros(fastify.proxyCpu)]
    if (w !== undefined && f !== undefined) add(`floor: waypoint alone CPU/req ≤ bare ${FLOOR} proxy's`, `${formatMicros(w)} vs ${formatMicros(f)}`, w <= f)
  }
  if (full !== undefined && reference !== undefined) {
    const ratio = full.wrk.requestsPerSecond / reference.wrk.requestsPerSecond
    add(`goal: full L7 path req/s ≥ ${GOAL_RATIO}× ${REFERENCE} (with the bridge in front)`, formatRatio(ratio), ratio >= GOAL_RATIO)
  }
  const fullCpu = totalMicros(full?.proxyCpu)
  if (fullCpu !== undefined) add(`goal: full L7 path CPU/req < ${GOAL_CPU_MICROS} µs (both ztunnels + waypoint; bridge apart)`, formatMicros(fullCpu), fullCpu < GOAL_CPU_MICROS)
  return markdownTable(['goal', 'measured', 'met'], lines, [false, true, false])
}
