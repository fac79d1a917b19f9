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

/**
 * The waypoint's access log: one JSON line per request on stdout. Its
 * records are built field by field from request metadata (never headers or bodies), so the
 * redaction pass the other loggers run would only cost time on the hot path.
 */
export function createAccessLogger (): Logger {
  return pino({ base: { component: 'access' } }, pino.destination(1))
}
