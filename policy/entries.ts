/**
 * The mesh state as a flat map of entries ('workload/ns/name' → JSON value): the unit the
 * store writes, diffs and ships in its change feed.
 */
import type { MeshState } from './state.js'

type Collection = Exclude<keyof MeshState, 'mesh'>

const COLLECTION_PREFIX: Readonly<Record<Collection, string>> = {
  nodes: 'node',
  workloads: 'workload',
  services: 'service',
  waypoints: 'waypoint',
  authorizationPolicies: 'authz',
  peerAuthentications: 'peerauth',
  httpRoutes: 'httproute',
  grpcRoutes: 'grpcroute',
  trafficPolicies: 'trafficpolicy'
}

const PREFIX_COLLECTION = new Map<string, Collection>(
  Object.entries(COLLECTION_PREFIX).map(([c, p]) => [p, c as Collection])
)

const MESH_KEY = 'mesh'

export type Entries = ReadonlyMap<string, unknown>

export interface EntryChanges {
  readonly upserts: ReadonlyMap<string, unknown>
  readonly deletes: readonly string[]
}

export function toEntries (state: MeshState): Map<string, unknown> {
  const entries = new Map<string, unknown>([[MESH_KEY, state.mesh]])
  for (const [collection, prefix] of Object.entries(COLLECTION_PREFIX)) {
    for (const [key, value] of Object.entries(state[collection as Collection])) {
      entries.set(`${prefix}/${key}`, value)
    }
  }
  return entries
}

/** Rebuilds the state from entries; unknown entry kinds (from a newer writer) are ignored. */
export function fromEntries (entries: Entries): MeshState | undefined {
  const mesh = entries.get(MESH_KEY) as MeshState['mesh'] | undefined
  if (mesh === undefined) return undefined
  const collections: Record<string, Record<string, unknown>> = {}
  for (const c of PREFIX_COLLECTION.values()) collections[c] = {}
  for (const [entryKey, value] of entries) {
    const slash = entryKey.indexOf('/')
    if (slash < 0) continue
    const collection = PREFIX_COLLECTION.get(entryKey.slice(0, slash))
    if (collection !== undefined) collections[collection]![entryKey.slice(slash + 1)] = value
  }
  // The collections were filled from entries this module wrote; their shapes are MeshState's.
  return { mesh, ...collections } as unknown as MeshState
}

/** What to write to turn `before` into `after`: entries whose JSON differs, and removed keys. */
export function diffEntries (before: Entries, after: Entries): EntryChanges {
  const upserts = new Map<string, unknown>()
  for (const [key, value] of after) {
    const old = before.get(key)
    if (old === undefined || JSON.stringify(old) !== JSON.stringify(value)) upserts.set(key, value)
  }
  const deletes = [...before.keys()].filter((key) => !after.has(key))
  return { upserts, deletes }
}

export function applyChanges (entries: Map<string, unknown>, changes: EntryChanges): void {
  for (const key of changes.deletes) entries.delete(key)
  for (const [key, value] of changes.upserts) entries.set(key, value)
}
