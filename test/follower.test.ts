/**
 * The follower against the real stores: it follows a busy writer, waits for a store that is not
 * there yet, rides out a Redis crash and restart without being restarted itself, and repairs
 * pushes that were really lost (commits written behind pub/sub's back, a trimmed feed).
 */
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { setTimeout as sleep } from 'node:timers/promises'
import { StateFollower } from '../control/follower.js'
import { MemoryStore } from '../control/memory-store.js'
import { openStore } from '../control/open-store.js'
import type { Store } from '../control/store.js'
import { applyChanges, type EntryChanges } from '../policy/entries.js'
import { StoreError } from '../policy/errors.js'
import { startRedis } from './helpers/redis.js'
import { waitFor } from './helpers/wait.js'

async function open (t: Test, url: string, options: Parameters<typeof openStore>[1] = {}): Promise<Store> {
  const store = await openStore(url, options)
  t.teardown(() => store.close())
  return store
}

async function follow (t: Test, store: Store, options: ConstructorParameters<typeof StateFollower>[2] = {}): Promise<StateFollower> {
  const follower = new StateFollower(store, 'state', options)
  t.teardown(() => follower.stop())
  await follower.start()
  return follower
}

/** The n-th commit of a made-up writer: upserts a rotating key, sometimes deletes another. */
function nthChanges (n: number): EntryChanges {
  const deletes = n % 3 === 0 ? [`workload/w${(n * 7) % 25}`] : []
  return { upserts: new Map([[`workload/w${n % 25}`, { n, ip: `10.0.${n % 250}.1` }]]), deletes }
}

t.test('a follower ends with exactly the writer\'s entries', async (t) => {
  const redis = await startRedis(t)
  const setups: Array<[string, () => Promise<[Store, Store]>]> = [
    ['memory', async () => { const store = new MemoryStore(); return [store, store] }],
    ['redis', async () => [await open(t, redis.url), await open(t, redis.url)]]
  ]
  for (const [name, setup] of setups) {
    await t.test(name, async (t) => {
      const [writer, reader] = await setup()
      const follower = await follow(t, reader)
      await waitFor('the follower to be fresh', () => !follower.stale)
      const updates: number[] = []
      follower.on('update', (revision) => updates.push(revision))
      const model = new Map<string, unknown>()
      let revision = 0
      for (let n = 1; n <= 300; n++) {
        const changes = nthChanges(n)
        revision = await writer.commit('state', changes)
        applyChanges(model, changes)
      }
      await waitFor('the follower to reach the last revision', () => follower.revision === revision)
      t.equal(revision, 300)
      t.same(new Map(follower.entries), model)
      t.same(new Map(follower.entries), (await reader.snapshot('state')).entries)
      t.same(updates, [...updates].sort((a, b) => a - b), 'updates come in revision order')
      t.equal(updates.at(-1), 300)
      t.notOk(follower.stale)
    })
  }
})

t.test('stop() before the first snapshot rejects start()', async (t) => {
  const follower = new StateFollower(new MemoryStore(), 'state')
  const started = follower.start()
  follower.stop()
  await t.rejects(started, StoreError)
})

t.test('start() waits for a store that is not reachable yet', async (t) => {
  const redis = await startRedis(t)
  await redis.stop()
  const store = await open(t, redis.url, { connectWaitMs: 100 })
  t.notOk(store.connected)
  const follower = new StateFollower(store, 'state', { retryDelayMs: 50 })
  t.teardown(() => follower.stop())
  let loaded = false
  const started = follower.start().then(() => { loaded = true })
  await sleep(500)
  t.notOk(loaded, 'no snapshot while Redis is down')
  t.ok(follower.stale)
  await redis.start()
  await started
  t.equal(follower.revision, 0)
  await waitFor('the follower to be fresh', () => !follower.stale)
})

t.test('Redis is killed and restarted while the writer keeps publishing', async (t) => {
  const redis = await startRedis(t, { persistent: true })
  const writerStore = await open(t, redis.url)
  const follower = await follow(t, await open(t, redis.url))
  await waitFor('the follower to be fresh', () => !follower.stale)
  const events: string[] = []
  follower.on('stale', () => events.push('stale'))
  follower.on('fresh', () => events.push('fresh'))

  const writer = new RetryingWriter(writerStore)
  const writing = writer.run()
  t.teardown(() => writer.stop())
  await waitFor('a few commits', () => writer.revision >= 10)

  await redis.kill()
  await waitFor('the follower to notice', () => follower.stale, 3000)
  const kept = new Map(follower.entries)
  const failuresAtKill = writer.failures
  await sleep(1000)
  t.ok(writer.failures > failuresAtKill, 'the writer\'s commits fail while Redis is down')
  t.ok(follower.stale && follower.staleSince !== undefined, 'stale while down')
  t.ok(kept.size > 0)
  t.same(new Map(follower.entries), kept, 'the last entries are kept while down')

  await redis.start()
  const backAt = Date.now()
  const revisionBeforeKill = writer.revision
  await waitFor('five commits after the restart', () => writer.revision >= revisionBeforeKill + 5)
  writer.stop()
  await writing
  t.ok(writer.revision > revisionBeforeKill, 'the state survived the crash: revisions carry on')
  await waitFor('the follower to catch up', () => follower.revision === writer.revision, 10_000)
  const caughtUpAfter = Date.now() - backAt
  t.ok(caughtUpAfter < 2000, `caught up ${caughtUpAfter} ms after Redis was back (< 2000)`)
  t.same(new Map(follower.entries), writer.model)
  await waitFor('the follower to be fresh', () => !follower.stale)
  t.same(events, ['stale', 'fresh'])
})

t.test('a Redis that comes back empty (no persistence) is followed into its new history', async (t) => {
  const redis = await startRedis(t)
  const store = await open(t, redis.url)
  const follower = await follow(t, store, { pollIntervalMs: 200 })
  for (let n = 1; n <= 5; n++) await store.commit('state', nthChanges(n))
  await waitFor('revision 5', () => follower.revision === 5)
  await redis.kill()
  await redis.start()
  await waitFor('the store to reconnect', () => store.connected, 5000)
  await waitFor('the follower to load the empty store', () => follower.revision === 0 && follower.entries.size === 0, 5000)
  t.ok(follower.resyncs >= 1)
  await store.commit('state', nthChanges(100))
  await waitFor('the first commit of the new history', () => follower.revision === 1)
  t.same(new Map(follower.entries), (await store.snapshot('state')).entries)
})

t.test('lost notifications are noticed and repaired', async (t) => {
  const redis = await startRedis(t)
  const prefix = 'lost:'
  const store = await open(t, redis.url, { keyPrefix: prefix })
  const follower = await follow(t, store, { pollIntervalMs: 200 })
  await waitFor('the follower to be fresh', () => !follower.stale)
  const raw = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => raw.disconnect())
  const silentCommit = (changes: EntryChanges): Promise<number> => commitWithoutNotification(raw, prefix, changes)
  const expectStoreEntries = async (): Promise<void> => {
    const snapshot = await store.snapshot('state')
    await waitFor(`the follower to reach revision ${snapshot.revision}`, () => follower.revision === snapshot.revision)
    t.same(new Map(follower.entries), snapshot.entries)
  }

  await store.commit('state', nthChanges(1))
  await silentCommit(nthChanges(2)) // its notification never goes out
  await store.commit('state', nthChanges(3)) // arrives with a gap before it
  await expectStoreEntries()
  t.ok(follower.gapsDetected > 0, 'the gap was detected')
  t.equal(follower.resyncs, 0, 'and filled from the feed')

  await silentCommit(nthChanges(4))
  await raw.xtrim(`${prefix}{state}:feed`, 'MAXLEN', 0) // and the feed forgot it
  await store.commit('state', nthChanges(5))
  await expectStoreEntries()
  t.equal(follower.resyncs, 1, 'the feed could not fill the gap: resynced from a snapshot')

  await silentCommit(nthChanges(6)) // the last commit, lost, with nothing after it
  await expectStoreEntries()
  t.equal(follower.revision, 6, 'the poll found the lost tail')
})

/**
 * What RedisStore's commit script does, minus the PUBLISH: a commit that no subscriber hears of.
 * (The key names are those documented in redis-store.ts.)
 */
async function commitWithoutNotification (raw: Redis, prefix: string, changes: EntryChanges): Promise<number> {
  const key = (name: string): string => `${prefix}{state}:${name}`
  const revision = Number(await raw.get(key('revision')) ?? 0) + 1
  const multi = raw.multi()
    .xadd(key('feed'), `${revision}-0`, 'revision', String(revision), 'change',
      JSON.stringify({ upserts: [...changes.upserts], deletes: changes.deletes }))
    .set(key('revision'), revision)
  for (const [entry, value] of changes.upserts) multi.hset(key('entries'), entry, JSON.stringify(value))
  for (const entry of changes.deletes) multi.hdel(key('entries'), entry)
  await multi.exec()
  return revision
}

/** A writer that keeps committing, retrying a failed commit until it goes through. */
class RetryingWriter {
  readonly model = new Map<string, unknown>()
  revision = 0
  failures = 0
  private stopped = false
  private n = 0

  constructor (private readonly store: Store) {}

  async run (): Promise<void> {
    while (!this.stopped) {
      const changes = nthChanges(++this.n)
      while (!this.stopped) {
        try {
          this.revision = await this.store.commit('state', changes)
          applyChanges(this.model, changes)
          break
        } catch (error) {
          if (!(error instanceof StoreError)) throw error
          this.failures += 1
          await sleep(20)
        }
      }
      await sleep(20)
    }
  }

  stop (): void {
    this.stopped = true
  }
}
