/**
 * Bare fastify with @fastify/http-proxy, no logging: the floor the waypoint is held to (the
 * same framework, without routing, policy, metrics or access logs). Its own process, so its
 * CPU is counted apart.
 *
 *   node dist/bench/l7/fastify-proxy.js --listen 127.0.79.51:18300 --target 127.0.79.21:18080
 */
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import httpProxy from '@fastify/http-proxy'
import { parseAddress } from './address.js'

const { values } = parseArgs({ options: { listen: { type: 'string' }, target: { type: 'string' } } })
const listen = parseAddress(values.listen, 'listen')
const target = parseAddress(values.target, 'target')

const app = Fastify({ logger: false })
await app.register(httpProxy, { upstream: `http://${target.host}:${target.port}` })
await app.listen({ host: listen.host, port: listen.port })
process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
