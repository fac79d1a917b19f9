import type { Command, FlagSpec } from '../command.js'
import { HELP_FLAG, LOG_LEVEL_FLAG, STORE_FLAG, booleanFlag, numberFlag, requiredFlag, stringFlag } from '../command.js'
import { createLogger } from '../log.js'
import { untilSignal } from '../lifecycle.js'
import { tokenFileProvider } from '../token-file.js'
import { openStore } from '../../control/open-store.js'
import { CaClient } from '../../policy/ca-client.js'
import { ConfigError } from '../../policy/errors.js'
import { Ztunnel } from '../../ztunnel/ztunnel.js'

/** The ztunnel's flags; k8s/ztunnel-daemonset.yaml is checked against them. */
export const ZTUNNEL_FLAGS: Readonly<Record<string, FlagSpec>> = {
  node: { type: 'string', value: 'NAME', description: 'this node\'s name (a Node in the mesh)' },
  store: STORE_FLAG,
  ca: { type: 'string', value: 'URL', description: 'the CA signing service, e.g. https://ambit-controller:15012' },
  'token-file': { type: 'string', value: 'FILE', description: 'this node\'s credential for the CA (local mode: written by the controller\'s --credentials-dir)' },
  'listen-address': { type: 'string', value: 'IP', description: 'address the listeners bind (default: the Node\'s InternalIP)' },
  'admin-address': { type: 'string', value: 'IP', description: 'address of the admin port 15000 (default 127.0.0.1)' },
  'no-capture': { type: 'boolean', description: 'do not install iptables capture rules (SOCKS5 / explicit mode only)' },
  'drain-timeout': { type: 'string', value: 'SECONDS', default: '10', description: 'how long SIGTERM waits for in-flight connections' },
  'log-level': LOG_LEVEL_FLAG,
  help: HELP_FLAG
}

export const ztunnelCommand: Command = {
  name: 'ztunnel',
  summary: 'run one node\'s L4 tunnel (what the DaemonSet runs)',
  usage: 'ambit ztunnel --node NAME --store URL --ca URL --token-file FILE [--no-capture]',
  flags: ZTUNNEL_FLAGS,
  async run (args) {
    const node = requiredFlag(args, 'node')
    const storeUrl = requiredFlag(args, 'store')
    if (storeUrl === 'memory') throw new ConfigError('--store memory is private to one process; a separate ztunnel needs redis://… (or use ambit up)')
    const caUrl = requiredFlag(args, 'ca')
    const tokenFile = requiredFlag(args, 'token-file')
    const token = await tokenFileProvider(tokenFile)
    const logger = createLogger(stringFlag(args, 'log-level'), 'ztunnel')
    const store = await openStore(storeUrl, { logger })
    const listenAddress = stringFlag(args, 'listen-address')
    const adminAddress = stringFlag(args, 'admin-address')
    try {
      const ztunnel = await Ztunnel.start({
        node,
        store,
        certificateSource: (trustBundle) => new CaClient({ url: caUrl, token, trustBundle }),
        logger,
        capture: !booleanFlag(args, 'no-capture'),
        drainMs: (numberFlag(args, 'drain-timeout') ?? 10) * 1000,
        ...(listenAddress !== undefined && { listenAddress }),
        ...(adminAddress !== undefined && { adminAddress })
      })
      console.log(`ambit ztunnel: node ${node} serving ${ztunnel.registry.workloadsOnNode(node).length} workloads; HBONE on ${ztunnel.ports.hbone}, SOCKS5 on ${ztunnel.ports.socks5}`)
      await untilSignal()
      await ztunnel.stop()
      return 0
    } finally {
      await store.close()
    }
  }
}
