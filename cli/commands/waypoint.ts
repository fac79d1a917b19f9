import { Redis } from 'ioredis'
import type { Command, FlagSpec } from '../command.js'
import { HELP_FLAG, booleanFlag, requiredFlag, stringFlag } from '../command.js'
import { createAccessLogger } from '../log.js'
import { serveUntilSignal } from '../lifecycle.js'
import { openProxyInputs, proxyFlags } from './proxy-inputs.js'
import { Waypoint } from '../../gateway/waypoint.js'
import { RATE_LIMIT_REDIS_OPTIONS } from '../../gateway/rate-limit.js'

export const WAYPOINT_FLAGS: Readonly<Record<string, FlagSpec>> = {
  name: { type: 'string', value: 'NAME', description: 'the waypoint Gateway\'s name' },
  namespace: { type: 'string', short: 'n', value: 'NS', description: 'the waypoint Gateway\'s namespace' },
  ...proxyFlags('the credential of the node this waypoint runs on', 'how long SIGTERM waits for in-flight requests'),
  'listen-address': { type: 'string', value: 'IP', description: 'address HBONE binds (default: the waypoint pod\'s IP in the mesh state)' },
  'no-access-log': { type: 'boolean', description: 'do not write a JSON access log line per request to stdout' },
  help: HELP_FLAG
}

export const waypointCommand: Command = {
  name: 'waypoint',
  summary: 'run one waypoint: the L7 proxy of a namespace',
  usage: 'ambit waypoint --name NAME --namespace NS --store URL --ca URL --token-file FILE',
  flags: WAYPOINT_FLAGS,
  async run (args) {
    const name = requiredFlag(args, 'name')
    const namespace = requiredFlag(args, 'namespace')
    const { storeUrl, store, logger, certificateSource, drainMs } = await openProxyInputs(args, 'waypoint')
    const redis = storeUrl.startsWith('redis://') || storeUrl.startsWith('rediss://') ? new Redis(storeUrl, { ...RATE_LIMIT_REDIS_OPTIONS, lazyConnect: false }) : undefined
    redis?.on('error', () => {})
    const listenAddress = stringFlag(args, 'listen-address')
    try {
      const waypoint = await Waypoint.start({
        name, namespace, store, logger, ...(redis !== undefined && { redis }),
        certificateSource,
        ...(!booleanFlag(args, 'no-access-log') && { accessLog: createAccessLogger() }),
        drainMs,
        ...(listenAddress !== undefined && { listenAddress })
      })
      console.log(`ambit waypoint: ${namespace}/${name} serving HBONE on ${waypoint.ports.hbone}`)
      await serveUntilSignal(logger, () => waypoint.stop(), drainMs)
      return 0
    } finally {
      redis?.disconnect()
      await store.close()
    }
  }
}
