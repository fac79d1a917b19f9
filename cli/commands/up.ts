import type { Command } from '../command.js'
import { FILE_FLAG, HELP_FLAG, LOG_LEVEL_FLAG, STORE_FLAG, booleanFlag, listFlag, numberFlag, stringFlag } from '../command.js'
import { CONTROL_PLANE_FLAGS, controlPlaneOptions } from './control-flags.js'
import { createAccessLogger, createLogger } from '../log.js'
import { serveUntilSignal } from '../lifecycle.js'
import { openStore } from '../../control/open-store.js'
import { ControlPlane } from '../../control/control-plane.js'
import { STATUS_PORT } from '../../control/status-server.js'
import { registrySource, type MetricsSource } from '../../control/metrics-sources.js'
import { ConfigError } from '../../policy/errors.js'
import { CaClient } from '../../policy/ca-client.js'
import { Ztunnel } from '../../ztunnel/ztunnel.js'
import { Waypoint } from '../../gateway/waypoint.js'
import { DEFAULT_DRAIN_MS } from '../../proxy/hbone-server.js'
import { startDemo } from '../../examples/demo.js'

export const upCommand: Command = {
  name: 'up',
  summary: 'run a whole mesh in one process: controller, CA and one ztunnel per Node',
  usage: 'ambit up -f PATH [-f PATH]... [--store URL] [--demo] [--status-port PORT]',
  flags: {
    file: FILE_FLAG,
    store: STORE_FLAG,
    ...CONTROL_PLANE_FLAGS,
    demo: { type: 'boolean', description: 'also run the sample shop\'s apps and load through the mesh, with a live summary every 2 s' },
    'access-log': { type: 'boolean', description: 'write the waypoints\' JSON access log lines to stdout' },
    'status-port': { type: 'string', value: 'PORT', default: String(STATUS_PORT), description: 'serve the dashboard, /healthz/ready and /metrics on 127.0.0.1:PORT (0 picks a free one)' },
    'log-level': LOG_LEVEL_FLAG,
    help: HELP_FLAG
  },
  async run (args) {
    if (listFlag(args, 'file').length === 0) throw new ConfigError('-f PATH is required (try -f examples/shop)')
    const logger = createLogger(stringFlag(args, 'log-level'), 'up')
    const store = await openStore(stringFlag(args, 'store') ?? 'memory', { logger })
    try {
      // The dashboard reads the proxies of this process, known once they have started.
      const metricsSources: MetricsSource[] = []
      const plane = await ControlPlane.start({
        ...await controlPlaneOptions(args, store, logger),
        statusPort: numberFlag(args, 'status-port') ?? STATUS_PORT,
        metricsSources: () => metricsSources
      })
      const state = plane.controller.state!
      const nodes = Object.values(state.nodes)
      const instances = Object.values(state.waypoints).flatMap((wp) => wp.instances.map((instance) => ({ wp, instance })))
      const ztunnels = await Promise.all(nodes.map((node) => Ztunnel.start({
        node: node.name,
        store,
        certificateSource: (trustBundle) => new CaClient({ url: plane.caServer.url, token: plane.nodeTokens.tokenFor(node.name), trustBundle }),
        logger,
        capture: false
      })))
      const waypoints = await Promise.all(instances.map(({ wp, instance }) => Waypoint.start({
        name: wp.name,
        namespace: wp.namespace,
        store,
        listenAddress: instance.ip,
        certificateSource: (trustBundle) => new CaClient({ url: plane.caServer.url, token: plane.nodeTokens.tokenFor(instance.node), trustBundle }),
        logger,
        ...(booleanFlag(args, 'access-log') && { accessLog: createAccessLogger() })
      })))
      metricsSources.push(
        ...nodes.map((node, i) => registrySource(`ztunnel ${node.name}`, ztunnels[i]!.metrics.registry)),
        ...instances.map(({ wp, instance }, i) => registrySource(`waypoint ${wp.key} ${instance.ip}`, waypoints[i]!.metrics.registry)))
      console.log(`ambit up: ${ztunnels.length} nodes, ${Object.keys(state.workloads).length} workloads, ` +
        `${Object.keys(state.services).length} services on ${store.description}; CA at ${plane.caServer.url}`)
      for (const wp of Object.values(state.waypoints)) {
        console.log(`  waypoint ${wp.namespace}/${wp.name}: ${wp.instances.map((i) => `${i.ip} on ${i.node}`).join(', ') || 'no instance'}`)
      }
      console.log(plane.statusServer === undefined ? '  dashboard: off (the status port is in use)' : `  dashboard at ${plane.statusServer.url}/`)
      for (const node of nodes) {
        console.log(`  node ${node.name}: ztunnel on ${node.address} (SOCKS5 ${node.address}:15080, metrics http://${node.address}:15020/metrics)`)
      }
      const demo = booleanFlag(args, 'demo') ? await startDemo(state, ztunnels) : undefined
      console.log('Ctrl-C to stop')
      await serveUntilSignal(logger, async () => {
        await demo?.stop()
        await Promise.all([...ztunnels, ...waypoints].map((z) => z.stop()))
        await plane.stop()
      }, DEFAULT_DRAIN_MS)
      return 0
    } finally {
      await store.close()
    }
  }
}
