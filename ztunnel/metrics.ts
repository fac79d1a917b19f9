/**
 * The ztunnel's Prometheus metrics, with Istio's standard TCP metric names and labels so
 * existing dashboards and PromQL work unchanged.
 */
import { Counter, Gauge, Registry } from 'prom-client'
import { registerProcessMetrics } from '../proxy/process-metrics.js'
import { stateGauges, type StateGauges } from '../proxy/state-metrics.js'
import { RuleHits } from '../proxy/rule-hits.js'

export const TCP_LABELS = [
  'reporter', 'source_workload', 'source_workload_namespace', 'source_principal',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_service',
  'connection_security_policy', 'response_flags'
] as const

export type TcpLabels = Record<typeof TCP_LABELS[number], string>

/**
 * Envoy/Istio response flags used by ambit for refused or failed connections:
 *  UAEX authorization denied, UF upstream connect failure, NR no route (unknown destination),
 *  UH no healthy upstream, DC downstream closed, UT upstream timeout, '-' none.
 * The TLS refusals on 15008 have their own (ambit-specific) flags so they can be told apart.
 */
export const ResponseFlags = {
  none: '-',
  denied: 'UAEX',
  upstreamConnectFailure: 'UF',
  noRoute: 'NR',
  noHealthyUpstream: 'UH',
  upstreamTimeout: 'UT',
  mtlsRequired: 'MTLS_REQUIRED',
  tlsNoClientCertificate: 'TLS_NO_CLIENT_CERT',
  tlsUntrustedCertificate: 'TLS_UNTRUSTED_CERT',
  tlsHandshakeFailure: 'TLS_HANDSHAKE_FAILURE',
  peerIdentityMismatch: 'PEER_IDENTITY_MISMATCH',
  protocolError: 'PROTOCOL_ERROR'
} as const

export type ResponseFlag = typeof ResponseFlags[keyof typeof ResponseFlags]

const UNKNOWN = 'unknown'

export class ZtunnelMetrics {
  readonly registry = new Registry()
  private readonly opened: Counter<typeof TCP_LABELS[number]>
  private readonly closed: Counter<typeof TCP_LABELS[number]>
  private readonly sent: Counter<typeof TCP_LABELS[number]>
  private readonly received: Counter<typeof TCP_LABELS[number]>
  readonly state: StateGauges
  readonly certificates: Gauge<'state'>
  readonly activeConnections: Gauge<'direction'>
  readonly ruleHits: RuleHits

  /** Byte counts of open connections not yet added to the counters (see connection()). */
  private readonly unflushed = new Set<PendingBytes>()

  constructor (node: string) {
    this.registry.setDefaultLabels({ node })
    const counter = (name: string, help: string, collect?: () => void): Counter<typeof TCP_LABELS[number]> =>
      new Counter({ name, help, labelNames: TCP_LABELS, registers: [this.registry], ...(collect !== undefined && { collect }) })
    this.opened = counter('istio_tcp_connections_opened_total', 'TCP connections opened')
    this.closed = counter('istio_tcp_connections_closed_total', 'TCP connections closed')
    this.sent = counter('istio_tcp_sent_bytes_total', 'Bytes sent to the client during the connection (response direction)', () => this.flushAll())
    this.received = counter('istio_tcp_received_bytes_total', 'Bytes received from the client during the connection (request direction)', () => this.flushAll())
    this.state = stateGauges(this.registry)
    this.certificates = new Gauge({ name: 'ambit_workload_certificates', help: 'Workload certificates held, by state', labelNames: ['state'], registers: [this.registry] })
    this.activeConnections = new Gauge({ name: 'ambit_active_connections', help: 'Connections being proxied now', labelNames: ['direction'], registers: [this.registry] })
    this.ruleHits = new RuleHits(this.registry)
    registerProcessMetrics(this.registry)
  }

  /**
   * Records one connection: opened now, closed() once at the end. Bytes add up in the
   * connection and reach the counters when it closes or when the metrics are read (a scrape
   * sees every byte moved so far): a counter update hashes all ten labels, too dear per chunk.
   */
  connection (labels: TcpLabels): TrackedConnection {
    const pending: PendingBytes = { labels: fillLabels(labels), received: 0, sent: 0 }
    this.opened.inc(pending.labels)
    this.unflushed.add(pending)
    let done = false
    return {
      addBytes: (received, sent) => {
        pending.received += received
        pending.sent += sent
      },
      closed: () => {
        if (done) return
        done = true
        this.unflushed.delete(pending)
        this.flush(pending)
        this.closed.inc(pending.labels)
      }
    }
  }

  private flushAll (): void {
    for (const pending of this.unflushed) this.flush(pending)
  }

  private flush (pending: PendingBytes): void {
    if (pending.received > 0) this.received.inc(pending.labels, pending.received)
    if (pending.sent > 0) this.sent.inc(pending.labels, pending.sent)
    pending.received = 0
    pending.sent = 0
  }

  /** A connection refused before any byte moved: opened and closed at once, with its flag. */
  refused (labels: TcpLabels): void {
    this.connection(labels).closed()
  }
}

interface PendingBytes {
  readonly labels: TcpLabels
  received: number
  sent: number
}

export interface TrackedConnection {
  addBytes (received: number, sent: number): void
  closed (): void
}

function fillLabels (labels: TcpLabels): TcpLabels {
  const out = { ...labels }
  for (const name of TCP_LABELS) if (out[name] === '') out[name] = UNKNOWN
  return out
}
