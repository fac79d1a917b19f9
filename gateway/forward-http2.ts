/**
 * One try of an HTTP/2 request (gRPC included) to an endpoint over its shared HTTP/2 session:
 * bodies stream both ways as they come (bidirectional gRPC streaming), response trailers
 * (grpc-status) are passed on, and the try is bounded by a timeout. reply-from cannot
 * reach several HTTP/2 origins, so this is the waypoint's own small HTTP/2 client path.
 *
 * Before anything of an answer goes to the client, `retry` is asked: when it takes the try back,
 * the answer is dropped and the caller sends the request again (to another endpoint).
 */
import http2 from 'node:http2'
import type { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Http2Sessions } from './upstream.js'
import type { HeaderRecord } from './filters.js'
import type { TryError } from './retry.js'
import { endToEndHeaders, relayBody } from './relay.js'

export interface Http2Target {
  readonly ip: string
  readonly port: number
  readonly path: string
  readonly headers: HeaderRecord
  readonly timeoutMs: number
  /** The request body: the client's stream on the first try, the replayed bytes on a retry. */
  readonly body: Readable | Buffer
  rewriteResponseHeaders (headers: http2.IncomingHttpHeaders): HeaderRecord
  /** Whether to take back a try that failed this way instead of answering the client with it. */
  retry (outcome: { status?: number, error?: TryError }): boolean
}

export interface Http2Result {
  readonly status?: number
  readonly error?: TryError
  readonly flag?: string
  readonly grpcStatus?: string
  readonly responseBytes: number
  /** The try was taken back: nothing was sent to the client, the caller retries. */
  readonly retried?: boolean
}

export async function forwardHttp2 (sessions: Http2Sessions, request: FastifyRequest, reply: FastifyReply, target: Http2Target): Promise<Http2Result> {
  let session: http2.ClientHttp2Session
  try {
    session = await sessions.get(target.ip, target.port)
  } catch {
    if (target.retry({ error: 'connect-failure' })) return { error: 'connect-failure', responseBytes: 0, retried: true }
    void reply.code(503).send('upstream connect error\n')
    return { error: 'connect-failure', flag: 'UF', responseBytes: 0 }
  }
  reply.hijack()
  const res = reply.raw as unknown as http2.Http2ServerResponse
  return await new Promise<Http2Result>((resolve) => {
    let responseBytes = 0
    let status: number | undefined
    let grpcStatus: string | undefined
    let settled = false
    const finish = (outcome: Partial<Http2Result>): void => {
      if (settled) return
      settled = true
      res.stream.off('close', onClientGone)
      resolve({ responseBytes, ...(status !== undefined && { status }), ...(grpcStatus !== undefined && { grpcStatus }), ...outcome })
    }
    /** Drops this try's answer if the caller retries; true when it did. */
    const takenBack = (outcome: { status?: number, error?: TryError }): boolean => {
      if (res.headersSent || !target.retry(outcome)) return false
      upstream.close(http2.constants.NGHTTP2_CANCEL)
      finish({ ...outcome, retried: true })
      return true
    }
    const upstream = session.request({
      ...endToEndHeaders(target.headers),
      ':method': request.method,
      ':path': target.path,
      ':authority': headerString(request.headers[':authority']) ?? headerString(request.headers.host) ?? `${target.ip}:${target.port}`,
      ':scheme': 'http'
    })
    upstream.setTimeout(target.timeoutMs, () => {
      if (takenBack({ error: 'timeout' })) return
      upstream.close(http2.constants.NGHTTP2_CANCEL)
      if (!res.headersSent) res.writeHead(504).end('upstream request timeout\n')
      else res.stream.close(http2.constants.NGHTTP2_CANCEL)
      finish({ error: 'timeout', flag: 'UT' })
    })
    upstream.on('response', (headers, flags) => {
      if (takenBack({ status: Number(headers[':status']) })) return
      status = Number(headers[':status'])
      grpcStatus = headerString(headers['grpc-status'])
      const out = endToEndHeaders(target.rewriteResponseHeaders(withoutPseudo(headers)))
      if ((flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0) {
        // A trailers-only answer (how gRPC servers fail fast): headers and end of stream must
        // stay one frame, or gRPC clients take grpc-status for metadata and then miss a status.
        // Set now, they go out with END_STREAM when 'end' calls res.end().
        res.statusCode = status
        for (const [name, value] of Object.entries(out)) if (value !== undefined) res.setHeader(name, value)
        upstream.resume()
        return
      }
      res.writeHead(status, out)
      // Only now: Node emits 'response' on the next tick but a DATA frame read in the same chunk
      // at once, so an earlier 'data' listener would write the body before these headers.
      relayBody(upstream, res, (n) => { responseBytes += n })
    })
    upstream.on('trailers', (trailers) => {
      grpcStatus = headerString(trailers['grpc-status']) ?? grpcStatus
      res.addTrailers(withoutPseudo(trailers))
    })
    upstream.on('end', () => {
      res.end()
      finish({})
    })
    upstream.on('error', () => {
      if (settled || takenBack({ error: 'reset' })) return
      if (!res.headersSent) res.writeHead(502).end('upstream reset\n')
      else res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)
      finish({ error: 'reset', flag: 'UC' })
    })
    if (Buffer.isBuffer(target.body)) upstream.end(target.body)
    else target.body.pipe(upstream)
    const onClientGone = (): void => {
      if (!upstream.closed) upstream.close(http2.constants.NGHTTP2_CANCEL)
      finish({})
    }
    res.stream.on('close', onClientGone)
  })
}

function withoutPseudo (headers: http2.IncomingHttpHeaders): HeaderRecord {
  const out: HeaderRecord = {}
  for (const [name, value] of Object.entries(headers)) if (!name.startsWith(':')) out[name] = value
  return out
}

function headerString (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}
