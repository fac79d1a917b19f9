import t from 'tap'
import { CIRCUIT_KINDS, CircuitBreaker, type CircuitKind, type Release } from '../gateway/circuit-breaker.js'
import type { TrafficPolicySpec } from '../policy/resources.js'

type Limits = NonNullable<TrafficPolicySpec['circuitBreaker']>

const FIELD_OF: Record<CircuitKind, keyof Limits> = {
  request: 'maxParallelRequests',
  retry: 'maxParallelRetries'
}

function acquireAll (breaker: CircuitBreaker, kind: CircuitKind, count: number): Release[] {
  const releases: Release[] = []
  for (let i = 0; i < count; i++) {
    const release = breaker.tryAcquire(kind)
    if (release === undefined) throw new Error(`${kind} #${i} overflowed`)
    releases.push(release)
  }
  return releases
}

for (const kind of CIRCUIT_KINDS) {
  t.test(`${kind}: ${FIELD_OF[kind]} caps what is in flight and recovers as soon as one finishes`, async (t) => {
    const breaker = new CircuitBreaker({ [FIELD_OF[kind]]: 2 })
    const [first] = acquireAll(breaker, kind, 2)
    t.equal(breaker.tryAcquire(kind), undefined, 'the third overflows')
    t.equal(breaker.tryAcquire(kind), undefined, 'and the fourth')
    t.same(breaker.stats(kind), { active: 2, limit: 2, overflows: 2 })

    first()
    t.same(breaker.stats(kind), { active: 1, limit: 2, overflows: 2 }, 'released')
    const again = breaker.tryAcquire(kind)
    t.type(again, 'function', 'a slot is free again at once')

    first()
    t.equal(breaker.stats(kind).active, 2, 'releasing twice frees only one slot')
    t.equal(breaker.tryAcquire(kind), undefined, 'still full')

    for (const other of CIRCUIT_KINDS.filter((k) => k !== kind)) {
      t.type(breaker.tryAcquire(other), 'function', `${other} is not limited by ${FIELD_OF[kind]}`)
    }
  })
}

t.test('unset limits are unlimited (as Istio configures Envoy)', async (t) => {
  for (const breaker of [new CircuitBreaker(), new CircuitBreaker({ maxConnections: 1 })]) {
    const releases = acquireAll(breaker, 'request', 10_000)
    t.equal(breaker.stats('request').active, 10_000)
    t.equal(breaker.stats('request').limit, Number.POSITIVE_INFINITY)
    for (const release of releases) release()
    t.equal(breaker.stats('request').active, 0)
  }
})

t.test('requests and retries overflow each on its own', async (t) => {
  const breaker = new CircuitBreaker({ maxParallelRequests: 2, maxParallelRetries: 1 })
  const original = breaker.tryAcquire('request')
  const retry = breaker.tryAcquire('retry')
  t.ok(original !== undefined && retry !== undefined)
  t.equal(breaker.tryAcquire('retry'), undefined, 'a second parallel retry overflows')
  t.type(breaker.tryAcquire('request'), 'function', 'a new request still fits')
  t.equal(breaker.tryAcquire('request'), undefined, 'until the request cap')
  t.same([breaker.stats('retry').overflows, breaker.stats('request').overflows], [1, 1])
})
