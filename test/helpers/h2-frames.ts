/**
 * Raw HTTP/2 frames (RFC 9113 §4.1), for tests that must control exactly what goes on the
 * wire and when: a client library would merge, reorder or drop what an attacker sends.
 *
 *   socket.write(Buffer.concat([CLIENT_PREFACE, settingsFrame(), connectHeaders(1, '10.0.0.5:80'), rstStream(1)]))
 *   goawayCode(bytesTheServerSent)   // the error code of its GOAWAY, if it sent one
 */
export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')

const FRAME_HEADERS = 0x1
const FRAME_RST_STREAM = 0x3
const FRAME_SETTINGS = 0x4
const FRAME_GOAWAY = 0x7
const FLAG_END_HEADERS = 0x4
const CANCEL = 0x8

/** A frame: length (24 bits), type, flags, stream id (31 bits), payload. */
export function frame (type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9)
  header.writeUIntBE(payload.length, 0, 3)
  header[3] = type
  header[4] = flags
  header.writeUInt32BE(streamId, 5)
  return Buffer.concat([header, payload])
}

/** An empty SETTINGS frame (the client keeps every default). */
export function settingsFrame (): Buffer {
  return frame(FRAME_SETTINGS, 0, 0)
}

/**
 * HEADERS for `CONNECT authority` on `streamId`, HPACK-encoded without compression state:
 * each field a "literal without indexing" whose name is the static table's entry
 * (1 = :authority, 2 = :method), its value a plain (not Huffman) string shorter than 127 bytes.
 */
export function connectHeaders (streamId: number, authority: string): Buffer {
  const field = (nameIndex: number, value: string): Buffer => Buffer.concat([Buffer.from([nameIndex, value.length]), Buffer.from(value, 'latin1')])
  return frame(FRAME_HEADERS, FLAG_END_HEADERS, streamId, Buffer.concat([field(2, 'CONNECT'), field(1, authority)]))
}

/** RST_STREAM with CANCEL: the client gives up on the stream. */
export function rstStream (streamId: number): Buffer {
  const code = Buffer.alloc(4)
  code.writeUInt32BE(CANCEL)
  return frame(FRAME_RST_STREAM, 0, streamId, code)
}

/** The error code of the first GOAWAY among raw server frames, or undefined when there is none. */
export function goawayCode (bytes: Buffer): number | undefined {
  for (let offset = 0; offset + 9 <= bytes.length; offset += 9 + bytes.readUIntBE(offset, 3)) {
    if (bytes[offset + 3] === FRAME_GOAWAY && offset + 17 <= bytes.length) return bytes.readUInt32BE(offset + 13)
  }
  return undefined
}
