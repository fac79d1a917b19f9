/**
 * How a proxy obtains a workload certificate: it makes the key pair itself (the private key
 * never leaves the process), sends only a CSR to the CA over HTTPS verified with the trust
 * bundle, and checks what comes back before using it.
 */
import { X509Certificate } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { request } from 'node:https'
import {
  certificateInfo, createCsr, generateKeyPair, privateKeyPem, sameKey, splitPem, verifyPeerCertificate,
  type TlsIdentity
} from './certs.js'
import { CaRefusedError, CaUnavailableError, CertificateError, PeerCertificateError } from './errors.js'
import { spiffeId } from './identity.js'

export interface CaClientOptions {
  /** https://host:port of the CA server. */
  readonly url: string
  /**
   * This node's bearer token, or a function giving the current one (asked on every request, so a
   * token file the kubelet rotates is read afresh). Sent only to a server that proves itself
   * with the trust bundle.
   */
  readonly token: string | TokenProvider
  /** PEM roots that the CA server and the certificates it issues must chain to. */
  readonly trustBundle: readonly string[]
  /** Per request (default 10 s). */
  readonly timeoutMs?: number
}

/** The current bearer token (it may change between requests). */
export type TokenProvider = () => string | Promise<string>

interface Reply {
  readonly status: number
  readonly body: unknown
}

const MAX_REPLY_BYTES = 1024 * 1024
// Node's codes for a server certificate that does not verify (as opposed to a network failure).
const TLS_VERIFY_ERROR = /CERT|SIGNATURE|ISSUER|SELF_SIGNED|ALTNAME/

export class CaClient {
  readonly #options: CaClientOptions

  constructor (options: CaClientOptions) {
    this.#options = options
  }

  /**
   * A fresh identity for namespace/serviceAccount. Throws CaRefusedError when the CA says no,
   * CaUnavailableError when it cannot be reached, CertificateError when its answer is unusable.
   */
  async requestCertificate (namespace: string, serviceAccount: string, trustDomain: string): Promise<TlsIdentity> {
    const id = spiffeId(trustDomain, namespace, serviceAccount)
    const keyPair = generateKeyPair()
    const csr = await createCsr(keyPair, id)
    const reply = await this.#call('POST', '/v1/certificates', { csr, namespace, serviceAccount })
    const certChain = stringField(reply.body, 'certChain')
    try {
      verifyPeerCertificate(certChain, this.#options.trustBundle, id)
    } catch (err) {
      if (!(err instanceof PeerCertificateError)) throw err
      throw new PeerCertificateError(err.problem, `the CA returned an unusable certificate for ${id}: ${err.message}`,
        { cause: err })
    }
    const leaf = new X509Certificate(splitPem(certChain)[0] as string)
    if (!sameKey(leaf.publicKey, keyPair.publicKey)) {
      throw new CertificateError(`the CA returned a certificate for ${id} that is not for our key`)
    }
    const { notBefore, notAfter } = certificateInfo(certChain)
    return {
      key: privateKeyPem(keyPair.privateKey),
      certChain,
      trustBundle: [...this.#options.trustBundle],
      spiffeId: id,
      notBefore,
      notAfter
    }
  }

  /** The CA's current trust bundle (more than one root while a root is being replaced). */
  async fetchTrustBundle (): Promise<string[]> {
    const reply = await this.#call('GET', '/v1/trust-bundle')
    const bundle = (reply.body as { trustBundle?: unknown }).trustBundle
    if (!Array.isArray(bundle) || !bundle.every((pem) => typeof pem === 'string')) {
      throw new CaUnavailableError(`the CA at ${this.#options.url} sent no trust bundle`)
    }
    return bundle
  }

  async #call (method: string, path: string, body?: unknown): Promise<Reply> {
    const reply = await this.#send(method, path, body)
    if (reply.status === 200) return reply
    const message = (reply.body as { message?: unknown } | undefined)?.message
    const reason = typeof message === 'string' ? message : `HTTP ${reply.status}`
    if (reply.status >= 500) throw new CaUnavailableError(`the CA at ${this.#options.url} failed: ${reason}`)
    throw new CaRefusedError(`the CA refused: ${reason}`, reply.status)
  }

  async #currentToken (): Promise<string> {
    const { token } = this.#options
    if (typeof token === 'string') return token
    try {
      return await token()
    } catch (err) {
      // Never the token itself: only why it could not be had.
      throw new CaUnavailableError(`cannot get the token for the CA at ${this.#options.url}: ${(err as Error).message}`, { cause: err })
    }
  }

  async #send (method: string, path: string, body?: unknown): Promise<Reply> {
    const token = await this.#currentToken()
    const { url, trustBundle, timeoutMs = 10_000 } = this.#options
    const payload = body === undefined ? undefined : JSON.stringify(body)
    return new Promise<Reply>((resolve, reject) => {
      const req = request(new URL(path, url), {
        method,
        ca: [...trustBundle],
        // One connection per request: certificates are asked for rarely, and nothing lingers.
        agent: false,
        timeout: timeoutMs,
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'application/json',
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) })
        }
      }, (res) => {
        readReply(res).then((text) => resolve({ status: res.statusCode ?? 0, body: parseJson(text) }), reject)
      })
      req.once('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)))
      req.once('error', (err) => reject(this.#connectionError(err)))
      req.end(payload)
    })
  }

  #connectionError (err: Error & { code?: string }): Error {
    if (err.code !== undefined && TLS_VERIFY_ERROR.test(err.code)) {
      return new CertificateError(
        `the CA server at ${this.#options.url} is not trusted (its certificate does not verify with the trust bundle): ${err.message}`,
        { cause: err })
    }
    return new CaUnavailableError(`cannot reach the CA at ${this.#options.url}: ${err.message}`, { cause: err })
  }
}

function readReply (res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    res.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_REPLY_BYTES) {
        res.destroy()
        reject(new CaUnavailableError(`the CA reply is larger than ${MAX_REPLY_BYTES} bytes`))
        return
      }
      chunks.push(chunk)
    })
    res.once('end', () => resolve(Buffer.concat(chunks).toString()))
    res.once('error', reject)
  })
}

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function stringField (body: unknown, name: string): string {
  const value = (body as Record<string, unknown> | undefined)?.[name]
  if (typeof value !== 'string') throw new CertificateError(`the CA reply has no '${name}'`)
  return value
}
