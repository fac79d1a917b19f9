/** The one place loggers are made: JSON lines on stderr, quiet (warn) unless asked. */
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

/** Access log lines are gathered up to this many bytes before a write (one syscall per ~25 lines). */
const ACCESS_LOG_BATCH_BYTES = 8 * 1024
/** ...and written at least this often, so a quiet waypoint's lines still show at once. */
const ACCESS_LOG_FLUSH_MS = 1_000
/** Lines beyond this much unwritten output (stdout not read) are dropped rather than held. */
const ACCESS_LOG_MAX_BUFFER_BYTES = 64 * 1024 * 1024
/** pino's number for `info`: access log lines read like any other ambit log line. */
const INFO_LEVEL = 30

/**
 * The waypoint's access log: one JSON line per request on stdout, in pino's shape
 * ({"level":30,"time":…,"component":"access",…fields,"msg":"access"}), so the same tools read
 * it. It is not a pino logger: a line is one JSON.stringify of fields built from request
 * metadata (never headers or bodies, so pino's redaction and serializers have nothing to do),
 * and lines are joined into ~8 KiB batches here before sonic-boom writes them (given one line
 * at a time, sonic-boom re-measured its whole pending buffer on each). Measured alone: pino with
 * sonic-boom ≈ 4 µs a line, this ≈ 1.5 µs. Batches are flushed every second and at exit.
 */
export function createAccessLogger (): AccessLog {
  return new AccessLogWriter(pino.destination({ dest: 1, sync: false, maxLength: ACCESS_LOG_MAX_BUFFER_BYTES }))
}

class AccessLogWriter implements AccessLog {
  private batch: string[] = []
  private batchLength = 0

  constructor (private readonly destination: ReturnType<typeof pino.destination>) {
    setInterval(() => this.flush(), ACCESS_LOG_FLUSH_MS).unref()
    process.once('exit', () => {
      this.flush()
      destination.flushSync()
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
    this.destination.write(this.batch.join(''))
    this.batch = []
    this.batchLength = 0
  }
}
