/**
 * A small reader of the Prometheus text exposition format (what every proxy's /metrics serves):
 * one sample per line, `name{label="value",...} value [timestamp]`, comments skipped. Lines it
 * cannot read are skipped too: a dashboard shows what it can rather than nothing.
 */

export interface MetricSample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"/g
const ESCAPES: Readonly<Record<string, string>> = { n: '\n', '\\': '\\', '"': '"' }

export function parsePrometheusText (text: string): MetricSample[] {
  const samples: MetricSample[] = []
  for (const line of text.split('\n')) {
    const sample = parseLine(line.trim())
    if (sample !== undefined) samples.push(sample)
  }
  return samples
}

function parseLine (line: string): MetricSample | undefined {
  if (line === '' || line.startsWith('#')) return undefined
  const match = SAMPLE_LINE.exec(line)
  if (match === null) return undefined
  const value = parseValue(match[3]!)
  if (value === undefined) return undefined
  const labels: Record<string, string> = {}
  for (const [, name, raw] of (match[2] ?? '').matchAll(LABEL)) {
    labels[name!] = raw!.replace(/\\(.)/g, (all, c: string) => ESCAPES[c] ?? all)
  }
  return { name: match[1]!, labels, value }
}

function parseValue (text: string): number | undefined {
  if (text === '+Inf') return Infinity
  if (text === '-Inf') return -Infinity
  const value = Number(text)
  return Number.isNaN(value) && text !== 'NaN' ? undefined : value
}
