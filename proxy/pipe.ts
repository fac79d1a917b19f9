/**
 * Copies bytes both ways between two duplex streams (a captured socket and an HBONE tunnel,
 * say), the way a TCP proxy must:
 *  - backpressure: each direction is a pipeline, which pauses the reader while the writer is
 *    above its highWaterMark, so memory per tunnel stays bounded whatever the peers do;
 *  - half-close: when one side ends, the other side's writable is ended and the opposite
 *    direction keeps flowing until it ends too (sockets need `allowHalfOpen: true` for that,
 *    or Node ends their writable side as soon as their readable side ends);
 *  - errors: a failure in either direction destroys both streams.
 */
import { pipeline, type Duplex, type Readable, type Writable } from 'node:stream'

/** Called as bytes move, so metrics grow while a long connection is still open. */
export interface ByteMeter {
  aToB? (bytes: number): void
  bToA? (bytes: number): void
}

export interface PipeResult {
  readonly bytesAtoB: number
  readonly bytesBtoA: number
  /** The first failure, if the copy did not end cleanly in both directions. */
  readonly error?: Error
}

/** Resolves (never rejects) once both directions are done, cleanly or not. */
export async function pipeBidirectional (a: Duplex, b: Duplex, meter: ByteMeter = {}): Promise<PipeResult> {
  const aToB = copy(a, b, meter.aToB)
  const bToA = copy(b, a, meter.bToA)
  const [forward, backward] = await Promise.all([aToB, bToA])
  const error = forward.error ?? backward.error
  return {
    bytesAtoB: forward.bytes,
    bytesBtoA: backward.bytes,
    ...(error === undefined ? {} : { error })
  }
}

interface CopyResult {
  readonly bytes: number
  readonly error?: Error
}

/** One direction: a pipeline, which ends `to` when `from` ends and destroys both on failure. */
async function copy (from: Readable, to: Writable, onBytes?: (bytes: number) => void): Promise<CopyResult> {
  let bytes = 0
  return await new Promise((resolve) => {
    pipeline(from, to, (error) => {
      resolve(error === null || error === undefined ? { bytes } : { bytes, error })
    })
    // A second 'data' listener sees the same chunks the pipeline writes, and pauses with it.
    from.on('data', (chunk: Buffer | string) => {
      const length = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length
      bytes += length
      onBytes?.(length)
    })
  })
}
