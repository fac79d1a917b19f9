import t from 'tap'
import {
  ConsistentHashBalancer, HashRing, LeastRequestBalancer, createLoadBalancer, parseCookies,
  type BalancerRequest, type Endpoint
} from '../gateway/load-balancer.js'
import { seededRandom } from '../gateway/random.js'

const endpoints = (count: number): Endpoint[] =>
  Array.from({ length: count }, (_, i) => ({ ip: `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}` }))

const NO_HEADERS: BalancerRequest = { headers: {} }

function pickMany (count: number, pick: (i: number) => Endpoint | undefined): string[] {
  return Array.from({ length: count }, (_, i) => pick(i)?.ip ?? 'none')
}

t.test('round robin takes each endpoint in turn', async (t) => {
  const pool = endpoints(3)
  for (const balancer of [createLoadBalancer(), createLoadBalancer({ type: 'RoundRobin' })]) {
    t.same(pickMany(7, () => balancer.pick(pool, NO_HEADERS)),
      ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1'])
  }
})

t.test('every balancer picks nothing from an empty list and the only endpoint from a list of one', async (t) => {
  const specs = [undefined, { type: 'LeastRequest' as const }, { type: 'ConsistentHash' as const, consistentHash: { header: 'x-user' } }]
  for (const spec of specs) {
    const balancer = createLoadBalancer(spec, seededRandom(1))
    const name = spec?.type ?? 'default'
    t.equal(balancer.pick([], { headers: { 'x-user': 'ann' } }), undefined, `${name}: empty`)
    t.equal(balancer.pick(endpoints(1), { headers: { 'x-user': 'ann' } })?.ip, '10.0.0.1', `${name}: one`)
  }
})

t.test('least request', async (t) => {
  t.test('never picks the strictly busiest endpoint (of two distinct draws, the other one wins)', async (t) => {
    const pool = endpoints(4)
    const balancer = new LeastRequestBalancer(seededRandom(7))
    for (let i = 0; i < 3; i++) balancer.onStart(pool[2])
    balancer.onStart(pool[0])
    const picks = pickMany(2000, () => balancer.pick(pool))
    t.equal(picks.filter((ip) => ip === pool[2].ip).length, 0, 'the busiest endpoint is never chosen')
    const idle = picks.filter((ip) => ip === pool[1].ip || ip === pool[3].ip).length
    t.ok(idle > picks.length * 0.6, `the idle endpoints get most requests (${idle} of ${picks.length})`)
  })

  t.test('onEnd brings an endpoint back; counts never go below zero', async (t) => {
    const pool = endpoints(2)
    const balancer = new LeastRequestBalancer(seededRandom(3))
    balancer.onStart(pool[0])
    t.same(new Set(pickMany(50, () => balancer.pick(pool))), new Set([pool[1].ip]), 'while busy, the other one')
    balancer.onEnd(pool[0])
    balancer.onEnd(pool[0])
    t.equal(balancer.activeRequests(pool[0]), 0)
    t.same(new Set(pickMany(200, () => balancer.pick(pool))), new Set([pool[0].ip, pool[1].ip]), 'both again once idle')
  })

  t.test('spreads evenly when all are idle', async (t) => {
    const pool = endpoints(5)
    const balancer = createLoadBalancer({ type: 'LeastRequest' }, seededRandom(11))
    const counts = countBy(pickMany(10_000, () => balancer.pick(pool, NO_HEADERS)))
    for (const endpoint of pool) {
      const share = (counts.get(endpoint.ip) ?? 0) / 10_000
      t.ok(share > 0.17 && share < 0.23, `${endpoint.ip} gets ${share}`)
    }
  })

  t.test('sends fewer requests to a slow endpoint that keeps requests open', async (t) => {
    const pool = endpoints(3)
    const balancer = new LeastRequestBalancer(seededRandom(5))
    const picks: string[] = []
    for (let i = 0; i < 3000; i++) {
      const endpoint = balancer.pick(pool)
      if (endpoint === undefined) throw new Error('no endpoint')
      picks.push(endpoint.ip)
      balancer.onStart(endpoint)
      // The fast endpoints answer at once; the slow one holds every request.
      if (endpoint !== pool[0]) balancer.onEnd(endpoint)
    }
    const slow = picks.filter((ip) => ip === pool[0].ip).length
    t.ok(slow < 50, `the slow endpoint got ${slow} of 3000`)
  })
})

t.test('consistent hash', async (t) => {
  const pool = endpoints(10)
  const byHeader = (value: string | string[] | undefined): BalancerRequest => ({ headers: { 'x-user': value } })

  t.test('the same key always reaches the same endpoint; the header name is case-insensitive', async (t) => {
    const balancer = createLoadBalancer({ type: 'ConsistentHash', consistentHash: { header: 'X-User' } })
    for (const user of ['ann', 'bob', 'carol']) {
      const picks = new Set(pickMany(50, () => balancer.pick(pool, byHeader(user))))
      t.equal(picks.size, 1, `${user} always lands on one endpoint`)
    }
    t.equal(balancer.pick(pool, byHeader(['a', 'b']))?.ip, balancer.pick(pool, byHeader('a,b'))?.ip,
      'a repeated header hashes as its joined value')
  })

  t.test('keys spread evenly', async (t) => {
    const balancer = new ConsistentHashBalancer({ header: 'x-user' })
    const counts = countBy(pickMany(20_000, (i) => balancer.pick(pool, byHeader(`user-${i}`))))
    for (const endpoint of pool) {
      const share = (counts.get(endpoint.ip) ?? 0) / 20_000
      t.ok(share > 0.07 && share < 0.13, `${endpoint.ip} owns ${share} of the keys`)
    }
  })

  t.test('removing an endpoint moves only its own keys; adding one takes about its share', async (t) => {
    const keys = Array.from({ length: 20_000 }, (_, i) => `session-${i}`)
    const ownerIn = (ids: Endpoint[]): string[] => {
      const ring = new HashRing(ids.map((endpoint) => endpoint.ip))
      return keys.map((key) => ring.lookup(key) ?? 'none')
    }
    const before = ownerIn(pool)
    const removed = pool[3].ip
    const afterRemoval = ownerIn(pool.filter((endpoint) => endpoint.ip !== removed))
    const keptIndexes = keys.map((_, i) => i).filter((i) => before[i] !== removed)
    const unmoved = keptIndexes.filter((i) => afterRemoval[i] === before[i]).length
    t.equal(unmoved, keptIndexes.length, 'every key of the other endpoints keeps its endpoint')
    t.ok(keptIndexes.length < keys.length, 'the removed endpoint owned some keys')
    t.ok(afterRemoval.every((ip) => ip !== removed), 'the removed endpoint owns nothing')

    const afterAdding = ownerIn([...pool, { ip: '10.0.9.9' }])
    const movedIndexes = keys.map((_, i) => i).filter((i) => afterAdding[i] !== before[i])
    t.ok(movedIndexes.every((i) => afterAdding[i] === '10.0.9.9'), 'keys move only to the new endpoint')
    const movedShare = movedIndexes.length / keys.length
    t.ok(movedShare > 0.05 && movedShare < 0.14, `${movedShare} of the keys moved, about 1/11`)
  })

  t.test('the ring does not depend on the order of the endpoints', async (t) => {
    const balancer = new ConsistentHashBalancer({ header: 'x-user' })
    const reversed = [...pool].reverse()
    const forward = pickMany(500, (i) => balancer.pick(pool, byHeader(`u${i}`)))
    const backward = pickMany(500, (i) => balancer.pick(reversed, byHeader(`u${i}`)))
    t.same(backward, forward)
  })

  t.test('by cookie: parsed cookies first, else the Cookie header', async (t) => {
    const balancer = createLoadBalancer({ type: 'ConsistentHash', consistentHash: { cookie: 'session' } })
    const fromParsed = balancer.pick(pool, { headers: {}, cookies: { session: 'abc' } })
    const fromHeader = balancer.pick(pool, { headers: { cookie: 'theme=dark; session=abc' } })
    const fromQuoted = balancer.pick(pool, { headers: { cookie: 'session="abc"' } })
    t.ok(fromParsed !== undefined)
    t.equal(fromHeader?.ip, fromParsed?.ip)
    t.equal(fromQuoted?.ip, fromParsed?.ip)
    const spread = new Set(pickMany(200, (i) => balancer.pick(pool, { headers: { cookie: `session=s${i}` } })))
    t.ok(spread.size > 5, 'different sessions reach different endpoints')
  })

  t.test('falls back to round robin without the key', async (t) => {
    const cases: Array<{ name: string, spec: { header?: string, cookie?: string }, request: BalancerRequest }> = [
      { name: 'header missing', spec: { header: 'x-user' }, request: { headers: { 'x-other': 'a' } } },
      { name: 'cookie missing', spec: { cookie: 'session' }, request: { headers: { cookie: 'theme=dark' } } },
      { name: 'no cookies at all', spec: { cookie: 'session' }, request: NO_HEADERS }
    ]
    for (const { name, spec, request } of cases) {
      const balancer = new ConsistentHashBalancer(spec)
      t.same(pickMany(4, () => balancer.pick(endpoints(3), request)), ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1'], name)
    }
  })
})

t.test('parseCookies', async (t) => {
  const cases: Array<[string | undefined, Record<string, string>]> = [
    [undefined, {}],
    ['', {}],
    ['a=1', { a: '1' }],
    [' a = 1 ;b=2', { a: '1', b: '2' }],
    ['a="quoted value"', { a: 'quoted value' }],
    ['a=1; a=2', { a: '1' }],
    ['flag; a=x=y', { a: 'x=y' }]
  ]
  for (const [header, expected] of cases) t.same(parseCookies(header), expected, String(header))
})

function countBy (values: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>()
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1)
  return counts
}
