/**
 * Where the dashboard reads the proxies' metrics: the same Prometheus text either way, from
 * the proxies' own registries when they run in this process (`ambit up`), or scraped over
 * HTTP from each node's ztunnel and each waypoint instance (`ambit controller`).
 */
import type { Registry } from 'prom-client'
import type { MeshState } from '../policy/state.js'

/** The ztunnel's and the waypoint's metrics port. */
export const PROXY_METRICS_PORT = 15020
const SCRAPE_TIMEOUT_MS = 1_500

export interface MetricsSource {
  /** Names it on the page: 'ztunnel node-a', 'waypoint shop/waypoint 127.0.0.30'. */
  readonly name: string
  /** The exposition text; rejects when the proxy does not answer. */
  read (): Promise<string>
}

/** A proxy of this process. */
export function registrySource (name: string, registry: Pick<Registry, 'metrics'>): MetricsSource {
  return { name, read: async () => await registry.metrics() }
}

/** A proxy elsewhere, read by GET. */
export function scrapeSource (name: string, url: string): MetricsSource {
  return {
    name,
    read: async () => {
      const response = await fetch(url, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) })
      const body = await response.text()
      if (response.status !== 200) throw new Error(`GET ${url}: ${response.status}`)
      return body
    }
  }
}

/** Every node's ztunnel and every waypoint instance of the state, on their standard metrics port. */
export function scrapeSourcesOf (state: MeshState | undefined, port = PROXY_METRICS_PORT): MetricsSource[] {
  if (state === undefined) return []
  const url = (address: string): string => `http://${address.includes(':') ? `[${address}]` : address}:${port}/metrics`
  return [
    ...Object.values(state.nodes).map((node) => scrapeSource(`ztunnel ${node.name}`, url(node.address))),
    ...Object.values(state.waypoints).flatMap((wp) => wp.instances.map((i) => scrapeSource(`waypoint ${wp.key} ${i.ip}`, url(i.ip))))
  ]
}
