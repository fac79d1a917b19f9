import type { Command, FlagSpec } from '../command.js'
import { HELP_FLAG, booleanFlag, requiredFlag, stringFlag } from '../command.js'
import { serveUntilSignal } from '../lifecycle.js'
import { openProxyInputs, proxyFlags } from './proxy-inputs.js'
import { Ztunnel } from '../../ztunnel/ztunnel.js'

/** The ztunnel's flags; k8s/ztunnel-daemonset.yaml is checked against them. */
export const ZTUNNEL_FLAGS: Readonly<Record<string, FlagSpec>> = {
  node: { type: 'string', value: 'NAME', description: 'this node\'s name (a Node in the mesh)' },
  ...proxyFlags('this node\'s credential for the CA (local mode: written by the controller\'s --credentials-dir)', 'how long SIGTERM waits for in-flight connections'),
  'listen-address': { type: 'string', value: 'IP', description: 'address the listeners bind (default: the Node\'s InternalIP)' },
  'admin-address': { type: 'string', value: 'IP', description: 'address of the admin port 15000 (default 127.0.0.1)' },
  'no-capture': { type: 'boolean', description: 'do not install iptables capture rules (SOCKS5 / explicit mode only)' },
  help: HELP_FLAG
}

export const ztunnelCommand: Command = {
  name: 'ztunnel',
  summary: 'run one node\'s L4 tunnel (what the DaemonSet runs)',
  usage: 'ambit ztunnel --node NAME --store URL --ca URL --token-file FILE [--no-capture]',
  flags: ZTUNNEL_FLAGS,
  async run (args) {
    const node = requiredFlag(args, 'node')
    const { store, logger, certificateSource, drainMs } = await openProxyInputs(args, 'ztunnel')
    const listenAddress = stringFlag(args, 'listen-address')
    const adminAddress = stringFlag(args, 'admin-address')
    try {
      const ztunnel = await Ztunnel.start({
        node,
        store,
        certificateSource,
        logger,
        capture: !booleanFlag(args, 'no-capture'),
        drainMs,
        ...(listenAddress !== undefined && { listenAddress }),
        ...(adminAddress !== undefined && { adminAddress })
      })
      console.log(`ambit ztunnel: node ${node} serving ${ztunnel.registry.workloadsOnNode(node).length} workloads; HBONE on ${ztunnel.ports.hbone}, SOCKS5 on ${ztunnel.ports.socks5}`)
      await serveUntilSignal(logger, () => ztunnel.stop(), drainMs)
      return 0
    } finally {
      await store.close()
    }
  }
}
