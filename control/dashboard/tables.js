// The snapshot's lists as tables: services, policies with rule hits, waypoints, routes, certificates.
import { el, percent, ms, rate, health, unitsOf } from './dom.js'

function table (root, headings, rows) {
  root.replaceChildren(
    el('thead', {}, el('tr', {}, headings.map((h) => el('th', {}, h)))),
    el('tbody', {}, rows.length > 0 ? rows : el('tr', {}, el('td', { colspan: headings.length, class: 'none' }, 'none')))
  )
}

export function renderTables (document, snapshot, onSelect) {
  const byId = (id) => document.getElementById(id)
  table(byId('services-table'), ['Service', 'rate', 'success', 'p99', 'mTLS', 'endpoints', 'waypoint'],
    snapshot.services.map((s) => el('tr', { 'data-testid': 'service-row', 'data-key': s.key },
      el('td', {}, el('a', { href: '#', onclick: (e) => { e.preventDefault(); onSelect(s.key) } }, s.key)),
      el('td', { class: 'num' }, `${rate(s.rps)} ${unitsOf(s).rate}`),
      el('td', { class: `num ${s.successRate === undefined ? '' : health(1 - s.successRate)}`, title: unitsOf(s).success }, percent(s.successRate)),
      el('td', { class: 'num' }, ms(s.p99Ms)),
      el('td', { class: 'num' }, percent(s.mtlsShare)),
      el('td', {}, s.endpoints.join(', ')),
      el('td', {}, s.waypoint ?? '–'))))
  table(byId('policies-table'), ['Policy', 'action', 'applies to', 'rule hits'],
    snapshot.policies.map((p) => el('tr', { 'data-testid': 'policy-row', 'data-key': p.key },
      el('td', {}, p.key),
      el('td', { class: `action ${p.action.toLowerCase()}` }, p.action),
      el('td', {}, p.appliesTo),
      el('td', {}, p.rules.length === 0 ? 'no rules' : p.rules.map((r) => el('span', { class: r.hits > 0 ? 'hit' : 'miss' }, `#${r.index}: ${r.hits}`))))))
  table(byId('waypoints-table'), ['Waypoint', 'instances', 'Services', 'identity'],
    snapshot.waypoints.map((w) => el('tr', {}, el('td', {}, w.key), el('td', {}, w.instances.join(', ') || 'none'), el('td', {}, w.services.join(', ') || 'none'), el('td', {}, w.spiffeId))))
  table(byId('routes-table'), ['Route', 'parents', 'rules → backends (weight)'],
    snapshot.routes.map((r) => el('tr', { 'data-testid': 'route-row' },
      el('td', {}, `${r.kind} ${r.key}`),
      el('td', {}, r.parents.join(', ')),
      el('td', {}, r.rules.map((rule) => el('div', {}, `#${rule.index}: `,
        rule.backends.length === 0 ? 'the parent Service' : rule.backends.map((b) => `${b.name} ${b.percent}%`).join(', ')))))))
  table(byId('certificates-table'), ['workload', 'node', 'identity', 'expires'],
    snapshot.certificates.map((c) => el('tr', { 'data-testid': 'certificate-row' },
      el('td', {}, c.workload), el('td', {}, c.node), el('td', {}, c.spiffeId),
      el('td', { class: c.expiresInSeconds !== undefined && c.expiresInSeconds < 3600 ? 'bad' : '' },
        c.notAfter === undefined ? 'not issued yet' : `in ${duration(c.expiresInSeconds)} (${c.notAfter})`))))
  table(byId('sources-table'), ['source', 'state', 'detail'],
    snapshot.sources.map((s) => el('tr', {},
      el('td', {}, s.name),
      el('td', { class: s.stale ? 'bad' : 'ok' }, s.stale ? 'stale' : 'ok'),
      el('td', {}, s.error ?? (s.lastSuccess === undefined ? '' : `read ${new Date(s.lastSuccess).toLocaleTimeString()}`)))))
}

function duration (seconds) {
  if (seconds <= 0) return 'expired'
  const h = Math.floor(seconds / 3600)
  const m = Math.floor((seconds % 3600) / 60)
  return h > 0 ? `${h} h ${m} min` : `${m} min`
}
