/**
 * The waypoint's HTTP metrics, with Istio's standard names and labels
 * (istio_requests_total, istio_request_duration_milliseconds, istio_request_bytes,
 * istio_response_bytes; reporter="waypoint"), so Istio dashboards work unchanged.
 *
 * These four are kept here rather than in prom-client's Counter and Histogram: those hash and
 * validate all 13 labels on each update, four times per request (5 µs a request, bench/l7);
 * here a request finds its label set once. The registry still serves them, in the same text.
 */
import { Counter, Registry, type Metric } from 'prom-client'
import { registerProcessMetrics } from '../proxy/process-metrics.js'
import { stateGauges, type StateGauges } from '../proxy/state-metrics.js'
import { RuleHits } from '../proxy/rule-hits.js'

export const HTTP_LABELS = [
  'reporter', 'source_workload', 'source_workload_namespace', 'source_principal',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_service',
  'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy'
] as const

export type HttpLabels = Record<typeof HTTP_LABELS[number], string>

/** Istio's default request-duration buckets, in milliseconds. */
const DURATION_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000]
const SIZE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000]

export class WaypointMetrics {
  readonly registry = new Registry()
  /** Every label set seen, by its values joined (seriesKey). */
  private readonly series = new Map<string, HttpSeries>()
  readonly rateLimitFailOpen: Counter<'destination_service'>
  readonly outlierEjections: Counter<'destination_service'>
  readonly ruleHits: RuleHits
  readonly state: StateGauges

  constructor (waypoint: string) {
    this.registry.setDefaultLabels({ waypoint })
    const registers = [this.registry]
    const all = (): Iterable<HttpSeries> => this.series.values()
    for (const metric of [
      counterOf('istio_requests_total', 'Requests handled by the waypoint', all),
      histogramOf('istio_request_duration_milliseconds', 'Request duration in milliseconds', all, (s) => s.duration),
      histogramOf('istio_request_bytes', 'Request sizes in bytes (headers and body)', all, (s) => s.requestBytes),
      histogramOf('istio_response_bytes', 'Response sizes in bytes (headers and body)', all, (s) => s.responseBytes)
    ]) {
      // prom-client's types name only its own classes; its registry reads any metric through
      // name, help, type, aggregator and get().
      this.registry.registerMetric(metric as unknown as Metric)
    }
    this.rateLimitFailOpen = new Counter({ name: 'ambit_ratelimit_fail_open_total', help: 'Requests let through because the global rate limit store was unreachable', labelNames: ['destination_service'], registers })
    this.outlierEjections = new Counter({ name: 'ambit_outlier_ejections_total', help: 'Endpoints ejected by outlier detection', labelNames: ['destination_service'], registers })
    this.ruleHits = new RuleHits(this.registry)
    this.state = stateGauges(this.registry)
    registerProcessMetrics(this.registry)
  }

  request (labels: HttpLabels, durationMs: number, requestBytes: number, responseBytes: number): void {
    const key = seriesKey(labels)
    let series = this.series.get(key)
    if (series === undefined) {
      series = new HttpSeries(labels)
      this.series.set(key, series)
    }
    series.requests++
    series.duration.observe(durationMs)
    series.requestBytes.observe(requestBytes)
    series.responseBytes.observe(responseBytes)
  }
}

/** One label set's share of the four metrics. */
class HttpSeries {
  requests = 0
  readonly duration = new Buckets(DURATION_BUCKETS)
  readonly requestBytes = new Buckets(SIZE_BUCKETS)
  readonly responseBytes = new Buckets(SIZE_BUCKETS)

  constructor (readonly labels: HttpLabels) {}
}

/** A histogram's counts for one label set: per bucket (not cumulative), then sum and count. */
class Buckets {
  /** counts[i]: observations ≤ bounds[i] and > bounds[i - 1]; the ones above every bound are only in `count`. */
  readonly counts: number[]
  sum = 0
  count = 0

  constructor (readonly bounds: readonly number[]) {
    this.counts = bounds.map(() => 0)
  }

  observe (value: number): void {
    this.sum += value
    this.count++
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= this.bounds[i]!) {
        this.counts[i]!++
        return
      }
    }
  }
}

/** The label values joined: distinct label sets get distinct keys (no value holds a NUL). */
function seriesKey (labels: HttpLabels): string {
  let key = labels.reporter
  for (let i = 1; i < HTTP_LABELS.length; i++) key += '\0' + labels[HTTP_LABELS[i]!]
  return key
}

/** What prom-client's registry reads of a metric: its header lines' fields and its samples. */
interface CollectedMetric {
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'histogram'
  readonly aggregator: 'sum'
  get (): Promise<{ name: string, help: string, type: string, aggregator: 'sum', values: Sample[] }>
}

interface Sample {
  readonly labels: Readonly<Record<string, string | number>>
  readonly value: number
  /** The sample's own name (a histogram's _bucket, _sum, _count); the metric's when absent. */
  readonly metricName?: string
}

function collected (name: string, help: string, type: CollectedMetric['type'], samples: () => Sample[]): CollectedMetric {
  return {
    name, help, type, aggregator: 'sum',
    get: async () => ({ name, help, type, aggregator: 'sum', values: samples() })
  }
}

function counterOf (name: string, help: string, all: () => Iterable<HttpSeries>): CollectedMetric {
  return collected(name, help, 'counter', () => [...all()].map((s) => ({ labels: s.labels, value: s.requests })))
}

/** Samples as prom-client's Histogram writes them: cumulative _bucket{le} lines, then +Inf, _sum, _count. */
function histogramOf (name: string, help: string, all: () => Iterable<HttpSeries>, of: (s: HttpSeries) => Buckets): CollectedMetric {
  return collected(name, help, 'histogram', () => {
    const samples: Sample[] = []
    for (const series of all()) {
      const buckets = of(series)
      let cumulative = 0
      buckets.bounds.forEach((bound, i) => {
        cumulative += buckets.counts[i]!
        samples.push({ labels: { ...series.labels, le: bound }, value: cumulative, metricName: `${name}_bucket` })
      })
      samples.push(
        { labels: { ...series.labels, le: '+Inf' }, value: buckets.count, metricName: `${name}_bucket` },
        { labels: series.labels, value: buckets.sum, metricName: `${name}_sum` },
        { labels: series.labels, value: buckets.count, metricName: `${name}_count` }
      )
    }
    return samples
  })
}
