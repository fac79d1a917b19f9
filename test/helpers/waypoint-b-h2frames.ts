/**
 * Raw HTTP/2 frames (RFC 9113 §4, §6) and HPACK literals (RFC 7541 §5, §6.2.2), for tests that
 * must send what no well-behaved client sends: a header block that never ends (CONTINUATION
 * flood), thousands of headers in one block. And a reader that splits received bytes into frames.
 *
 *   socket.write(Buffer.concat([PREFACE, settingsFrame(), headersFrame(1, requestBlock('host', '/'), { endHeaders: false })]))
 *   const frames = new FrameReader(); socket.on('data', (d) => frames.push(d))
 */

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')

export const FrameType = { data: 0, headers: 1, rstStream: 3, settings: 4, ping: 6, goaway: 7, windowUpdate: 8, continuation: 9 } as const
export const Flag = { endStream: 0x1, ack: 0x1, endHeaders: 0x4 } as const

export interface Frame {
  readonly type: number
  readonly flags: number
  readonly streamId: number
  readonly payload: Buffer
}

export function frame (type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(streamId & 0x7fffffff, 5)
  return Buffer.concat([head, payload])
}

/** An empty SETTINGS frame: the client accepts the defaults. */
export function settingsFrame (): Buffer {
  return frame(FrameType.settings, 0, 0)
}

export function headersFrame (streamId: number, block: Buffer, options: { endHeaders: boolean, endStream?: boolean }): Buffer {
  const flags = (options.endHeaders ? Flag.endHeaders : 0) | (options.endStream === true ? Flag.endStream : 0)
  return frame(FrameType.headers, flags, streamId, block)
}

export function continuationFrame (streamId: number, block: Buffer, endHeaders: boolean): Buffer {
  return frame(FrameType.continuation, endHeaders ? Flag.endHeaders : 0, streamId, block)
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1); `high` holds the bits above the prefix. */
function hpackInteger (value: number, prefixBits: number, high: number): Buffer {
  const max = (1 << prefixBits) - 1
  if (value < max) return Buffer.from([high | value])
  const bytes = [high | max]
  let rest = value - max
  while (rest >= 128) {
    bytes.push((rest % 128) + 128)
    rest = Math.floor(rest / 128)
  }
  bytes.push(rest)
  return Buffer.from(bytes)
}

function hpackString (text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1')
  return Buffer.concat([hpackInteger(bytes.length, 7, 0), bytes])
}

/** A "literal header field without indexing, new name" (RFC 7541 §6.2.2): nothing lands in the peer's table. */
export function literalHeader (name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0]), hpackString(name), hpackString(value)])
}

/** The header block of a GET request (pseudo-headers only). */
export function requestBlock (authority: string, path: string): Buffer {
  return Buffer.concat([
    literalHeader(':method', 'GET'), literalHeader(':scheme', 'http'), literalHeader(':path', path), literalHeader(':authority', authority)
  ])
}

/** Splits a byte stream into frames as it arrives. */
export class FrameReader {
  readonly frames: Frame[] = []
  private pending = Buffer.alloc(0)

  /** Bytes from a server (which sends no preface string: its bytes are frames from the start). */
  push (chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk])
    while (this.pending.length >= 9) {
      const length = this.pending.readUIntBE(0, 3)
      if (this.pending.length < 9 + length) return
      this.frames.push({
        type: this.pending[3]!,
        flags: this.pending[4]!,
        streamId: this.pending.readUInt32BE(5) & 0x7fffffff,
        payload: this.pending.subarray(9, 9 + length)
      })
      this.pending = this.pending.subarray(9 + length)
    }
  }

  /** The GOAWAY's error code, if the peer sent one. */
  goawayCode (): number | undefined {
    const goaway = this.frames.find((f) => f.type === FrameType.goaway)
    return goaway?.payload.readUInt32BE(4)
  }

  /** The RST_STREAM error code for `streamId`, if the peer sent one. */
  resetCode (streamId: number): number | undefined {
    const reset = this.frames.find((f) => f.type === FrameType.rstStream && f.streamId === streamId)
    return reset?.payload.readUInt32BE(0)
  }

  /** Whether the peer answered `streamId` with response headers. */
  answered (streamId: number): boolean {
    return this.frames.some((f) => f.type === FrameType.headers && f.streamId === streamId)
  }
}
