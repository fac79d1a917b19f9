import type { Command } from '../command.js'
import { FILE_FLAG, HELP_FLAG, STORE_FLAG, listFlag, requiredFlag } from '../command.js'
import { openStore } from '../../control/open-store.js'
import { loadResourceFiles } from '../../policy/load.js'
import { ConfigError, InvalidResourcesError } from '../../policy/errors.js'
import { resourceKey } from '../../policy/resources.js'

export const applyCommand: Command = {
  name: 'apply',
  summary: 'validate resources and write them to the store (all or nothing)',
  usage: 'ambit apply -f PATH [-f PATH]... [--store URL]',
  flags: { file: FILE_FLAG, store: STORE_FLAG, help: HELP_FLAG },
  async run (args) {
    const files = listFlag(args, 'file')
    if (files.length === 0) throw new ConfigError('-f PATH is required')
    const { resources, errors } = await loadResourceFiles(files)
    // Nothing is written unless everything is valid: a bad document never replaces good state.
    if (errors.length > 0) throw new InvalidResourcesError(errors)
    const url = requiredFlag(args, 'store')
    const store = await openStore(url)
    try {
      const upserts = new Map(resources.map((r) => [resourceKey(r), r as unknown]))
      const revision = await store.commit('resources', { upserts, deletes: [] })
      for (const key of upserts.keys()) console.log(`${key} applied`)
      console.log(`${upserts.size} resource(s) applied to ${store.description} at revision ${revision}` +
        (url === 'memory' ? ' (validated only: the in-memory store ends with this command)' : ''))
      return 0
    } finally {
      await store.close()
    }
  }
}
