/**
 * Reading a Prometheus /metrics page in tests: fetch it, parse the text exposition format
 * into samples, sum the samples whose labels match, and run the real `promtool check metrics`.
 *
 *   const samples = await scrape('http://127.0.5.3:15020/metrics')
 *   sumOf(samples, 'istio_tcp_sent_bytes_total', { reporter: 'destination' })
 */
import { spawn } from 'node:child_process'
import { access, constants } from 'node:fs/promises'

export const PROMTOOL = '/usr/bin/promtool'

export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

/** GETs a metrics page; throws unless it answers 200. */
export async function fetchMetrics (url: string): Promise<string> {
  const response = await fetch(url)
  const body = await response.text()
  if (response.status !== 200) throw new Error(`GET ${url}: ${response.status} ${body}`)
  return body
}

export async function scrape (url: string): Promise<Sample[]> {
  return parseMetrics(await fetchMetrics(url))
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

/** The samples of a text exposition page (comments skipped). */
export function parseMetrics (text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = SAMPLE_LINE.exec(line)
    if (match === null) throw new Error(`not a metrics sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, name, value] of (match[2] ?? '').matchAll(LABEL)) {
      labels[name!] = value!.replace(/\\(.)/g, (_all, c: string) => (c === 'n' ? '\n' : c))
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) })
  }
  return samples
}

/** The samples of `name` whose labels include every pair of `labels`. */
export function samplesOf (samples: readonly Sample[], name: string, labels: Readonly<Record<string, string>> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
}

/** The sum of those samples (0 when there is none). */
export function sumOf (samples: readonly Sample[], name: string, labels: Readonly<Record<string, string>> = {}): number {
  return samplesOf(samples, name, labels).reduce((total, s) => total + s.value, 0)
}

export interface PromtoolResult {
  readonly code: number | null
  readonly output: string
}

/** Pipes `metricsText` into `promtool check metrics`; throws if promtool is not installed. */
export async function promtoolCheckMetrics (metricsText: string): Promise<PromtoolResult> {
  await access(PROMTOOL, constants.X_OK).catch(() => {
    throw new Error(`${PROMTOOL} is missing: install Prometheus' promtool (apt-get install prometheus) to run this test`)
  })
  return await new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d: Buffer) => { output += d.toString() })
    child.stderr.on('data', (d: Buffer) => { output += d.toString() })
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, output }))
    child.stdin.end(metricsText)
  })
}
