/** What a proxy started on its own (ambit ztunnel, ambit waypoint) needs: store, CA, token, logs. */
import type { Logger } from 'pino'
import type { FlagSpec, ParsedArgs } from '../command.js'
import { LOG_LEVEL_FLAG, STORE_FLAG, numberFlag, requiredFlag, stringFlag } from '../command.js'
import { createLogger } from '../log.js'
import { tokenFileProvider } from '../token-file.js'
import { openStore } from '../../control/open-store.js'
import type { Store } from '../../control/store.js'
import { CaClient } from '../../policy/ca-client.js'
import { ConfigError } from '../../policy/errors.js'
import type { CertificateSource } from '../../proxy/certificates.js'
import { DEFAULT_DRAIN_MS } from '../../proxy/hbone-server.js'

export function proxyFlags (tokenHelp: string, drainHelp: string): Readonly<Record<string, FlagSpec>> {
  return {
    store: STORE_FLAG,
    ca: { type: 'string', value: 'URL', description: 'the CA signing service, e.g. https://ambit-controller:15012' },
    'token-file': { type: 'string', value: 'FILE', description: tokenHelp },
    'drain-timeout': { type: 'string', value: 'SECONDS', default: String(DEFAULT_DRAIN_MS / 1000), description: drainHelp },
    'log-level': LOG_LEVEL_FLAG
  }
}

export interface ProxyInputs {
  readonly storeUrl: string
  readonly store: Store
  readonly logger: Logger
  readonly certificateSource: (trustBundle: readonly string[]) => CertificateSource
  readonly drainMs: number
}

export async function openProxyInputs (args: ParsedArgs, role: 'ztunnel' | 'waypoint'): Promise<ProxyInputs> {
  const storeUrl = requiredFlag(args, 'store')
  if (storeUrl === 'memory') throw new ConfigError(`--store memory is private to one process; a separate ${role} needs redis://… (or use ambit up)`)
  const caUrl = requiredFlag(args, 'ca')
  const token = await tokenFileProvider(requiredFlag(args, 'token-file'))
  const logger = createLogger(stringFlag(args, 'log-level'), role)
  return {
    storeUrl,
    store: await openStore(storeUrl, { logger }),
    logger,
    certificateSource: (trustBundle) => new CaClient({ url: caUrl, token, trustBundle }),
    drainMs: (numberFlag(args, 'drain-timeout') ?? DEFAULT_DRAIN_MS / 1000) * 1000
  }
}
