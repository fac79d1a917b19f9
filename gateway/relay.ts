/**
 * What a proxy does to pass an answer on, whichever protocol each side speaks: only end-to-end
 * headers go on, and the body is copied as it comes, counted, the upstream paused while the
 * client is behind.
 */
import type { Readable, Writable } from 'node:stream'
import type { HeaderRecord } from './filters.js'

/** Headers that belong to one hop (RFC 9110 §7.6.1, RFC 9113 §8.2.2); each side sets its own. */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings'])

/**
 * `headers` without hop-by-hop ones, HTTP/2 pseudo-headers and unset values (a copy). TE is
 * hop-by-hop too, but "TE: trailers" is what gRPC requests carry (the one TE value HTTP/2 allows).
 */
export function endToEndHeaders (headers: HeaderRecord): HeaderRecord {
  const out: HeaderRecord = {}
  for (const name in headers) {
    const value = headers[name]
    if (value !== undefined && name.charCodeAt(0) !== COLON && !HOP_HEADERS.has(name) && (name !== 'te' || value === 'trailers')) out[name] = value
  }
  return out
}

const COLON = 0x3a

/** Writes each chunk of `from` to `to` as it comes (after `count`), pausing `from` while `to` is full. */
export function relayBody (from: Readable, to: Writable, count: (bytes: number) => void): void {
  from.on('data', (chunk: Buffer) => {
    count(chunk.length)
    if (!to.write(chunk)) from.pause()
  })
  to.on('drain', () => from.resume())
}
