/**
 * What only the Redis store has: its key layout, key prefixes, store URLs and credentials,
 * failing fast while Redis is down, and an atomic commit.
 */
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { MemoryStore } from '../control/memory-store.js'
import { openStore, parseStoreUrl, redactUrl } from '../control/open-store.js'
import type { Store, StoreChange } from '../control/store.js'
import { ConfigError, StoreError } from '../policy/errors.js'
import { startRedis, type RedisServer } from './helpers/redis.js'
import { waitFor } from './helpers/wait.js'

async function open (t: Test, url: string, options: Parameters<typeof openStore>[1] = {}): Promise<Store> {
  const store = await openStore(url, options)
  t.teardown(() => store.close())
  return store
}

function rawClient (t: Test, redis: RedisServer, db = 0): Redis {
  const raw = new Redis({ port: redis.port, host: '127.0.0.1', db })
  t.teardown(() => raw.disconnect())
  return raw
}

const one = (key: string, value: unknown): { upserts: Map<string, unknown>, deletes: string[] } =>
  ({ upserts: new Map([[key, value]]), deletes: [] })

t.test('the keys are the documented ones, under the default prefix, in one hash tag', async (t) => {
  const redis = await startRedis(t)
  const store = await open(t, redis.url)
  await store.commit('state', one('mesh', { trustDomain: 'cluster.local' }))
  const raw = rawClient(t, redis)
  t.equal(await raw.get('ambit:{state}:revision'), '1')
  t.equal(await raw.type('ambit:{state}:entries'), 'hash')
  t.equal(await raw.hget('ambit:{state}:entries', 'mesh'), '{"trustDomain":"cluster.local"}')
  t.equal(await raw.type('ambit:{state}:feed'), 'stream')
  t.same((await raw.xrange('ambit:{state}:feed', '-', '+')).map(([id]) => id), ['1-0'], 'feed ids are revisions')
  t.equal(await raw.exists('ambit:{resources}:revision'), 0, 'an untouched keyspace has no keys')
})

t.test('stores with different key prefixes do not see each other', async (t) => {
  const redis = await startRedis(t)
  const first = await open(t, redis.url)
  const second = await open(t, redis.url, { keyPrefix: 'other:' })
  const heardBySecond: StoreChange[] = []
  second.subscribe('state', (change) => heardBySecond.push(change))
  await waitFor('the subscription', () => second.connected)

  await first.commit('state', one('workload/a', 1))
  await first.commit('state', one('workload/b', 2))
  t.equal(await second.revision('state'), 0)
  t.equal((await second.snapshot('state')).entries.size, 0)
  t.same(await second.changesSince('state', 0), [])

  t.equal(await second.commit('state', one('workload/c', 3)), 1)
  t.same([...(await first.snapshot('state')).entries.keys()].sort(), ['workload/a', 'workload/b'])
  t.same([...(await second.snapshot('state')).entries.keys()], ['workload/c'])
  await waitFor('the second store\'s own push', () => heardBySecond.length === 1)
  t.same(heardBySecond.map((c) => c.upserts.get('workload/c')), [3], 'it heard only its own commit')
})

t.test('store URLs', async (t) => {
  t.type(await openStore('memory'), MemoryStore)
  t.match(parseStoreUrl('redis://:p%40ss@cache.internal:6380/2'), {
    kind: 'standalone', tls: false, addresses: [{ host: 'cache.internal', port: 6380 }], username: undefined, password: 'p@ss', db: 2
  })
  t.match(parseStoreUrl('rediss://ambit:pw@[::1]'), { kind: 'standalone', tls: true, addresses: [{ host: '::1', port: 6379 }], username: 'ambit', password: 'pw', db: 0 })
  t.match(parseStoreUrl('redis+sentinel://s1,s2:26380/mymaster/1'), {
    kind: 'sentinel', addresses: [{ host: 's1', port: 26379 }, { host: 's2', port: 26380 }], masterName: 'mymaster', db: 1
  })
  t.match(parseStoreUrl('redis+cluster://n1:7000,n2:7001'), { kind: 'cluster', addresses: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 7001 }] })
  for (const bad of ['redis-cluster://x', 'http://x', 'redis://a:1,b:2', 'redis+sentinel://s1:26379', 'redis://x/notadb',
    'redis+cluster://n1/1', 'redis://x:99999', 'redis://:secret@host:0', 'redis://:%zz@host', 'redis://host?db=1']) {
    t.throws(() => parseStoreUrl(bad), ConfigError, bad)
  }
  try {
    parseStoreUrl('redis://:secret@host:0')
  } catch (error) {
    t.notMatch((error as Error).message, 'secret', 'errors do not repeat the password')
  }
  t.equal(redactUrl('redis://user:secret@host:1/0'), 'redis://***@host:1/0')
})

t.test('a password in the URL is used and never shown', async (t) => {
  const redis = await startRedis(t, { args: ['--requirepass', 's3cret'] })
  const store = await open(t, `redis://:s3cret@127.0.0.1:${redis.port}/0`)
  t.ok(store.connected)
  t.equal(store.description, `redis://127.0.0.1:${redis.port}/0`)
  t.equal(await store.commit('state', one('k', 1)), 1)

  const refused = await open(t, `redis://:wrong-pass@127.0.0.1:${redis.port}`, { connectWaitMs: 300 })
  t.notOk(refused.connected)
  t.notMatch(refused.description, 'wrong-pass')
  const error = await refused.revision('state').catch((e: unknown) => e)
  t.type(error, StoreError)
  t.notMatch((error as Error).message, 'wrong-pass')
})

t.test('the database in the URL is the one written', async (t) => {
  const redis = await startRedis(t)
  const store = await open(t, `${redis.url}/3`)
  await store.commit('state', one('k', 1))
  t.equal(await rawClient(t, redis, 3).get('ambit:{state}:revision'), '1')
  t.equal(await rawClient(t, redis, 0).exists('ambit:{state}:revision'), 0)
})

t.test('while Redis is down commands fail at once, and the store reconnects by itself', async (t) => {
  const redis = await startRedis(t)
  const store = await open(t, redis.url)
  const changes: boolean[] = []
  store.onConnectionChange((connected) => changes.push(connected))
  await store.commit('state', one('k', 1))

  await redis.kill()
  await waitFor('the store to notice', () => !store.connected, 5000)
  const attempts: Array<() => Promise<unknown>> = [
    () => store.commit('state', one('k', 2)),
    () => store.snapshot('state'),
    () => store.revision('state'),
    () => store.changesSince('state', 0)
  ]
  for (const attempt of attempts) {
    const started = Date.now()
    await t.rejects(attempt(), StoreError)
    t.ok(Date.now() - started < 500, 'failed fast')
  }

  await redis.start() // no persistence: Redis comes back empty
  await waitFor('the store to reconnect', () => store.connected, 5000)
  t.equal(await store.commit('state', one('k', 3)), 1)
  t.same(changes, [false, true])
})

t.test('openStore returns a store that is still connecting when Redis is not there yet', async (t) => {
  const redis = await startRedis(t)
  await redis.stop()
  const started = Date.now()
  const store = await open(t, redis.url, { connectWaitMs: 300 })
  const waited = Date.now() - started
  t.ok(waited >= 290 && waited < 3000, `waited ${waited} ms`)
  t.notOk(store.connected)
  await t.rejects(store.revision('state'), StoreError)
  await redis.start()
  await waitFor('the store to connect', () => store.connected, 5000)
  t.equal(await store.revision('state'), 0)
})

t.test('a commit that Redis refuses writes nothing at all', async (t) => {
  const redis = await startRedis(t)
  const store = await open(t, redis.url)
  // A feed already ahead of the revision (another history): the next XADD is refused.
  await rawClient(t, redis).xadd('ambit:{state}:feed', '5-0', 'revision', '5', 'change', '{"upserts":[],"deletes":[]}')
  await t.rejects(store.commit('state', one('k', 1)), StoreError)
  t.equal(await store.revision('state'), 0)
  t.equal((await store.snapshot('state')).entries.size, 0)
})
