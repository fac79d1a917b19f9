/**
 * Copies bytes both ways between two duplex streams (a captured socket and an HBONE tunnel,
 * say), the way a TCP proxy must:
 *  - backpressure: a reader is paused while the writer it feeds is above its highWaterMark and
 *    resumed on 'drain', so memory per tunnel stays bounded whatever the peers do;
 *  - half-close: when one side's readable ends, the other side's writable is ended and the
 *    opposite direction keeps flowing until it ends too (sockets need `allowHalfOpen: true` for
 *    that, or Node ends their writable side as soon as their readable side ends);
 *  - errors: an error on either stream, or either stream closing before both its directions
 *    are done, destroys both streams.
 *
 * This is what stream.pipeline() does, written out: pipeline() costs an AbortController per
 * direction and, at its end, an AbortError with a captured stack trace, and that per-connection
 * work was a measurable share of a short connection's CPU (bench/RESULTS.md). Here each
 * direction is one 'data' listener that counts, writes and pauses, and each stream has one
 * 'error' and one 'close' listener; no per-chunk closure is made.
 */
import type { Duplex, Readable, Writable } from 'node:stream'
import { StreamClosedEarlyError } from '../policy/errors.js'

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
  return await new Promise((resolve) => {
    let settled = false
    const settle = (error?: Error): void => {
      if (settled) return
      settled = true
      if (error !== undefined) {
        a.destroy(error)
        b.destroy(error)
      }
      resolve({ bytesAtoB: forward.bytes, bytesBtoA: backward.bytes, ...(error === undefined ? {} : { error }) })
    }
    const directionDone = (): void => {
      if (forward.done && backward.done) settle()
    }
    const forward = new Copy(a, b, meter.aToB, directionDone)
    const backward = new Copy(b, a, meter.bToA, directionDone)
    watch(a, backward, settle)
    watch(b, forward, settle)
  })
}

/**
 * Fails the copy on the stream's errors, or when it closes with a direction unfinished. The
 * listeners stay after the copy is done: destroying a stream with an error emits 'error',
 * which must not go unheard.
 */
function watch (stream: Duplex, copyInto: Copy, settle: (error?: Error) => void): void {
  // An HTTP/2 stream may close once its last frame is out, before it emits 'finish': ended with
  // nothing left to write counts as finished, as it does for stream.finished().
  const writeDone = (): boolean => stream.writableFinished || (stream.writableEnded && stream.writableLength === 0)
  const onClose = (): void => {
    if (!stream.readableEnded || !writeDone()) settle(stream.errored ?? new StreamClosedEarlyError())
    else copyInto.finish()
  }
  stream.on('error', (error: Error) => settle(error))
  if (stream.destroyed) queueMicrotask(onClose)
  else stream.once('close', onClose)
}

/** One direction: counts and writes each chunk, pausing `from` while `to` is full. */
class Copy {
  bytes = 0
  done = false

  constructor (
    private readonly from: Readable,
    private readonly to: Writable,
    private readonly onBytes: ((bytes: number) => void) | undefined,
    private readonly onDone: () => void
  ) {
    from.on('data', this.onData)
    to.on('drain', this.onDrain)
    if (to.writableFinished) queueMicrotask(this.finish)
    else to.once('finish', this.finish)
    // A readable that ended before the copy began (during a handshake, say) will not emit again.
    if (from.readableEnded) queueMicrotask(this.onEnd)
    else from.once('end', this.onEnd)
  }

  private readonly onData = (chunk: Buffer | string): void => {
    const length = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length
    this.bytes += length
    this.onBytes?.(length)
    if (!this.to.write(chunk)) this.from.pause()
  }

  private readonly onDrain = (): void => {
    this.from.resume()
  }

  private readonly onEnd = (): void => {
    this.to.end()
  }

  /** `to` has taken everything `from` had: called on 'finish', or on a clean 'close'. */
  readonly finish = (): void => {
    if (this.done) return
    this.done = true
    this.onDone()
  }
}
