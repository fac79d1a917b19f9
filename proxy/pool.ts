/**
 * The HBONE connection pool: CONNECT streams share HTTP/2 sessions, one pool entry per
 * (source identity, expected peer identity, peer address) as DESIGN §4 says, so a busy pair of
 * workloads pays for one TLS handshake, not one per TCP connection.
 *
 * A session takes new streams while it has room (our cap, or the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS if lower); when none has room a new one is opened. Sessions
 * that fail, are told to go away, or were made with a certificate since rotated get no new
 * streams; sessions without streams close after the idle timeout.
 */
import type { ClientHttp2Session } from 'node:http2'
import type { Duplex } from 'node:stream'
import { HboneConnectError } from '../policy/errors.js'
import { connectHboneSession, openTunnel, type HboneSessionOptions } from './hbone-client.js'
import { HBONE_PORT, type HboneHeaders, type SocketAddress } from './hbone-protocol.js'
import type { TlsIdentity } from './hbone-tls.js'

export interface HbonePoolOptions {
  /** Bound on everything before the tunnel is usable: TCP, TLS and the CONNECT answer. */
  readonly connectTimeoutMs?: number
  /** A session without streams for this long is closed. */
  readonly idleTimeoutMs?: number
  readonly maxStreamsPerConnection?: number
}

export interface HboneOpenRequest {
  /** Presented to the server. */
  readonly sourceIdentity: TlsIdentity
  /** The SPIFFE id the server must present: the destination workload's, or the waypoint's. */
  readonly expectedPeer: string
  /** The destination node's ztunnel (or the waypoint). */
  readonly address: string
  readonly port?: number
  /** The CONNECT target: the destination pod (or service) address. */
  readonly destination: SocketAddress
  readonly headers?: HboneHeaders
}

const DEFAULTS = { connectTimeoutMs: 10_000, idleTimeoutMs: 60_000, maxStreamsPerConnection: 100 }

export class HbonePool {
  private readonly options: Required<HbonePoolOptions>
  private readonly entries = new Map<string, PooledSession[]>()
  private readonly all = new Set<PooledSession>()
  private closed = false

  constructor (options: HbonePoolOptions = {}) {
    this.options = { ...DEFAULTS, ...options }
  }

  /** Sessions open or opening. */
  get sessionCount (): number {
    return this.all.size
  }

  /**
   * A tunnel to `request.destination`, resolved once the server answers 200. Rejects with
   * HboneRefusedError (other status), PeerCertificateError (wrong or untrusted server) or
   * HboneConnectError (network, timeout, rejected by the server).
   */
  async open (request: HboneOpenRequest): Promise<Duplex> {
    const deadline = Date.now() + this.options.connectTimeoutMs
    // A session can go away between being picked and carrying the stream; one retry covers that.
    for (let attempt = 1; ; attempt++) {
      const pooled = this.sessionFor(request)
      const release = pooled.reserve()
      try {
        const session = await pooled.ready
        const stream = await openTunnel(session, request.destination, request.headers, Math.max(1, deadline - Date.now()))
        stream.once('close', release)
        if (stream.destroyed) release() // closed before we could listen
        return stream
      } catch (error) {
        release()
        const sessionVanished = error instanceof HboneConnectError && error.problem === 'session-closed'
        if (!sessionVanished || attempt === 2) throw error
      }
    }
  }

  /** Stops taking streams; open streams finish, then their sessions close. */
  async close (): Promise<void> {
    this.closed = true
    await Promise.all([...this.all].map(async (pooled) => await pooled.close()))
  }

  /** Cuts every session and stream now. */
  destroy (): void {
    this.closed = true
    for (const pooled of this.all) pooled.destroy()
  }

  private sessionFor (request: HboneOpenRequest): PooledSession {
    if (this.closed) throw new HboneConnectError('pool-closed', 'the HBONE pool is closed')
    const port = request.port ?? HBONE_PORT
    const key = [request.sourceIdentity.spiffeId, request.expectedPeer, request.address, port].join(' ')
    const sessions = this.entries.get(key) ?? []
    const reusable = sessions.find((pooled) =>
      pooled.certChain === request.sourceIdentity.certChain && pooled.hasRoom(this.options.maxStreamsPerConnection))
    if (reusable !== undefined) return reusable

    const pooled = new PooledSession({
      address: request.address,
      port,
      identity: request.sourceIdentity,
      expectedPeer: request.expectedPeer,
      destinationIp: request.destination.ip,
      timeoutMs: this.options.connectTimeoutMs
    }, this.options.idleTimeoutMs, () => this.forget(key, pooled))
    this.entries.set(key, [...sessions, pooled])
    this.all.add(pooled)
    return pooled
  }

  /** Takes a session out of the pool for new streams (its open streams carry on). */
  private forget (key: string, pooled: PooledSession): void {
    const remaining = (this.entries.get(key) ?? []).filter((other) => other !== pooled)
    if (remaining.length === 0) this.entries.delete(key)
    else this.entries.set(key, remaining)
    if (pooled.isGone) this.all.delete(pooled)
  }
}

/** One HTTP/2 session and the streams reserved on it (counted from before it is even connected). */
class PooledSession {
  readonly ready: Promise<ClientHttp2Session>
  readonly certChain: string
  private session: ClientHttp2Session | undefined
  private streams = 0
  private usable = true
  private gone = false
  private idleTimer: NodeJS.Timeout | undefined
  private readonly closedPromise: Promise<void>
  private markClosed: () => void = () => {}

  constructor (
    options: HboneSessionOptions,
    private readonly idleTimeoutMs: number,
    private readonly onRetired: () => void
  ) {
    this.certChain = options.identity.certChain
    this.closedPromise = new Promise((resolve) => { this.markClosed = resolve })
    this.ready = connectHboneSession(options)
    this.ready.then((session) => this.adopt(session), () => this.retire(true))
  }

  get isGone (): boolean {
    return this.gone
  }

  hasRoom (maxStreams: number): boolean {
    const serverLimit = this.session?.remoteSettings.maxConcurrentStreams ?? Infinity
    return this.usable && this.streams < Math.min(maxStreams, serverLimit)
  }

  /** Counts one stream on this session; the returned function (idempotent) gives it back. */
  reserve (): () => void {
    this.streams++
    clearTimeout(this.idleTimer)
    let released = false
    return () => {
      if (released) return
      released = true
      if (--this.streams === 0) this.onIdle()
    }
  }

  async close (): Promise<void> {
    this.retire(false)
    if (this.session === undefined) await this.ready.catch(() => {})
    this.session?.close()
    await this.closedPromise
  }

  destroy (): void {
    this.retire(false)
    this.session?.destroy()
    this.ready.then((session) => session.destroy(), () => {})
  }

  private adopt (session: ClientHttp2Session): void {
    this.session = session
    session.on('goaway', () => this.retire(false))
    session.on('error', () => this.retire(false))
    session.once('close', () => this.retire(true))
    if (!this.usable) session.close()
    else if (this.streams === 0) this.onIdle()
  }

  private onIdle (): void {
    if (!this.usable) {
      this.session?.close()
      return
    }
    clearTimeout(this.idleTimer)
    this.idleTimer = setTimeout(() => {
      this.retire(false)
      this.session?.close()
    }, this.idleTimeoutMs).unref()
  }

  /** No new streams from now on; `gone` once the session no longer exists at all. */
  private retire (gone: boolean): void {
    this.usable = false
    if (gone && !this.gone) {
      this.gone = true
      clearTimeout(this.idleTimer)
      this.markClosed()
    }
    this.onRetired()
  }
}
