import { Redis } from 'ioredis'
import type { Command, FlagSpec } from '../command.js'
import { HELP_FLAG, LOG_LEVEL_FLAG, STORE_FLAG, booleanFlag, numberFlag, requiredFlag, stringFlag } from '../command.js'
import { createLogger } from '../log.js'
import { untilSignal } from '../lifecycle.js'
import { tokenFileProvider } from '../token-file.js'
import { openStore } from '../../control/open-store.js'
import { CaClient } from '../../policy/ca-client.js'
import { ConfigError } from '../../policy/errors.js'
import { Waypoint } from '../../gateway/waypoint.js'
import { RATE_LIMIT_REDIS_OPTIONS } from '../../gateway/rate-limit.js'

export const WAYPOINT_FLAGS: Readonly<Record<string, FlagSpec>> = {
  name: { type: 'string', value: 'NAME', description: 'the waypoint Gateway\'s name' },
  namespace: { type: 'string', short: 'n', value: 'NS', description: 'the waypoint Gateway\'s namespace' },
  store: STORE_FLAG,
  ca: { type: 'string', value: 'URL', description: 'the CA signing service, e.g. https://ambit-controller:15012' },
  'token-file': { type: 'string', value: 'FILE', description: 'the credential of the node this waypoint runs on' },
  'listen-address': { type: 'string', value: 'IP', description: 'address HBONE binds (default: the waypoint pod\'s IP in the mesh state)' },
  'no-access-log': { type: 'boolean', description: 'do not write a JSON access log line per request to stdout' },
  'drain-timeout': { type: 'string', value: 'SECONDS', default: '10', description: 'how long SIGTERM waits for in-flight requests' },
  'log-level': LOG_LEVEL_FLAG,
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
    const storeUrl = requiredFlag(args, 'store')
    if (storeUrl === 'memory') throw new ConfigError('--store memory is private to one process; a separate waypoint needs redis://… (or use ambit up)')
    const caUrl = requiredFlag(args, 'ca')
    const tokenFile = requiredFlag(args, 'token-file')
    const token = await tokenFileProvider(tokenFile)
    const logger = createLogger(stringFlag(args, 'log-level'), 'waypoint')
    const store = await openStore(storeUrl, { logger })
    const redis = storeUrl.startsWith('redis://') || storeUrl.startsWith('rediss://') ? new Redis(storeUrl, { ...RATE_LIMIT_REDIS_OPTIONS, lazyConnect: false }) : undefined
    redis?.on('error', () => {})
    const listenAddress = stringFlag(args, 'listen-address')
    try {
      const waypoint = await Waypoint.start({
        name, namespace, store, logger, ...(redis !== undefined && { redis }),
        certificateSource: (trustBundle) => new CaClient({ url: caUrl, token, trustBundle }),
        ...(!booleanFlag(args, 'no-access-log') && { accessLog: createLogger('info', 'access', 1) }),
        drainMs: (numberFlag(args, 'drain-timeout') ?? 10) * 1000,
        ...(listenAddress !== undefined && { listenAddress })
      })
      console.log(`ambit waypoint: ${namespace}/${name} serving HBONE on ${waypoint.ports.hbone}`)
      await untilSignal()
      await waypoint.stop()
      return 0
    } finally {
      redis?.disconnect()
      await store.close()
    }
  }
}
