import t from 'tap'
import { formatSummary, p99, serviceWindow } from '../examples/summary.js'
import { interleave, type CallSample } from '../examples/load.js'

t.test('p99 is the nearest-rank 99th percentile', async (t) => {
  t.equal(p99([]), 0)
  t.equal(p99([5]), 5)
  t.equal(p99(Array.from({ length: 200 }, (_, i) => 200 - i)), 198)
})

t.test('a service window counts the callers\' samples: answers per version, retried answers, denied calls', async (t) => {
  const samples: CallSample[] = [
    { service: 'catalog', outcome: 'ok', latencyMs: 2, version: 'v1' },
    { service: 'catalog', outcome: 'ok', latencyMs: 3, version: 'v1' },
    { service: 'catalog', outcome: 'ok', latencyMs: 9, version: 'v2', retried: true },
    { service: 'catalog', outcome: 'error', latencyMs: 2000 },
    { service: 'payments', outcome: 'denied', latencyMs: 1 },
    { service: 'payments', outcome: 'denied', latencyMs: 1 },
    { service: 'payments', outcome: 'ok', latencyMs: 4, version: '' }
  ]
  t.same(serviceWindow('catalog', samples, ['v1', 'v2'], { bytes: 100, mutualTlsBytes: 100 }), {
    service: 'catalog', latenciesMs: [2, 3, 9, 2000], succeeded: 3, denied: 0, retried: 1, versions: { v1: 2, v2: 1 }, bytes: 100, mutualTlsBytes: 100
  })
  t.same(serviceWindow('payments', samples, [], { bytes: 0, mutualTlsBytes: 0 }), {
    service: 'payments', latenciesMs: [1, 1, 4], succeeded: 1, denied: 2, retried: 0, versions: {}, bytes: 0, mutualTlsBytes: 0
  }, 'denied counts calls, whatever the connections behind them')
  t.same(serviceWindow('cart', samples, ['v1'], { bytes: 0, mutualTlsBytes: 0 }).versions, { v1: 0 }, 'a version that answered nothing is listed with 0')
})

t.test('the summary has one aligned line per service over the window, with the canary split', async (t) => {
  const text = formatSummary([
    { service: 'cart', latenciesMs: [1, 2, 3, 4], succeeded: 4, denied: 0, retried: 0, versions: {}, bytes: 400, mutualTlsBytes: 400 },
    { service: 'catalog', latenciesMs: Array.from({ length: 20 }, () => 2), succeeded: 20, denied: 0, retried: 1, versions: { v2: 2, v1: 18 }, bytes: 900, mutualTlsBytes: 450 },
    { service: 'payments', latenciesMs: [1, 9], succeeded: 1, denied: 1, retried: 0, versions: {}, bytes: 0, mutualTlsBytes: 0 },
    { service: 'search', latenciesMs: [5], succeeded: 0, denied: 0, retried: 0, versions: { v1: 0 }, bytes: 10, mutualTlsBytes: 0 }
  ], 2_000)
  t.equal(text, [
    'service    req/s   success  p99       mTLS   denied  retried  versions',
    'cart       2.0     100%     4.0ms     100%   0       0        -',
    'catalog    10.0    100%     2.0ms     50%    0       1        v1 90% / v2 10%',
    'payments   1.0     50%      9.0ms     -      1       0        -',
    'search     0.5     0%       5.0ms     0%     0       0        -'
  ].join('\n'))
})

t.test('the load\'s cycle spreads each route\'s calls round by round', async (t) => {
  t.same(interleave([5, 1, 1, 1]), [0, 1, 2, 3, 0, 0, 0, 0])
  t.same(interleave([2, 0, 2]), [0, 2, 0, 2])
  t.same(interleave([]), [])
})
