/**
 * The sample shop (npm start) and the canonical ztunnel test both use 127.0.0.2/.3 and the
 * standard ports; the sample's waypoint also listens on 127.0.0.13. Tests that use them hold
 * this cross-process lock so tap's parallel jobs take turns, and wait for stragglers to
 * release the ports. No other test may use these addresses.
 */
import { open, unlink } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Teardown } from './redis.js'
import { isRunning } from './netns.js'

const LOCK = join(tmpdir(), 'ambit-test-127.0.0.2-3.lock')
export const SAMPLE_NODE_ADDRESSES = ['127.0.0.2', '127.0.0.3'] as const
export const ZTUNNEL_PORTS = [15000, 15001, 15006, 15008, 15020, 15021, 15080] as const
/** The sample's waypoint instance (examples/shop/40-waypoint.yaml) and the ports it listens on. */
export const SAMPLE_WAYPOINT_ADDRESS = '127.0.0.13'
export const WAYPOINT_PORTS = [15000, 15008, 15020, 15021] as const

/** Every address:port the sample mesh's proxies listen on. */
export function sampleProxyPorts (): Array<readonly [string, number]> {
  return [
    ...SAMPLE_NODE_ADDRESSES.flatMap((address) => ZTUNNEL_PORTS.map((port) => [address, port] as const)),
    ...WAYPOINT_PORTS.map((port) => [SAMPLE_WAYPOINT_ADDRESS, port] as const)
  ]
}

export async function isListening (address: string, port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = net.connect({ host: address, port })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

/** Takes the lock (stale once its holder process is gone), then waits until the sample ports are free. */
export async function holdSampleAddresses (t: Teardown, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      const handle = await open(LOCK, 'wx')
      await handle.writeFile(String(process.pid))
      await handle.close()
      break
    } catch {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${LOCK}`)
      await removeIfStale()
      await sleep(200)
    }
  }
  t.teardown(() => unlink(LOCK).catch(() => {}))
  for (const [address, port] of sampleProxyPorts()) {
    while (await isListening(address, port)) {
      if (Date.now() > deadline) throw new Error(`${address}:${port} is still in use`)
      await sleep(250)
    }
  }
}

async function removeIfStale (): Promise<void> {
  try {
    const { readFile } = await import('node:fs/promises')
    const holder = Number(await readFile(LOCK, 'utf8'))
    if (Number.isInteger(holder) && holder > 0 && !isRunning(holder)) await unlink(LOCK)
  } catch {
    // Gone already, or being written: the next attempt will tell.
  }
}

