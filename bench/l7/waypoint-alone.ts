/**
 * The waypoint alone: a control plane and one Waypoint in this process (as `ambit up` runs
 * them), fed plain HTTP from a local listener instead of HBONE, so what is measured is the
 * fastify pipeline itself — routing, metrics and the access log on — and nothing of mTLS.
 * The mesh (its file in --mesh) leaves the server outside the mesh, so the waypoint dials it
 * over plain TCP too. Every connection counts as coming from the mesh identity of `--peer`.
 *
 *   node dist/bench/l7/waypoint-alone.js --mesh DIR --listen 127.0.80.51:18400 --ca-address 127.0.80.1
 */
import net from 'node:net'
import { parseArgs } from 'node:util'
import { ControlPlane } from '../../control/control-plane.js'
import { MemoryStore } from '../../control/memory-store.js'
import { CaClient } from '../../policy/ca-client.js'
import { DEFAULT_ROOT_NAMESPACE, DEFAULT_TRUST_DOMAIN } from '../../policy/state.js'
import { spiffeId } from '../../policy/identity.js'
import { Waypoint } from '../../gateway/waypoint.js'
import { createAccessLogger, createLogger } from '../../cli/log.js'
import { parseAddress } from './address.js'
import { NAMESPACE, SERVICE, SERVICE_PORT } from './configs.js'

const { values } = parseArgs({ options: { mesh: { type: 'string' }, listen: { type: 'string' }, 'ca-address': { type: 'string' } } })
if (values.mesh === undefined) throw new Error('--mesh DIR is required')
const listen = parseAddress(values.listen, 'listen')

const logger = createLogger('warn', 'waypoint-alone')
const store = new MemoryStore()
const plane = await ControlPlane.start({
  store, files: [values.mesh], trustDomain: DEFAULT_TRUST_DOMAIN, rootNamespace: DEFAULT_ROOT_NAMESPACE, logger,
  ...(values['ca-address'] !== undefined && { caHost: values['ca-address'] }), caPort: 0, watchFiles: false
})
const state = plane.controller.state!
const gateway = state.waypoints[`${NAMESPACE}/waypoint`]
const instance = gateway?.instances[0]
const service = state.services[`${NAMESPACE}/${SERVICE}`]
const port = service?.ports.find((p) => p.port === SERVICE_PORT)
if (instance === undefined || service === undefined || port === undefined) throw new Error(`the mesh in ${values.mesh} has no waypoint instance or no Service ${SERVICE}:${SERVICE_PORT}`)

const waypoint = await Waypoint.start({
  name: 'waypoint',
  namespace: NAMESPACE,
  store,
  listenAddress: instance.ip,
  certificateSource: (trustBundle) => new CaClient({ url: plane.caServer.url, token: plane.nodeTokens.tokenFor(instance.node), trustBundle }),
  logger,
  // As `ambit up --access-log`: one JSON line per request on stdout.
  accessLog: createAccessLogger()
})

const peerSpiffeId = spiffeId(state.mesh.trustDomain, NAMESPACE, 'client')
const server = net.createServer({ noDelay: true }, (socket) => {
  waypoint.acceptPlainHttp(socket, { peerSpiffeId, sourceIp: socket.remoteAddress ?? '', service, port })
})
server.listen(listen.port, listen.host)
// Exiting at once also writes the CPU profile, when run with --cpu-prof.
process.once('SIGTERM', () => process.exit(0))
