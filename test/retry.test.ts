import t from 'tap'
import {
  backoffDelay, retryPolicy, rulePolicy, shouldRetry, timeouts, tryTimeoutMs, type RetryPolicy, type RetryReason, type TryOutcome
} from '../gateway/retry.js'
import type { HTTPRouteResource } from '../policy/resources.js'
import { validateResource } from '../policy/validate.js'

const LOCATION = { file: '<inline>', document: 0, object: '' }

/** An HTTPRoute with one rule, read through validation so that defaults are the real ones. */
function rule (fields: Record<string, unknown>): HTTPRouteResource['rules'][number] {
  const route = validateResource({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'r', namespace: 'shop' },
    spec: { rules: [fields] }
  }, LOCATION)
  if (route.kind !== 'HTTPRoute') throw new Error('not an HTTPRoute')
  return route.rules[0]!
}

// ---- policy ----

t.test('retryPolicy fills in defaults', async (t) => {
  const implicit = retryPolicy(undefined)
  t.equal(implicit.attempts, 2, 'no retry stanza: Istio\'s default, 2 retries')
  t.same([...implicit.codes], [503], '... on 503')
  t.equal(implicit.backoffMs, 25, 'Envoy\'s 25 ms base')
  t.equal(implicit.maxBackoffMs, 250, 'capped at 10 × base')

  // gateway-api (GEP-1731): attempts is the number of retries; codes and backoff are optional
  const empty = rulePolicy(rule({ retry: {} }))
  t.equal(empty.attempts, 2, 'validation defaults attempts to 2')
  t.same([...empty.codes], [500, 502, 503, 504], 'a stanza without codes retries 500, 502, 503, 504')

  const configured = rulePolicy(rule({ retry: { codes: [429, 503], attempts: 5, backoff: '100ms' } }))
  t.same({ ...configured, codes: [...configured.codes] }, { attempts: 5, codes: [429, 503], backoffMs: 100, maxBackoffMs: 1000 })
})

// ---- decisions ----

const POLICY: RetryPolicy = retryPolicy({ codes: [502, 503, 504], attempts: 2, backoff: 10 })

/** A first GET that got a 503, with no deadline and a random that always draws the middle. */
const BASE: TryOutcome = { attempt: 1, method: 'GET', status: 503, policy: POLICY, now: 1000, random: () => 0.5 }

const DECISIONS: Array<[string, Partial<TryOutcome>, RetryReason]> = [
  ['a listed status is retried', {}, 'retry'],
  ['an unlisted status is not', { status: 500 }, 'not-retriable'],
  ['a success is not', { status: 200 }, 'not-retriable'],
  ['no status and no error is not', { status: undefined }, 'not-retriable'],
  ['a connect failure is retried', { status: undefined, error: 'connect-failure' }, 'retry'],
  ['a reset is retried', { status: undefined, error: 'reset' }, 'retry'],
  ['a try timeout counts as a 504', { status: undefined, error: 'timeout' }, 'retry'],
  ['a try timeout is not retried without 504 in the codes', { status: undefined, error: 'timeout', policy: retryPolicy({ codes: [503], attempts: 2 }) }, 'not-retriable'],
  ['PUT, DELETE, HEAD, OPTIONS, TRACE are idempotent', { method: 'DELETE' }, 'retry'],
  ['POST is not retried', { method: 'POST' }, 'method'],
  ['PATCH is not retried', { method: 'PATCH', error: 'reset', status: undefined }, 'method'],
  ['POST is retried when allowed', { method: 'POST', nonIdempotentAllowed: true }, 'retry'],
  ['POST is retried on a connect failure (nothing was sent)', { method: 'POST', status: undefined, error: 'connect-failure' }, 'retry'],
  ['the last allowed retry', { attempt: 2 }, 'retry'],
  ['attempts counts retries: 2 retries after the first try, no more', { attempt: 3 }, 'exhausted'],
  ['attempts 0 never retries', { policy: retryPolicy({ codes: [503], attempts: 0 }) }, 'exhausted'],
  ['a retry that would start after the deadline is not made', { deadline: 1004 }, 'deadline'],
  ['a retry that starts before the deadline is made', { deadline: 1006 }, 'retry']
]

t.test('shouldRetry', async (t) => {
  for (const [name, change, reason] of DECISIONS) {
    const decision = shouldRetry({ ...BASE, ...change })
    t.equal(decision.reason, reason, name)
    t.equal(decision.retry, reason === 'retry', `${name}: retry flag`)
    if (reason !== 'retry') t.equal(decision.delayMs, 0, `${name}: no delay`)
  }
  t.equal(shouldRetry(BASE).delayMs, 5, 'first retry: half of [0, base)')
})

t.test('backoff: full jitter over an exponential window capped at 10 × base', async (t) => {
  const policy = { backoffMs: 25, maxBackoffMs: 250 }
  const top = (): number => 0.9999
  const windows = [1, 2, 3, 4, 5, 50, 5000].map((retry) => backoffDelay(retry, policy, top) + 1)
  t.same(windows, [25, 75, 175, 250, 250, 250, 250], 'windows (2^n - 1) × base, then the cap')
  t.equal(backoffDelay(3, policy, () => 0), 0, 'full jitter reaches 0')
  t.equal(backoffDelay(3, policy, () => 0.5), 87)
})

// ---- timeouts ----

t.test('timeouts of a rule', async (t) => {
  // gateway-api (GEP-1742): request covers the whole client request, backendRequest one try; 0s disables
  t.same(timeouts(rule({ timeouts: { request: '10s', backendRequest: '2s' } })), { requestMs: 10_000, backendRequestMs: 2000 })
  t.same(timeouts(rule({ timeouts: { request: '0s', backendRequest: '500ms' } })), { requestMs: undefined, backendRequestMs: 500 })
  t.same(timeouts(rule({})), { requestMs: undefined, backendRequestMs: undefined })
  t.same(timeouts({ matches: [], filters: [], backendRefs: [] }), { requestMs: undefined, backendRequestMs: undefined }, 'a GRPCRoute rule has none')
})

t.test('tryTimeoutMs: a try ends with its own timeout or the request\'s, whichever is first', async (t) => {
  t.equal(tryTimeoutMs({ backendRequestMs: 2000 }, 10_000, 1000), 2000)
  t.equal(tryTimeoutMs({ backendRequestMs: 2000 }, 2500, 1000), 1500)
  t.equal(tryTimeoutMs({}, 2500, 1000), 1500)
  t.equal(tryTimeoutMs({ backendRequestMs: 2000 }, undefined, 1000), 2000)
  t.equal(tryTimeoutMs({}, undefined, 1000), undefined)
  t.equal(tryTimeoutMs({}, 900, 1000), 0, 'past the deadline: nothing left')
})
