/**
 * What the ztunnel's inbound and outbound halves share: the current mesh view, this node's
 * certificates, the HBONE pool, metrics, and the upstream connector. Also the connection
 * tracker that lets a SIGTERM drain in-flight connections.
 */
import type net from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { MeshRegistry } from '../policy/registry.js'
import type { ServiceState, WorkloadState } from '../policy/state.js'
import { principalOf } from '../policy/identity.js'
import type { WorkloadCertificates } from '../proxy/certificates.js'
import type { HbonePool } from '../proxy/pool.js'
import type { TcpLabels, ZtunnelMetrics } from './metrics.js'
import { ResponseFlags } from './metrics.js'
import { pipeBidirectional } from '../proxy/pipe.js'

export interface ZtunnelContext {
  readonly node: string
  /** The registry of the latest mesh state (replaced on every update). */
  registry (): MeshRegistry
  readonly certificates: WorkloadCertificates
  readonly pool: HbonePool
  readonly metrics: ZtunnelMetrics
  readonly logger: Logger
  readonly connections: ConnectionTracker
  /** Plain TCP to a pod or an outside address, marked so capture rules let it through. */
  connectTcp (ip: string, port: number): Promise<net.Socket>
}

/** Live proxied connections, so shutdown can wait for them, then cut what is left. */
export class ConnectionTracker {
  private readonly live = new Set<Duplex>()
  private idle: (() => void) | undefined

  get size (): number { return this.live.size }

  add (...streams: Duplex[]): () => void {
    for (const s of streams) this.live.add(s)
    return () => {
      for (const s of streams) this.live.delete(s)
      if (this.live.size === 0) this.idle?.()
    }
  }

  /** Resolves when no connection is left, or destroys the rest after `graceMs`. */
  async drain (graceMs: number): Promise<void> {
    if (this.live.size === 0) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        for (const s of this.live) s.destroy()
        resolve()
      }, graceMs)
      this.idle = () => { clearTimeout(timer); resolve() }
    })
  }
}

export interface LabelParts {
  readonly reporter: 'source' | 'destination'
  readonly source?: WorkloadState
  /** The peer's SPIFFE id when the source workload itself is not known. */
  readonly sourceSpiffeId?: string
  readonly destination?: WorkloadState
  readonly service?: ServiceState
  readonly mtls: boolean
  readonly flags?: string
}

/** Istio's standard TCP metric labels for one connection. */
export function tcpLabels (parts: LabelParts): TcpLabels {
  const sourceId = parts.source?.spiffeId ?? parts.sourceSpiffeId
  return {
    reporter: parts.reporter,
    source_workload: parts.source?.name ?? '',
    source_workload_namespace: parts.source?.namespace ?? '',
    source_principal: sourceId !== undefined ? `spiffe://${principalOf(sourceId)}` : '',
    destination_workload: parts.destination?.name ?? '',
    destination_workload_namespace: parts.destination?.namespace ?? '',
    destination_principal: parts.destination?.spiffeId ?? '',
    destination_service: parts.service?.hostnames[0] ?? '',
    connection_security_policy: parts.mtls ? 'mutual_tls' : 'none',
    response_flags: parts.flags ?? ResponseFlags.none
  }
}

/**
 * Copies bytes between the client side and the upstream side, counting them into the TCP
 * metrics as they move (received = client → upstream, sent = upstream → client). The
 * same-node fast path reports as both source and destination, hence several label sets.
 */
export async function proxy (context: ZtunnelContext, client: Duplex, upstream: Duplex, labels: TcpLabels | readonly TcpLabels[], direction: 'inbound' | 'outbound'): Promise<void> {
  const sets = Array.isArray(labels) ? labels : [labels as TcpLabels]
  const trackers = sets.map((l) => context.metrics.connection(l))
  const tracked = {
    addBytes: (received: number, sent: number) => { for (const t of trackers) t.addBytes(received, sent) },
    closed: () => { for (const t of trackers) t.closed() }
  }
  const release = context.connections.add(client, upstream)
  const active = context.metrics.activeConnections.labels(direction)
  active.inc()
  try {
    await pipeBidirectional(client, upstream, {
      aToB: (n) => tracked.addBytes(n, 0),
      bToA: (n) => tracked.addBytes(0, n)
    })
  } finally {
    active.dec()
    tracked.closed()
    release()
  }
}
