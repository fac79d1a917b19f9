import t from 'tap'
import { decideFault, type FaultDecision } from '../gateway/faults.js'
import { seededRandom } from '../gateway/random.js'
import type { TrafficPolicySpec } from '../policy/resources.js'

type FaultSpec = TrafficPolicySpec['faultInjection']

const DRAWS = 100_000

function drawMany (spec: FaultSpec, seed: number): FaultDecision[] {
  const random = seededRandom(seed)
  return Array.from({ length: DRAWS }, () => decideFault(spec, random))
}

const share = (decisions: readonly FaultDecision[], hit: (d: FaultDecision) => boolean): number =>
  decisions.filter(hit).length / decisions.length

t.test('each fault hits its percentage of requests (100k draws, within ±1 point)', async (t) => {
  const cases: Array<{ name: string, spec: FaultSpec, delay: number, abort: number }> = [
    { name: 'abort 50%', spec: { abort: { httpStatus: 503, percentage: 50 } }, delay: 0, abort: 0.5 },
    { name: 'delay 25%', spec: { delay: { fixedDelay: 200, percentage: 25 } }, delay: 0.25, abort: 0 },
    {
      name: 'delay 30% and abort 10%',
      spec: { delay: { fixedDelay: 5, percentage: 30 }, abort: { httpStatus: 500, percentage: 10 } },
      delay: 0.3,
      abort: 0.1
    }
  ]
  for (const [index, { name, spec, delay, abort }] of cases.entries()) {
    const decisions = drawMany(spec, 1000 + index)
    const delayed = share(decisions, (d) => d.delayMs !== undefined)
    const aborted = share(decisions, (d) => d.abort !== undefined)
    t.ok(Math.abs(delayed - delay) <= 0.01, `${name}: delayed ${delayed}`)
    t.ok(Math.abs(aborted - abort) <= 0.01, `${name}: aborted ${aborted}`)
  }
})

t.test('delay and abort are drawn independently: both hit about delay% × abort%', async (t) => {
  const spec: FaultSpec = { delay: { fixedDelay: 5, percentage: 30 }, abort: { httpStatus: 500, percentage: 10 } }
  const both = share(drawMany(spec, 42), (d) => d.delayMs !== undefined && d.abort !== undefined)
  t.ok(Math.abs(both - 0.03) <= 0.005, `both: ${both}`)
})

t.test('fractional percentages: 0.1% is about one request in a thousand', async (t) => {
  const aborted = drawMany({ abort: { httpStatus: 429, percentage: 0.1 } }, 7).filter((d) => d.abort !== undefined).length
  t.ok(aborted >= 60 && aborted <= 140, `${aborted} of ${DRAWS}`)
})

t.test('the decision carries the configured delay and status', async (t) => {
  const cases: Array<{ name: string, spec: FaultSpec, random: number, expected: FaultDecision }> = [
    { name: 'no faults configured', spec: undefined, random: 0, expected: {} },
    { name: 'empty faultInjection', spec: {}, random: 0, expected: {} },
    { name: '100% with the largest draw', spec: { delay: { fixedDelay: 1500, percentage: 100 } }, random: 0.999999, expected: { delayMs: 1500 } },
    { name: '0% with the smallest draw', spec: { abort: { httpStatus: 503, percentage: 0 } }, random: 0, expected: {} },
    {
      name: 'both',
      spec: { delay: { fixedDelay: 10, percentage: 100 }, abort: { httpStatus: 418, percentage: 100 } },
      random: 0.5,
      expected: { delayMs: 10, abort: 418 }
    },
    { name: 'just above the percentage', spec: { abort: { httpStatus: 503, percentage: 50 } }, random: 0.5, expected: {} },
    { name: 'just below the percentage', spec: { abort: { httpStatus: 503, percentage: 50 } }, random: 0.4999, expected: { abort: 503 } }
  ]
  for (const { name, spec, random, expected } of cases) t.same(decideFault(spec, () => random), expected, name)
})
