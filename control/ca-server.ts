/**
 * The CA signing service (istiod's 15012): HTTPS with a serving certificate from the CA itself,
 * so clients check it with the trust bundle they already hold.
 *
 *   POST /v1/certificates  {csr, namespace, serviceAccount}, Authorization: Bearer <node token>
 *     → 200 {certChain, notAfter}; 400 bad body or CSR; 401 unknown token; 403 not allowed
 *   GET  /v1/trust-bundle  → 200 {trustBundle: [PEM...]} (public)
 *
 * Who a caller is and what it may ask for is pluggable (CaAuthorizer): the controller checks
 * that a pod with that service account is scheduled on the caller's node. NodeTokens is the
 * local-mode node credential. Tokens and keys are never logged.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { once } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer, type Server } from 'node:https'
import { hostname } from 'node:os'
import type { Logger } from 'pino'
import type { CertificateAuthority } from './ca.js'
import type { IssuedCertificate } from './issued-certificates.js'
import { CaRefusedError, CertificateError, ConfigError } from '../policy/errors.js'
import { namespaceProblem, serviceAccountProblem, spiffeId } from '../policy/identity.js'

export const CA_PORT = 15012
export const MAX_BODY_BYTES = 64 * 1024
const TOKEN_PREFIX = 'node'
const NODE_NAME = /^[A-Za-z0-9._-]{1,253}$/
const MAC_BYTES = 32
// setTimeout fires at once for delays above 2^31-1 ms (about 24.8 days).
const MAX_TIMER_MS = 2 ** 31 - 1

/** The node a caller proved to be. */
export interface NodeCredential {
  readonly node: string
  /** The one identity the caller may ask for (a waypoint's pod), whatever else runs on its node. */
  readonly only?: { readonly namespace: string, readonly serviceAccount: string }
}

export interface CaAuthorizer {
  /** The node the bearer token belongs to, or undefined when the token is not valid. */
  authenticate (token: string): Promise<NodeCredential | undefined> | NodeCredential | undefined
  /** Whether `node` may obtain certificates for namespace/serviceAccount (it runs such a pod). */
  mayIssue (node: string, namespace: string, serviceAccount: string): Promise<boolean> | boolean
}

/** What the server needs from a CA (a CertificateAuthority). */
export type CaSigner = Pick<CertificateAuthority, 'trustDomain' | 'trustBundle' | 'sign' | 'issueServingCertificate'>

export interface CaServerOptions {
  readonly ca: CaSigner
  readonly authorizer: CaAuthorizer
  /** Listen address (default 127.0.0.1; give 0.0.0.0 to serve other hosts). */
  readonly host?: string
  /** Default 15012; 0 picks a free port. */
  readonly port?: number
  /** Extra DNS names / addresses for the serving certificate (it always has localhost and loopback). */
  readonly serverNames?: readonly string[]
  /** Lifetime of the workload certificates issued (default: the CA's, 24 h). */
  readonly workloadTtlMs?: number
  readonly logger?: Logger
  /** Told of every workload certificate issued (the dashboard shows their expiry). */
  readonly onIssued?: (issued: IssuedCertificate) => void
}

export interface CaServer {
  /** https://host:port to give to CaClient. */
  readonly url: string
  readonly port: number
  close (): Promise<void>
}

/**
 * Local-mode node credentials: the token of a node is its name and HMAC-SHA256(secret, name),
 * so checking one costs a single MAC and no table of issued tokens is kept.
 */
export class NodeTokens {
  readonly #secret: Buffer

  /** `secret` (16 bytes or more) lets other processes derive the same tokens; random otherwise. */
  constructor (secret: string | Buffer = randomBytes(32)) {
    this.#secret = Buffer.from(secret)
    if (this.#secret.length < 16) throw new ConfigError('the node token secret must be at least 16 bytes')
  }

  tokenFor (node: string): string {
    if (!NODE_NAME.test(node)) throw new ConfigError(`'${node}' is not a valid node name`)
    return `${TOKEN_PREFIX}.${Buffer.from(node).toString('base64url')}.${this.#mac(node).toString('base64url')}`
  }

  authenticate (token: string): NodeCredential | undefined {
    const [prefix, encodedNode, encodedMac, ...rest] = token.split('.')
    if (prefix !== TOKEN_PREFIX || encodedNode === undefined || encodedMac === undefined || rest.length > 0) return undefined
    const node = Buffer.from(encodedNode, 'base64url').toString()
    const mac = Buffer.from(encodedMac, 'base64url')
    if (!NODE_NAME.test(node) || mac.length !== MAC_BYTES) return undefined
    return timingSafeEqual(mac, this.#mac(node)) ? { node } : undefined
  }

  #mac (node: string): Buffer {
    return createHmac('sha256', this.#secret).update(node).digest()
  }
}

export async function startCaServer (options: CaServerOptions): Promise<CaServer> {
  const host = options.host ?? '127.0.0.1'
  const names = servingNames(host, options.serverNames ?? [])
  const serving = await options.ca.issueServingCertificate(names)
  const server = createServer({ key: serving.key, cert: serving.certChain, minVersion: 'TLSv1.2' }, (req, res) => {
    void respond(options, req, res)
  })
  server.headersTimeout = 10_000
  server.requestTimeout = 30_000
  server.listen(options.port ?? CA_PORT, host)
  await once(server, 'listening')
  const rotation = new ServingRotation(server, options, names)
  rotation.schedule(serving.notBefore, serving.notAfter)
  const port = (server.address() as { port: number }).port
  options.logger?.info({ host, port }, 'CA server listening')
  return {
    url: `https://${urlHost(host)}:${port}`,
    port,
    close: async () => {
      rotation.stop()
      const closed = once(server, 'close')
      server.close()
      server.closeAllConnections()
      await closed
    }
  }
}

/** Replaces the serving certificate at half its life, as workloads do theirs. */
class ServingRotation {
  #timer: NodeJS.Timeout | undefined
  #stopped = false

  constructor (
    private readonly server: Server, private readonly options: CaServerOptions, private readonly names: string[]
  ) {}

  schedule (notBefore: Date, notAfter: Date): void {
    if (this.#stopped) return
    const halfLife = notBefore.getTime() + (notAfter.getTime() - notBefore.getTime()) / 2
    const delay = Math.min(Math.max(halfLife - Date.now(), 1000), MAX_TIMER_MS)
    this.#timer = setTimeout(() => { void this.#rotate() }, delay)
    this.#timer.unref()
  }

  stop (): void {
    this.#stopped = true
    clearTimeout(this.#timer)
  }

  async #rotate (): Promise<void> {
    try {
      const serving = await this.options.ca.issueServingCertificate(this.names)
      this.server.setSecureContext({ key: serving.key, cert: serving.certChain, minVersion: 'TLSv1.2' })
      this.schedule(serving.notBefore, serving.notAfter)
    } catch (err) {
      this.options.logger?.error({ err }, 'could not renew the CA serving certificate; retrying in a minute')
      this.schedule(new Date(), new Date(Date.now() + 120_000))
    }
  }
}

function servingNames (host: string, extra: readonly string[]): string[] {
  const wildcard = host === '0.0.0.0' || host === '::' || host === ''
  const names = ['localhost', '127.0.0.1', '::1', ...(wildcard ? [hostname()] : [host]), ...extra]
  return [...new Set(names.map((name) => name.toLowerCase()))]
}

function urlHost (host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1'
  if (host === '::') return '[::1]'
  return host.includes(':') ? `[${host}]` : host
}

type Handler = (options: CaServerOptions, req: IncomingMessage) => Promise<unknown>

const ROUTES: Record<string, { readonly method: string, readonly handler: Handler }> = {
  '/v1/certificates': { method: 'POST', handler: issueCertificate },
  '/v1/trust-bundle': { method: 'GET', handler: async (options) => ({ trustBundle: options.ca.trustBundle }) }
}

const STATUS_CODES: Record<number, string> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  413: 'PAYLOAD_TOO_LARGE',
  500: 'INTERNAL'
}

/** A refusal that becomes the response: `{code, message}` with the status. */
function refuse (status: number, message: string): CaRefusedError {
  return new CaRefusedError(message, status)
}

async function respond (options: CaServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const route = ROUTES[new URL(req.url ?? '/', 'https://ca').pathname]
    if (route === undefined) throw refuse(404, `no such resource: ${req.method ?? ''} ${req.url ?? ''}`)
    if (req.method !== route.method) {
      res.setHeader('allow', route.method)
      throw refuse(405, `use ${route.method} for ${req.url ?? ''}`)
    }
    send(res, 200, await route.handler(options, req))
  } catch (err) {
    if (err instanceof CaRefusedError) {
      options.logger?.warn({ status: err.status, reason: err.message }, 'CA request refused')
      send(res, err.status, { code: STATUS_CODES[err.status] ?? 'ERROR', message: err.message })
      return
    }
    options.logger?.error({ err }, 'CA request failed')
    send(res, 500, { code: STATUS_CODES[500], message: 'internal error' })
  }
}

function send (res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
  res.end(JSON.stringify(body))
}

async function issueCertificate (options: CaServerOptions, req: IncomingMessage): Promise<unknown> {
  const { node, only } = await authenticate(options.authorizer, req)
  const request = parseIssueRequest(await readBody(req))
  const { namespace, serviceAccount } = request
  if (only !== undefined && (only.namespace !== namespace || only.serviceAccount !== serviceAccount)) {
    throw refuse(403, `this caller may only obtain certificates for ${only.namespace}/${only.serviceAccount}`)
  }
  if (!await options.authorizer.mayIssue(node, namespace, serviceAccount)) {
    throw refuse(403, `node ${node} has no pod with service account ${namespace}/${serviceAccount}`)
  }
  const id = spiffeId(options.ca.trustDomain, namespace, serviceAccount)
  let signed
  try {
    signed = await options.ca.sign(request.csr, id, options.workloadTtlMs)
  } catch (err) {
    if (err instanceof CertificateError) throw refuse(400, err.message)
    throw err
  }
  options.logger?.info({ node, spiffeId: id, serial: signed.serial, notAfter: signed.notAfter }, 'certificate issued')
  options.onIssued?.({ node, spiffeId: id, serial: signed.serial, notAfter: signed.notAfter })
  return { certChain: signed.certChain, notAfter: signed.notAfter.toISOString() }
}

async function authenticate (authorizer: CaAuthorizer, req: IncomingMessage): Promise<NodeCredential> {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
  if (match === null) throw refuse(401, 'missing bearer token (Authorization: Bearer <node token>)')
  const credential = await authorizer.authenticate(match[1] as string)
  if (credential === undefined) throw refuse(401, 'the bearer token is not valid for any node')
  return credential
}

function readBody (req: IncomingMessage): Promise<string> {
  const tooLarge = (): CaRefusedError => refuse(413, `the request body is larger than ${MAX_BODY_BYTES} bytes`)
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) return Promise.reject(tooLarge())
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size <= MAX_BODY_BYTES) {
        chunks.push(chunk)
        return
      }
      // Stop keeping it but let the rest drain (bounded by requestTimeout), so the client reads
      // the refusal instead of a connection reset.
      req.off('data', onData)
      req.resume()
      reject(tooLarge())
    }
    req.on('data', onData)
    req.once('end', () => resolve(Buffer.concat(chunks).toString()))
    req.once('error', reject)
  })
}

interface IssueRequest {
  readonly csr: string
  readonly namespace: string
  readonly serviceAccount: string
}

/** The validated body of POST /v1/certificates; a 400 refusal names what is wrong. */
export function parseIssueRequest (text: string): IssueRequest {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw refuse(400, 'the body must be JSON: {"csr", "namespace", "serviceAccount"}')
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw refuse(400, 'the body must be a JSON object: {"csr", "namespace", "serviceAccount"}')
  }
  const fields = body as Record<string, unknown>
  for (const name of ['csr', 'namespace', 'serviceAccount']) {
    if (typeof fields[name] !== 'string' || fields[name] === '') throw refuse(400, `'${name}' must be a non-empty string`)
  }
  const request = fields as unknown as IssueRequest
  const problem = namespaceProblem(request.namespace) ?? serviceAccountProblem(request.serviceAccount)
  if (problem !== undefined) throw refuse(400, problem)
  return { csr: request.csr, namespace: request.namespace, serviceAccount: request.serviceAccount }
}

/** Combines NodeTokens with a mesh-state check into the server's authorizer. */
export function nodeTokenAuthorizer (tokens: NodeTokens, mayIssue: CaAuthorizer['mayIssue']): CaAuthorizer {
  return { authenticate: (token) => tokens.authenticate(token), mayIssue }
}
