/**
 * The waypoint's HTTP metrics, with Istio's standard names and labels
 * (istio_requests_total, istio_request_duration_milliseconds, istio_request_bytes,
 * istio_response_bytes; reporter="waypoint"), so Istio dashboards work unchanged.
 */
import { Counter, Histogram, Registry } from 'prom-client'
import { registerProcessMetrics } from '../proxy/process-metrics.js'
import { stateGauges, type StateGauges } from '../proxy/state-metrics.js'

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
  private readonly requests: Counter<typeof HTTP_LABELS[number]>
  private readonly duration: Histogram<typeof HTTP_LABELS[number]>
  private readonly requestBytes: Histogram<typeof HTTP_LABELS[number]>
  private readonly responseBytes: Histogram<typeof HTTP_LABELS[number]>
  readonly rateLimitFailOpen: Counter<'destination_service'>
  readonly outlierEjections: Counter<'destination_service'>
  readonly state: StateGauges

  constructor (waypoint: string) {
    this.registry.setDefaultLabels({ waypoint })
    const registers = [this.registry]
    this.requests = new Counter({ name: 'istio_requests_total', help: 'Requests handled by the waypoint', labelNames: HTTP_LABELS, registers })
    this.duration = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'Request duration in milliseconds', labelNames: HTTP_LABELS, buckets: DURATION_BUCKETS, registers })
    this.requestBytes = new Histogram({ name: 'istio_request_bytes', help: 'Request sizes in bytes (headers and body)', labelNames: HTTP_LABELS, buckets: SIZE_BUCKETS, registers })
    this.responseBytes = new Histogram({ name: 'istio_response_bytes', help: 'Response sizes in bytes (headers and body)', labelNames: HTTP_LABELS, buckets: SIZE_BUCKETS, registers })
    this.rateLimitFailOpen = new Counter({ name: 'ambit_ratelimit_fail_open_total', help: 'Requests let through because the global rate limit store was unreachable', labelNames: ['destination_service'], registers })
    this.outlierEjections = new Counter({ name: 'ambit_outlier_ejections_total', help: 'Endpoints ejected by outlier detection', labelNames: ['destination_service'], registers })
    this.state = stateGauges(this.registry)
    registerProcessMetrics(this.registry)
  }

  request (labels: HttpLabels, durationMs: number, requestBytes: number, responseBytes: number): void {
    this.requests.inc(labels)
    this.duration.observe(labels, durationMs)
    this.requestBytes.observe(labels, requestBytes)
    this.responseBytes.observe(labels, responseBytes)
  }
}
