/**
 * Runs wrk and reads its report. Two load shapes:
 *  - closed loop: every connection sends its next request as soon as the last answer arrived,
 *    which finds the throughput ceiling;
 *  - fixed rate: a Lua script paces the requests (wrk2 is not packaged), for latency at a load
 *    the proxy can carry.
 */
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface WrkOptions {
  readonly url: string
  readonly connections: number
  readonly threads: number
  readonly durationSeconds: number
  /** A new TCP connection per request (`Connection: close`). */
  readonly newConnectionPerRequest?: boolean
  /** A wrk Lua script file. */
  readonly script?: string
  /** The network namespace wrk runs in (a pod's), when not the bench's own. */
  readonly netns?: string
}

export interface WrkResult {
  readonly requests: number
  readonly seconds: number
  readonly requestsPerSecond: number
  readonly p50Micros: number
  readonly p99Micros: number
  /** Socket errors plus non-2xx/3xx answers. */
  readonly errors: number
}

export async function runWrk (options: WrkOptions): Promise<WrkResult> {
  const args = [
    `-t${options.threads}`, `-c${options.connections}`, `-d${options.durationSeconds}s`, '--latency', '--timeout', '5s',
    ...(options.newConnectionPerRequest === true ? ['-H', 'Connection: close'] : []),
    ...(options.script !== undefined ? ['-s', options.script] : []),
    options.url
  ]
  const [command, argv] = options.netns === undefined ? ['wrk', args] : ['ip', ['netns', 'exec', options.netns, 'wrk', ...args]]
  const { stdout } = await run(command, argv, { timeout: (options.durationSeconds + 30) * 1000 })
  return parseWrkReport(stdout)
}

/** Reads the numbers out of wrk's text report (run with --latency). */
export function parseWrkReport (text: string): WrkResult {
  const completed = /(\d+) requests in ([\d.]+)(us|ms|s|m|h),/.exec(text)
  if (completed === null) throw new Error(`not a wrk report:\n${text}`)
  const requests = Number(completed[1])
  const seconds = toMicros(completed[2]!, completed[3]!) / 1e6
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text)
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text)
  const errors = (socketErrors === null ? 0 : socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0)) +
    (non2xx === null ? 0 : Number(non2xx[1]))
  return {
    requests,
    seconds,
    requestsPerSecond: requests / seconds,
    p50Micros: percentile(text, 50),
    p99Micros: percentile(text, 99),
    errors
  }
}

function percentile (text: string, p: number): number {
  const match = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm').exec(text)
  if (match === null) throw new Error(`wrk report has no ${p}% latency (was --latency given?):\n${text}`)
  return toMicros(match[1]!, match[2]!)
}

const MICROS_PER_UNIT: Readonly<Record<string, number>> = { us: 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6 }

function toMicros (value: string, unit: string): number {
  const scale = MICROS_PER_UNIT[unit]
  if (scale === undefined) throw new Error(`unknown wrk time unit ${unit}`)
  return Number(value) * scale
}

/**
 * A wrk script that spreads `requestsPerSecond` evenly over time (for one wrk thread). Each
 * request, on whichever connection is free, takes the next free time slot; wrk's delay() hook
 * waits until then. wrk measures latency from the moment a request is written, so the wait is
 * not counted. delay() has millisecond resolution, so slots are kept in fractional ms and a
 * request may go up to 1 ms early; the rate over a run is exact. LuaJIT's ffi gives the clock.
 */
export function pacingScript (requestsPerSecond: number): string {
  return `-- written by bench/l4: paces requests at ${requestsPerSecond}/s
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } l4_timespec;
int clock_gettime(int clock_id, l4_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("l4_timespec")
local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = 1000 / ${requestsPerSecond}
local next_slot = nil
function delay()
  local now = now_ms()
  -- A slot in the past is not made up for with a burst: the schedule restarts from now.
  if next_slot == nil or next_slot < now then next_slot = now end
  local wait = next_slot - now
  next_slot = next_slot + interval
  return wait
end
`
}

export async function writePacingScript (dir: string, requestsPerSecond: number): Promise<string> {
  const file = join(dir, `pace-${requestsPerSecond}.lua`)
  await writeFile(file, pacingScript(requestsPerSecond))
  return file
}
