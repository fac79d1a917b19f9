import type { Command } from '../command.js'
import { FILE_FLAG, HELP_FLAG, LOG_LEVEL_FLAG, STORE_FLAG, listFlag, stringFlag } from '../command.js'
import { CONTROL_PLANE_FLAGS, controlPlaneOptions } from './control-flags.js'
import { createLogger } from '../log.js'
import { untilSignal } from '../lifecycle.js'
import { openStore } from '../../control/open-store.js'
import { ControlPlane } from '../../control/control-plane.js'
import { ConfigError } from '../../policy/errors.js'

export const upCommand: Command = {
  name: 'up',
  summary: 'run a whole mesh in one process: controller, CA and one ztunnel per Node',
  usage: 'ambit up -f PATH [-f PATH]... [--store URL]',
  flags: { file: FILE_FLAG, store: STORE_FLAG, ...CONTROL_PLANE_FLAGS, 'log-level': LOG_LEVEL_FLAG, help: HELP_FLAG },
  async run (args) {
    if (listFlag(args, 'file').length === 0) throw new ConfigError('-f PATH is required (try -f examples/shop)')
    const logger = createLogger(stringFlag(args, 'log-level'), 'up')
    const store = await openStore(stringFlag(args, 'store') ?? 'memory', { logger })
    try {
      const plane = await ControlPlane.start(await controlPlaneOptions(args, store, logger))
      const state = plane.controller.state
      console.log(`ambit up: ${Object.keys(state?.nodes ?? {}).length} nodes, ${Object.keys(state?.workloads ?? {}).length} workloads, ` +
        `${Object.keys(state?.services ?? {}).length} services on ${store.description}; CA at ${plane.caServer.url}; Ctrl-C to stop`)
      await untilSignal()
      await plane.stop()
      return 0
    } finally {
      await store.close()
    }
  }
}
