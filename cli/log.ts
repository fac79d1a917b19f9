/** The one place loggers are made: JSON lines on stderr, quiet (warn) unless asked. */
import { pino, type Logger } from 'pino'
import { ConfigError } from '../policy/errors.js'

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])

/** `fd` 1 for data logs people pipe (access logs); 2 (stderr) for everything else. */
export function createLogger (level: string | undefined, component: string, fd: 1 | 2 = 2): Logger {
  const chosen = level ?? process.env.AMBIT_LOG_LEVEL ?? 'warn'
  if (!LEVELS.has(chosen)) throw new ConfigError(`--log-level must be one of ${[...LEVELS].join(', ')}, got "${chosen}"`)
  return pino({ level: chosen, base: { component }, redact: ['token', '*.token', 'key', '*.key', 'authorization', '*.authorization'] }, pino.destination(fd))
}

/** Access log lines are buffered up to this many bytes before a write (one syscall per ~40 lines). */
const ACCESS_LOG_BATCH_BYTES = 8 * 1024
/** ...and written at least this often, so a quiet waypoint's lines still show at once. */
const ACCESS_LOG_FLUSH_MS = 1_000
/** Lines beyond this much unwritten output (stdout not read) are dropped rather than held. */
const ACCESS_LOG_MAX_BUFFER_BYTES = 64 * 1024 * 1024

/**
 * The waypoint's access log: one JSON line per request on stdout. Its records are built field
 * by field from request metadata (never headers or bodies), so the redaction pass the other
 * loggers run would only cost time on the hot path. Lines are written in batches, flushed
 * every second and when the process exits.
 */
export function createAccessLogger (): Logger {
  const destination = pino.destination({
    dest: 1, sync: false, minLength: ACCESS_LOG_BATCH_BYTES, periodicFlush: ACCESS_LOG_FLUSH_MS, maxLength: ACCESS_LOG_MAX_BUFFER_BYTES
  })
  return pino({ base: { component: 'access' } }, destination)
}
