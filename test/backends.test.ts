import t from 'tap'
import { chooseBackend } from '../gateway/backends.js'
import { seededRandom } from '../gateway/random.js'
import type { BackendRef } from '../policy/resources.js'

const ref = (name: string, weight: number): BackendRef => ({ group: '', kind: 'Service', name, port: 80, weight })

/** How often each backend is chosen over `draws` seeded draws, as shares of 1. */
function shares (refs: BackendRef[], draws: number, seed: number): Record<string, number> {
  const random = seededRandom(seed)
  const counts: Record<string, number> = {}
  for (let i = 0; i < draws; i++) {
    const chosen = chooseBackend(refs, random)
    if (chosen !== undefined) counts[chosen.name] = (counts[chosen.name] ?? 0) + 1
  }
  return Object.fromEntries(Object.entries(counts).map(([name, count]) => [name, count / draws]))
}

t.test('a 90/10 split over 100k draws lands within ±1%', async (t) => {
  // gateway-api: a backend receives weight / sum of weights of the traffic
  const result = shares([ref('v1', 90), ref('v2', 10)], 100_000, 42)
  t.ok(Math.abs(result.v1! - 0.9) <= 0.01, `v1 ${result.v1}`)
  t.ok(Math.abs(result.v2! - 0.1) <= 0.01, `v2 ${result.v2}`)
})

t.test('three backends 1:2:1', async (t) => {
  const result = shares([ref('a', 1), ref('b', 2), ref('c', 1)], 100_000, 3)
  t.ok(Math.abs(result.a! - 0.25) <= 0.01, `a ${result.a}`)
  t.ok(Math.abs(result.b! - 0.5) <= 0.01, `b ${result.b}`)
  t.ok(Math.abs(result.c! - 0.25) <= 0.01, `c ${result.c}`)
})

t.test('weight 0 is never chosen', async (t) => {
  // gateway-api: a weight of 0 means no traffic is sent to that backend
  const result = shares([ref('off', 0), ref('on', 1), ref('off2', 0)], 10_000, 5)
  t.same(result, { on: 1 })
  t.equal(chooseBackend([ref('off', 0), ref('on', 3)], () => 0)?.name, 'on', 'the lowest draw skips a leading zero weight')
  t.equal(chooseBackend([ref('on', 3), ref('off', 0)], () => 0.9999999)?.name, 'on', 'the highest draw skips a trailing zero weight')
})

t.test('nothing to choose', async (t) => {
  // gateway-api: when no backend can take the request (all weights 0), the answer is a 500
  t.equal(chooseBackend([ref('a', 0), ref('b', 0)]), undefined)
  t.equal(chooseBackend([]), undefined)
})

t.test('draw boundaries', async (t) => {
  const refs = [ref('a', 1), ref('b', 1)]
  t.equal(chooseBackend(refs, () => 0)?.name, 'a')
  t.equal(chooseBackend(refs, () => 0.4999)?.name, 'a')
  t.equal(chooseBackend(refs, () => 0.5)?.name, 'b')
  t.equal(chooseBackend(refs, () => 1)?.name, 'b', 'an out-of-range random still picks a weighted backend')
  t.equal(chooseBackend([ref('only', 7)])?.name, 'only')
})
