/**
 * The TLS pieces both ends of an HBONE connection share: the identity a side presents, the
 * secure context made from it, and reading the SPIFFE id out of a certificate.
 */
import { X509Certificate } from 'node:crypto'
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls'

/**
 * What a side presents and trusts. The same field names as policy/certs.ts's TlsIdentity (a
 * subset), so an identity from the CA client plugs in as it is.
 */
export interface TlsIdentity {
  /** PEM private key. */
  readonly key: string
  /** PEM leaf certificate followed by any intermediates. */
  readonly certChain: string
  /** PEM roots the peer's chain must lead to. */
  readonly trustBundle: readonly string[]
  readonly spiffeId: string
}

/** HBONE is TLS 1.3 only, as in Istio. */
export const HBONE_MIN_TLS_VERSION = 'TLSv1.3'

// Building a context parses keys and certificates: do it once per identity (a rotated
// identity is a new object, so it gets a new context and the old one is collected).
const contexts = new WeakMap<TlsIdentity, SecureContext>()

/** A context that presents `identity` and verifies peers against its trust bundle. */
export function secureContextFor (identity: TlsIdentity): SecureContext {
  let context = contexts.get(identity)
  if (context === undefined) {
    context = createSecureContext({
      key: identity.key,
      cert: identity.certChain,
      ca: [...identity.trustBundle],
      minVersion: HBONE_MIN_TLS_VERSION
    })
    contexts.set(identity, context)
  }
  return context
}

/**
 * The URI SANs in Node's `subjectAltName` text (`DNS:a, URI:spiffe://..., IP Address:...`).
 * Node quotes a value as a JSON string when it holds a delimiter, so quoted values are decoded.
 */
export function uriSans (subjectAltName: string | undefined): string[] {
  if (subjectAltName === undefined) return []
  const uris: string[] = []
  for (const entry of subjectAltName.matchAll(/(?:^|, )([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g)) {
    const [, kind, value = ''] = entry
    if (kind === 'URI') uris.push(value.startsWith('"') ? String(JSON.parse(value)) : value)
  }
  return uris
}

/** The certificate's SPIFFE id: an X509-SVID has exactly one URI SAN, a `spiffe://` one. */
export function spiffeIdOf (certificate: X509Certificate | undefined): string | undefined {
  const uris = uriSans(certificate?.subjectAltName)
  return uris.length === 1 && uris[0]?.startsWith('spiffe://') === true ? uris[0] : undefined
}

/** The SPIFFE id the peer's certificate carries (undefined: no certificate, or not an SVID). */
export function peerSpiffeId (socket: TLSSocket): string | undefined {
  return spiffeIdOf(socket.getPeerX509Certificate())
}

/** The SPIFFE id of the certificate this side presented on `socket`. */
export function localSpiffeId (socket: TLSSocket): string | undefined {
  return spiffeIdOf(socket.getX509Certificate())
}

