/**
 * Test certificates made with the real `openssl` CLI in a temp dir: a root CA per call and
 * EC P-256 leaf certificates carrying a SPIFFE id as URI SAN, as the mesh CA issues them.
 *
 *   const ca = await createTestCa(t, 'mesh root')
 *   const leaf = await ca.issue({ namespace: 'shop', serviceAccount: 'cart' })
 *   const identity = testIdentity(leaf, [ca.certPem])
 *   const other = await createTestCa(t, 'unrelated root')   // a CA nobody trusts
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const TRUST_DOMAIN = 'cluster.local'

/** The part of a tap Test this helper needs. */
export interface Teardown {
  teardown (fn: () => unknown): void
}

export interface TestLeaf {
  readonly keyPem: string
  readonly certPem: string
  /** The URI SAN, or '' for a leaf made without one. */
  readonly spiffeId: string
}

export interface LeafOptions {
  readonly namespace: string
  readonly serviceAccount: string
  /** Replaces the SPIFFE URI SAN; null leaves the certificate with a DNS SAN only. */
  readonly uriSan?: string | null
}

export interface TestCa {
  readonly certPem: string
  issue (options: LeafOptions): Promise<TestLeaf>
}

/** The fields of policy/certs.ts's TlsIdentity, so a test leaf plugs in wherever one is expected. */
export interface TestIdentity {
  readonly key: string
  readonly certChain: string
  readonly trustBundle: readonly string[]
  readonly spiffeId: string
  readonly notBefore: Date
  readonly notAfter: Date
}

export function spiffeIdFor (namespace: string, serviceAccount: string): string {
  return `spiffe://${TRUST_DOMAIN}/ns/${namespace}/sa/${serviceAccount}`
}

export function testIdentity (leaf: TestLeaf, trustBundle: readonly string[]): TestIdentity {
  const now = Date.now()
  return {
    key: leaf.keyPem,
    certChain: leaf.certPem,
    trustBundle,
    spiffeId: leaf.spiffeId,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000)
  }
}

const CA_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`

/** A fresh self-signed EC P-256 root; its temp dir is removed at teardown. */
export async function createTestCa (t: Teardown, commonName: string): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-certs-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = (name: string): string => join(dir, name)
  await writeFile(file('ca.cnf'), CA_CONFIG)
  await run('openssl', [
    'req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', file('ca.key'), '-out', file('ca.crt'), '-days', '2',
    '-subj', `/O=${TRUST_DOMAIN}/CN=${commonName}`, '-config', file('ca.cnf'), '-extensions', 'ca'
  ])
  const certPem = await readFile(file('ca.crt'), 'utf8')
  let leaves = 0

  async function issue (options: LeafOptions): Promise<TestLeaf> {
    const name = `leaf${leaves++}`
    const spiffeId = options.uriSan === undefined
      ? spiffeIdFor(options.namespace, options.serviceAccount)
      : options.uriSan ?? ''
    const san = spiffeId === '' ? `DNS:${options.serviceAccount}.${options.namespace}` : `URI:${spiffeId}`
    await writeFile(file(`${name}.ext`), [
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,keyAgreement',
      'extendedKeyUsage = serverAuth,clientAuth',
      `subjectAltName = critical,${san}`,
      ''
    ].join('\n'))
    await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file(`${name}.key`)])
    await run('openssl', ['req', '-new', '-key', file(`${name}.key`), '-subj', `/O=${TRUST_DOMAIN}`, '-out', file(`${name}.csr`)])
    await run('openssl', [
      'x509', '-req', '-in', file(`${name}.csr`), '-CA', file('ca.crt'), '-CAkey', file('ca.key'),
      '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '1',
      '-extfile', file(`${name}.ext`), '-out', file(`${name}.crt`)
    ])
    return {
      keyPem: await readFile(file(`${name}.key`), 'utf8'),
      certPem: await readFile(file(`${name}.crt`), 'utf8'),
      spiffeId
    }
  }

  return { certPem, issue }
}
