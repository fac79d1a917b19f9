/**
 * A request body on its way upstream, with a copy kept for a retry. Like Envoy, the waypoint
 * streams the body and buffers it as it goes, up to a limit: a body that ended within the limit
 * can be sent again to another endpoint; a larger or unfinished one cannot, and is not retried.
 */
import { Transform, type Readable, type TransformCallback } from 'node:stream'

/** Envoy's default per-request retry buffer (per_connection_buffer_limit_bytes is 1 MiB; 64 KiB keeps memory small). */
export const REPLAY_LIMIT_BYTES = 64 * 1024

export class ReplayableBody extends Transform {
  private kept: Buffer[] | undefined = []
  private keptBytes = 0
  private complete = false

  /** `onBytes` counts the bytes as they pass (the request size metric). */
  constructor (private readonly onBytes: (n: number) => void, private readonly limit = REPLAY_LIMIT_BYTES) {
    super()
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.onBytes(chunk.length)
    if (this.kept !== undefined) {
      this.keptBytes += chunk.length
      if (this.keptBytes <= this.limit) this.kept.push(chunk)
      else this.kept = undefined
    }
    callback(null, chunk)
  }

  override _flush (callback: TransformCallback): void {
    this.complete = true
    callback()
  }

  /** The whole body for another try; undefined while it is still arriving, or when it outgrew the limit. */
  replay (): Buffer | undefined {
    return this.complete && this.kept !== undefined ? Buffer.concat(this.kept, this.keptBytes) : undefined
  }
}

/** A body read from `source` into a ReplayableBody; an error on the source ends it with that error. */
export function replayable (source: Readable, onBytes: (n: number) => void): ReplayableBody {
  const body = new ReplayableBody(onBytes)
  source.on('error', (err) => body.destroy(err))
  source.pipe(body)
  return body
}
