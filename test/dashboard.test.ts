/**
 * The acceptance test of the live dashboard: the sample mesh runs as the README says (with its
 * demo load), headless Chromium (Debian's, driven by playwright-core) opens the dashboard, sees
 * every Service of the sample in the graph with a non-zero request rate, receives live updates
 * over Server-Sent Events, opens a Service's charts, and saves a screenshot as an artifact.
 */
import t from 'tap'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { startCli } from './helpers/cli.js'
import { REPO_ROOT, SHOP_DIR, shopState } from './helpers/mesh.js'
import { holdSampleAddresses } from './helpers/sample-addresses.js'
import type { MeshSnapshot } from '../control/mesh-snapshot.js'

const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts')
const SLOW_MS = 90_000

t.test('the dashboard of `ambit up --demo` shows the sample live in a browser', async (t) => {
  // The expected Services come from the sample's YAML, whatever it holds today.
  const expected = Object.keys((await shopState()).services).sort()
  await holdSampleAddresses(t)
  const up = startCli(t, ['up', '-f', SHOP_DIR, '--demo', '--status-port', '0'])
  const banner = await up.waitFor(/dashboard at (http:\/\/\S+\/)/, SLOW_MS)
  const url = /dashboard at (http:\/\/\S+\/)/.exec(banner)![1]!

  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage']
  })
  t.teardown(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } })
  const pageErrors: string[] = []
  page.on('pageerror', (err) => pageErrors.push(err.message))
  await page.goto(url)

  // Every Service of the sample is a node of the graph.
  const serviceNodes = page.locator('[data-testid="node-service"]')
  await t.resolves(serviceNodes.first().waitFor({ timeout: SLOW_MS }), 'the graph is drawn')
  const shown = (await serviceNodes.evaluateAll((nodes) => nodes.map((n) => n.getAttribute('data-key')))).sort()
  t.strictSame(shown, expected, 'a graph node per Service of the sample')

  // The demo's load shows as a non-zero request rate, and traffic edges are drawn.
  // Page functions as strings: this file is typed without the DOM library.
  await page.waitForFunction('Number(document.querySelector(\'[data-testid="total-rps"]\')?.textContent) > 0', undefined, { timeout: SLOW_MS })
  t.ok(Number(await page.textContent('[data-testid="total-rps"]')) > 0, 'a non-zero total request rate')
  t.ok(await page.locator('[data-testid="traffic-edge"]').count() > 0, 'traffic edges between workloads and Services')

  // Live: the page keeps receiving snapshots over SSE.
  const updatesBefore = Number(await page.textContent('[data-testid="update-count"]'))
  await page.waitForFunction(`Number(document.querySelector('[data-testid="update-count"]')?.textContent) >= ${updatesBefore + 2}`, undefined, { timeout: 30_000 })
  t.ok(Number(await page.textContent('[data-testid="update-count"]')) >= updatesBefore + 2, 'snapshots keep arriving over Server-Sent Events')
  t.equal(await page.textContent('[data-testid="connection"]'), 'live')

  // Clicking the busiest Service opens its charts, drawn from at least two points.
  const snapshot = await (await fetch(new URL('api/mesh', url))).json() as MeshSnapshot
  const busiest = [...snapshot.services].sort((a, b) => b.rps - a.rps)[0]!
  t.ok(busiest.rps > 0, `${busiest.key} has traffic`)
  await page.click(`[data-testid="node-service"][data-key="${busiest.key}"]`)
  await page.waitForFunction('(document.querySelector(\'[data-testid="chart-rps-line"]\')?.getAttribute("d") ?? "").includes("L")', undefined, { timeout: 30_000 })
  t.equal(await page.textContent('[data-testid="service-title"]'), busiest.key, 'the side panel shows the clicked Service')
  t.match(await page.getAttribute('[data-testid="chart-rps-line"]', 'd'), /^M [\d.]+ [\d.]+( L [\d.]+ [\d.]+)+$/, 'the req/s chart is a line through several points')
  t.equal(await page.locator('[data-testid="chart-success"]').count(), 1, 'a success-rate chart')
  t.equal(await page.locator('[data-testid="chart-p99"]').count(), 1, 'a p99 chart')
  t.ok(await page.locator('[data-testid="policy-row"]').count() > 0, 'the policies table')
  t.ok(await page.locator('[data-testid="certificate-row"]').count() > 0, 'the certificates table')

  await mkdir(ARTIFACTS, { recursive: true })
  const screenshot = join(ARTIFACTS, 'dashboard.png')
  await page.screenshot({ path: screenshot, fullPage: true })
  t.comment(`screenshot: ${screenshot}`)
  t.strictSame(pageErrors, [], 'no script errors on the page')

  await browser.close()
  t.equal(await up.stop('SIGTERM', 30_000), 0, 'ambit up stops cleanly')
})
