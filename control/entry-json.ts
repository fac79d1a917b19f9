/**
 * Entries rest and travel as JSON text in both stores: Redis needs strings anyway, and the
 * in-memory store doing the same round trip means readers always get their own copies (a
 * reader cannot change what the writer or another reader sees) and both stores accept and
 * reject exactly the same values.
 */
import type { EntryChanges } from '../policy/entries.js'
import { StoreError } from '../policy/errors.js'
import type { StoreChange } from './store.js'

/** A commit ready to be written: every value already JSON text. */
export interface EncodedChanges {
  readonly upserts: ReadonlyArray<readonly [key: string, json: string]>
  readonly deletes: readonly string[]
  /** The whole commit as one JSON text, as the change feed stores it. */
  readonly json: string
}

export function isEmpty (changes: EntryChanges): boolean {
  return changes.upserts.size === 0 && changes.deletes.length === 0
}

export function encodeChanges (changes: EntryChanges): EncodedChanges {
  const upserts = [...changes.upserts].map(([key, value]) => [key, encodeValue(key, value)] as const)
  const deletes = [...changes.deletes]
  const json = `{"upserts":[${upserts.map(([key, value]) => `[${JSON.stringify(key)},${value}]`).join(',')}],` +
    `"deletes":${JSON.stringify(deletes)}}`
  return { upserts, deletes, json }
}

export function decodeChange (revision: number, json: string): StoreChange {
  const parsed = parseJson(`change feed entry for revision ${revision}`, json)
  if (!isEncodedChange(parsed)) throw new StoreError(`change feed entry for revision ${revision} is malformed`)
  return { revision, upserts: new Map(parsed.upserts), deletes: parsed.deletes }
}

export function encodeValue (key: string, value: unknown): string {
  const json = JSON.stringify(value)
  // JSON.stringify returns undefined for undefined, functions and symbols: nothing to store.
  if (json === undefined) throw new StoreError(`entry ${key} has no JSON representation`)
  return json
}

export function decodeValue (key: string, json: string): unknown {
  return parseJson(`entry ${key}`, json)
}

function parseJson (what: string, json: string): unknown {
  try {
    return JSON.parse(json)
  } catch (error) {
    throw new StoreError(`${what} holds invalid JSON`, { cause: error })
  }
}

function isEncodedChange (value: unknown): value is { upserts: Array<[string, unknown]>, deletes: string[] } {
  if (typeof value !== 'object' || value === null) return false
  const { upserts, deletes } = value as Record<string, unknown>
  return Array.isArray(upserts) && upserts.every((pair) => Array.isArray(pair) && typeof pair[0] === 'string') &&
    Array.isArray(deletes) && deletes.every((key) => typeof key === 'string')
}
