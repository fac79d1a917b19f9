/**
 * Every error ambit raises on purpose, with a stable code (as fastify's errors module and
 * undici's lib/core/errors.js do). Callers branch on `code`, never on the message.
 */

export class AmbitError extends Error {
  readonly code: string
  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** Where in the input a bad resource was found. */
export interface ResourceLocation {
  /** File path, or '<stdin>' / '<kubernetes>' / '<inline>'. */
  readonly file: string
  /** 0-based index of the YAML document in the file. */
  readonly document: number
  /** 'Kind/name' (or as much of it as is known). */
  readonly object: string
}

/** A resource that failed validation: names file, document, object, field path and reason. */
export class InvalidResourceError extends AmbitError {
  readonly location: ResourceLocation
  readonly field: string
  readonly reason: string
  constructor (location: ResourceLocation, field: string, reason: string) {
    super('AMBIT_INVALID_RESOURCE',
      `${location.file} document ${location.document} (${location.object}): ${field}: ${reason}`)
    this.location = location
    this.field = field
    this.reason = reason
  }
}

/** Several bad resources at once (a whole file is checked before anything is applied). */
export class InvalidResourcesError extends AmbitError {
  readonly errors: readonly InvalidResourceError[]
  constructor (errors: readonly InvalidResourceError[]) {
    super('AMBIT_INVALID_RESOURCES', errors.map((e) => e.message).join('\n'))
    this.errors = errors
  }
}

/** Text that is not YAML at all. */
export class YamlSyntaxError extends AmbitError {
  constructor (file: string, document: number, reason: string) {
    super('AMBIT_YAML_SYNTAX', `${file} document ${document}: invalid YAML: ${reason}`)
  }
}

/** A command-line flag or configuration value that is wrong. */
export class ConfigError extends AmbitError {
  constructor (message: string) {
    super('AMBIT_CONFIG', message)
  }
}

/** The store could not be reached or answered something unexpected. */
export class StoreError extends AmbitError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('AMBIT_STORE', message, options)
  }
}

/** The CA refused to sign: the caller is not who it says, or asks for an identity it may not have. */
export class CaRefusedError extends AmbitError {
  readonly status: number
  constructor (message: string, status = 403) {
    super('AMBIT_CA_REFUSED', message)
    this.status = status
  }
}

/** A CSR or certificate that cannot be used. */
export class CertificateError extends AmbitError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('AMBIT_CERTIFICATE', message, options)
  }
}

/** A name that does not resolve to anything in the mesh (ambit explain, SOCKS5 hostnames). */
export class NotFoundError extends AmbitError {
  constructor (message: string) {
    super('AMBIT_NOT_FOUND', message)
  }
}

/** Why a peer certificate was refused, for callers that count or report refusals. */
export type PeerCertificateProblem =
  'malformed' | 'untrusted' | 'expired' | 'not-yet-valid' | 'no-identity' | 'many-identities' | 'unexpected-identity'

/** A peer's certificate chain that does not prove the identity we expect. */
export class PeerCertificateError extends CertificateError {
  readonly problem: PeerCertificateProblem
  constructor (problem: PeerCertificateProblem, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.problem = problem
  }
}

/** The CA could not be reached or failed (network error, timeout, 5xx): worth retrying. */
export class CaUnavailableError extends AmbitError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('AMBIT_CA_UNAVAILABLE', message, options)
  }
}

/** One wrong field, found while reading a resource; validate.ts adds where the resource was and rethrows InvalidResourceError. */
export class InvalidFieldError extends AmbitError {
  readonly field: string
  readonly reason: string
  constructor (field: string, reason: string) {
    super('AMBIT_INVALID_FIELD', `${field}: ${reason}`)
    this.field = field
    this.reason = reason
  }
}

/** Why an HBONE tunnel could not be opened (stable values, for metrics and callers). */
export type HboneConnectProblem =
  'timeout' | 'network' | 'rejected-by-peer' | 'alpn-mismatch' | 'session-closed' | 'stream-reset' | 'pool-closed'

/** An HBONE connection or CONNECT stream that could not be established. */
export class HboneConnectError extends AmbitError {
  readonly problem: HboneConnectProblem
  constructor (problem: HboneConnectProblem, message: string, options?: { cause?: unknown }) {
    super('AMBIT_HBONE_CONNECT', message, options)
    this.problem = problem
  }
}

/** The HBONE server answered a CONNECT with a status other than 200. */
export class HboneRefusedError extends AmbitError {
  readonly status: number
  constructor (status: number, message: string) {
    super('AMBIT_HBONE_REFUSED', message)
    this.status = status
  }
}

/** A SOCKS5 client that broke the protocol, was too slow, or went away during the handshake. */
export class Socks5Error extends AmbitError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('AMBIT_SOCKS5', message, options)
  }
}

/** A libc socket option call (getsockopt/setsockopt/socket) that failed; `errnoName` is e.g. 'ENOENT'. */
export class SocketOptionError extends AmbitError {
  readonly errnoName: string
  constructor (message: string, errnoName: string) {
    super('AMBIT_SOCKET_OPTION', message)
    this.errnoName = errnoName
  }
}

/** An iptables command of the traffic capture that failed (its stderr is in the message). */
export class CaptureError extends AmbitError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('AMBIT_CAPTURE', message, options)
  }
}

/** The shared rate limit could not be checked in Redis (down, slow, or an odd answer); the request is let through. */
export class RateLimitUnavailableError extends AmbitError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('AMBIT_RATELIMIT_UNAVAILABLE', message, options)
  }
}

/** A Kubernetes API call that failed; `status` is the HTTP status when the server answered. */
export class KubernetesApiError extends AmbitError {
  readonly status: number | undefined
  constructor (message: string, status: number | undefined, options?: { cause?: unknown }) {
    super('AMBIT_KUBERNETES_API', message, options)
    this.status = status
  }
}

/** A stream of a proxied connection closed before both its directions were done (a reset, say). */
export class StreamClosedEarlyError extends AmbitError {
  constructor () {
    super('AMBIT_STREAM_CLOSED_EARLY', 'stream closed before the copy was done')
  }
}
