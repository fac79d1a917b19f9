/**
 * The dashboard's HTTP side on `ambit controller` (proxies in other processes, none running
 * here): the page and its modules with their content types, /api/mesh as JSON, and
 * /api/events as Server-Sent Events with a first snapshot at once and more every ~2 s.
 */
import t from 'tap'
import { startCli } from './helpers/cli.js'
import { SHOP_DIR, shopState } from './helpers/mesh.js'
import { startRedis } from './helpers/redis.js'
import type { MeshSnapshot } from '../control/mesh-snapshot.js'

const FIRST_EVENT_MS = 3_000

t.test('ambit controller serves the dashboard, /api/mesh and /api/events on its status port', async (t) => {
  const expected = Object.keys((await shopState()).services).sort()
  const redis = await startRedis(t)
  const controller = startCli(t, ['controller', '--store', redis.url, '-f', SHOP_DIR, '--ca-port', '0', '--status-port', '0'])
  const banner = await controller.waitFor(/status at (http:\/\/\S+);/, 60_000)
  const base = /status at (http:\/\/\S+);/.exec(banner)![1]!

  const page = await fetch(`${base}/`)
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html/)
  const html = await page.text()
  t.match(html, /<script type="module" src="\/app.js">/, 'the page loads its own modules, no CDN')
  t.notMatch(html, /https?:\/\//, 'nothing from another origin')
  for (const asset of ['/app.js', '/graph.js', '/charts.js', '/tables.js', '/dom.js']) {
    const response = await fetch(`${base}${asset}`)
    t.equal(response.status, 200, asset)
    t.match(response.headers.get('content-type'), /^text\/javascript/, `${asset} is served as a JavaScript module`)
  }
  t.match((await fetch(`${base}/style.css`)).headers.get('content-type'), /^text\/css/)
  t.equal((await fetch(`${base}/package.json`)).status, 404, 'only the dashboard\'s own files')
  t.equal((await fetch(`${base}/..%2f..%2fpackage.json`)).status, 404, 'nothing outside its folder')

  const mesh = await fetch(`${base}/api/mesh`)
  t.equal(mesh.status, 200)
  t.match(mesh.headers.get('content-type'), /^application\/json/)
  const snapshot = await mesh.json() as MeshSnapshot
  t.strictSame(snapshot.services.map((s) => s.key), expected, 'every Service of the state')
  t.ok(snapshot.revision > 0, 'the committed revision')
  t.ok(snapshot.sources.some((s) => s.name === 'ztunnel node-a'), 'each node\'s ztunnel is a metrics source (scraped on 15020)')

  const started = Date.now()
  const eventsAbort = new AbortController()
  t.teardown(() => eventsAbort.abort())
  const events = await fetch(`${base}/api/events`, { signal: eventsAbort.signal })
  t.equal(events.status, 200)
  t.match(events.headers.get('content-type'), /^text\/event-stream/)
  const reader = events.body!.getReader()
  const decoder = new TextDecoder()
  const received: MeshSnapshot[] = []
  let buffer = ''
  let firstAt: number | undefined
  while (received.length < 2 && Date.now() - started < 15_000) {
    const { value, done } = await reader.read()
    if (done) break
    buffer += decoder.decode(value, { stream: true })
    let end
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const message = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const data = /^event: mesh\nid: \d+\ndata: (.*)$/m.exec(message)
      if (data === null) continue
      received.push(JSON.parse(data[1]!) as MeshSnapshot)
      firstAt ??= Date.now()
    }
  }
  t.equal(received.length, 2, 'a first snapshot, then a fresh one')
  t.ok(firstAt! - started < FIRST_EVENT_MS, `the first event within ${FIRST_EVENT_MS} ms (${firstAt! - started} ms)`)
  t.ok(received[1]!.sequence > received[0]!.sequence, 'each event is a newer snapshot')

  t.equal(await controller.stop('SIGTERM', 30_000), 0, 'the controller stops cleanly with a client connected')
})
