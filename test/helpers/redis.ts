/**
 * Real redis-server processes for tests: each on a free loopback port (never 6379) in its own
 * temp dir, restartable on the same port (so clients reconnect to the same URL), and cleaned up
 * by t.teardown or, if the test process dies first, by a process 'exit' hook.
 *
 *   const redis = await startRedis(t)                       // no persistence
 *   const redis = await startRedis(t, { persistent: true }) // AOF, fsync always: survives kill()
 *   const redis = await startRedis(t, { cluster: true })    // a one-node Cluster owning all slots
 *   const sentinel = await startSentinel(t, redis, 'main')  // a Sentinel watching `redis`
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

const REDIS_SERVER = '/usr/bin/redis-server'
const READY_TIMEOUT_MS = 20_000

/** The part of a tap Test this helper needs (kept structural so any test object fits). */
export interface Teardown {
  teardown (fn: () => unknown): void
}

export interface RedisServer {
  readonly url: string
  readonly port: number
  /** The server's working directory (AOF files, nodes.conf, sentinel.conf). */
  readonly dir: string
  /** (Re)starts the server on the same port and dir; resolves once it answers PING. */
  start (): Promise<void>
  /** SIGTERM, then waits for the exit (a clean shutdown). */
  stop (): Promise<void>
  /** SIGKILL, then waits for the exit (a crash: no shutdown work at all). */
  kill (): Promise<void>
}

export interface RedisServerOptions {
  /** Append-only file with fsync on every write, so the data survives kill(). */
  readonly persistent?: boolean
  /** Cluster mode with this single node owning all 16384 slots. */
  readonly cluster?: boolean
  /** Extra redis-server arguments. */
  readonly args?: readonly string[]
}

const running = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

export async function startRedis (t?: Teardown, options: RedisServerOptions = {}): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-redis-'))
  const server = new RedisProcess(dir, await freePort(), (port) => [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--dir', dir,
    '--save', '',
    ...(options.persistent === true
      ? ['--appendonly', 'yes', '--appendfsync', 'always']
      : ['--appendonly', 'no']),
    ...(options.cluster === true
      // Alone, a node does not know its own address and CLUSTER SLOTS would name none.
      ? ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-announce-ip', '127.0.0.1']
      : []),
    ...(options.args ?? [])
  ])
  t?.teardown(() => server.dispose())
  await server.start()
  if (options.cluster === true) await claimAllSlots(server.port)
  return server
}

/** A Sentinel (quorum 1) monitoring `master` under `masterName`. */
export async function startSentinel (t: Teardown | undefined, master: RedisServer, masterName: string): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-sentinel-'))
  const port = await freePort()
  const configFile = join(dir, 'sentinel.conf')
  // Sentinel rewrites its config file, so it must be a real writable file, not arguments.
  await writeFile(configFile, [
    `port ${port}`,
    'bind 127.0.0.1',
    `dir ${dir}`,
    `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 1`,
    ''
  ].join('\n'))
  const sentinel = new RedisProcess(dir, port, () => [configFile, '--sentinel'])
  t?.teardown(() => sentinel.dispose())
  await sentinel.start()
  return sentinel
}

class RedisProcess implements RedisServer {
  readonly url: string
  private child: ChildProcess | undefined
  private output = ''

  constructor (readonly dir: string, readonly port: number, private readonly args: (port: number) => string[]) {
    this.url = `redis://127.0.0.1:${port}`
  }

  async start (): Promise<void> {
    if (this.child !== undefined) return
    const child = spawn(REDIS_SERVER, this.args(this.port), { stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    running.add(child)
    const keepTail = (chunk: Buffer): void => { this.output = (this.output + chunk.toString()).slice(-4000) }
    child.stdout?.on('data', keepTail)
    child.stderr?.on('data', keepTail)
    const exited = new Promise<never>((_resolve, reject) => {
      child.once('exit', (code, signal) => {
        running.delete(child)
        if (this.child === child) this.child = undefined
        reject(new Error(`redis-server on port ${this.port} exited (${code ?? signal}):\n${this.output}`))
      })
    })
    exited.catch(() => {}) // only awaited while starting; a later exit is expected
    await Promise.race([waitForPong(this.port), exited])
  }

  stop (): Promise<void> {
    return this.signal('SIGTERM')
  }

  kill (): Promise<void> {
    return this.signal('SIGKILL')
  }

  async dispose (): Promise<void> {
    await this.kill()
    await rm(this.dir, { recursive: true, force: true })
  }

  private async signal (signal: NodeJS.Signals): Promise<void> {
    const child = this.child
    if (child === undefined) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill(signal)
    await exited
  }
}

/** A port nothing listens on right now (the kernel picks it; redis binds it just after). */
async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no TCP port')
  return address.port
}

/** Sends one inline command over a raw socket (so the helper does not depend on the code under test). */
function rawCommand (port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let reply = ''
    socket.setTimeout(2000, () => socket.destroy(new Error('timeout')))
    socket.on('connect', () => socket.write(`${command}\r\n`))
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      if (isCompleteReply(reply)) socket.end()
    })
    socket.on('close', () => resolve(reply))
    socket.on('error', reject)
  })
}

/** A simple reply ends at its first CRLF; a bulk string ('$<length>') after <length> more bytes. */
function isCompleteReply (reply: string): boolean {
  const headerEnd = reply.indexOf('\r\n')
  if (headerEnd < 0) return false
  if (!reply.startsWith('$')) return true
  const length = Number(reply.slice(1, headerEnd))
  return length < 0 || Buffer.byteLength(reply) >= headerEnd + 2 + length + 2
}

/**
 * Until PING answers PONG, or NOAUTH for a server with a password: either way it is serving
 * (unlike -LOADING, the answer while an AOF is replayed).
 */
async function waitForPong (port: number): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    const reply = await rawCommand(port, 'PING').catch(() => '')
    if (reply.startsWith('+PONG') || reply.startsWith('-NOAUTH')) return
    if (Date.now() > deadline) throw new Error(`redis on port ${port} not ready after ${READY_TIMEOUT_MS} ms: ${reply}`)
    await sleep(25)
  }
}

async function claimAllSlots (port: number): Promise<void> {
  const added = await rawCommand(port, 'CLUSTER ADDSLOTSRANGE 0 16383')
  // A restarted node keeps its slots in nodes.conf and answers an error here; that is fine.
  if (!added.startsWith('+OK') && !added.includes('already busy')) throw new Error(`CLUSTER ADDSLOTSRANGE: ${added}`)
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (!(await rawCommand(port, 'CLUSTER INFO')).includes('cluster_state:ok')) {
    if (Date.now() > deadline) throw new Error(`cluster on port ${port} never reached state ok`)
    await sleep(50)
  }
}
