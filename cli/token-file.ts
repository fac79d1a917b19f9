/**
 * --token-file for `ambit ztunnel` and `ambit waypoint`: the kubelet rotates a projected
 * ServiceAccount token in place, so the file is read again for every CA request rather than
 * once at start. The first read happens at start, so a wrong path fails at once.
 */
import { readFile } from 'node:fs/promises'
import type { TokenProvider } from '../policy/ca-client.js'
import { ConfigError } from '../policy/errors.js'

export async function readTokenFile (file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new ConfigError(`cannot read --token-file ${file}: ${err.code ?? err.message}`)
  })
  const token = text.trim()
  if (token === '') throw new ConfigError(`--token-file ${file} is empty`)
  return token
}

/** Checks the file now; the provider re-reads it on each call. */
export async function tokenFileProvider (file: string): Promise<TokenProvider> {
  await readTokenFile(file)
  return () => readTokenFile(file)
}
