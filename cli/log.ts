/** The one place loggers are made: JSON lines on stderr, quiet (warn) unless asked. */
import { writeSync } from 'node:fs'
import net from 'node:net'
import { pino, type Logger } from 'pino'
import type { AccessLog } from '../gateway/pipeline.js'
import { ConfigError } from '../policy/errors.js'

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])

/** `fd` 1 for data logs people pipe (access logs); 2 (stderr) for everything else. */
export function createLogger (level: string | undefined, component: string, fd: 1 | 2 = 2): Logger {
  const chosen = level ?? process.env.AMBIT_LOG_LEVEL ?? 'warn'
  if (!LEVELS.has(chosen)) throw new ConfigError(`--log-level must be one of ${[...LEVELS].join(', ')}, got "${chosen}"`)
  return pino({ level: chosen, base: { component }, redact: ['token', '*.token', 'key', '*.key', 'authorization', '*.authorization'] }, pino.destination(fd))
}

/** Access log lines are gathered up to this many bytes before a write (one syscall per ~100 lines). */
const ACCESS_LOG_BATCH_BYTES = 32 * 1024
/** ...and written at least this often, so a quiet waypoint's lines still show at once. */
const ACCESS_LOG_FLUSH_MS = 1_000
/** Lines beyond this much unwritten output (stdout not read) are dropped rather than held. */
const ACCESS_LOG_MAX_BUFFER_BYTES = 64 * 1024 * 1024
/** pino's number for `info`: access log lines read like any other ambit log line. */
const INFO_LEVEL = 30

/** Where batches of access log lines go. */
interface LineSink {
  write (text: string): void
  /** Writes the last lines and whatever is still held, at exit (nothing asynchronous runs then). */
  writeFinal (text: string): void
}

/**
 * The waypoint's access log: one JSON line per request on stdout, in pino's shape
 * ({"level":30,"time":…,"component":"access",…fields,"msg":"access"}), so the same tools read
 * it. It is not a pino logger: a line is one JSON.stringify of fields built from request
 * metadata (never headers or bodies, so pino's redaction and serializers have nothing to do),
 * and lines are joined into ~32 KiB batches. Batches are flushed every second and at exit.
 */
export function createAccessLogger (): AccessLog {
  return new AccessLogWriter(stdoutSink())
}

/**
 * A pipe or a socket on stdout (a container runtime, systemd, `| jq`) is written by libuv from
 * the event loop without blocking: what the reader has not taken yet waits in memory, and past
 * ACCESS_LOG_MAX_BUFFER_BYTES lines are dropped. A file or a terminal, which Node writes
 * synchronously, goes through sonic-boom's thread-pool writes instead (same bound). The pipe
 * path is the one production takes, and the cheaper: sonic-boom's hand-offs to the thread pool
 * cost the waypoint ≈ 4 µs a request under load (bench/RESULTS.md).
 */
function stdoutSink (): LineSink {
  const stdout = process.stdout
  if (stdout.isTTY || !(stdout instanceof net.Socket)) {
    const boom = pino.destination({ dest: 1, sync: false, maxLength: ACCESS_LOG_MAX_BUFFER_BYTES })
    return {
      write: (text) => { boom.write(text) },
      writeFinal: (text) => {
        boom.write(text)
        boom.flushSync()
      }
    }
  }
  return {
    write: (text) => { if (stdout.writableLength < ACCESS_LOG_MAX_BUFFER_BYTES) stdout.write(text) },
    // A process that ends by itself has written everything it queued; the pipe may still be
    // full, so the last lines are written synchronously, waiting a little for room. (One made to
    // exit with lines still queued loses those: they cannot be written in order any more.)
    writeFinal: (text) => {
      if (stdout.writableLength === 0) writeWithin(1, Buffer.from(text), ACCESS_LOG_EXIT_WAIT_MS)
      else stdout.write(text)
    }
  }
}

/** How long the last lines may wait at exit for a full pipe to take them. */
const ACCESS_LOG_EXIT_WAIT_MS = 2_000
const pause = new Int32Array(new SharedArrayBuffer(4))

/** Writes `bytes` to the non-blocking `fd`, retrying while it is full, for at most `waitMs`. */
function writeWithin (fd: number, bytes: Buffer, waitMs: number): void {
  const deadline = Date.now() + waitMs
  let rest = bytes
  while (rest.length > 0) {
    try {
      rest = rest.subarray(writeSync(fd, rest))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > deadline) return
      Atomics.wait(pause, 0, 0, 1)
    }
  }
}

class AccessLogWriter implements AccessLog {
  private batch: string[] = []
  private batchLength = 0

  constructor (private readonly sink: LineSink) {
    setInterval(() => this.flush(), ACCESS_LOG_FLUSH_MS).unref()
    process.once('exit', () => {
      sink.writeFinal(this.batch.join(''))
      this.batch = []
      this.batchLength = 0
    })
  }

  info (record: object, msg: string): void {
    const fields = JSON.stringify(record)
    // pino's order: level, time, the logger's bindings, the record's fields, msg.
    const line = `{"level":${INFO_LEVEL},"time":${Date.now()},"component":"access",${fields.length > 2 ? `${fields.slice(1, -1)},` : ''}"msg":${JSON.stringify(msg)}}\n`
    this.batch.push(line)
    this.batchLength += line.length
    if (this.batchLength >= ACCESS_LOG_BATCH_BYTES) this.flush()
  }

  private flush (): void {
    if (this.batch.length === 0) return
    this.sink.write(this.batch.join(''))
    this.batch = []
    this.batchLength = 0
  }
}
