/**
 * gRPC through a waypoint (DESIGN §5), on the real path: a real grpc-js client in the client pod
 * → node-a's ztunnel → the waypoint → node-b's ztunnel → a real grpc-js server in the echo pod.
 * grpc-js cannot use a SOCKS5 proxy, so the client dials a bridge on its pod's address that
 * opens a SOCKS5 CONNECT to node-a's ztunnel for each connection; the Service hostname is the
 * channel's :authority. The Service port declares appProtocol grpc.
 *
 * Checked: unary and bidirectional streaming calls (messages interleave, nothing is buffered),
 * request metadata, response metadata and trailers pass both ways, a failing handler's status
 * and message reach the client (trailers-only answers too), an L7 DENY reaches a gRPC client as
 * PERMISSION_DENIED, and istio_requests_total carries grpc_response_status ("0" for OK, "9" for
 * the handler's FAILED_PRECONDITION, "7" for the denial) with request_protocol "grpc".
 *
 * In-process mesh (fixtures/waypoint-b/grpc): node-a 127.0.7.2 with the client 127.0.7.11,
 * node-b 127.0.7.3 with the waypoint 127.0.7.5 and the echo pod 127.0.7.12:19000.
 */
import t from 'tap'
import { once } from 'node:events'
import http2 from 'node:http2'
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { startWaypointMesh } from './helpers/waypoint-b-mesh.js'
import { startMeshBridge } from './helpers/waypoint-b-bridge.js'
import { scrape, sumOf } from './helpers/prometheus.js'
import { waitFor } from './helpers/wait.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/waypoint-b/grpc', import.meta.url))
const PROTO = fileURLToPath(new URL('./fixtures/grpc/echo.proto', import.meta.url))
const CLIENT = '127.0.7.11'
const ECHO_POD = '127.0.7.12'
const ECHO_POD_PORT = 19000
const WAYPOINT = '127.0.7.5'
const SERVICE_HOST = 'echo.wpb-grpc.svc.cluster.local'
const SERVICE_PORT = 9000
const FAILURE_DETAILS = 'the handler failed on purpose'

interface EchoRequest { text: string, fail?: boolean, quiet?: boolean }
interface EchoReply { text: string, pod: string }

interface EchoClient extends grpc.Client {
  Say (request: EchoRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<EchoReply>): grpc.ClientUnaryCall
  Chat (metadata: grpc.Metadata): grpc.ClientDuplexStream<EchoRequest, EchoReply>
}

type EchoClientConstructor = new (address: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions) => EchoClient

/** The Echo service from the .proto: its definition for the server, a typed client class. */
function loadEcho (): { service: grpc.ServiceDefinition, Client: EchoClientConstructor } {
  const definition = protoLoader.loadSync(PROTO, { keepCase: true, defaults: true })
  // loadPackageDefinition is untyped by nature: the shape follows from echo.proto's package.
  const constructor = (grpc.loadPackageDefinition(definition) as unknown as { ambit: { test: { Echo: grpc.ServiceClientConstructor } } }).ambit.test.Echo
  return { service: constructor.service, Client: constructor as unknown as EchoClientConstructor }
}

const echo = loadEcho()

/** The echo pod's server: echoes text and the caller's x-user back, as response metadata and trailers. */
async function startEchoServer (): Promise<grpc.Server> {
  const server = new grpc.Server()
  server.addService(echo.service, {
    Say: (call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) => {
      const trailers = new grpc.Metadata()
      trailers.set('x-trailer', `said:${call.request.text}`)
      if (call.request.quiet !== true) {
        const headers = new grpc.Metadata()
        headers.set('x-echo-user', String(call.metadata.get('x-user')[0] ?? ''))
        call.sendMetadata(headers)
      }
      if (call.request.fail === true) {
        callback({ code: grpc.status.FAILED_PRECONDITION, details: FAILURE_DETAILS, metadata: trailers })
        return
      }
      callback(null, { text: call.request.text, pod: ECHO_POD }, trailers)
    },
    Chat: (call: grpc.ServerDuplexStream<EchoRequest, EchoReply>) => {
      let count = 0
      call.on('data', (request: EchoRequest) => {
        count++
        call.write({ text: request.text, pod: ECHO_POD })
      })
      call.on('end', () => {
        const trailers = new grpc.Metadata()
        trailers.set('x-messages', String(count))
        call.end(trailers)
      })
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`${ECHO_POD}:${ECHO_POD_PORT}`, grpc.ServerCredentials.createInsecure(), (err) => (err === null ? resolve() : reject(err)))
  })
  return server
}

const mesh = await startWaypointMesh(t, FIXTURE)
const server = await startEchoServer()
t.teardown(() => server.forceShutdown())
const bridge = await startMeshBridge(t, { podIp: CLIENT, socks: mesh.socks('node-a'), host: SERVICE_HOST, port: SERVICE_PORT })
const client = new echo.Client(`${bridge.host}:${bridge.port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': SERVICE_HOST })
t.teardown(() => client.close())

interface UnaryOutcome {
  readonly error: grpc.ServiceError | null
  readonly reply: EchoReply | undefined
  readonly headers: grpc.Metadata
  readonly status: grpc.StatusObject
}

function grpcRequests (samples: Awaited<ReturnType<typeof scrape>>, grpcStatus: string): number {
  return sumOf(samples, 'istio_requests_total', {
    reporter: 'waypoint', request_protocol: 'grpc', destination_service: SERVICE_HOST, grpc_response_status: grpcStatus
  })
}

t.test('unary: the reply, metadata and trailers pass through the waypoint; grpc_response_status "0"', async (t) => {
  const before = grpcRequests(await scrape(mesh.waypointMetricsUrl(WAYPOINT)), '0')
  const outcome = await unary({ text: 'hello' }, 'alice')
  t.equal(outcome.error, null, 'the call succeeds')
  t.same(outcome.reply, { text: 'hello', pod: ECHO_POD }, 'answered by the echo pod')
  t.same(outcome.headers.get('x-echo-user'), ['alice'], 'request metadata reached the server and response metadata came back')
  t.equal(outcome.status.code, grpc.status.OK)
  t.same(outcome.status.metadata.get('x-trailer'), ['said:hello'], 'the trailers came back')
  await waitFor('the waypoint counts the OK call', async () => grpcRequests(await scrape(mesh.waypointMetricsUrl(WAYPOINT)), '0') === before + 1, 10_000)
  t.pass('istio_requests_total{grpc_response_status="0"} counted it')
})

t.test('unary: a failing handler\'s status, message and trailers reach the client; grpc_response_status "9"', async (t) => {
  const outcome = await unary({ text: 'boom', fail: true }, 'bob')
  t.equal(outcome.error?.code, grpc.status.FAILED_PRECONDITION, 'the handler\'s status code')
  t.equal(outcome.error?.details, FAILURE_DETAILS, 'the handler\'s message')
  t.same(outcome.status.metadata.get('x-trailer'), ['said:boom'], 'the trailers of a failed call came back too')
  await waitFor('the waypoint counts the failed call', async () => grpcRequests(await scrape(mesh.waypointMetricsUrl(WAYPOINT)), '9') === 1, 10_000)
  const samples = await scrape(mesh.waypointMetricsUrl(WAYPOINT))
  t.equal(sumOf(samples, 'istio_requests_total', { grpc_response_status: '9', response_code: '200' }), 1, 'over HTTP 200, as gRPC answers')
})

t.test('unary: a trailers-only failure (status in the response headers) reaches the client too', async (t) => {
  const before = grpcRequests(await scrape(mesh.waypointMetricsUrl(WAYPOINT)), '9')
  const outcome = await unary({ text: 'hush', fail: true, quiet: true }, 'dave')
  t.equal(outcome.error?.code, grpc.status.FAILED_PRECONDITION, 'the handler\'s status code')
  t.equal(outcome.error?.details, FAILURE_DETAILS, 'the handler\'s message')
  t.same(outcome.status.metadata.get('x-trailer'), ['said:hush'], 'its metadata came back')
  await waitFor('the waypoint counts the failed call', async () => grpcRequests(await scrape(mesh.waypointMetricsUrl(WAYPOINT)), '9') === before + 1, 10_000)
  t.pass('istio_requests_total{grpc_response_status="9"} counted it')
})

t.test('an L7 DENY answers a gRPC client in gRPC: PERMISSION_DENIED, grpc_response_status "7"', async (t) => {
  const outcome = await unary({ text: 'let me in' }, 'mallory')
  t.equal(outcome.error?.code, grpc.status.PERMISSION_DENIED, 'the waypoint\'s denial is a gRPC status')
  t.notMatch(outcome.error?.details ?? '', /no-mallory|wpb-grpc|spiffe|127\.0\.7/, 'its message names nothing internal')
  await waitFor('the waypoint counts the denial', async () =>
    sumOf(await scrape(mesh.waypointMetricsUrl(WAYPOINT)), 'istio_requests_total', { grpc_response_status: '7', response_flags: 'UAEX', request_protocol: 'grpc' }) === 1, 10_000)
  t.pass('istio_requests_total{grpc_response_status="7", response_flags="UAEX"} counted it')
  t.equal((await unary({ text: 'hi' }, 'alice')).error, null, 'another caller is still served')
})

t.test('bidirectional streaming: each message is answered before the next is sent', async (t) => {
  const before = grpcRequests(await scrape(mesh.waypointMetricsUrl(WAYPOINT)), '0')
  const metadata = new grpc.Metadata()
  metadata.set('x-user', 'carol')
  const call = client.Chat(metadata)
  const replies: EchoReply[] = []
  const status = new Promise<grpc.StatusObject>((resolve) => call.once('status', resolve))
  call.on('error', () => {}) // the status carries the outcome
  for (let i = 0; i < 5; i++) {
    call.write({ text: `message ${i}` })
    // The next message waits for this reply: a proxy that buffered the stream would hang here.
    const [reply] = await once(call, 'data') as [EchoReply]
    replies.push(reply)
  }
  call.end()
  const final = await status
  t.same(replies.map((r) => r.text), [0, 1, 2, 3, 4].map((i) => `message ${i}`), 'every message echoed, in order')
  t.equal(final.code, grpc.status.OK)
  t.same(final.metadata.get('x-messages'), ['5'], 'the stream\'s trailers came back')
  await waitFor('the waypoint counts the stream', async () => grpcRequests(await scrape(mesh.waypointMetricsUrl(WAYPOINT)), '0') === before + 1, 10_000)
  t.pass('istio_requests_total{grpc_response_status="0"} counted the stream')
})

t.test('HTTP/2 retries: a 503 is retried with the body replayed; a POST is not retried', async (t) => {
  // The gRPC server makes way for a plain h2c server on the pod's port that fails every other request.
  server.forceShutdown()
  const received: Array<{ method: string, body: string }> = []
  const h2Server = http2.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      received.push({ method: req.method, body: Buffer.concat(chunks).toString() })
      res.writeHead(received.length % 2 === 1 ? 503 : 200).end(`try ${received.length}`)
    })
  })
  // The waypoint keeps its session to the pod open: close() alone would wait for it.
  const sessions = new Set<http2.ServerHttp2Session>()
  h2Server.on('session', (session) => sessions.add(session))
  h2Server.listen(ECHO_POD_PORT, ECHO_POD)
  await once(h2Server, 'listening')
  t.teardown(() => new Promise((resolve) => {
    for (const session of sessions) session.destroy()
    h2Server.close(resolve)
  }))
  const session = http2.connect(`http://${bridge.host}:${bridge.port}`)
  t.teardown(() => session.close())
  const send = async (method: string, body: string): Promise<{ status: number, text: string }> => {
    const stream = session.request({ ':method': method, ':path': '/h2', ':authority': `${SERVICE_HOST}:${SERVICE_PORT}` })
    stream.end(body)
    const [headers] = await once(stream, 'response') as [http2.IncomingHttpHeaders]
    let text = ''
    for await (const chunk of stream) text += String(chunk)
    return { status: Number(headers[':status']), text }
  }
  t.same(await send('PUT', 'order 1'), { status: 200, text: 'try 2' }, 'the 503 was retried: the client sees the second try')
  t.same(received, [{ method: 'PUT', body: 'order 1' }, { method: 'PUT', body: 'order 1' }], 'the body went whole with both tries')
  t.same(await send('POST', 'order 2'), { status: 503, text: 'try 3' }, 'a POST is not retried')
  t.equal(received.length, 3, 'one try for the POST')
})

/** One unary call, with what came back: the answer, the response metadata and the final status (trailers). */
async function unary (request: EchoRequest, user: string): Promise<UnaryOutcome> {
  const metadata = new grpc.Metadata()
  metadata.set('x-user', user)
  return await new Promise((resolve) => {
    let headers = new grpc.Metadata()
    let answer: { error: grpc.ServiceError | null, reply: EchoReply | undefined } | undefined
    let status: grpc.StatusObject | undefined
    const settle = (): void => {
      if (answer !== undefined && status !== undefined) resolve({ ...answer, headers, status })
    }
    const call = client.Say(request, metadata, { deadline: Date.now() + 15_000 }, (error, reply) => {
      answer = { error, reply: reply ?? undefined }
      settle()
    })
    call.on('metadata', (received: grpc.Metadata) => { headers = received })
    call.on('status', (received: grpc.StatusObject) => { status = received; settle() })
  })
}
