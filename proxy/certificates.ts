/**
 * The certificates of the workloads on this node: requested from the CA as their pods
 * appear, kept in memory only, renewed at half life, dropped when the last pod of that
 * identity leaves. Pods sharing a service account share one certificate, as in Istio.
 */
import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import type { TlsIdentity } from '../policy/certs.js'

export interface CertificateSource {
  requestCertificate (namespace: string, serviceAccount: string, trustDomain: string): Promise<TlsIdentity>
}

export interface IdentityRef {
  readonly namespace: string
  readonly serviceAccount: string
}

export interface CertificateStatus {
  readonly spiffeId: string
  readonly state: 'ready' | 'pending' | 'failed'
  readonly notBefore?: string
  readonly notAfter?: string
  readonly renewAt?: string
  readonly lastError?: string
}

interface Entry {
  readonly ref: IdentityRef
  identity?: TlsIdentity
  timer?: NodeJS.Timeout
  failures: number
  lastError?: string
  renewAt?: Date
  inFlight?: Promise<void>
}

interface Events {
  /** Every wanted identity has a certificate. */
  ready: []
  changed: []
}

const MAX_RETRY_MS = 30_000
const keyOf = (ref: IdentityRef): string => `${ref.namespace}/${ref.serviceAccount}`

export class WorkloadCertificates extends EventEmitter<Events> {
  private readonly entries = new Map<string, Entry>()
  private stopped = false

  constructor (
    private readonly source: CertificateSource,
    private readonly trustDomain: string,
    private readonly logger: Logger,
    private readonly retryBaseMs = 500
  ) {
    super()
  }

  /** Wants exactly these identities: fetches the new ones, forgets the others. */
  sync (wanted: Iterable<IdentityRef>): void {
    const keep = new Set<string>()
    for (const ref of wanted) {
      const key = keyOf(ref)
      keep.add(key)
      if (!this.entries.has(key)) {
        const entry: Entry = { ref, failures: 0 }
        this.entries.set(key, entry)
        this.fetch(entry)
      }
    }
    for (const [key, entry] of this.entries) {
      if (keep.has(key)) continue
      clearTimeout(entry.timer)
      this.entries.delete(key)
    }
    this.emit('changed')
    if (this.ready) this.emit('ready')
  }

  get (namespace: string, serviceAccount: string): TlsIdentity | undefined {
    return this.entries.get(`${namespace}/${serviceAccount}`)?.identity
  }

  /** True when every wanted identity has a usable certificate. */
  get ready (): boolean {
    for (const entry of this.entries.values()) if (entry.identity === undefined) return false
    return true
  }

  /** What the admin endpoint shows: never the keys. */
  status (): CertificateStatus[] {
    return [...this.entries.values()].map((e) => ({
      spiffeId: `spiffe://${this.trustDomain}/ns/${e.ref.namespace}/sa/${e.ref.serviceAccount}`,
      state: e.identity !== undefined ? 'ready' : e.failures > 0 ? 'failed' : 'pending',
      ...(e.identity !== undefined && { notBefore: e.identity.notBefore.toISOString(), notAfter: e.identity.notAfter.toISOString() }),
      ...(e.renewAt !== undefined && { renewAt: e.renewAt.toISOString() }),
      ...(e.lastError !== undefined && { lastError: e.lastError })
    }))
  }

  stop (): void {
    this.stopped = true
    for (const entry of this.entries.values()) clearTimeout(entry.timer)
  }

  private fetch (entry: Entry): void {
    if (this.stopped || entry.inFlight !== undefined) return
    const { namespace, serviceAccount } = entry.ref
    entry.inFlight = this.source.requestCertificate(namespace, serviceAccount, this.trustDomain).then((identity) => {
      if (this.entries.get(keyOf(entry.ref)) !== entry) return // dropped meanwhile
      entry.identity = identity
      entry.failures = 0
      delete entry.lastError
      const life = identity.notAfter.getTime() - identity.notBefore.getTime()
      entry.renewAt = new Date(identity.notBefore.getTime() + life / 2)
      this.schedule(entry, entry.renewAt.getTime() - Date.now())
      this.logger.info({ spiffeId: identity.spiffeId, notAfter: identity.notAfter }, 'workload certificate issued')
      this.emit('changed')
      if (this.ready) this.emit('ready')
    }, (err: Error) => {
      entry.failures++
      entry.lastError = err.message
      // Keep serving with the current certificate while it is valid; retry with backoff.
      const delay = Math.min(MAX_RETRY_MS, this.retryBaseMs * 2 ** Math.min(entry.failures - 1, 10))
      this.logger.warn({ identity: keyOf(entry.ref), err: err.message, retryInMs: delay }, 'certificate request failed')
      this.schedule(entry, delay)
    }).finally(() => { delete entry.inFlight })
  }

  private schedule (entry: Entry, delayMs: number): void {
    clearTimeout(entry.timer)
    // Timers cap at 2^31-1 ms; a longer wait simply re-arms.
    entry.timer = setTimeout(() => this.fetch(entry), Math.max(0, Math.min(delayMs, 2 ** 31 - 1)))
    entry.timer.unref()
  }
}
