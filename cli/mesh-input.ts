/**
 * Where the read-only commands (get, explain) take the mesh from: YAML files resolved on the
 * spot (-f), or the state the controller published in a store (--store).
 */
import { listFlag, stringFlag, type ParsedArgs } from './command.js'
import { openStore } from '../control/open-store.js'
import { loadResourceFiles } from '../policy/load.js'
import { ConfigError, InvalidResourcesError, StoreError } from '../policy/errors.js'
import { resolve } from '../policy/resolve.js'
import { fromEntries } from '../policy/entries.js'
import { DEFAULT_ROOT_NAMESPACE, DEFAULT_TRUST_DOMAIN, type MeshConfig, type MeshState } from '../policy/state.js'

export function meshConfigFrom (args: ParsedArgs, trustBundle: readonly string[] = []): MeshConfig {
  return {
    trustDomain: stringFlag(args, 'trust-domain') ?? DEFAULT_TRUST_DOMAIN,
    rootNamespace: stringFlag(args, 'root-namespace') ?? DEFAULT_ROOT_NAMESPACE,
    trustBundle
  }
}

export async function loadMesh (args: ParsedArgs): Promise<MeshState> {
  const files = listFlag(args, 'file')
  if (files.length > 0) {
    const { resources, errors } = await loadResourceFiles(files)
    if (errors.length > 0) throw new InvalidResourcesError(errors)
    return resolve(resources, meshConfigFrom(args)).state
  }
  const url = stringFlag(args, 'store') ?? 'memory'
  if (url === 'memory') {
    throw new ConfigError(`the in-memory store is private to one process; give -f PATH or --store redis://HOST:PORT`)
  }
  const store = await openStore(url)
  try {
    const state = fromEntries((await store.snapshot('state')).entries)
    if (state === undefined) throw new StoreError(`${store.description} holds no mesh state yet; is the controller running?`)
    return state
  } finally {
    await store.close()
  }
}
