/**
 * Rate limits (TrafficPolicy `rateLimit`): token buckets holding `requests` tokens, refilled
 * continuously at `requests` per `interval`; each request takes one token or is refused (429).
 *
 *   LocalRateLimiter   one bucket in this process (per waypoint replica)
 *   GlobalRateLimiter  one bucket in Redis shared by every replica: a single Lua script per
 *                      request refills and takes atomically, on the Redis server's clock
 *
 * Both count in "credits", 1/interval of a token, so that refills are whole numbers: a token
 * costs `interval` credits and every millisecond adds `requests` credits. No rounding drift.
 *
 * The global limiter fails open: when Redis is down, slow (no answer within timeoutMs, 50 ms by
 * default) or answers nonsense, the request is allowed and onFailOpen is told why (the waypoint
 * counts it in ambit_ratelimit_fail_open_total). A limiter outage must not become a mesh outage.
 */
import { createHash } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import { RateLimitUnavailableError } from '../policy/errors.js'
import type { RateLimitRule } from '../policy/resources.js'

export interface RateLimitDecision {
  readonly allowed: boolean
  /** Whole tokens left after this request (for an x-ratelimit-remaining header). */
  readonly remaining: number
}

/** The bucket's arithmetic in credits (see the top of this file). */
interface BucketShape {
  /** Credits of a full bucket: requests × interval. */
  readonly capacity: number
  /** Credits added per millisecond: requests. */
  readonly refillPerMs: number
  /** Credits one request takes: interval. */
  readonly cost: number
}

function bucketShape (rule: RateLimitRule): BucketShape {
  return { capacity: rule.requests * rule.interval, refillPerMs: rule.requests, cost: rule.interval }
}

export class LocalRateLimiter {
  private readonly shape: BucketShape
  private credits: number
  private refilledAt: number | undefined

  constructor (rule: RateLimitRule) {
    this.shape = bucketShape(rule)
    this.credits = this.shape.capacity
  }

  /** Takes a token if there is one; `now` in milliseconds (a clock going backwards refills nothing). */
  tryTake (now: number = Date.now()): RateLimitDecision {
    const { capacity, refillPerMs, cost } = this.shape
    const elapsed = this.refilledAt === undefined ? 0 : Math.max(0, now - this.refilledAt)
    this.credits = Math.min(capacity, this.credits + elapsed * refillPerMs)
    this.refilledAt = now
    const allowed = this.credits >= cost
    if (allowed) this.credits -= cost
    return { allowed, remaining: Math.floor(this.credits / cost) }
  }
}

export type RedisClient = Redis | Cluster

/**
 * Options for a Redis client dedicated to rate limiting: fail a command at once while
 * disconnected instead of queueing it, and drop one Redis never answers after a second. The
 * limiter's own deadline (timeoutMs) decides when a request fails open; ioredis's must be longer,
 * because its timer cannot tell a slow Redis from a busy event loop (see withTimeout). A shared
 * client with other settings is fine, just less economical.
 */
export const RATE_LIMIT_REDIS_OPTIONS = { commandTimeout: 1_000, enableOfflineQueue: false, maxRetriesPerRequest: 0 } as const

export interface GlobalRateLimiterOptions extends RateLimitRule {
  /** Any connected ioredis client, standalone or Cluster. */
  readonly redis: RedisClient
  /** Which bucket, e.g. the Service key; every replica limiting that Service uses the same name. */
  readonly name: string
  /** Prefix of the bucket's key (default 'ambit:'). */
  readonly keyPrefix?: string
  /** No answer after this long fails open (default 50 ms). */
  readonly timeoutMs?: number
  /** Called (and never allowed to throw) each time a request is let through unchecked. */
  readonly onFailOpen?: (error: RateLimitUnavailableError) => void
}

export type GlobalRateLimitDecision =
  | (RateLimitDecision & { readonly failedOpen: false })
  | { readonly allowed: true, readonly failedOpen: true }

const DEFAULT_TIMEOUT_MS = 50

/**
 * KEYS[1] the bucket (a hash: credits, at); ARGV capacity, refillPerMs, cost (see BucketShape).
 * Returns { 1 if allowed else 0, whole tokens left }.
 *
 * The time comes from Redis (TIME), so replicas with skewed clocks share one timeline. The key
 * expires after `interval` idle: by then the bucket would be full, which is what a missing key
 * means. Redis 7 always replicates a script's effects; replicate_commands lets Redis 5 and 6
 * accept a write after TIME too.
 */
const TOKEN_BUCKET_LUA = `
if redis.replicate_commands then redis.replicate_commands() end
local capacity = tonumber(ARGV[1])
local refillPerMs = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local bucket = redis.call('HMGET', KEYS[1], 'credits', 'at')
local credits = tonumber(bucket[1]) or capacity
local at = tonumber(bucket[2]) or now
credits = math.min(capacity, credits + math.max(0, now - at) * refillPerMs)
local allowed = 0
if credits >= cost then
  credits = credits - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'credits', credits, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(cost))
return { allowed, math.floor(credits / cost) }
`
const TOKEN_BUCKET_SHA = createHash('sha1').update(TOKEN_BUCKET_LUA).digest('hex')

export class GlobalRateLimiter {
  /** The bucket's Redis key: the name is the hash tag, so Cluster keeps it in one slot. */
  readonly key: string
  private readonly redis: RedisClient
  private readonly shapeArgs: string[]
  private readonly timeoutMs: number
  private readonly onFailOpen: (error: RateLimitUnavailableError) => void

  constructor (options: GlobalRateLimiterOptions) {
    this.redis = options.redis
    this.key = `${options.keyPrefix ?? 'ambit:'}ratelimit:{${options.name}}`
    const { capacity, refillPerMs, cost } = bucketShape(options)
    this.shapeArgs = [capacity, refillPerMs, cost].map(String)
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    this.onFailOpen = options.onFailOpen ?? (() => {})
  }

  /** Takes a token from the shared bucket; never throws, never waits longer than timeoutMs. */
  async tryTake (): Promise<GlobalRateLimitDecision> {
    // Not even sent while disconnected: a shared client might queue it until Redis is back.
    if (this.redis.status !== 'ready') return this.failOpen(new RateLimitUnavailableError(`Redis is ${this.redis.status}`))
    try {
      const reply = await withTimeout(this.runScript(), this.timeoutMs)
      return { ...parseReply(reply), failedOpen: false }
    } catch (error) {
      const reason = error instanceof RateLimitUnavailableError
        ? error
        : new RateLimitUnavailableError(`rate limit script failed: ${String(error)}`, { cause: error })
      return this.failOpen(reason)
    }
  }

  private failOpen (error: RateLimitUnavailableError): GlobalRateLimitDecision {
    try {
      this.onFailOpen(error)
    } catch {
      // A broken metrics callback must not fail the request the limiter just let through.
    }
    return { allowed: true, failedOpen: true }
  }

  /** EVALSHA, falling back to EVAL (which also caches the script) when this server lacks it, e.g. after a restart. */
  private async runScript (): Promise<unknown> {
    try {
      return await this.redis.evalsha(TOKEN_BUCKET_SHA, 1, this.key, ...this.shapeArgs)
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
      return await this.redis.eval(TOKEN_BUCKET_LUA, 1, this.key, ...this.shapeArgs)
    }
  }
}

function parseReply (reply: unknown): RateLimitDecision {
  if (!Array.isArray(reply) || reply.length !== 2 || !reply.every((value) => typeof value === 'number')) {
    throw new RateLimitUnavailableError(`unexpected rate limit reply: ${JSON.stringify(reply)}`)
  }
  return { allowed: reply[0] === 1, remaining: reply[1] }
}

/**
 * `promise`, or a RateLimitUnavailableError once timeoutMs have passed without its answer.
 *
 * A busy waypoint runs its timers late, and a loop turn runs timers before it reads sockets: a
 * timer that fires 'on time' after a long turn would beat a reply that arrived long ago and sits
 * unread, and a burst of requests would fail open exactly when the limit matters. So the timer
 * only schedules the verdict with setImmediate, which runs after this turn has read its sockets.
 */
function withTimeout<T> (promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  let verdict: NodeJS.Immediate | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      verdict = setImmediate(() => reject(new RateLimitUnavailableError(`no answer from Redis within ${timeoutMs} ms`)))
    }, timeoutMs)
  })
  // race() also handles a late rejection of `promise`, so an abandoned command raises no unhandled rejection.
  return Promise.race([promise, timeout]).finally(() => {
    clearTimeout(timer)
    clearImmediate(verdict)
  })
}
