/**
 * The mesh certificate authority: a root (or an intermediate under someone else's root) that
 * signs short-lived workload certificates. The CA decides the identity: whatever names a CSR
 * asks for are ignored, and the leaf carries exactly the SPIFFE id the caller was authorized for.
 *
 * The CA private key is held in a private field: it is never logged, never part of JSON, and
 * written to disk only by an explicit save().
 */
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { X509Certificate, createPrivateKey, createPublicKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import {
  SIGNING_ALGORITHM, generateKeyPair, isEcP256, privateKeyPem, sameKey, splitPem, toWebCryptoKeys, type KeyPair
} from '../policy/certs.js'
import { CertificateError, ConfigError } from '../policy/errors.js'
import { parseSpiffeId, trustDomainProblem } from '../policy/identity.js'

x509.cryptoProvider.set(webcrypto)

const MINUTE_MS = 60_000
const DAY_MS = 24 * 60 * MINUTE_MS
export const DEFAULT_WORKLOAD_TTL_MS = DAY_MS
export const DEFAULT_SERVING_TTL_MS = 7 * DAY_MS
const ROOT_VALIDITY_MS = 3652 * DAY_MS
// Backdating notBefore lets peers whose clocks run a little behind accept a fresh certificate.
const CLOCK_SKEW_MS = MINUTE_MS
const HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/i

export interface SignedCertificate {
  /** PEM leaf followed by the CA's intermediates (not the root). */
  readonly certChain: string
  readonly notBefore: Date
  readonly notAfter: Date
  /** Upper-case hex. */
  readonly serial: string
}

/** A certificate and key for one of the control plane's own TLS servers. */
export interface ServingCertificate {
  readonly key: string
  readonly certChain: string
  readonly notBefore: Date
  readonly notAfter: Date
}

export interface CaFiles {
  /** PEM: the CA certificate, optionally followed by its chain up to the root. */
  readonly certFile: string
  /** PEM private key (PKCS#8 or SEC1) of that certificate. */
  readonly keyFile: string
}

export interface CaLoadOptions extends CaFiles {
  readonly trustDomain: string
  /** PEM: the issuers of an intermediate CA, up to and including the root. */
  readonly chainFile?: string
}

export interface CaPemOptions {
  readonly trustDomain: string
  readonly certificate: string
  readonly key: string
  readonly chain?: string
}

interface Leaf {
  readonly publicKey: x509.PublicKeyType
  readonly names: x509.JsonGeneralNames
  readonly usages: readonly x509.ExtendedKeyUsage[]
  readonly ttlMs: number
}

export class CertificateAuthority {
  readonly trustDomain: string
  /** PEM roots that every certificate this CA issues leads to. */
  readonly trustBundle: readonly string[]
  /** When the CA certificate itself expires; no leaf outlives it. */
  readonly notAfter: Date
  readonly #certificate: x509.X509Certificate
  readonly #privateKey: KeyObject
  readonly #signingKey: webcrypto.CryptoKey
  /** PEM certificates between a leaf and the root: the CA itself when it is an intermediate. */
  readonly #intermediates: readonly string[]
  readonly #issuerChain: readonly string[]

  private constructor (
    trustDomain: string, certificate: X509Certificate, issuers: readonly X509Certificate[],
    privateKey: KeyObject, signingKey: webcrypto.CryptoKey
  ) {
    this.trustDomain = trustDomain
    this.#certificate = new x509.X509Certificate(certificate.raw)
    this.#privateKey = privateKey
    this.#signingKey = signingKey
    this.notAfter = new Date(certificate.validTo)
    const path = [certificate, ...issuers]
    const root = path[path.length - 1] as X509Certificate
    this.trustBundle = [root.toString()]
    this.#intermediates = path.slice(0, -1).map((cert) => cert.toString())
    this.#issuerChain = issuers.map((cert) => cert.toString())
  }

  /** A new self-signed ECDSA P-256 root, valid for ten years. */
  static async create (options: { readonly trustDomain: string }): Promise<CertificateAuthority> {
    checkTrustDomain(options.trustDomain)
    const keyPair = generateKeyPair()
    const keys = await toWebCryptoKeys(keyPair)
    const now = Date.now()
    const root = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: [{ CN: ['ambit root CA'] }, { O: [options.trustDomain] }],
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(now + ROOT_VALIDITY_MS),
      keys,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
      ]
    })
    return new CertificateAuthority(
      options.trustDomain, new X509Certificate(root.toString('pem')), [], keyPair.privateKey, keys.privateKey)
  }

  /** A CA from PEM files, as written by save() or by an operator's own PKI. */
  static async load (options: CaLoadOptions): Promise<CertificateAuthority> {
    const [certificate, key, chain] = await Promise.all([
      readConfigFile(options.certFile), readConfigFile(options.keyFile),
      options.chainFile === undefined ? '' : readConfigFile(options.chainFile)
    ])
    return await CertificateAuthority.fromPem({ trustDomain: options.trustDomain, certificate, key, chain })
  }

  /** A CA from PEM text: its certificate (optionally followed by its chain), its key, and more chain. */
  static async fromPem (options: CaPemOptions): Promise<CertificateAuthority> {
    checkTrustDomain(options.trustDomain)
    const [certificate, ...issuers] = [...splitPem(options.certificate), ...splitPem(options.chain ?? '')]
      .map((pem) => new X509Certificate(pem))
    if (certificate === undefined) throw new CertificateError('the CA certificate file holds no PEM certificate')
    const privateKey = parsePrivateKey(options.key)
    checkCaCertificate(certificate, privateKey)
    checkIssuerChain(certificate, issuers)
    const keyPair: KeyPair = { privateKey, publicKey: createPublicKey(privateKey) }
    const { privateKey: signingKey } = await toWebCryptoKeys(keyPair)
    return new CertificateAuthority(options.trustDomain, certificate, issuers, privateKey, signingKey)
  }

  /** Writes the CA certificate (and chain) and its private key (mode 0600) for a later load(). */
  async save (files: CaFiles): Promise<void> {
    const { certificate, key } = this.exportPem()
    await writeFile(files.certFile, certificate)
    await writeFile(files.keyFile, key, { mode: 0o600 })
  }

  /**
   * The CA certificate (and chain) and its private key as PEM, for storing them where the next
   * start loads them with fromPem() (a Kubernetes Secret). Like save(), an explicit export: the
   * caller must never log the key.
   */
  exportPem (): { readonly certificate: string, readonly key: string } {
    return {
      certificate: [this.#certificate.toString('pem'), ...this.#issuerChain].join('\n') + '\n',
      key: privateKeyPem(this.#privateKey)
    }
  }

  /**
   * Issues a workload certificate for `spiffeId` to the key in `csrPem`. The CSR must be signed
   * by an ECDSA P-256 key; any names it asks for are ignored.
   */
  async sign (csrPem: string, spiffeId: string, ttlMs = DEFAULT_WORKLOAD_TTL_MS): Promise<SignedCertificate> {
    const { trustDomain } = parseSpiffeId(spiffeId)
    if (trustDomain !== this.trustDomain) {
      throw new CertificateError(`${spiffeId} is outside this CA's trust domain ${this.trustDomain}`)
    }
    const publicKey = await verifiedCsrKey(csrPem)
    const cert = await this.#issue({
      publicKey,
      names: [{ type: 'url', value: spiffeId }],
      usages: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
      ttlMs
    })
    return { certChain: this.#chainOf(cert), notBefore: cert.notBefore, notAfter: cert.notAfter, serial: serialOf(cert) }
  }

  /** A server certificate (DNS / IP SANs) with a fresh key, for the control plane's HTTPS. */
  async issueServingCertificate (hosts: readonly string[], ttlMs = DEFAULT_SERVING_TTL_MS): Promise<ServingCertificate> {
    if (hosts.length === 0) throw new ConfigError('a serving certificate needs at least one host name or address')
    const keyPair = generateKeyPair()
    const cert = await this.#issue({
      publicKey: (await toWebCryptoKeys(keyPair)).publicKey,
      names: hosts.map(hostName),
      usages: [x509.ExtendedKeyUsage.serverAuth],
      ttlMs
    })
    return {
      key: privateKeyPem(keyPair.privateKey),
      certChain: this.#chainOf(cert),
      notBefore: cert.notBefore,
      notAfter: cert.notAfter
    }
  }

  async #issue (leaf: Leaf): Promise<x509.X509Certificate> {
    if (!Number.isFinite(leaf.ttlMs) || leaf.ttlMs <= 0) {
      throw new ConfigError(`certificate lifetime must be a positive number of milliseconds, not ${leaf.ttlMs}`)
    }
    const now = Date.now()
    const notAfter = Math.min(now + leaf.ttlMs, this.notAfter.getTime())
    return await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      issuer: this.#certificate.subjectName,
      // Like Istio's workload certificates the subject is empty, so the SAN is critical (RFC 5280 4.2.1.6).
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(notAfter),
      publicKey: leaf.publicKey,
      signingKey: this.#signingKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([...leaf.usages]),
        await x509.SubjectKeyIdentifierExtension.create(leaf.publicKey),
        await this.#authorityKeyIdentifier(),
        new x509.SubjectAlternativeNameExtension(leaf.names, true)
      ]
    })
  }

  async #authorityKeyIdentifier (): Promise<x509.AuthorityKeyIdentifierExtension> {
    const ski = this.#certificate.getExtension(x509.SubjectKeyIdentifierExtension)
    if (ski !== null) return new x509.AuthorityKeyIdentifierExtension(ski.keyId)
    return await x509.AuthorityKeyIdentifierExtension.create(this.#certificate.publicKey)
  }

  #chainOf (leaf: x509.X509Certificate): string {
    return [leaf.toString('pem'), ...this.#intermediates].join('\n') + '\n'
  }
}

function checkTrustDomain (trustDomain: string): void {
  const problem = trustDomainProblem(trustDomain)
  if (problem !== undefined) throw new ConfigError(problem)
}

async function readConfigFile (path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read CA file ${path}: ${(err as Error).message}`)
  }
}

function parsePrivateKey (pem: string): KeyObject {
  let key: KeyObject
  try {
    key = createPrivateKey(pem)
  } catch {
    // The parser's message could quote key material; say only what kind of problem it is.
    throw new CertificateError('the CA key file holds no readable PEM private key')
  }
  if (!isEcP256(key)) throw new CertificateError('the CA key must be an ECDSA P-256 key')
  return key
}

function checkCaCertificate (certificate: X509Certificate, privateKey: KeyObject): void {
  if (!certificate.ca) throw new CertificateError(`'${certificate.subject}' is not a CA certificate (basicConstraints CA:false)`)
  if (!sameKey(certificate.publicKey, createPublicKey(privateKey))) {
    throw new CertificateError(`the CA key does not belong to the certificate '${certificate.subject}'`)
  }
  const usage = new x509.X509Certificate(certificate.raw).getExtension(x509.KeyUsagesExtension)
  if (usage !== null && (usage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new CertificateError(`'${certificate.subject}' may not sign certificates (no keyCertSign usage)`)
  }
  if (new Date(certificate.validTo) < new Date()) {
    throw new CertificateError(`the CA certificate '${certificate.subject}' expired at ${certificate.validTo}`)
  }
}

/** Each certificate must be signed by the next, and the last must be a self-signed root. */
function checkIssuerChain (certificate: X509Certificate, issuers: readonly X509Certificate[]): void {
  const path = [certificate, ...issuers]
  path.slice(0, -1).forEach((child, i) => {
    const issuer = path[i + 1] as X509Certificate
    if (!issuer.ca || !child.checkIssued(issuer) || !child.verify(issuer.publicKey)) {
      throw new CertificateError(`the CA chain is broken: '${child.subject}' is not signed by '${issuer.subject}'`)
    }
  })
  const root = path[path.length - 1] as X509Certificate
  if (!root.checkIssued(root) || !root.verify(root.publicKey)) {
    throw new CertificateError(`the CA chain must end with a self-signed root; '${root.subject}' is not one (give chainFile)`)
  }
}

/** The public key of a well-formed, self-signed, ECDSA P-256 CSR. */
async function verifiedCsrKey (csrPem: string): Promise<x509.PublicKey> {
  let csr: x509.Pkcs10CertificateRequest
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem)
  } catch {
    throw new CertificateError('the CSR is not a PEM PKCS#10 certificate request')
  }
  let keyObject: KeyObject
  try {
    keyObject = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' })
  } catch {
    throw new CertificateError('the CSR public key cannot be read')
  }
  if (!isEcP256(keyObject)) {
    throw new CertificateError(`the CSR key must be ECDSA P-256, not ${keyObject.asymmetricKeyType ?? 'unknown'}` +
      (keyObject.asymmetricKeyDetails?.namedCurve === undefined ? '' : ` ${keyObject.asymmetricKeyDetails.namedCurve}`))
  }
  const valid = await csr.verify().catch(() => false)
  if (!valid) throw new CertificateError('the CSR signature does not verify')
  return csr.publicKey
}

function hostName (host: string): x509.JsonGeneralName {
  if (isIP(host) !== 0) return { type: 'ip', value: host }
  if (!HOSTNAME.test(host)) throw new ConfigError(`'${host}' is neither a DNS name nor an IP address`)
  return { type: 'dns', value: host }
}

/** 128 random bits; a leading zero byte would make a non-minimal DER integer. */
function randomSerial (): string {
  const bytes = randomBytes(16)
  if (bytes[0] === 0) bytes[0] = 1
  return bytes.toString('hex')
}

function serialOf (cert: x509.X509Certificate): string {
  return new X509Certificate(cert.toString('pem')).serialNumber.toUpperCase()
}
