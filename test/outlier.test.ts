import t from 'tap'
import { OutlierDetector, type OutlierDetectionSpec, type RequestOutcome } from '../gateway/outlier.js'
import type { Endpoint } from '../gateway/load-balancer.js'

/** A clock the test moves by hand. */
class FakeClock {
  now = 1_000_000
  readonly read = (): number => this.now
  advance (ms: number): void { this.now += ms }
}

const SPEC: OutlierDetectionSpec = { interval: 10_000, baseEjectionTime: 30_000, maxEjectionPercent: 100 }

const pool = (count: number): Endpoint[] => Array.from({ length: count }, (_, i) => ({ ip: `10.1.0.${i + 1}` }))

function detector (spec: Partial<OutlierDetectionSpec> = {}, endpoints = pool(4)): { detector: OutlierDetector, clock: FakeClock } {
  const clock = new FakeClock()
  const made = new OutlierDetector({ ...SPEC, ...spec }, clock.read)
  made.healthy(endpoints)
  return { detector: made, clock }
}

function reportAll (target: OutlierDetector, id: string, outcomes: ReadonlyArray<number | 'connect'>): void {
  for (const outcome of outcomes) {
    const report: RequestOutcome = outcome === 'connect' ? { connectFailure: true } : { status: outcome }
    target.report(id, report)
  }
}

t.test('which answer streaks eject', async (t) => {
  const cases: Array<{ name: string, spec: Partial<OutlierDetectionSpec>, outcomes: Array<number | 'connect'>, ejected: boolean }> = [
    { name: '3 × 5xx with consecutive5xxErrors 3', spec: { consecutive5xxErrors: 3 }, outcomes: [500, 503, 599], ejected: true },
    { name: '2 × 5xx with consecutive5xxErrors 3', spec: { consecutive5xxErrors: 3 }, outcomes: [500, 500], ejected: false },
    { name: 'a success resets the streak', spec: { consecutive5xxErrors: 3 }, outcomes: [500, 500, 200, 500, 500], ejected: false },
    { name: 'a 4xx is a success here', spec: { consecutive5xxErrors: 3 }, outcomes: [500, 500, 404, 500, 500], ejected: false },
    { name: 'consecutive5xxErrors defaults to 5 (as Istio)', spec: {}, outcomes: [500, 500, 500, 500, 500], ejected: true },
    { name: '4 × 5xx under the default', spec: {}, outcomes: [500, 500, 500, 500], ejected: false },
    { name: 'consecutive5xxErrors 0 turns it off', spec: { consecutive5xxErrors: 0 }, outcomes: Array(50).fill(500), ejected: false },
    { name: '2 gateway errors with consecutiveGatewayErrors 2', spec: { consecutiveGatewayErrors: 2 }, outcomes: [502, 504], ejected: true },
    { name: 'connect failures are gateway errors', spec: { consecutiveGatewayErrors: 2 }, outcomes: ['connect', 'connect'], ejected: true },
    { name: 'connect failures are 5xx too', spec: { consecutive5xxErrors: 2 }, outcomes: ['connect', 503], ejected: true },
    { name: 'a 500 breaks a gateway streak', spec: { consecutiveGatewayErrors: 2 }, outcomes: [502, 500, 503], ejected: false },
    { name: 'gateway detection is off by default', spec: { consecutive5xxErrors: 0 }, outcomes: Array(50).fill(503), ejected: false }
  ]
  for (const { name, spec, outcomes, ejected } of cases) {
    const { detector: target } = detector(spec)
    reportAll(target, '10.1.0.1', outcomes)
    t.equal(target.isEjected('10.1.0.1'), ejected, name)
    t.equal(target.ejections, ejected ? 1 : 0, `${name}: ejections counter`)
  }
})

t.test('an ejected endpoint is left out of healthy() until its time is up', async (t) => {
  const endpoints = pool(4)
  const { detector: target, clock } = detector({ consecutive5xxErrors: 1 }, endpoints)
  target.report('10.1.0.2', { status: 500 })
  t.same(target.healthy(endpoints).map((e) => e.ip), ['10.1.0.1', '10.1.0.3', '10.1.0.4'])
  t.equal(target.ejectedCount, 1)
  clock.advance(29_999)
  t.ok(target.isEjected('10.1.0.2'), 'still out 1 ms before baseEjectionTime')
  clock.advance(1)
  t.notOk(target.isEjected('10.1.0.2'), 'back after baseEjectionTime')
  t.equal(target.healthy(endpoints).length, 4)
  t.equal(target.ejectedCount, 0)
})

t.test('answers from before the ejection change nothing', async (t) => {
  const { detector: target, clock } = detector({ consecutive5xxErrors: 2 })
  reportAll(target, '10.1.0.1', [500, 500, 500, 500, 500])
  t.equal(target.ejections, 1, 'one ejection, not two')
  clock.advance(30_000)
  target.report('10.1.0.1', { status: 500 })
  t.notOk(target.isEjected('10.1.0.1'), 'the streak started over at the ejection')
})

t.test('the ejection time grows with each ejection, up to max(300 s, base)', async (t) => {
  const cases = [
    { base: 30_000, expected: [30_000, 60_000, 90_000, 120_000] },
    { base: 200_000, expected: [200_000, 300_000, 300_000] },
    { base: 400_000, expected: [400_000, 400_000] }
  ]
  for (const { base, expected } of cases) {
    // A long interval, so no decay happens between the ejections.
    const { detector: target, clock } = detector({ consecutive5xxErrors: 1, baseEjectionTime: base, interval: 10_000_000 })
    const durations = expected.map(() => {
      target.report('10.1.0.1', { status: 500 })
      const start = clock.now
      while (target.isEjected('10.1.0.1')) clock.advance(1_000)
      return clock.now - start
    })
    t.same(durations, expected, `base ${base}`)
  }
})

t.test('each interval spent back in service lowers the multiplier by one', async (t) => {
  const { detector: target, clock } = detector({ consecutive5xxErrors: 1 })
  const ejectAndMeasure = (): number => {
    target.report('10.1.0.1', { status: 500 })
    const start = clock.now
    while (target.isEjected('10.1.0.1')) clock.advance(1_000)
    return clock.now - start
  }
  t.equal(ejectAndMeasure(), 30_000)
  t.equal(ejectAndMeasure(), 60_000)
  t.equal(ejectAndMeasure(), 90_000, 'three in a row: ×3')
  clock.advance(20_000) // two intervals healthy: 3 → 1
  t.equal(ejectAndMeasure(), 60_000, 'then ×(1 + 1)')
  clock.advance(10_000_000)
  t.equal(ejectAndMeasure(), 30_000, 'long healthy: back to ×1')
})

t.test('maxEjectionPercent (Envoy: the first ejection always; more while the ejected share stays within the percent)', async (t) => {
  const cases = [
    { name: '20% of 10', size: 10, percent: 20, ejected: 2 },
    { name: '50% of 4', size: 4, percent: 50, ejected: 2 },
    { name: '10% of 3: still the first one', size: 3, percent: 10, ejected: 1 },
    { name: '10% of 2', size: 2, percent: 10, ejected: 1 },
    { name: '100% of 3', size: 3, percent: 100, ejected: 3 },
    { name: '0% ejects none', size: 3, percent: 0, ejected: 0 },
    { name: 'the only endpoint stays, under 100%', size: 1, percent: 99, ejected: 0 },
    { name: 'the only endpoint goes, at 100%', size: 1, percent: 100, ejected: 1 }
  ]
  for (const { name, size, percent, ejected } of cases) {
    const endpoints = pool(size)
    const { detector: target } = detector({ consecutive5xxErrors: 1, maxEjectionPercent: percent }, endpoints)
    for (const endpoint of endpoints) target.report(endpoint.ip, { status: 503 })
    t.equal(target.ejectedCount, ejected, name)
    t.equal(target.healthy(endpoints).length, size - ejected, `${name}: healthy()`)
    t.equal(target.ejectionsOverflow, size - ejected, `${name}: the refused ones are counted`)
  }
})

t.test('a refused ejection is tried again after another full streak, once there is room', async (t) => {
  const endpoints = pool(2)
  const { detector: target, clock } = detector({ consecutive5xxErrors: 2, maxEjectionPercent: 50 }, endpoints)
  reportAll(target, '10.1.0.1', [500, 500])
  reportAll(target, '10.1.0.2', [500, 500])
  t.same([target.isEjected('10.1.0.1'), target.isEjected('10.1.0.2')], [true, false])
  clock.advance(30_000)
  target.report('10.1.0.2', { status: 500 })
  t.notOk(target.isEjected('10.1.0.2'), 'one more error is not a full streak')
  target.report('10.1.0.2', { status: 500 })
  t.ok(target.isEjected('10.1.0.2'), 'a full streak ejects now that the first one is back')
})

t.test('the pool is what healthy() was last given: endpoints gone from it are forgotten', async (t) => {
  const endpoints = pool(10)
  const { detector: target } = detector({ consecutive5xxErrors: 1, maxEjectionPercent: 20 }, endpoints)
  target.report('10.1.0.1', { status: 500 })
  target.report('10.1.0.2', { status: 500 })
  t.equal(target.ejectedCount, 2)
  const smaller = endpoints.slice(1, 5) // 10.1.0.1 scaled away; 4 left, one of them ejected
  t.same(target.healthy(smaller).map((e) => e.ip), ['10.1.0.3', '10.1.0.4', '10.1.0.5'])
  target.report('10.1.0.3', { status: 500 })
  t.notOk(target.isEjected('10.1.0.3'), '2 of 4 would be 50%, over 20%')
  t.notOk(target.isEjected('10.1.0.1'), 'the removed endpoint is forgotten')
})

t.test('reports without a status or connect failure count for nothing', async (t) => {
  const { detector: target } = detector({ consecutive5xxErrors: 2 })
  reportAll(target, '10.1.0.1', [500])
  target.report('10.1.0.1', {})
  target.report('10.1.0.1', { connectFailure: false })
  reportAll(target, '10.1.0.1', [500])
  t.ok(target.isEjected('10.1.0.1'), 'the streak went on')
})
