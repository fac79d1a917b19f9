/** Waiting for an HTTP endpoint a benchmark started to answer as expected. */
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Child } from '../l4/processes.js'

export interface Answer {
  readonly status: number
  readonly body: string
}

/** One GET on a fresh connection; undefined when it cannot connect. */
export function get (url: string): Promise<Answer | undefined> {
  return new Promise((resolve) => {
    const request = http.get(url, { agent: false }, (response) => {
      let body = ''
      response.on('data', (chunk: Buffer) => { body += chunk.toString() })
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }))
      response.on('error', () => resolve(undefined))
    })
    request.setTimeout(5000, () => request.destroy())
    request.on('error', () => resolve(undefined))
  })
}

/** Polls `url` until `accept` likes the answer; fails after `timeoutMs`, quoting `child`. */
export async function waitForAnswer (url: string, accept: (a: Answer) => boolean, timeoutMs: number, child: Child): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const answer = await get(url)
    if (answer !== undefined && accept(answer)) return
    if (child.hasExited()) throw new Error(`${child.name} exited before ${url} answered; it said:\n${child.output()}`)
    if (Date.now() > deadline) {
      throw new Error(`${url} answered ${answer === undefined ? 'nothing' : `${answer.status} "${answer.body.slice(0, 200)}"`} after ${timeoutMs} ms; ${child.name} said:\n${child.output()}`)
    }
    await sleep(200)
  }
}
