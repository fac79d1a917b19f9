/**
 * Choosing an endpoint of a Service: round robin, healthy first. An endpoint whose connection
 * just failed sits out for a while; when every endpoint is out, they are all tried again
 * rather than refusing everything (a failure may have been the client's, not theirs).
 */
import type { EndpointState, ServiceState } from '../policy/state.js'

const DEFAULT_COOLDOWN_MS = 5_000

export class EndpointPicker {
  private readonly cursors = new Map<string, number>()
  private readonly failedUntil = new Map<string, number>()

  constructor (private readonly cooldownMs = DEFAULT_COOLDOWN_MS, private readonly now: () => number = Date.now) {}

  /** The next endpoint serving `port` of `service`, or undefined when it has none. */
  pick (service: ServiceState, port: number): EndpointState | undefined {
    const candidates = service.endpoints.filter((e) => e.ports[String(port)] !== undefined)
    if (candidates.length === 0) return undefined
    const time = this.now()
    const healthy = candidates.filter((e) => (this.failedUntil.get(e.ip) ?? 0) <= time)
    const pool = healthy.length > 0 ? healthy : candidates
    const key = `${service.key}:${port}`
    const cursor = this.cursors.get(key) ?? 0
    this.cursors.set(key, (cursor + 1) % 1_000_000_007)
    return pool[cursor % pool.length]
  }

  markFailed (ip: string): void {
    this.failedUntil.set(ip, this.now() + this.cooldownMs)
  }

  markHealthy (ip: string): void {
    this.failedUntil.delete(ip)
  }
}
