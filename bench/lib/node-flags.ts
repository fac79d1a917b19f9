/**
 * The node flags the ambit CLI runs with: its shebang's (`npm start` and the image's entrypoint
 * pass the same; test/docker-image.test.ts checks they agree). Benches give them to the Node
 * processes they measure, so those run as a user's would.
 */
import { readFile } from 'node:fs/promises'

/** The flags after `node` on the first line of `cli` ('#!/usr/bin/env -S node --flag ...'). */
export async function cliNodeFlags (cli: string): Promise<string[]> {
  const shebang = (await readFile(cli, 'utf8')).split('\n')[0] ?? ''
  const words = shebang.replace(/^#!/, '').trim().split(/\s+/)
  return words.slice(words.indexOf('node') + 1)
}
