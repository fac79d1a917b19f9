/** Long-running commands stop on SIGTERM or SIGINT: stop accepting, drain, exit. */
import type { Logger } from 'pino'

/** How long stopping may take beyond the connection drain before the process exits anyway. */
const STOP_GRACE_MS = 5000

export function untilSignal (): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      process.off('SIGTERM', onSignal)
      process.off('SIGINT', onSignal)
      resolve(signal)
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  })
}

/**
 * Serves until a signal, then runs `stop`. A stop that hangs (a peer that never lets go) or a
 * handle some library leaves open must not keep a stopped process alive: past the drain and a
 * grace period, it exits anyway, saying so.
 */
export async function serveUntilSignal (logger: Logger, stop: () => Promise<void>, drainMs = 0): Promise<void> {
  const signal = await untilSignal()
  logger.info({ signal }, 'stopping')
  const deadline = setTimeout(() => {
    logger.error({ afterMs: drainMs + STOP_GRACE_MS }, 'stopping took too long; exiting anyway')
    process.exit(1)
  }, drainMs + STOP_GRACE_MS)
  try {
    await stop()
  } finally {
    clearTimeout(deadline)
  }
  setTimeout(() => {
    logger.warn({ open: process.getActiveResourcesInfo() }, 'something stayed open after stopping; exiting anyway')
    process.exit()
  }, STOP_GRACE_MS).unref()
}
