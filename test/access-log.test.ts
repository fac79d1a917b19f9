/**
 * The waypoint's access log writer (cli/log.ts createAccessLogger), in a real child process:
 * on a pipe it writes from the event loop and never blocks it, even while the reader stalls;
 * on a file it goes through sonic-boom. Either way every line arrives whole, in order, in
 * pino's shape.
 */
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, open, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { REPO_ROOT } from './helpers/mesh.js'

const LOG_MODULE = pathToFileURL(join(REPO_ROOT, 'dist/cli/log.js')).href
/** ~100 bytes a line: about 20 MB, far more than a pipe holds. */
const LINES = 200_000

/**
 * Logs LINES lines at once, then reports on stderr how often a 10 ms timer fired in the next
 * 300 ms: a writer that blocked on a full pipe would stop the event loop, and the timer.
 */
const CHILD = `
import { createAccessLogger } from ${JSON.stringify(LOG_MODULE)}
const log = createAccessLogger()
let ticks = 0
const timer = setInterval(() => { ticks++ }, 10)
for (let i = 0; i < ${LINES}; i++) log.info({ method: 'GET', path: '/item/' + i, status: 200, i }, 'access')
setTimeout(() => { clearInterval(timer); process.stderr.write(JSON.stringify({ ticks }) + '\\n') }, 300)
`

function checkLines (t: Test, text: string): void {
  const lines = text.split('\n')
  t.equal(lines.pop(), '', 'the output ends with a full line')
  t.equal(lines.length, LINES, `all ${LINES} lines arrived`)
  const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>)
  t.ok(parsed.every((line, i) => line.i === i), 'in order, each whole')
  t.match(parsed[0], { level: 30, time: Number, component: 'access', method: 'GET', path: '/item/0', status: 200, msg: 'access' }, 'in pino\'s shape')
}

t.test('on a pipe: the event loop keeps turning while the reader stalls, and every line arrives', async (t) => {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  // Nothing is read for a second: the pipe fills up long before the child has written it all.
  child.stdout.pause()
  await new Promise((resolve) => setTimeout(resolve, 1000))
  t.match(stderr, /"ticks":/, 'the child reported while its stdout was full')
  const { ticks } = JSON.parse(stderr.trim()) as { ticks: number }
  t.ok(ticks >= 15, `its 10 ms timer fired ${ticks} times in 300 ms (a blocked writer stops it)`)
  const chunks: Buffer[] = []
  child.stdout.on('data', (d: Buffer) => chunks.push(d))
  const ended = Promise.all([once(child, 'exit'), once(child.stdout, 'end')])
  child.stdout.resume()
  const [[code]] = await ended as [[number | null], unknown[]]
  t.equal(code, 0, 'the child exited cleanly')
  checkLines(t, Buffer.concat(chunks).toString())
})

t.test('on a file: every line is in it once the process has exited', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-access-log-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const path = join(dir, 'access.log')
  const file = await open(path, 'w')
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], { stdio: ['ignore', file.fd, 'pipe'] })
  const [code] = await once(child, 'exit') as [number | null]
  await file.close()
  t.equal(code, 0, 'the child exited cleanly')
  checkLines(t, await readFile(path, 'utf8'))
})
