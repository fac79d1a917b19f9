// Small SVG line charts of one Service's history.
import { svg } from './dom.js'

const WIDTH = 300
const HEIGHT = 90
const PAD = { left: 42, right: 8, top: 18, bottom: 14 }

/** A chart of `value(point)` over `points` ({t, ...}); points without a value are skipped. `max` fixes the scale. */
export function lineChart (id, title, points, value, format, max) {
  const data = points.filter((p) => value(p) !== undefined).map((p) => ({ t: p.t, v: value(p) }))
  const chart = svg('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'chart', 'data-testid': `chart-${id}`, 'data-points': data.length })
  chart.append(svg('text', { x: PAD.left, y: 12, class: 'chart-title' }, `${title}: ${data.length > 0 ? format(data[data.length - 1].v) : 'no data yet'}`))
  if (data.length === 0) return chart
  const t0 = data[0].t
  const t1 = Math.max(data[data.length - 1].t, t0 + 1)
  const top = max ?? (Math.max(...data.map((d) => d.v)) * 1.1 || 1)
  const x = (t) => PAD.left + (t - t0) / (t1 - t0) * (WIDTH - PAD.left - PAD.right)
  const y = (v) => HEIGHT - PAD.bottom - v / top * (HEIGHT - PAD.top - PAD.bottom)
  const d = data.map((p, i) => `${i === 0 ? 'M' : 'L'} ${x(p.t).toFixed(1)} ${y(p.v).toFixed(1)}`).join(' ')
  chart.append(
    svg('line', { x1: PAD.left, y1: HEIGHT - PAD.bottom, x2: WIDTH - PAD.right, y2: HEIGHT - PAD.bottom, class: 'axis' }),
    svg('text', { x: PAD.left - 4, y: PAD.top + 4, 'text-anchor': 'end', class: 'tick' }, format(top)),
    svg('text', { x: PAD.left - 4, y: HEIGHT - PAD.bottom, 'text-anchor': 'end', class: 'tick' }, format(0)),
    svg('text', { x: WIDTH - PAD.right, y: HEIGHT - 2, 'text-anchor': 'end', class: 'tick' }, `last ${Math.round((t1 - t0) / 1000)} s`),
    svg('path', { d, class: 'line', 'data-testid': `chart-${id}-line` }))
  return chart
}
