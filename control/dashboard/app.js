// The dashboard page: a first snapshot from /api/mesh, then live ones from /api/events (SSE).
/* global document, fetch, EventSource */
import { el, percent, ms, rate, unitsOf } from './dom.js'
import { renderGraph } from './graph.js'
import { lineChart } from './charts.js'
import { renderTables } from './tables.js'

let latest
let selected
let updates = 0

function select (key) {
  selected = key
  render()
}

function render () {
  if (latest === undefined) return
  document.getElementById('revision').textContent = String(latest.revision)
  document.getElementById('total-rps').textContent = rate(latest.totals.rps)
  document.getElementById('updates').textContent = String(updates)
  document.getElementById('updated-at').textContent = new Date(latest.time).toLocaleTimeString()
  renderGraph(document.getElementById('graph'), latest.graph, latest.services, selected, select)
  renderTables(document, latest, select)
  renderServicePanel()
}

function renderServicePanel () {
  const panel = document.getElementById('service-panel')
  const service = latest.services.find((s) => s.key === selected)
  panel.hidden = service === undefined
  if (service === undefined) return
  panel.setAttribute('data-key', service.key)
  const units = unitsOf(service)
  panel.replaceChildren(
    el('button', { class: 'close', title: 'close', onclick: () => select(undefined) }, '×'),
    el('h2', { 'data-testid': 'service-title' }, service.key),
    el('p', {}, `${service.ports.join(', ')} · VIP ${service.vip ?? '–'} · ${service.waypoint === undefined ? 'no waypoint (L4 metrics)' : `waypoint ${service.waypoint} (L7 metrics)`}`),
    el('dl', {},
      el('dt', {}, units.rate), el('dd', {}, rate(service.rps)),
      el('dt', {}, units.success), el('dd', {}, percent(service.successRate)),
      el('dt', {}, 'p99'), el('dd', {}, ms(service.p99Ms)),
      el('dt', {}, 'mTLS'), el('dd', {}, percent(service.mtlsShare))),
    lineChart('rps', units.rate, service.history, (p) => p.rps, rate),
    lineChart('success', units.success, service.history, (p) => p.successRate, percent, 1),
    lineChart('p99', 'p99', service.history, (p) => p.p99Ms, ms))
}

function show (snapshot) {
  latest = snapshot
  render()
}

function connect () {
  const status = document.getElementById('connection')
  const events = new EventSource('/api/events')
  events.addEventListener('open', () => { status.textContent = 'live'; status.className = 'badge ok' })
  events.addEventListener('error', () => { status.textContent = 'reconnecting…'; status.className = 'badge bad' })
  events.addEventListener('mesh', (event) => {
    updates += 1
    show(JSON.parse(event.data))
  })
}

fetch('/api/mesh').then((r) => r.json()).then(show).catch(() => {})
connect()
