/** The sample shop, loaded and resolved, for tests that need a realistic mesh. */
import { fileURLToPath } from 'node:url'
import { loadResourceFiles } from '../../policy/load.js'
import { resolve } from '../../policy/resolve.js'
import type { Resource } from '../../policy/resources.js'
import { DEFAULT_ROOT_NAMESPACE, DEFAULT_TRUST_DOMAIN, type MeshConfig, type MeshState } from '../../policy/state.js'

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const SHOP_DIR = fileURLToPath(new URL('../../examples/shop', import.meta.url))
export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

export const TEST_MESH: MeshConfig = { trustDomain: DEFAULT_TRUST_DOMAIN, rootNamespace: DEFAULT_ROOT_NAMESPACE, trustBundle: [] }

export async function shopResources (): Promise<Resource[]> {
  const { resources, errors } = await loadResourceFiles([SHOP_DIR])
  if (errors.length > 0) throw new Error(errors.map((e) => e.message).join('\n'))
  return resources
}

export async function shopState (): Promise<MeshState> {
  return resolve(await shopResources(), TEST_MESH).state
}
