/**
 * Retries and timeouts of an HTTPRoute rule (GEP-1731 `retry`, GEP-1742 `timeouts`).
 *
 * A failed try is retried when all of these hold:
 *  - the outcome is retriable: a connect failure or a reset; a status in the policy's codes; a
 *    try that timed out (backendRequest) when 504 is in the codes, as Envoy treats it as a 504;
 *  - the method is idempotent (GET, HEAD, OPTIONS, PUT, DELETE, TRACE), or the caller allows
 *    others (`nonIdempotentAllowed`); a connect failure is retried whatever the method, since the
 *    request never reached the backend;
 *  - fewer than `attempts` retries were made (attempts counts retries, not tries);
 *  - the retry can start before the request deadline, after its backoff.
 *
 * Backoff is Envoy's: full jitter over an exponential window, the n-th retry waiting a random
 * time in [0, (2^n - 1) × base), the window capped at 10 × base; the base is the rule's
 * `backoff`, or 25 ms.
 */
import type { GRPCRouteRule, HTTPRouteRule, RouteRetry } from '../policy/resources.js'
import type { Random } from './random.js'

export interface RetryPolicy {
  /** How many retries may follow the first try. */
  readonly attempts: number
  /** Response statuses worth a retry. */
  readonly codes: ReadonlySet<number>
  readonly backoffMs: number
  readonly maxBackoffMs: number
}

/** Envoy's default base interval. */
export const DEFAULT_BACKOFF_MS = 25
/** The window of a backoff never exceeds this many times the base (Envoy's default max_interval). */
export const MAX_BACKOFF_FACTOR = 10
/** A `retry` stanza without codes: the statuses a retry can fix (a failing or overloaded backend, a bad gateway). */
export const DEFAULT_RETRY_CODES: readonly number[] = [500, 502, 503, 504]
/** A rule without `retry` gets Istio's default route policy: 2 retries, on 503 (and connect failures, resets). */
export const IMPLICIT_RETRY: RouteRetry = { codes: [503], attempts: 2 }

export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'])

export type TryError = 'connect-failure' | 'reset' | 'timeout'

/** The rule's `retry`, with the defaults filled in (see IMPLICIT_RETRY and DEFAULT_RETRY_CODES). */
export function retryPolicy (retry: RouteRetry | undefined): RetryPolicy {
  const { codes, attempts, backoff } = retry ?? IMPLICIT_RETRY
  const backoffMs = backoff ?? DEFAULT_BACKOFF_MS
  return {
    attempts,
    codes: new Set(codes.length > 0 ? codes : DEFAULT_RETRY_CODES),
    backoffMs,
    maxBackoffMs: backoffMs * MAX_BACKOFF_FACTOR
  }
}

/** The rule's retry policy; GRPCRoute rules have no `retry` field and get the implicit one. */
export function rulePolicy (rule: HTTPRouteRule | GRPCRouteRule): RetryPolicy {
  return retryPolicy('retry' in rule ? rule.retry : undefined)
}

export interface TryOutcome {
  /** Tries made so far, the one that just failed included (1 after the first try). */
  readonly attempt: number
  readonly method: string
  /** The backend's status, when it answered. */
  readonly status?: number
  /** Why the try got no answer, when it did not. */
  readonly error?: TryError
  readonly policy: RetryPolicy
  /** When the request times out (ms, same clock as `now`); undefined: no request timeout. */
  readonly deadline?: number
  readonly now: number
  /** Retry methods that are not idempotent (POST, PATCH...) too. */
  readonly nonIdempotentAllowed?: boolean
  readonly random?: Random
}

export type RetryReason = 'retry' | 'not-retriable' | 'method' | 'exhausted' | 'deadline'

export interface RetryDecision {
  readonly retry: boolean
  /** How long to wait before the retry (0 when not retrying). */
  readonly delayMs: number
  /** Why: 'retry', or what stopped it (for logs). */
  readonly reason: RetryReason
}

export function shouldRetry (outcome: TryOutcome): RetryDecision {
  const { attempt, policy, deadline, now } = outcome
  if (!isRetriable(outcome)) return stop('not-retriable')
  if (outcome.error !== 'connect-failure' && !IDEMPOTENT_METHODS.has(outcome.method) && outcome.nonIdempotentAllowed !== true) {
    return stop('method')
  }
  if (attempt > policy.attempts) return stop('exhausted')
  const delayMs = backoffDelay(attempt, policy, outcome.random ?? Math.random)
  if (deadline !== undefined && now + delayMs >= deadline) return stop('deadline')
  return { retry: true, delayMs, reason: 'retry' }
}

/** The wait before retry number `retry` (1 for the first retry). */
export function backoffDelay (retry: number, policy: Pick<RetryPolicy, 'backoffMs' | 'maxBackoffMs'>, random: Random = Math.random): number {
  // Past 2^10 - 1 the window is capped anyway; the bound keeps 2 ** retry finite.
  const window = Math.min((2 ** Math.min(retry, 10) - 1) * policy.backoffMs, policy.maxBackoffMs)
  return Math.floor(random() * window)
}

function isRetriable ({ status, error, policy }: TryOutcome): boolean {
  if (error === 'connect-failure' || error === 'reset') return true
  if (error === 'timeout') return policy.codes.has(504)
  return status !== undefined && policy.codes.has(status)
}

function stop (reason: Exclude<RetryReason, 'retry'>): RetryDecision {
  return { retry: false, delayMs: 0, reason }
}

export interface RuleTimeouts {
  /** The whole client request, retries included. */
  readonly requestMs?: number
  /** Each try to a backend. */
  readonly backendRequestMs?: number
}

/** The rule's timeouts; "0s" disables one (GEP-1742), so it comes back undefined. GRPCRoute rules have none. */
export function timeouts (rule: HTTPRouteRule | GRPCRouteRule): RuleTimeouts {
  const configured = 'timeouts' in rule ? rule.timeouts : undefined
  return { requestMs: positive(configured?.request), backendRequestMs: positive(configured?.backendRequest) }
}

/** How long the next try may take: its own timeout, within what is left of the request's. undefined: no limit. */
export function tryTimeoutMs (ruleTimeouts: RuleTimeouts, deadline: number | undefined, now: number): number | undefined {
  const left = deadline === undefined ? undefined : Math.max(0, deadline - now)
  if (left === undefined) return ruleTimeouts.backendRequestMs
  return ruleTimeouts.backendRequestMs === undefined ? left : Math.min(left, ruleTimeouts.backendRequestMs)
}

function positive (millis: number | undefined): number | undefined {
  return millis === undefined || millis <= 0 ? undefined : millis
}
