/**
 * One table of Store behaviours, run against every implementation: the in-memory store and
 * the Redis store on a real standalone server, a one-node Cluster and a Sentinel-watched master.
 */
import t, { type Test } from 'tap'
import { MemoryStore } from '../control/memory-store.js'
import { openStore } from '../control/open-store.js'
import type { Store, StoreChange } from '../control/store.js'
import { applyChanges } from '../policy/entries.js'
import { StoreError } from '../policy/errors.js'
import { startRedis, startSentinel, type Teardown } from './helpers/redis.js'
import { waitFor } from './helpers/wait.js'


/** Opens a fresh, empty store; `history` is how many commits changesSince must keep at least. */
type OpenFresh = (t: Test, options?: { history?: number }) => Promise<Store>

interface Implementation {
  readonly name: string
  /** Starts what the implementation needs (servers) and returns how to open fresh stores. */
  prepare (t: Teardown): Promise<OpenFresh>
}

let prefixes = 0
/** Each test writes under its own key prefix, so tests sharing a server start empty. */
function redisOpener (url: string): OpenFresh {
  return async (t, options = {}) => {
    const store = await openStore(url, { keyPrefix: `test${++prefixes}:`, feedLength: options.history })
    t.teardown(() => store.close())
    return store
  }
}

const implementations: Implementation[] = [
  {
    name: 'memory',
    prepare: async () => async (t, options = {}) => {
      const store = new MemoryStore({ historyLength: options.history })
      t.teardown(() => store.close())
      return store
    }
  },
  {
    name: 'redis standalone',
    prepare: async (t) => redisOpener((await startRedis(t)).url)
  },
  {
    name: 'redis cluster',
    prepare: async (t) => redisOpener(`redis+cluster://127.0.0.1:${(await startRedis(t, { cluster: true })).port}`)
  },
  {
    name: 'redis sentinel',
    prepare: async (t) => {
      const sentinel = await startSentinel(t, await startRedis(t), 'main')
      return redisOpener(`redis+sentinel://127.0.0.1:${sentinel.port}/main`)
    }
  }
]

const upserts = (record: Record<string, unknown>): Map<string, unknown> => new Map(Object.entries(record))

interface Behaviour {
  readonly name: string
  run (t: Test, open: OpenFresh): Promise<void>
}

const behaviours: Behaviour[] = [
  {
    name: 'a new store is empty at revision 0',
    async run (t, open) {
      const store = await open(t)
      t.ok(store.connected)
      t.equal(await store.revision('state'), 0)
      const snapshot = await store.snapshot('state')
      t.equal(snapshot.revision, 0)
      t.equal(snapshot.entries.size, 0)
      t.same(await store.changesSince('state', 0), [])
    }
  },
  {
    name: 'commit, snapshot, revision and changesSince agree',
    async run (t, open) {
      const store = await open(t)
      t.equal(await store.commit('state', { upserts: upserts({ 'workload/a': { ip: '10.0.0.1' }, 'workload/b': [1, 2] }), deletes: [] }), 1)
      t.equal(await store.commit('state', { upserts: upserts({ 'workload/c': 'c' }), deletes: ['workload/a'] }), 2)
      t.equal(await store.revision('state'), 2)
      const snapshot = await store.snapshot('state')
      t.equal(snapshot.revision, 2)
      t.same(Object.fromEntries(snapshot.entries), { 'workload/b': [1, 2], 'workload/c': 'c' })
      const changes = await store.changesSince('state', 0)
      t.same(changes?.map(plain), [
        { revision: 1, upserts: { 'workload/a': { ip: '10.0.0.1' }, 'workload/b': [1, 2] }, deletes: [] },
        { revision: 2, upserts: { 'workload/c': 'c' }, deletes: ['workload/a'] }
      ])
      t.same((await store.changesSince('state', 1))?.map((c) => c.revision), [2])
      t.same(await store.changesSince('state', 2), [])
    }
  },
  {
    name: 'a key both deleted and upserted in one commit ends upserted, as applyChanges does',
    async run (t, open) {
      const store = await open(t)
      await store.commit('state', { upserts: upserts({ k: 1 }), deletes: [] })
      await store.commit('state', { upserts: upserts({ k: 2 }), deletes: ['k'] })
      const expected = new Map<string, unknown>([['k', 1]])
      applyChanges(expected, { upserts: upserts({ k: 2 }), deletes: ['k'] })
      t.same((await store.snapshot('state')).entries, expected)
    }
  },
  {
    name: 'JSON values of every shape round trip, under any key',
    async run (t, open) {
      const store = await open(t)
      const values = {
        'a/nested': { list: [1, 'two', null, { deep: true }], n: -1.5 },
        'b/unicode ключ ✓': 'ünïcødé "quoted" \\ back',
        'c/null': null,
        'd/zero': 0,
        'e/false': false
      }
      // '__proto__' in an object literal would set the prototype, so that entry is added apart.
      const entries = upserts(values)
      entries.set('__proto__', { weird: 'key' })
      await store.commit('state', { upserts: entries, deletes: [] })
      const snapshot = await store.snapshot('state')
      t.same([...snapshot.entries].sort(byKey), [...entries].sort(byKey))
      t.same([...(await store.changesSince('state', 0))![0]!.upserts].sort(byKey), [...entries].sort(byKey))
    }
  },
  {
    name: 'readers get copies: changing what was read changes nothing stored',
    async run (t, open) {
      const store = await open(t)
      const value = { ports: [80] }
      await store.commit('state', { upserts: upserts({ 'service/s': value }), deletes: [] })
      value.ports.push(1) // the writer's object
      const first = await store.snapshot('state')
      ;(first.entries.get('service/s') as { ports: number[] }).ports.push(2) // a reader's object
      t.same((await store.snapshot('state')).entries.get('service/s'), { ports: [80] })
    }
  },
  {
    name: 'a commit with nothing in it writes nothing',
    async run (t, open) {
      const store = await open(t)
      await store.commit('state', { upserts: upserts({ k: 1 }), deletes: [] })
      t.equal(await store.commit('state', { upserts: new Map(), deletes: [] }), 1)
      t.equal(await store.revision('state'), 1)
      t.equal((await store.changesSince('state', 0))?.length, 1)
    }
  },
  {
    name: 'a value with no JSON form is refused and nothing is written',
    async run (t, open) {
      const store = await open(t)
      await t.rejects(store.commit('state', { upserts: upserts({ ok: 1, bad: undefined }), deletes: [] }), StoreError)
      t.equal(await store.revision('state'), 0)
      t.equal((await store.snapshot('state')).entries.size, 0)
    }
  },
  {
    name: 'the two keyspaces are independent',
    async run (t, open) {
      const store = await open(t)
      await store.commit('resources', { upserts: upserts({ 'Pod/ns/p': { kind: 'Pod' } }), deletes: [] })
      await store.commit('resources', { upserts: upserts({ 'Pod/ns/q': { kind: 'Pod' } }), deletes: [] })
      await store.commit('state', { upserts: upserts({ mesh: { trustDomain: 'cluster.local' } }), deletes: [] })
      t.equal(await store.revision('resources'), 2)
      t.equal(await store.revision('state'), 1)
      t.same([...(await store.snapshot('state')).entries.keys()], ['mesh'])
      t.same([...(await store.snapshot('resources')).entries.keys()].sort(), ['Pod/ns/p', 'Pod/ns/q'])
    }
  },
  {
    name: 'changesSince is undefined once the history no longer holds every change',
    async run (t, open) {
      const store = await open(t, { history: 5 })
      for (let i = 1; i <= 30; i++) await store.commit('state', { upserts: upserts({ counter: i }), deletes: [] })
      t.equal(await store.changesSince('state', 0), undefined, 'too far behind')
      t.same((await store.changesSince('state', 27))?.map((c) => c.upserts.get('counter')), [28, 29, 30])
      t.equal(await store.changesSince('state', 31), undefined, 'a reader ahead of the store must resync')
    }
  },
  {
    name: 'subscribe delivers every commit in order until unsubscribed',
    async run (t, open) {
      const store = await open(t)
      const seen: StoreChange[] = []
      const unsubscribe = store.subscribe('state', (change) => seen.push(change))
      // A Redis store reports connected once its subscription is live.
      await waitFor('the subscription', () => store.connected)
      for (let i = 1; i <= 20; i++) await store.commit('state', { upserts: upserts({ [`k${i}`]: i }), deletes: i > 1 ? [`k${i - 1}`] : [] })
      await store.commit('resources', { upserts: upserts({ other: 1 }), deletes: [] })
      await waitFor('20 pushed changes', () => seen.length >= 20)
      t.same(seen.map((c) => c.revision), Array.from({ length: 20 }, (_, i) => i + 1))
      t.same(plain(seen[4]!), { revision: 5, upserts: { k5: 5 }, deletes: ['k4'] })
      unsubscribe()
      await store.commit('state', { upserts: upserts({ after: true }), deletes: [] })
      await new Promise((resolve) => setTimeout(resolve, 200))
      t.equal(seen.length, 20, 'nothing after unsubscribing, and nothing from the other keyspace')
    }
  },
  {
    name: 'a closed store refuses work with a StoreError',
    async run (t, open) {
      const store = await open(t)
      await store.close()
      await t.rejects(store.revision('state'), StoreError)
      await t.rejects(store.commit('state', { upserts: upserts({ k: 1 }), deletes: [] }), StoreError)
    }
  }
]

function plain (change: StoreChange): unknown {
  return { revision: change.revision, upserts: Object.fromEntries(change.upserts), deletes: change.deletes }
}

function byKey (a: [string, unknown], b: [string, unknown]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0
}

for (const implementation of implementations) {
  t.test(implementation.name, async (t) => {
    const open = await implementation.prepare(t)
    for (const behaviour of behaviours) {
      await t.test(behaviour.name, (t) => behaviour.run(t, open))
    }
  })
}
