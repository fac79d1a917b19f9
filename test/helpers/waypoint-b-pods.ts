/**
 * HTTP pods for the waypoint tests: a real node:http server on the pod's address that answers
 * every request 200 with a JSON line naming the pod, the method and the path, and remembers
 * every request it saw (so a test can prove a refused request never reached a pod).
 *
 *   const web = await startWebPod(t, '127.0.7.42', 18080, 'web-a')
 *   web.seen   // [{ method: 'GET', path: '/admin' }, ...]
 */
import http from 'node:http'
import { once } from 'node:events'
import type { Teardown } from './redis.js'

export interface SeenRequest {
  readonly method: string
  readonly path: string
}

export interface WebPod {
  readonly name: string
  readonly seen: readonly SeenRequest[]
}

/** What a web pod answers: `{ pod, method, path }` and a newline. */
export interface WebAnswer extends SeenRequest {
  readonly pod: string
}

export async function startWebPod (t: Teardown, ip: string, port: number, name: string): Promise<WebPod> {
  const seen: SeenRequest[] = []
  const server = http.createServer((req, res) => {
    const request = { method: req.method ?? '', path: req.url ?? '' }
    seen.push(request)
    // Read the whole body before answering, as a real application would.
    req.resume()
    req.once('end', () => {
      const answer: WebAnswer = { pod: name, ...request }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(`${JSON.stringify(answer)}\n`)
    })
  })
  server.listen(port, ip)
  await once(server, 'listening')
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  return { name, seen }
}
