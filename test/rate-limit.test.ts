import t, { type Test } from 'tap'
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import {
  GlobalRateLimiter, LocalRateLimiter, RATE_LIMIT_REDIS_OPTIONS,
  type GlobalRateLimiterOptions, type GlobalRateLimitDecision, type RedisClient
} from '../gateway/rate-limit.js'
import type { RateLimitUnavailableError } from '../policy/errors.js'
import { startRedis, type RedisServer } from './helpers/redis.js'
import { waitFor } from './helpers/wait.js'

const MINUTE = 60_000

t.test('local token bucket', async (t) => {
  // 3 requests per second: one token every 333⅓ ms.
  const steps: Array<{ at: number, allowed: boolean, remaining: number, why: string }> = [
    { at: 0, allowed: true, remaining: 2, why: 'starts full' },
    { at: 0, allowed: true, remaining: 1, why: '' },
    { at: 0, allowed: true, remaining: 0, why: '' },
    { at: 0, allowed: false, remaining: 0, why: 'empty' },
    { at: 333, allowed: false, remaining: 0, why: '999/1000 of a token' },
    { at: 334, allowed: true, remaining: 0, why: 'a whole token after 333⅓ ms' },
    { at: 100, allowed: false, remaining: 0, why: 'a clock going backwards refills nothing' },
    { at: 10_000, allowed: true, remaining: 2, why: 'a long pause refills up to capacity only' },
    { at: 10_000, allowed: true, remaining: 1, why: '' },
    { at: 10_000, allowed: true, remaining: 0, why: '' },
    { at: 10_000, allowed: false, remaining: 0, why: '' }
  ]
  const limiter = new LocalRateLimiter({ requests: 3, interval: 1_000 })
  for (const [index, { at, allowed, remaining, why }] of steps.entries()) {
    t.same(limiter.tryTake(at), { allowed, remaining }, `step ${index} at ${at} ms ${why}`)
  }
})

t.test('local: 100 per minute admits 100 at once, then one every 600 ms', async (t) => {
  const limiter = new LocalRateLimiter({ requests: 100, interval: MINUTE })
  t.equal(takeMany(300, () => limiter.tryTake(5_000).allowed), 100)
  t.equal(takeMany(10, () => limiter.tryTake(5_599).allowed), 0)
  t.equal(takeMany(10, () => limiter.tryTake(5_600).allowed), 1)
  t.equal(takeMany(10, () => limiter.tryTake(5_600 + 6_000).allowed), 10)
})

t.test('global', async (t) => {
  t.test('two replicas (two clients) share one bucket: exactly 100 of 300 concurrent attempts pass', async (t) => {
    const redis = await startRedis(t)
    const failOpens: RateLimitUnavailableError[] = []
    // The point here is atomicity, so a generous deadline: a loaded machine must not fail open.
    const replicas = [client(t, redis), client(t, redis)].map((redisClient) =>
      limiterOn(redisClient, { timeoutMs: 10_000, onFailOpen: (error) => failOpens.push(error) }))
    await waitUntilReady(replicas)
    const started = Date.now()
    const decisions = await Promise.all(Array.from({ length: 300 }, (_, i) => replicas[i % 2].limiter.tryTake()))
    const elapsed = Date.now() - started
    t.same(failOpens, [], 'Redis answered every request')
    const allowed = decisions.filter((d) => d.allowed)
    // 100/min refills one token per 600 ms; on a fast run (the normal case) that is none.
    const refilled = Math.floor(elapsed / 600)
    t.ok(allowed.length >= 100 && allowed.length <= 100 + refilled, `${allowed.length} allowed in ${elapsed} ms (exactly 100 if under 600 ms)`)
    if (refilled === 0) {
      t.equal(allowed.length, 100)
      const remaining = allowed.map((d) => (d.failedOpen ? -1 : d.remaining)).sort((a, b) => a - b)
      t.same(remaining, Array.from({ length: 100 }, (_, i) => i), 'each token was handed out exactly once')
    }
    t.same(new Set(decisions.map((d) => d.failedOpen)), new Set([false]))
  })

  t.test('the key: prefix, hash tag, and a TTL of one interval', async (t) => {
    const redis = await startRedis(t)
    const raw = client(t, redis)
    const { limiter } = limiterOn(raw, { name: 'shop/reviews', keyPrefix: 'test:', requests: 5, interval: 2_000 })
    await waitUntilReady([{ redis: raw }])
    t.equal(limiter.key, 'test:ratelimit:{shop/reviews}')
    t.same(await limiter.tryTake(), { allowed: true, remaining: 4, failedOpen: false })
    const ttl = await raw.pttl(limiter.key)
    t.ok(ttl > 0 && ttl <= 2_000, `PTTL ${ttl}`)
    t.same(await raw.hkeys(limiter.key), ['credits', 'at'])
    t.equal(new GlobalRateLimiter({ redis: raw, name: 'x', requests: 1, interval: 1 }).key, 'ambit:ratelimit:{x}', 'default prefix')
  })

  t.test('refills on the Redis clock: 2 per 200 ms gives one token back after 100 ms, not before', async (t) => {
    const redis = await startRedis(t)
    const replica = limiterOn(client(t, redis), { requests: 2, interval: 200, timeoutMs: 10_000 })
    const { limiter } = replica
    await waitUntilReady([replica])
    const emptiedAt = Date.now()
    const burst = await Promise.all([limiter.tryTake(), limiter.tryTake(), limiter.tryTake()])
    t.same(burst.map((d) => d.allowed).sort(), [false, true, true])
    let allowedAgain: GlobalRateLimitDecision | undefined
    await waitFor('a refilled token', async () => {
      allowedAgain = await limiter.tryTake()
      return allowedAgain.allowed
    })
    const waited = Date.now() - emptiedAt
    t.ok(waited >= 100, `the next token came after ${waited} ms`)
    t.same(allowedAgain, { allowed: true, remaining: 0, failedOpen: false })
  })

  t.test('works on Redis Cluster', async (t) => {
    const redis = await startRedis(t, { cluster: true })
    const cluster = new Cluster([{ host: '127.0.0.1', port: redis.port }])
    cluster.on('error', () => {})
    t.teardown(() => cluster.disconnect())
    const replica = limiterOn(cluster, { requests: 10, timeoutMs: 10_000 })
    const { limiter } = replica
    await waitUntilReady([replica])
    const decisions = await Promise.all(Array.from({ length: 15 }, () => limiter.tryTake()))
    t.equal(decisions.filter((d) => d.allowed).length, 10)
    t.ok(decisions.every((d) => !d.failedOpen))
  })

  t.test('fails open at once while Redis is down, and limits again once it is back', async (t) => {
    const redis = await startRedis(t)
    const failOpens: RateLimitUnavailableError[] = []
    const replicas = [0, 1].map(() => limiterOn(client(t, redis, { ...RATE_LIMIT_REDIS_OPTIONS, retryStrategy: () => 50 }), {
      requests: 10, onFailOpen: (error) => failOpens.push(error)
    }))
    await waitUntilReady(replicas)
    t.equal((await replicas[0].limiter.tryTake()).allowed, true)

    await redis.kill()
    // Right after the kill a client may still think it is connected: those calls hit the timeout.
    for (let round = 0; round < 3; round++) {
      const timed = await Promise.all(Array.from({ length: 20 }, (_, i) => timeTake(replicas[i % 2].limiter)))
      t.ok(timed.every(({ decision }) => decision.allowed && decision.failedOpen), `round ${round}: all 20 let through`)
      const slowest = Math.max(...timed.map(({ ms }) => ms))
      t.ok(slowest <= 50 + 200, `round ${round}: the slowest took ${slowest} ms (timeout 50 ms + scheduling)`)
    }
    t.equal(failOpens.length, 60, 'onFailOpen once per request let through')
    t.ok(failOpens.every((error) => error.code === 'AMBIT_RATELIMIT_UNAVAILABLE'))

    await redis.start()
    await waitUntilReady(replicas)
    const decisions = await Promise.all(Array.from({ length: 30 }, (_, i) => replicas[i % 2].limiter.tryTake()))
    t.equal(decisions.filter((d) => d.allowed).length, 10, 'the (new, empty) Redis limits again')
    t.ok(decisions.every((d) => !d.failedOpen))
    t.equal(failOpens.length, 60, 'no more fail-opens')
  })

  t.test('fails open when Redis is too slow, after the timeout', async (t) => {
    const redis = await startRedis(t)
    const admin = client(t, redis)
    const failOpens: RateLimitUnavailableError[] = []
    const replica = limiterOn(client(t, redis), { onFailOpen: (error) => failOpens.push(error) })
    const { limiter } = replica
    await waitUntilReady([replica, { redis: admin }])
    await admin.call('CLIENT', 'PAUSE', '1000', 'ALL')
    const { decision, ms } = await timeTake(limiter)
    t.same(decision, { allowed: true, failedOpen: true })
    t.ok(ms >= 45 && ms <= 50 + 200, `answered after ${ms} ms`)
    t.match(failOpens[0]?.message, /within 50 ms/)
  })

  t.test('a throwing onFailOpen does not make tryTake throw', async (t) => {
    const redis = await startRedis(t)
    const replica = limiterOn(client(t, redis, RATE_LIMIT_REDIS_OPTIONS), {
      onFailOpen: () => { throw new Error('broken metrics') }
    })
    await waitUntilReady([replica])
    await redis.kill()
    await waitFor('the client to notice', () => replica.redis.status !== 'ready')
    t.same(await replica.limiter.tryTake(), { allowed: true, failedOpen: true })
  })
})

function takeMany (count: number, take: () => boolean): number {
  let allowed = 0
  for (let i = 0; i < count; i++) if (take()) allowed++
  return allowed
}

function client (t: Test, redis: RedisServer, options: RedisOptions = {}): Redis {
  const redisClient = new Redis({ host: '127.0.0.1', port: redis.port, ...options })
  redisClient.on('error', () => {}) // reconnection errors are expected while the server is down
  t.teardown(() => redisClient.disconnect())
  return redisClient
}

function limiterOn (redis: RedisClient, options: Partial<Omit<GlobalRateLimiterOptions, 'redis'>> = {}): { redis: RedisClient, limiter: GlobalRateLimiter } {
  return { redis, limiter: new GlobalRateLimiter({ redis, name: 'shop/reviews', requests: 100, interval: MINUTE, ...options }) }
}

/** Without an offline queue a client refuses commands until it is connected. */
function waitUntilReady (items: ReadonlyArray<{ redis: RedisClient }>): Promise<void> {
  return waitFor('Redis clients ready', () => items.every((item) => item.redis.status === 'ready'), 20_000)
}

async function timeTake (limiter: GlobalRateLimiter): Promise<{ decision: GlobalRateLimitDecision, ms: number }> {
  const started = performance.now()
  const decision = await limiter.tryTake()
  return { decision, ms: Math.round(performance.now() - started) }
}
