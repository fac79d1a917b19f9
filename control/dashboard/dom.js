// Tiny helpers to build HTML and SVG elements: el('td', { class: 'num' }, '12').
/* global document */

const SVG_NS = 'http://www.w3.org/2000/svg'

function build (element, attributes, children) {
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === undefined || value === null || value === false) continue
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value)
    else element.setAttribute(name, String(value))
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue
    element.append(child instanceof Object ? child : document.createTextNode(String(child)))
  }
  return element
}

export function el (tag, attributes, ...children) {
  return build(document.createElement(tag), attributes, children)
}

export function svg (tag, attributes, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attributes, children)
}

export function percent (share) {
  return share === undefined ? '–' : `${(share * 100).toFixed(share === 1 ? 0 : 1)}%`
}

export function ms (value) {
  return value === undefined ? '–' : `${value.toFixed(1)} ms`
}

/**
 * What a Service's numbers count: requests where a waypoint sees them (L7), else new
 * connections at the destination ztunnels (L4), where "success" means accepted by policy.
 */
export function unitsOf (service) {
  return service?.layer === 'tcp' ? { rate: 'conn/s', success: 'accepted' } : { rate: 'req/s', success: 'success' }
}

export function rate (rps) {
  return rps === undefined ? '–' : rps.toFixed(rps >= 10 ? 0 : 1)
}

/** ok / warn / bad, for an error share 0..1. */
export function health (errorRate) {
  if (errorRate > 0.1) return 'bad'
  if (errorRate > 0.01) return 'warn'
  return 'ok'
}
