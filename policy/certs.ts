/**
 * Workload key pairs, CSRs and the verification of peer certificates.
 *
 * @peculiar/x509 builds and parses the ASN.1 (CSRs, extensions); node:crypto checks every
 * signature and validity period, so the trust decision rests on OpenSSL.
 * Private keys live only in memory, as KeyObjects or PEM strings.
 */
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { X509Certificate, generateKeyPairSync, webcrypto, type KeyObject } from 'node:crypto'
import type { TLSSocket } from 'node:tls'
import { CertificateError, PeerCertificateError } from './errors.js'
import { parseSpiffeId } from './identity.js'

x509.cryptoProvider.set(webcrypto)

/** An ECDSA P-256 key pair. */
export interface KeyPair {
  readonly privateKey: KeyObject
  readonly publicKey: KeyObject
}

/** Everything a TLS server or client needs to present and check a workload identity. */
export interface TlsIdentity {
  /** PKCS#8 PEM private key; never leaves the process that generated it. */
  readonly key: string
  /** PEM leaf certificate followed by any intermediates. */
  readonly certChain: string
  /** PEM roots a peer's chain must lead to. */
  readonly trustBundle: readonly string[]
  readonly spiffeId: string
  readonly notBefore: Date
  readonly notAfter: Date
}

export interface CertificateInfo {
  /** The certificate's single URI SAN, or undefined when it has none or several. */
  readonly spiffeId: string | undefined
  readonly notBefore: Date
  readonly notAfter: Date
  /** Upper-case hex, as OpenSSL prints it. */
  readonly serial: string
  /** SHA-256 fingerprint, colon-separated upper-case hex. */
  readonly fingerprint: string
}

/** The identity a peer must have: an exact SPIFFE id or a test on it. */
export type ExpectedIdentity = string | ((spiffeId: string) => boolean)

/** A certificate as PEM text or as a parsed node:crypto certificate. */
export type CertificateInput = string | X509Certificate

/** ECDSA over P-256 with SHA-256, for both CSRs and certificates. */
export const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const
const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const
// Deeper chains than leaf + a few intermediates + root are a sign of a mistake or an attack.
const MAX_CHAIN_DEPTH = 5
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

export function generateKeyPair (): KeyPair {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
}

export function privateKeyPem (privateKey: KeyObject): string {
  return privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
}

export function isEcP256 (key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1'
}

export function sameKey (a: KeyObject, b: KeyObject): boolean {
  const spki = { format: 'der', type: 'spki' } as const
  return a.export(spki).equals(b.export(spki))
}

export interface WebCryptoKeyPair {
  readonly privateKey: webcrypto.CryptoKey
  readonly publicKey: webcrypto.CryptoKey
}

/** The same key pair as WebCrypto keys, which is what @peculiar/x509 signs with. */
export async function toWebCryptoKeys (keyPair: KeyPair): Promise<WebCryptoKeyPair> {
  const [privateKey, publicKey] = await Promise.all([
    webcrypto.subtle.importKey('pkcs8', keyPair.privateKey.export({ format: 'der', type: 'pkcs8' }), EC_P256, false, ['sign']),
    webcrypto.subtle.importKey('spki', keyPair.publicKey.export({ format: 'der', type: 'spki' }), EC_P256, true, ['verify'])
  ])
  return { privateKey, publicKey }
}

/** A PEM PKCS#10 request for `spiffeId` (as its URI SAN), signed by the key pair. */
export async function createCsr (keyPair: KeyPair, spiffeId: string): Promise<string> {
  parseSpiffeId(spiffeId)
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: await toWebCryptoKeys(keyPair),
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }])]
  })
  return csr.toString('pem')
}

/** Each certificate of a PEM bundle, in order. */
export function splitPem (pem: string): string[] {
  return pem.match(PEM_CERTIFICATE) ?? []
}

export function parseCertificate (input: CertificateInput): X509Certificate {
  if (typeof input !== 'string') return input
  try {
    return new X509Certificate(input)
  } catch (err) {
    throw new PeerCertificateError('malformed', 'not a PEM certificate', { cause: err })
  }
}

/** Every URI SAN of the certificate, in order. */
export function uriSans (cert: X509Certificate): string[] {
  const parsed = new x509.X509Certificate(cert.raw)
  const san = parsed.getExtension(x509.SubjectAlternativeNameExtension)
  if (san === null) return []
  return san.names.items.filter((name) => name.type === 'url').map((name) => name.value)
}

export function certificateInfo (pem: string): CertificateInfo {
  const first = splitPem(pem)[0]
  if (first === undefined) throw new CertificateError('no PEM certificate found')
  const cert = parseCertificate(first)
  const uris = uriSans(cert)
  return {
    spiffeId: uris.length === 1 ? uris[0] : undefined,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    serial: cert.serialNumber.toUpperCase(),
    fingerprint: cert.fingerprint256
  }
}

/** `issuer` is a CA whose key signed `child`. */
function issuedBy (child: X509Certificate, issuer: X509Certificate): boolean {
  return issuer.ca && child.checkIssued(issuer) && child.verify(issuer.publicKey)
}

/** leaf → intermediates → a bundle root, or undefined when no such path exists. */
function trustedPath (
  leaf: X509Certificate, intermediates: readonly X509Certificate[], roots: readonly X509Certificate[]
): X509Certificate[] | undefined {
  const path = [leaf]
  for (let depth = 0; depth < MAX_CHAIN_DEPTH; depth++) {
    const current = path[path.length - 1] as X509Certificate
    const root = roots.find((candidate) => issuedBy(current, candidate))
    if (root !== undefined) return [...path, root]
    const next = intermediates.find((candidate) => !path.includes(candidate) && issuedBy(current, candidate))
    if (next === undefined) return undefined
    path.push(next)
  }
  return undefined
}

function checkValidity (path: readonly X509Certificate[], now: Date): void {
  for (const cert of path) {
    const name = cert === path[0] ? 'the peer certificate' : `issuer '${cert.subject}'`
    const notBefore = new Date(cert.validFrom)
    const notAfter = new Date(cert.validTo)
    if (now < notBefore) {
      throw new PeerCertificateError('not-yet-valid', `${name} is not valid before ${notBefore.toISOString()}`)
    }
    if (now > notAfter) throw new PeerCertificateError('expired', `${name} expired at ${notAfter.toISOString()}`)
  }
}

function singleSpiffeId (leaf: X509Certificate): string {
  const uris = uriSans(leaf)
  if (uris.length === 0) throw new PeerCertificateError('no-identity', 'the peer certificate has no URI SAN (no SPIFFE id)')
  if (uris.length > 1) {
    throw new PeerCertificateError('many-identities',
      `the peer certificate has ${uris.length} URI SANs; exactly one SPIFFE id is allowed`)
  }
  const id = uris[0] as string
  try {
    parseSpiffeId(id)
  } catch (err) {
    throw new PeerCertificateError('malformed', `the peer certificate's URI SAN is not a SPIFFE id: ${id}`, { cause: err })
  }
  return id
}

function checkExpected (id: string, expected: ExpectedIdentity | undefined): void {
  if (expected === undefined) return
  const ok = typeof expected === 'string' ? id === expected : expected(id)
  if (!ok) {
    const wanted = typeof expected === 'string' ? expected : 'an allowed identity'
    throw new PeerCertificateError('unexpected-identity', `the peer is ${id} but ${wanted} was expected`)
  }
}

/**
 * Checks that `chain` (leaf first, then intermediates, in PEM or parsed) leads to a root of
 * `trustBundle`, that every certificate on the way is valid now, that the leaf carries exactly
 * one SPIFFE id and that it is the expected one. Returns that id; throws PeerCertificateError
 * whose `problem` says why the chain is refused.
 */
export function verifyPeerCertificate (
  chain: string | readonly CertificateInput[],
  trustBundle: readonly CertificateInput[],
  expected?: ExpectedIdentity,
  options: { readonly now?: Date } = {}
): string {
  const certs = (typeof chain === 'string' ? splitPem(chain) : chain).map(parseCertificate)
  const [leaf, ...intermediates] = certs
  if (leaf === undefined) throw new PeerCertificateError('malformed', 'the peer presented no certificate')
  if (leaf.ca) throw new PeerCertificateError('malformed', 'the peer certificate is a CA certificate, not a workload one')
  const path = trustedPath(leaf, intermediates, trustBundle.map(parseCertificate))
  if (path === undefined) {
    throw new PeerCertificateError('untrusted',
      `the peer certificate (issuer '${leaf.issuer}') is not signed by the trust bundle`)
  }
  checkValidity(path, options.now ?? new Date())
  const id = singleSpiffeId(leaf)
  checkExpected(id, expected)
  return id
}

/** The chain a TLS peer sent (leaf first), as node:crypto certificates. */
export function peerCertificateChain (socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = []
  const seen = new Set<string>()
  let current = socket.getPeerCertificate(true)
  // The issuer links end at a self-signed root that points at itself.
  while (current?.raw !== undefined && !seen.has(current.fingerprint256)) {
    seen.add(current.fingerprint256)
    chain.push(new X509Certificate(current.raw))
    current = current.issuerCertificate
  }
  return chain
}

/** The `key`, `cert` and `ca` options of tls.createSecureContext for an identity. */
export function tlsOptions (identity: TlsIdentity): { key: string, cert: string, ca: string[] } {
  return { key: identity.key, cert: identity.certChain, ca: [...identity.trustBundle] }
}
