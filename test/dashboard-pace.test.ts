/**
 * How often the dashboard reads the proxies' metrics: at the idle pace while no page watches,
 * at once and then at the quick pace while an event stream is open or /api/mesh was just asked,
 * back to the idle pace once the page has gone. A real HTTP server and fetch; the proxies are
 * in-process metrics sources that count their reads.
 */
import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { Dashboard } from '../control/dashboard.js'
import { IssuedCertificates } from '../control/issued-certificates.js'

const QUICK_MS = 50
const IDLE_MS = 1_500

t.test('the dashboard reads proxies quickly only while a page watches', async (t) => {
  let reads = 0
  const dashboard = new Dashboard({
    state: () => undefined,
    revision: () => 0,
    sources: () => [{ name: 'ztunnel node-a', read: async () => { reads++; return '' } }],
    certificates: new IssuedCertificates(),
    refreshMs: QUICK_MS,
    idleRefreshMs: IDLE_MS
  })
  const server = http.createServer((req, res) => {
    void dashboard.handle(req, res, req.url ?? '/').then((handled) => { if (!handled) res.writeHead(404).end() })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(() => {
    dashboard.stop()
    server.closeAllConnections()
    server.close()
  })

  dashboard.start()
  await sleep(600)
  t.ok(reads <= 1, `no page: ${reads} read in 600 ms (the first one; the next ${IDLE_MS} ms later)`)

  const before = reads
  const events = new AbortController()
  const stream = await fetch(`${base}/api/events`, { signal: events.signal })
  t.equal(stream.status, 200, 'a page opens the event stream')
  await sleep(600)
  t.ok(reads - before >= 5, `while it is open: ${reads - before} reads in 600 ms (every ${QUICK_MS} ms)`)

  events.abort()
  await sleep(200)
  const afterClose = reads
  await sleep(600)
  t.ok(reads - afterClose <= 1, `once it closed: ${reads - afterClose} read in 600 ms (back to every ${IDLE_MS} ms)`)

  await sleep(IDLE_MS)
  t.ok(reads > afterClose, 'and the idle pace still reads now and then, so charts have history when a page opens')

  const beforeApi = reads
  t.equal((await fetch(`${base}/api/mesh`)).status, 200)
  await sleep(600)
  t.ok(reads - beforeApi >= 5, `a /api/mesh call counts as watching too: ${reads - beforeApi} reads in 600 ms`)
})
