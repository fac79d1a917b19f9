/**
 * The live mesh dashboard on the controller's status port: reads every proxy's metrics every
 * couple of seconds while a page watches (every 15 s otherwise, so charts have some history when
 * one opens, without the controller scraping every node every 2 s for nobody), keeps a few
 * minutes of history per Service, and serves
 *   GET /              the page (static ES modules and CSS from control/dashboard/, no CDN)
 *   GET /api/mesh      the latest snapshot (mesh-snapshot.ts), JSON
 *   GET /api/events    Server-Sent Events: a `mesh` event with each new snapshot
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extname, join, normalize, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import type { MeshState } from '../policy/state.js'
import type { IssuedCertificates } from './issued-certificates.js'
import type { MetricsSource } from './metrics-sources.js'
import { buildSnapshot, type MeshSnapshot, type ServicePoint, type SourceStatus } from './mesh-snapshot.js'
import { parsePrometheusText, type MetricSample } from './prometheus-text.js'
import { edgeRates, serviceRates, totalsOf, type TrafficTotals } from './traffic.js'
import { ruleHitsOf } from './policy-hits.js'

export const DEFAULT_REFRESH_MS = 2_000
/** How often proxies are read while no page watches (no event stream open, no /api/mesh call lately). */
export const DEFAULT_IDLE_REFRESH_MS = 15_000
/** A /api/mesh call counts as a page watching for this long. */
const VIEWED_MS = 30_000
export const DEFAULT_HISTORY_MS = 5 * 60_000

/**
 * The page's files: control/dashboard/ beside this module when run from the sources (or from
 * an image that copies them next to the code), else the repository's when run from dist/.
 */
export const DASHBOARD_DIR = [
  fileURLToPath(new URL('dashboard/', import.meta.url)),
  fileURLToPath(new URL('../../control/dashboard/', import.meta.url))
].find((dir) => existsSync(join(dir, 'index.html'))) ?? fileURLToPath(new URL('dashboard/', import.meta.url))

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml'
}

export interface DashboardOptions {
  readonly state: () => MeshState | undefined
  readonly revision: () => number
  /** Asked on every refresh: the proxies change with the state. */
  readonly sources: () => readonly MetricsSource[]
  readonly certificates: IssuedCertificates
  readonly refreshMs?: number
  readonly idleRefreshMs?: number
  readonly historyMs?: number
  readonly logger?: Logger
}

interface SourceReading {
  samples: readonly MetricSample[]
  status: SourceStatus
}

export class Dashboard {
  private timer: NodeJS.Timeout | undefined
  /** The pending timer is the slow, no-one-watching one. */
  private waitingIdle = false
  private lastViewed = 0
  private stopped = false
  private sequence = 0
  private latest: MeshSnapshot | undefined
  private previous: { readonly at: number, readonly totals: TrafficTotals } | undefined
  private readonly readings = new Map<string, SourceReading>()
  private readonly history = new Map<string, ServicePoint[]>()
  private readonly clients = new Set<ServerResponse>()

  constructor (private readonly options: DashboardOptions) {}

  start (): void {
    void this.refreshLoop()
  }

  stop (): void {
    this.stopped = true
    clearTimeout(this.timer)
    for (const client of this.clients) client.end()
    this.clients.clear()
  }

  /** The latest snapshot (a first one is built at once if none was yet). */
  async snapshot (): Promise<MeshSnapshot> {
    return this.latest ?? await this.refresh()
  }

  /** Answers the dashboard's paths; false for any other. */
  async handle (req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    if (path === '/api/mesh') {
      this.lastViewed = Date.now()
      this.quicken()
      send(res, 200, 'application/json', JSON.stringify(await this.snapshot()))
      return true
    }
    if (path === '/api/events') {
      await this.subscribe(req, res)
      return true
    }
    const file = staticFile(path)
    if (file === undefined) return false
    const body = await readFile(file).catch(() => undefined)
    if (body === undefined) return false
    send(res, 200, CONTENT_TYPES[extname(file)] ?? 'application/octet-stream', body)
    return true
  }

  private async subscribe (req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
    res.write(`retry: ${this.options.refreshMs ?? DEFAULT_REFRESH_MS}\n\n`)
    this.clients.add(res)
    req.once('close', () => this.clients.delete(res))
    this.quicken()
    push(res, await this.snapshot())
  }

  /** A page watches now: a refresh waiting at the idle pace happens at once instead. */
  private quicken (): void {
    if (!this.waitingIdle || this.stopped) return
    clearTimeout(this.timer)
    this.schedule(0)
  }

  private watched (): boolean {
    return this.clients.size > 0 || Date.now() - this.lastViewed < VIEWED_MS
  }

  private async refreshLoop (): Promise<void> {
    if (this.stopped) return
    try {
      await this.refresh()
    } catch (err) {
      this.options.logger?.warn({ err: (err as Error).message }, 'dashboard refresh failed')
    }
    if (this.stopped) return
    if (this.watched()) this.schedule(this.options.refreshMs ?? DEFAULT_REFRESH_MS)
    else this.schedule(this.options.idleRefreshMs ?? DEFAULT_IDLE_REFRESH_MS, true)
  }

  private schedule (ms: number, idle = false): void {
    this.waitingIdle = idle
    this.timer = setTimeout(() => { void this.refreshLoop() }, ms)
    this.timer.unref()
  }

  /** Reads every source, computes rates since the last reading, and pushes the new snapshot. */
  private async refresh (): Promise<MeshSnapshot> {
    const state = this.options.state()
    await this.readSources()
    const now = Date.now()
    const snapshot = state === undefined ? emptySnapshot(++this.sequence, now) : this.measure(state, now)
    this.latest = snapshot
    for (const client of this.clients) push(client, snapshot)
    return snapshot
  }

  private measure (state: MeshState, now: number): MeshSnapshot {
    const byHost = new Map(Object.values(state.services).flatMap((s) => s.hostnames.map((h) => [h, s.key] as const)))
    const samples = [...this.readings.values()].flatMap((r) => r.samples)
    const totals = totalsOf(samples, (host) => byHost.get(host))
    const seconds = this.previous === undefined ? 0 : (now - this.previous.at) / 1000
    const edges = edgeRates(this.previous?.totals, totals, seconds)
    const services = serviceRates(this.previous?.totals, totals, seconds)
    // The first reading has nothing to take a rate against: it only starts the history.
    if (seconds > 0) this.record(now, services)
    this.previous = { at: now, totals }
    return buildSnapshot({
      state,
      revision: this.options.revision(),
      edges,
      services,
      history: this.history,
      ruleHits: ruleHitsOf(samples),
      certificates: this.options.certificates,
      sources: [...this.readings.values()].map((r) => r.status),
      now,
      sequence: ++this.sequence
    })
  }

  private record (now: number, services: ReturnType<typeof serviceRates>): void {
    const oldest = now - (this.options.historyMs ?? DEFAULT_HISTORY_MS)
    for (const [key, rate] of services) {
      const points = this.history.get(key) ?? []
      points.push({
        t: now,
        rps: Math.round(rate.rps * 100) / 100,
        ...(rate.successRate !== undefined && { successRate: Math.round(rate.successRate * 10_000) / 10_000 }),
        ...(rate.p99Ms !== undefined && { p99Ms: Math.round(rate.p99Ms * 100) / 100 })
      })
      while (points.length > 0 && points[0]!.t < oldest) points.shift()
      this.history.set(key, points)
    }
  }

  /** A source that fails keeps its last good samples and is marked stale. */
  private async readSources (): Promise<void> {
    const sources = this.options.sources()
    const names = new Set(sources.map((s) => s.name))
    for (const name of this.readings.keys()) if (!names.has(name)) this.readings.delete(name)
    await Promise.all(sources.map(async (source) => {
      const known = this.readings.get(source.name)
      try {
        const samples = parsePrometheusText(await source.read())
        this.readings.set(source.name, { samples, status: { name: source.name, stale: false, lastSuccess: Date.now() } })
      } catch (err) {
        this.readings.set(source.name, {
          samples: known?.samples ?? [],
          status: { ...known?.status, name: source.name, stale: true, error: (err as Error).message }
        })
      }
    }))
  }
}

/** The file under DASHBOARD_DIR a page path names ('/' is index.html); undefined outside it. */
function staticFile (path: string): string | undefined {
  const relative = path === '/' ? 'index.html' : path.replace(/^\/+/, '')
  if (!(extname(relative) in CONTENT_TYPES)) return undefined
  const file = normalize(join(DASHBOARD_DIR, relative))
  return file.startsWith(DASHBOARD_DIR.endsWith(sep) ? DASHBOARD_DIR : DASHBOARD_DIR + sep) ? file : undefined
}

function push (client: ServerResponse, snapshot: MeshSnapshot): void {
  client.write(`event: mesh\nid: ${snapshot.sequence}\ndata: ${JSON.stringify(snapshot)}\n\n`)
}

function send (res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
  res.end(body)
}

function emptySnapshot (sequence: number, now: number): MeshSnapshot {
  return {
    sequence, time: new Date(now).toISOString(), revision: 0,
    totals: { rps: 0, services: 0, workloads: 0 },
    graph: { nodes: [], edges: [] },
    services: [], policies: [], waypoints: [], routes: [], certificates: [], sources: []
  }
}
