/**
 * The processes a benchmark starts (servers, proxies), and what /proc says about them: CPU time
 * and resident memory. Every child is registered in one ProcessSet, so a failed or interrupted
 * run still ends them all.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

/** Linux reports utime/stime in clock ticks; 100 per second on every mainstream kernel config. */
const CLOCK_TICKS_PER_SECOND = 100
/** What a child printed last, kept to explain a failure. */
const OUTPUT_TAIL_CHARS = 4000

export interface Child {
  readonly name: string
  readonly pid: number
  /** The last few thousand characters the process wrote to stdout and stderr. */
  output (): string
  /** Resolves when the process has exited. */
  readonly exited: Promise<number | null>
  hasExited (): boolean
}

export class ProcessSet {
  private readonly children = new Map<Child, ChildProcess>()

  /** Starts `command`; its output is kept (bounded) for error messages. */
  start (name: string, command: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Child {
    const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    if (proc.pid === undefined) throw new Error(`cannot start ${name} (${command})`)
    let tail = ''
    const keep = (chunk: Buffer): void => { tail = (tail + chunk.toString()).slice(-OUTPUT_TAIL_CHARS) }
    proc.stdout?.on('data', keep)
    proc.stderr?.on('data', keep)
    let done = false
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => { done = true; resolve(code) }))
    const child: Child = { name, pid: proc.pid, output: () => tail, exited, hasExited: () => done }
    proc.once('error', (err) => { tail += `\n${err.message}` })
    this.children.set(child, proc)
    void exited.then(() => this.children.delete(child))
    return child
  }

  /** The children still running. */
  list (): Child[] {
    return [...this.children.keys()]
  }

  /** SIGTERM, then SIGKILL for a process still there after `graceMs`. */
  async stop (child: Child, graceMs = 5000): Promise<void> {
    const proc = this.children.get(child)
    if (proc === undefined) return
    proc.kill('SIGTERM')
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs)
    await child.exited
    clearTimeout(timer)
  }

  async stopAll (): Promise<void> {
    await Promise.all([...this.children.keys()].map(async (child) => await this.stop(child)))
  }

  /** For process 'exit' handlers, where nothing asynchronous runs any more. */
  killAllNow (): void {
    for (const proc of this.children.values()) proc.kill('SIGKILL')
  }
}

export interface CpuTime {
  /** In the process itself (utime). */
  readonly userMicros: number
  /** In the kernel on its behalf: syscalls, and on loopback much of the TCP stack (stime). */
  readonly systemMicros: number
}

/** CPU time the process (all its threads) has used so far. */
export function cpuTimeOf (pid: number): CpuTime {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const toMicros = (ticks: string | undefined): number => (Number(ticks) * 1e6) / CLOCK_TICKS_PER_SECOND
  return { userMicros: toMicros(fields[11]), systemMicros: toMicros(fields[12]) }
}

export interface Memory {
  readonly rssBytes: number
  readonly peakRssBytes: number
}

export function memoryOf (pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
  return { rssBytes: kib('VmRSS'), peakRssBytes: kib('VmHWM') }
}

/** Resolves once something accepts TCP on host:port; fails after `timeoutMs`, quoting `child`. */
export async function waitForTcp (host: string, port: number, timeoutMs: number, child?: Child): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await accepts(host, port))) {
    if (child?.hasExited() === true) throw new Error(`${child.name} exited before listening on ${host}:${port}; it said:\n${child.output()}`)
    if (Date.now() > deadline) {
      throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms${child === undefined ? '' : `; ${child.name} said:\n${child.output()}`}`)
    }
    await sleep(100)
  }
}

function accepts (host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}
