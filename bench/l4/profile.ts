/**
 * Summarises a V8 CPU profile (`node --cpu-prof`): the functions with the most self time, as
 * shares of the time the process was busy (idle samples left out).
 */
import { readFile } from 'node:fs/promises'

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string, readonly url: string, readonly lineNumber: number }
  readonly hitCount?: number
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[]
}

export interface HotFunction {
  /** `name (file:line)`, shortened. */
  readonly where: string
  /** Share of busy samples, 0..1. */
  readonly selfShare: number
}

const IDLE = '(idle)'

/** Busy share per function (with its file and line). */
export function hotFunctions (profile: CpuProfile, top: number): HotFunction[] {
  return hotspots(profile, top, describe)
}

/** Busy share per area: which file (or node internal, or V8 pseudo-frame) the self time is in. */
export function hotFiles (profile: CpuProfile, top: number): HotFunction[] {
  return hotspots(profile, top, (frame) => frame.url === '' ? `${frame.functionName || '(native)'}` : shortUrl(frame.url))
}

/** Self-time samples grouped by `keyOf`, as shares of the busy (non-idle) samples. */
function hotspots (profile: CpuProfile, top: number, keyOf: (frame: ProfileNode['callFrame']) => string): HotFunction[] {
  const hits = new Map<string, number>()
  let busy = 0
  for (const node of profile.nodes) {
    const count = node.hitCount ?? 0
    if (count === 0 || node.callFrame.functionName === IDLE) continue
    busy += count
    const key = keyOf(node.callFrame)
    hits.set(key, (hits.get(key) ?? 0) + count)
  }
  return [...hits.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([where, count]) => ({ where, selfShare: count / Math.max(1, busy) }))
}

export async function readProfile (file: string): Promise<CpuProfile> {
  return JSON.parse(await readFile(file, 'utf8')) as CpuProfile
}

function describe (frame: ProfileNode['callFrame']): string {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName
  if (frame.url === '') return name
  return `${name} (${shortUrl(frame.url)}:${frame.lineNumber + 1})`
}

function shortUrl (url: string): string {
  const dist = url.indexOf('/dist/')
  if (dist >= 0) return url.slice(dist + '/dist/'.length)
  const modules = url.lastIndexOf('/node_modules/')
  if (modules >= 0) return url.slice(modules + '/node_modules/'.length)
  return url
}
