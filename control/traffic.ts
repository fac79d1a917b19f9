/**
 * Traffic from the proxies' Istio metrics, per edge (a calling workload → a Service):
 * cumulative totals read from one set of samples, and rates between two such readings.
 *
 * A Service behind a waypoint is measured at L7 (istio_requests_total and the duration
 * histogram, reporter="waypoint"); any other at L4 from the destination ztunnels
 * (istio_tcp_connections_opened_total, reporter="destination": one connection per call).
 */
import type { MetricSample } from './prometheus-text.js'

export type Layer = 'http' | 'tcp'

export interface EdgeTotals {
  /** 'namespace/name' of the calling workload (or waypoint), as the metrics name it. */
  readonly source: string
  /** Key of the Service called. */
  readonly service: string
  readonly layer: Layer
  requests: number
  errors: number
  /** Of those, over mutual TLS. */
  mtls: number
  /** Cumulative duration histogram (L7 only): upper bound in ms → requests at or under it. */
  readonly buckets: Map<number, number>
}

/** Totals by edge id (see edgeId). */
export type TrafficTotals = ReadonlyMap<string, EdgeTotals>

export interface EdgeRate {
  readonly source: string
  readonly service: string
  readonly layer: Layer
  readonly rps: number
  /** 0..1, of the calls in the interval; 0 without calls. */
  readonly errorRate: number
  /** 0..1 share of calls over mutual TLS (1 without calls: nothing seen in the clear). */
  readonly mtlsShare: number
}

export interface ServiceRate {
  readonly rps: number
  /** 0..1, undefined without calls in the interval. */
  readonly successRate?: number
  /** From the waypoint's histogram; undefined at L4 or without calls. */
  readonly p99Ms?: number
  readonly mtlsShare: number
  readonly layer: Layer
}

export function edgeId (source: string, service: string, layer: Layer): string {
  return `${layer} ${source} ${service}`
}

/** The totals in one reading of every proxy's samples. `serviceOf` maps a destination_service host to a Service key. */
export function totalsOf (samples: readonly MetricSample[], serviceOf: (host: string) => string | undefined): Map<string, EdgeTotals> {
  const totals = new Map<string, EdgeTotals>()
  const edge = (labels: Readonly<Record<string, string>>, layer: Layer): EdgeTotals | undefined => {
    const service = serviceOf(labels.destination_service ?? '')
    if (service === undefined) return undefined
    const source = `${labels.source_workload_namespace ?? 'unknown'}/${labels.source_workload ?? 'unknown'}`
    const id = edgeId(source, service, layer)
    let found = totals.get(id)
    if (found === undefined) {
      found = { source, service, layer, requests: 0, errors: 0, mtls: 0, buckets: new Map() }
      totals.set(id, found)
    }
    return found
  }
  for (const { name, labels, value } of samples) {
    if (name === 'istio_requests_total' && labels.reporter === 'waypoint') {
      const e = edge(labels, 'http')
      if (e !== undefined) count(e, value, isHttpError(labels), labels.connection_security_policy === 'mutual_tls')
    } else if (name === 'istio_request_duration_milliseconds_bucket' && labels.reporter === 'waypoint') {
      const e = edge(labels, 'http')
      const le = Number(labels.le)
      if (e !== undefined && !Number.isNaN(le)) e.buckets.set(le, (e.buckets.get(le) ?? 0) + value)
    } else if (name === 'istio_tcp_connections_opened_total' && labels.reporter === 'destination') {
      const e = edge(labels, 'tcp')
      if (e !== undefined) count(e, value, (labels.response_flags ?? '-') !== '-', labels.connection_security_policy === 'mutual_tls')
    }
  }
  return totals
}

function count (edge: EdgeTotals, value: number, error: boolean, mtls: boolean): void {
  edge.requests += value
  if (error) edge.errors += value
  if (mtls) edge.mtls += value
}

/** 5xx, no response at all (code 0), or a gRPC status other than OK. */
function isHttpError (labels: Readonly<Record<string, string>>): boolean {
  const code = Number(labels.response_code)
  const grpc = Number(labels.grpc_response_status)
  return code >= 500 || code === 0 || (Number.isInteger(grpc) && grpc > 0)
}

/** Rates per edge between two readings `seconds` apart (a counter that went back means its proxy restarted). */
export function edgeRates (previous: TrafficTotals | undefined, current: TrafficTotals, seconds: number): EdgeRate[] {
  return [...current.entries()].map(([id, now]) => {
    const delta = deltaOf(previous?.get(id), now)
    return {
      source: now.source,
      service: now.service,
      layer: now.layer,
      rps: seconds > 0 ? delta.requests / seconds : 0,
      errorRate: delta.requests > 0 ? delta.errors / delta.requests : 0,
      mtlsShare: delta.requests > 0 ? delta.mtls / delta.requests : 1
    }
  })
}

/** Per Service: its callers' rates added up, at L7 when a waypoint measures it. */
export function serviceRates (previous: TrafficTotals | undefined, current: TrafficTotals, seconds: number): Map<string, ServiceRate> {
  const sums = new Map<string, EdgeTotals>()
  for (const [id, now] of current) {
    const delta = deltaOf(previous?.get(id), now)
    const sum = sums.get(now.service)
    if (sum !== undefined && sum.layer === 'http' && now.layer === 'tcp') continue
    if (sum === undefined || (sum.layer === 'tcp' && now.layer === 'http')) {
      sums.set(now.service, { ...delta, buckets: new Map(delta.buckets) })
      continue
    }
    sum.requests += delta.requests
    sum.errors += delta.errors
    sum.mtls += delta.mtls
    for (const [le, n] of delta.buckets) sum.buckets.set(le, (sum.buckets.get(le) ?? 0) + n)
  }
  const rates = new Map<string, ServiceRate>()
  for (const [service, sum] of sums) {
    const p99 = quantile(sum.buckets, 0.99)
    rates.set(service, {
      rps: seconds > 0 ? sum.requests / seconds : 0,
      ...(sum.requests > 0 && { successRate: 1 - sum.errors / sum.requests }),
      ...(p99 !== undefined && { p99Ms: p99 }),
      mtlsShare: sum.requests > 0 ? sum.mtls / sum.requests : 1,
      layer: sum.layer
    })
  }
  return rates
}

function deltaOf (before: EdgeTotals | undefined, now: EdgeTotals): EdgeTotals {
  const restarted = before === undefined || now.requests < before.requests
  if (restarted) return now
  const buckets = new Map<number, number>()
  for (const [le, n] of now.buckets) buckets.set(le, Math.max(0, n - (before.buckets.get(le) ?? 0)))
  return {
    ...now,
    requests: now.requests - before.requests,
    errors: Math.max(0, now.errors - before.errors),
    mtls: Math.max(0, now.mtls - before.mtls),
    buckets
  }
}

/**
 * The q-quantile of a cumulative histogram, interpolated linearly inside its bucket as
 * Prometheus' histogram_quantile does; the highest finite bound when it falls in +Inf.
 */
export function quantile (buckets: ReadonlyMap<number, number>, q: number): number | undefined {
  const bounds = [...buckets.keys()].sort((a, b) => a - b)
  const total = buckets.get(Infinity) ?? (bounds.length > 0 ? buckets.get(bounds[bounds.length - 1]!)! : 0)
  if (total <= 0) return undefined
  const rank = q * total
  let lowerBound = 0
  let lowerCount = 0
  for (const bound of bounds) {
    const countAt = buckets.get(bound)!
    if (countAt >= rank) {
      if (bound === Infinity) return lowerBound
      return lowerBound + (bound - lowerBound) * (countAt > lowerCount ? (rank - lowerCount) / (countAt - lowerCount) : 1)
    }
    lowerBound = bound
    lowerCount = countAt
  }
  return lowerBound
}
