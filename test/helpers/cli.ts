/** Runs the built `ambit` CLI (dist/) as a real child process, as a user would. */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { CLI, REPO_ROOT } from './mesh.js'
import type { Teardown } from './redis.js'

export interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export async function runCli (args: readonly string[], options: { input?: string, timeoutMs?: number } = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  child.stdin.end(options.input ?? '')
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000)
  const [code] = await once(child, 'exit') as [number | null]
  clearTimeout(timer)
  return { code, stdout, stderr }
}

export interface LongRunning {
  readonly child: ChildProcess
  output (): string
  /** Resolves once stdout+stderr match `pattern`. */
  waitFor (pattern: RegExp, timeoutMs?: number): Promise<string>
  /** Sends the signal and resolves with the exit code (null if it had to be killed after `timeoutMs`). */
  stop (signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>
}

/** Starts a long-running command (controller, up...); killed at teardown if still running. */
export function startCli (t: Teardown, args: readonly string[], env: NodeJS.ProcessEnv = {}): LongRunning {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  let output = ''
  const collect = (d: Buffer): void => { output += d.toString() }
  child.stdout.on('data', collect)
  child.stderr.on('data', collect)
  const exited = once(child, 'exit') as Promise<[number | null]>
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  return {
    child,
    output: () => output,
    async waitFor (pattern, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs
      while (!pattern.test(output)) {
        if (child.exitCode !== null) throw new Error(`ambit ${args[0]} exited (${child.exitCode}) before printing ${pattern}:\n${output}`)
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern} from ambit ${args[0]}:\n${output}`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      return output
    },
    async stop (signal = 'SIGTERM', timeoutMs = 20_000) {
      if (child.exitCode !== null) return child.exitCode
      child.kill(signal)
      // A process that ignores the signal fails the test (exit code null) instead of hanging it.
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
      const [code] = await exited
      clearTimeout(timer)
      return code
    }
  }
}
