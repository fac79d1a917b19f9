import type { Command } from '../command.js'
import { FILE_FLAG, HELP_FLAG, LOG_LEVEL_FLAG, STORE_FLAG, requiredFlag, stringFlag } from '../command.js'
import { CONTROL_PLANE_FLAGS, controlPlaneOptions } from './control-flags.js'
import { createLogger } from '../log.js'
import { untilSignal } from '../lifecycle.js'
import { openStore } from '../../control/open-store.js'
import { ControlPlane } from '../../control/control-plane.js'

export const controllerCommand: Command = {
  name: 'controller',
  summary: 'run the control plane: resolve resources into the store and serve the CA',
  usage: 'ambit controller --store URL [-f PATH]... [--ca-cert FILE --ca-key FILE]',
  flags: { store: STORE_FLAG, file: FILE_FLAG, ...CONTROL_PLANE_FLAGS, 'log-level': LOG_LEVEL_FLAG, help: HELP_FLAG },
  async run (args) {
    const logger = createLogger(stringFlag(args, 'log-level'), 'controller')
    const store = await openStore(requiredFlag(args, 'store'), { logger })
    try {
      const plane = await ControlPlane.start(await controlPlaneOptions(args, store, logger))
      const state = plane.controller.state
      console.log(`ambit controller: ${Object.keys(state?.workloads ?? {}).length} workloads, ` +
        `${Object.keys(state?.services ?? {}).length} services in ${store.description}; CA at ${plane.caServer.url}`)
      await untilSignal()
      await plane.stop()
      return 0
    } finally {
      await store.close()
    }
  }
}
