// The mesh topology as an SVG graph: columns by hops from the callers, edges by traffic.
import { svg, rate, health, unitsOf } from './dom.js'

const COLUMN_WIDTH = 190
const ROW_HEIGHT = 70
const MARGIN = 60
const NODE_WIDTH = 120
const NODE_HEIGHT = 38

/** Draws `graph` (snapshot.graph) into `root`; `onSelect(serviceKey)` when a Service is clicked. */
export function renderGraph (root, graph, services, selected, onSelect) {
  const positions = layout(graph.nodes)
  const columns = Math.max(1, ...graph.nodes.map((n) => n.column + 1))
  const rows = Math.max(1, ...[...positions.values()].map((p) => p.row + 1))
  root.setAttribute('viewBox', `0 0 ${2 * MARGIN + (columns - 1) * COLUMN_WIDTH + NODE_WIDTH} ${2 * MARGIN + (rows - 1) * ROW_HEIGHT}`)
  const rpsOf = new Map(services.map((s) => [s.key, s]))
  root.replaceChildren(
    svg('defs', {}, arrowHead()),
    ...graph.edges.filter((e) => e.kind === 'endpoint').map((e) => edgeShape(e, positions)),
    ...graph.edges.filter((e) => e.kind === 'traffic').map((e) => edgeShape(e, positions)),
    ...graph.nodes.map((n) => nodeShape(n, positions.get(n.id), rpsOf.get(n.key), selected, onSelect))
  )
}

function layout (nodes) {
  const positions = new Map()
  const rowsUsed = new Map()
  for (const node of nodes) {
    const row = rowsUsed.get(node.column) ?? 0
    rowsUsed.set(node.column, row + 1)
    positions.set(node.id, { x: MARGIN + node.column * COLUMN_WIDTH + NODE_WIDTH / 2, y: MARGIN + row * ROW_HEIGHT, row })
  }
  return positions
}

function arrowHead () {
  return svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' },
    svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrow' }))
}

function edgeShape (edge, positions) {
  const from = positions.get(edge.from)
  const to = positions.get(edge.to)
  if (from === undefined || to === undefined) return undefined
  const start = { x: from.x + NODE_WIDTH / 2, y: from.y }
  const end = { x: to.x - NODE_WIDTH / 2, y: to.y }
  // A call back to an earlier column loops below the nodes instead of crossing them.
  const bend = end.x > start.x ? (end.x - start.x) / 2 : 90
  const d = end.x > start.x
    ? `M ${start.x} ${start.y} C ${start.x + bend} ${start.y}, ${end.x - bend} ${end.y}, ${end.x} ${end.y}`
    : `M ${start.x} ${start.y} C ${start.x + bend} ${start.y + 80}, ${end.x - bend} ${end.y + 80}, ${end.x} ${end.y}`
  if (edge.kind === 'endpoint') return svg('path', { d, class: 'edge endpoint' })
  const width = 1.5 + Math.log2(1 + edge.rps) * 1.5
  const mtls = edge.mtlsShare >= 1
  const label = `${rate(edge.rps)}/s${edge.errorRate > 0 ? ` · ${(edge.errorRate * 100).toFixed(0)}% err` : ''}${mtls ? ' · mTLS' : ' · plaintext'}`
  return svg('g', { class: `edge traffic ${health(edge.errorRate)}`, 'data-testid': 'traffic-edge', 'data-from': edge.from, 'data-to': edge.to, 'data-rps': edge.rps },
    svg('path', { d, 'stroke-width': width, 'stroke-dasharray': mtls ? undefined : '6 4', 'marker-end': 'url(#arrow)' }),
    svg('text', { x: (start.x + end.x) / 2, y: (start.y + end.y) / 2 + (end.x > start.x ? -6 : 64), 'text-anchor': 'middle' }, label),
    svg('title', {}, `${edge.from} → ${edge.to}: ${rate(edge.rps)} req/s, ${(edge.errorRate * 100).toFixed(1)}% errors, ${(edge.mtlsShare * 100).toFixed(0)}% mTLS`))
}

function nodeShape (node, at, service, selected, onSelect) {
  const isService = node.kind === 'service'
  const attributes = {
    class: `node ${node.kind}${isService && node.key === selected ? ' selected' : ''}`,
    'data-testid': `node-${node.kind}`,
    'data-key': node.key,
    id: `node-${node.kind}-${node.key.replace('/', '-')}`,
    transform: `translate(${at.x - NODE_WIDTH / 2} ${at.y - NODE_HEIGHT / 2})`,
    onclick: isService ? () => onSelect(node.key) : undefined
  }
  const shape = isService
    ? svg('rect', { width: NODE_WIDTH, height: NODE_HEIGHT, rx: 8 })
    : svg('rect', { width: NODE_WIDTH, height: NODE_HEIGHT, rx: NODE_HEIGHT / 2 })
  const subtitle = isService ? `${rate(service?.rps ?? 0)} ${unitsOf(service).rate}` : node.kind === 'workload' ? 'workload' : node.kind
  return svg('g', attributes,
    shape,
    svg('text', { x: NODE_WIDTH / 2, y: 16, 'text-anchor': 'middle', class: 'name' }, node.name),
    svg('text', { x: NODE_WIDTH / 2, y: 30, 'text-anchor': 'middle', class: 'detail', 'data-testid': isService ? 'node-rps' : undefined }, subtitle),
    svg('title', {}, `${node.kind} ${node.key}`))
}
