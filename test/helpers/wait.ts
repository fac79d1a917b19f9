/** Polling waits for tests: generous timeouts (the machine may be loaded), clear failures. */
import { setTimeout as sleep } from 'node:timers/promises'

/** Resolves once `condition()` is true; rejects naming `what` after `timeoutMs`. */
export async function waitFor (what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(10)
  }
}
