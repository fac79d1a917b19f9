import t from 'tap'
import { formatSummary, p99 } from '../examples/summary.js'

t.test('p99 is the nearest-rank 99th percentile', async (t) => {
  t.equal(p99([]), 0)
  t.equal(p99([5]), 5)
  t.equal(p99(Array.from({ length: 200 }, (_, i) => 200 - i)), 198)
})

t.test('the summary has one aligned line per service over the window', async (t) => {
  const text = formatSummary([
    { service: 'cart', latenciesMs: [1, 2, 3, 4], succeeded: 4, connections: 4, mutualTls: 4, denied: 0 },
    { service: 'payments', latenciesMs: [1, 9], succeeded: 1, connections: 0, mutualTls: 0, denied: 3 }
  ], 2_000)
  t.equal(text, [
    'service    req/s   success  p99       mTLS   denied',
    'cart       2.0     100%     4.0ms     100%   0',
    'payments   1.0     50%      9.0ms     -      3'
  ].join('\n'))
})
