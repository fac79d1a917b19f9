/**
 * The CA (control/ca.ts), its HTTPS signing service (control/ca-server.ts) and the client proxies
 * use (policy/ca-client.ts): certificates are checked with the real openssl, the service runs
 * over real TLS on a free port.
 */
import t from 'tap'
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { X509Certificate, webcrypto } from 'node:crypto'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { request } from 'node:https'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { connect, createSecureContext, createServer as createTlsServer, type TLSSocket } from 'node:tls'
import { inspect } from 'node:util'
import { pino } from 'pino'
import { CertificateAuthority, type CaFiles } from '../control/ca.js'
import { NodeTokens, nodeTokenAuthorizer, startCaServer, type CaServer, type CaSigner } from '../control/ca-server.js'
import { CaClient } from '../policy/ca-client.js'
import {
  createCsr, generateKeyPair, peerCertificateChain, splitPem, tlsOptions, toWebCryptoKeys, verifyPeerCertificate,
  SIGNING_ALGORITHM, type TlsIdentity
} from '../policy/certs.js'
import { CaRefusedError, CaUnavailableError, CertificateError, ConfigError, PeerCertificateError } from '../policy/errors.js'
import { openssl, opensslIssue, opensslOk, subjectAltNames, tempDir, type Teardown } from './helpers/pki.js'

x509.cryptoProvider.set(webcrypto)

const WEB = 'spiffe://cluster.local/ns/shop/sa/web'
const HOUR_MS = 3_600_000

const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' })
const otherCa = await CertificateAuthority.create({ trustDomain: 'cluster.local' })

/** Writes PEM files into `dir` (name → content). */
async function writeFiles (dir: string, files: Record<string, string>): Promise<void> {
  await Promise.all(Object.entries(files).map(([name, pem]) => writeFile(join(dir, name), pem)))
}

async function signedFor (id: string, authority = ca, ttlMs?: number): Promise<string> {
  return (await authority.sign(await createCsr(generateKeyPair(), id), id, ttlMs)).certChain
}

t.test('create() makes an ECDSA P-256 root valid for ten years', async (t) => {
  const dir = await tempDir(t)
  await writeFiles(dir, { 'root.pem': ca.trustBundle[0] as string })
  const text = await opensslOk(['x509', '-in', 'root.pem', '-noout', '-text'], dir)
  t.match(text, /CA:TRUE/)
  t.match(text, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/)
  t.match(text, /X509v3 Subject Key Identifier/)
  t.match(text, /ASN1 OID: prime256v1/)
  t.match(text, /Signature Algorithm: ecdsa-with-SHA256/)
  t.match(text, /Subject: CN = ambit root CA, O = cluster.local/)
  const years = (ca.notAfter.getTime() - Date.now()) / (365.25 * 24 * HOUR_MS)
  t.ok(years > 9.99 && years < 10.01, `${years} years`)
  t.equal((await openssl(['verify', '-CAfile', 'root.pem', 'root.pem'], dir)).code, 0, 'self-signed root verifies')
})

t.test('sign() issues a 24 h leaf that openssl verifies, with exactly the SPIFFE id as SAN', async (t) => {
  const dir = await tempDir(t)
  const before = Date.now()
  const signed = await ca.sign(await createCsr(generateKeyPair(), WEB), WEB)
  await writeFiles(dir, { 'root.pem': ca.trustBundle[0] as string, 'leaf.pem': signed.certChain })

  const verify = await openssl(['verify', '-CAfile', 'root.pem', 'leaf.pem'], dir)
  t.equal(verify.code, 0, verify.stderr)
  t.equal(verify.stdout.trim(), 'leaf.pem: OK')
  for (const purpose of ['sslserver', 'sslclient']) {
    const result = await openssl(['verify', '-purpose', purpose, '-CAfile', 'root.pem', 'leaf.pem'], dir)
    t.equal(result.code, 0, `usable as ${purpose}: ${result.stderr}`)
  }
  t.same(await subjectAltNames('leaf.pem', dir), [`URI:${WEB}`])

  const text = await opensslOk(['x509', '-in', 'leaf.pem', '-noout', '-text'], dir)
  t.match(text, /ASN1 OID: prime256v1/)
  t.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/)
  t.match(text, /X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment/)
  t.match(text, /X509v3 Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/)
  t.match(text, /X509v3 Subject Alternative Name: critical/)
  const rootSki = /Subject Key Identifier:\s+(\S+)/.exec(await opensslOk(['x509', '-in', 'root.pem', '-noout', '-text'], dir))?.[1]
  t.ok(rootSki)
  t.match(text, new RegExp(`Authority Key Identifier:\\s+(keyid:)?${rootSki ?? 'none'}`), 'AKI is the root SKI')

  const leaf = new X509Certificate(signed.certChain)
  t.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  t.equal(leaf.issuer, 'CN=ambit root CA\nO=cluster.local')
  t.equal(splitPem(signed.certChain).length, 1, 'a root CA returns the leaf alone')
  t.equal(signed.notAfter.getTime() - signed.notBefore.getTime(), 24 * HOUR_MS + 60_000, '24 h plus 1 min backdating')
  t.ok(Math.abs(signed.notBefore.getTime() - (before - 60_000)) < 5000, 'notBefore is backdated a minute')
  t.ok(Math.abs(signed.notAfter.getTime() - (before + 24 * HOUR_MS)) < 5000, 'notAfter is 24 h from now')
  t.equal(signed.serial, leaf.serialNumber.toUpperCase())

  const serials = new Set(await Promise.all([1, 2, 3, 4].map(async () =>
    (await ca.sign(await createCsr(generateKeyPair(), WEB), WEB)).serial)))
  t.equal(serials.size, 4, 'serials are random')
  for (const serial of serials) t.ok(serial.length >= 30 && serial.length <= 34, `128-bit serial ${serial}`)

  const hour = await ca.sign(await createCsr(generateKeyPair(), WEB), WEB, HOUR_MS)
  t.equal(hour.notAfter.getTime() - hour.notBefore.getTime(), HOUR_MS + 60_000, 'the lifetime can be chosen')
})

t.test('the CA decides the identity: names asked for in the CSR are ignored', async (t) => {
  const keys = await toWebCryptoKeys(generateKeyPair())
  const greedy = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=admin, O=system:masters',
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [new x509.SubjectAlternativeNameExtension([
      { type: 'url', value: 'spiffe://cluster.local/ns/kube-system/sa/admin' },
      { type: 'dns', value: 'evil.example' },
      { type: 'ip', value: '10.0.0.1' }
    ]), new x509.BasicConstraintsExtension(true)]
  })
  const signed = await ca.sign(greedy.toString('pem'), WEB)
  const dir = await tempDir(t)
  await writeFiles(dir, { 'leaf.pem': signed.certChain })
  t.same(await subjectAltNames('leaf.pem', dir), [`URI:${WEB}`])
  t.equal((await opensslOk(['x509', '-in', 'leaf.pem', '-noout', '-subject'], dir)).trim(), 'subject=', 'empty subject')
  t.notOk(new X509Certificate(signed.certChain).ca, 'not a CA, whatever the CSR asked')
})

t.test('sign() refuses bad CSRs and foreign identities', async (t) => {
  const keyPair = generateKeyPair()
  const csr = await createCsr(keyPair, WEB)
  await t.rejects(ca.sign('garbage', WEB), { name: 'CertificateError', message: /not a PEM PKCS#10 certificate request/ })

  // Change one letter of the requested SAN ('sa/web' → 'sa/xeb'): the body no longer matches its signature.
  const der = Buffer.from(csr.replace(/-----[^-]+-----|\s/g, ''), 'base64')
  const at = der.indexOf('sa/web')
  der[at + 3] = 'x'.charCodeAt(0)
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`
  await t.rejects(ca.sign(tampered, WEB), { name: 'CertificateError', message: /signature does not verify/ })

  const p384 = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify'])
  const wrongCurve = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: p384, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' }
  })
  await t.rejects(ca.sign(wrongCurve.toString('pem'), WEB), { message: /must be ECDSA P-256, not ec secp384r1/ })

  await t.rejects(ca.sign(csr, 'spiffe://example.org/ns/shop/sa/web'), { message: /outside this CA's trust domain cluster.local/ })
  await t.rejects(ca.sign(csr, 'spiffe://cluster.local/ns/shop'), CertificateError)
  await t.rejects(ca.sign(csr, WEB, 0), ConfigError)
})

t.test('save() then load() round-trips; load() checks what it is given', async (t) => {
  const dir = await tempDir(t)
  const files: CaFiles = { certFile: join(dir, 'ca.pem'), keyFile: join(dir, 'ca.key') }
  await ca.save(files)
  t.equal((await stat(files.keyFile)).mode & 0o777, 0o600, 'the key file is private')
  const loaded = await CertificateAuthority.load({ ...files, trustDomain: 'cluster.local' })
  t.same(loaded.trustBundle, ca.trustBundle)
  t.equal(loaded.notAfter.getTime(), ca.notAfter.getTime())
  await writeFiles(dir, { 'root.pem': ca.trustBundle[0] as string, 'leaf.pem': await signedFor(WEB, loaded) })
  t.equal((await openssl(['verify', '-CAfile', 'root.pem', 'leaf.pem'], dir)).code, 0, 'the loaded CA signs for the same root')

  await otherCa.save({ certFile: join(dir, 'other.pem'), keyFile: join(dir, 'other.key') })
  await t.rejects(CertificateAuthority.load({ certFile: files.certFile, keyFile: join(dir, 'other.key'), trustDomain: 'cluster.local' }),
    { name: 'CertificateError', message: /key does not belong to the certificate/ })
  await t.rejects(CertificateAuthority.load({ ...files, certFile: join(dir, 'missing.pem'), trustDomain: 'cluster.local' }),
    { name: 'ConfigError', message: /cannot read CA file .*missing.pem/ })
  await t.rejects(CertificateAuthority.load({ ...files, trustDomain: 'Not A Domain' }), ConfigError)

  await writeFiles(dir, { 'leaf.key': '-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n' })
  await t.rejects(CertificateAuthority.load({ ...files, keyFile: join(dir, 'leaf.key'), trustDomain: 'cluster.local' }),
    { message: 'the CA key file holds no readable PEM private key' })
  await t.rejects(CertificateAuthority.load({ certFile: join(dir, 'leaf.pem'), keyFile: files.keyFile, trustDomain: 'cluster.local' }),
    { message: /is not a CA certificate/ })
})

t.test('an intermediate CA (made by openssl) issues chains that lead to the root', async (t) => {
  const dir = await tempDir(t)
  await ca.save({ certFile: join(dir, 'root.pem'), keyFile: join(dir, 'root.key') })
  const intermediate = await opensslIssue(dir, 'intermediate', { cert: 'root.pem', key: 'root.key' }, [
    'basicConstraints=critical,CA:TRUE,pathlen:0',
    'keyUsage=critical,keyCertSign,cRLSign',
    'subjectKeyIdentifier=hash',
    'authorityKeyIdentifier=keyid'
  ])
  const options = { certFile: join(dir, intermediate.cert), keyFile: join(dir, intermediate.key), trustDomain: 'cluster.local' }
  await t.rejects(CertificateAuthority.load(options), { message: /must end with a self-signed root/ })
  await t.rejects(CertificateAuthority.load({ ...options, chainFile: join(dir, 'root.key') }), CertificateError)

  const sub = await CertificateAuthority.load({ ...options, chainFile: join(dir, 'root.pem') })
  t.same(sub.trustBundle, ca.trustBundle, 'the trust bundle is the root, not the intermediate')
  const chain = await signedFor(WEB, sub)
  t.equal(splitPem(chain).length, 2, 'leaf + intermediate')
  await writeFiles(dir, { 'chain.pem': chain, 'leaf.pem': splitPem(chain)[0] as string })
  const result = await openssl(['verify', '-CAfile', 'root.pem', '-untrusted', intermediate.cert, 'leaf.pem'], dir)
  t.equal(result.code, 0, result.stderr)
  t.equal(verifyPeerCertificate(chain, ca.trustBundle, WEB), WEB)
  t.throws(() => verifyPeerCertificate(splitPem(chain)[0] as string, ca.trustBundle, WEB), { name: 'PeerCertificateError', problem: 'untrusted' },
    'without the intermediate the leaf does not lead to the root')

  // save() of an intermediate keeps its chain, so load() needs no chainFile.
  await sub.save({ certFile: join(dir, 'sub.pem'), keyFile: join(dir, 'sub.key') })
  const reloaded = await CertificateAuthority.load({ certFile: join(dir, 'sub.pem'), keyFile: join(dir, 'sub.key'), trustDomain: 'cluster.local' })
  t.same(reloaded.trustBundle, ca.trustBundle)
})

t.test('issueServingCertificate() names the hosts as DNS / IP SANs', async (t) => {
  const serving = await ca.issueServingCertificate(['localhost', '127.0.0.1', '::1', 'ambit-controller.ambit-system.svc'])
  const dir = await tempDir(t)
  await writeFiles(dir, { 'root.pem': ca.trustBundle[0] as string, 'serving.pem': serving.certChain })
  t.same(await subjectAltNames('serving.pem', dir),
    ['DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:0:0:0:0:0:0:0:1', 'DNS:ambit-controller.ambit-system.svc'])
  const result = await openssl(['verify', '-purpose', 'sslserver', '-CAfile', 'root.pem', 'serving.pem'], dir)
  t.equal(result.code, 0, result.stderr)
  t.match(serving.key, /^-----BEGIN PRIVATE KEY-----/)
  await t.rejects(ca.issueServingCertificate([]), ConfigError)
  await t.rejects(ca.issueServingCertificate(['not a host']), ConfigError)
})

t.test('the CA private key does not show in JSON or inspect()', async (t) => {
  const dir = await tempDir(t)
  await ca.save({ certFile: join(dir, 'ca.pem'), keyFile: join(dir, 'ca.key') })
  const keyBody = (await readFile(join(dir, 'ca.key'), 'utf8')).split('\n')[1] as string
  for (const text of [JSON.stringify(ca), inspect(ca, { showHidden: true, depth: 10 })]) {
    t.notMatch(text, /PRIVATE KEY/)
    t.notOk(text.includes(keyBody))
  }
})

t.test('NodeTokens', async (t) => {
  const tokens = new NodeTokens()
  const token = tokens.tokenFor('node-a')
  t.match(token, /^node\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/)
  t.same(tokens.authenticate(token), { node: 'node-a' })
  t.same(new NodeTokens('a shared secret of 32 bytes....').tokenFor('node-a'),
    new NodeTokens('a shared secret of 32 bytes....').tokenFor('node-a'), 'a given secret gives the same tokens')
  t.equal(new NodeTokens().authenticate(token), undefined, 'another secret does not accept it')

  const [prefix, , mac] = token.split('.')
  const forged = `${prefix ?? ''}.${Buffer.from('node-b').toString('base64url')}.${mac ?? ''}`
  t.equal(tokens.authenticate(forged), undefined, 'the MAC binds the node name')
  const flipped = token.slice(0, -2) + (token.endsWith('AA') ? 'AB' : 'AA')
  for (const bad of [flipped, '', 'node', 'node..', `${token}.x`, token.replace(/^node/, 'nod'), 'Bearer x']) {
    t.equal(tokens.authenticate(bad), undefined, `refuses '${bad.slice(0, 20)}'`)
  }
  t.throws(() => new NodeTokens('short'), ConfigError)
  t.throws(() => tokens.tokenFor('node a/b'), ConfigError)
})

/** A running CA server where node-a runs a shop/web pod, and a log of what it wrote. */
async function startServer (t: Teardown, signer: CaSigner = ca): Promise<{ server: CaServer, tokens: NodeTokens, logs: string[] }> {
  const tokens = new NodeTokens()
  const pods: Record<string, string[]> = { 'node-a': ['shop/web'], 'node-b': ['shop/db'] }
  const logs: string[] = []
  const sink = new Writable({ write (chunk: Buffer, _encoding, done) { logs.push(chunk.toString()); done() } })
  const server = await startCaServer({
    ca: signer,
    host: '127.0.0.1',
    port: 0,
    authorizer: nodeTokenAuthorizer(tokens, (node, namespace, sa) => pods[node]?.includes(`${namespace}/${sa}`) ?? false),
    logger: pino({ level: 'debug' }, sink)
  })
  t.teardown(() => server.close())
  return { server, tokens, logs }
}

interface RawReply { status: number, headers: Record<string, unknown>, body: { code?: string, message?: string, trustBundle?: string[] } }

/** One HTTPS request by hand, for what CaClient never sends. */
function raw (server: CaServer, method: string, path: string, headers: Record<string, string>, body?: string): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, server.url), { method, headers, ca: [...ca.trustBundle], agent: false }, (res) => {
      let text = ''
      res.on('data', (chunk: Buffer) => { text += chunk.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) as RawReply['body'] }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

t.test('the CA server issues certificates to nodes running the service account', async (t) => {
  const { server, tokens, logs } = await startServer(t)
  const token = tokens.tokenFor('node-a')
  const client = new CaClient({ url: server.url, token, trustBundle: ca.trustBundle })
  const identity = await client.requestCertificate('shop', 'web', 'cluster.local')
  t.equal(identity.spiffeId, WEB)
  t.equal(verifyPeerCertificate(identity.certChain, ca.trustBundle, WEB), WEB)
  t.same(identity.trustBundle, ca.trustBundle)
  t.match(identity.key, /^-----BEGIN PRIVATE KEY-----/)
  t.ok(Math.abs(identity.notAfter.getTime() - Date.now() - 24 * HOUR_MS) < 10_000, 'valid for 24 h')
  t.same(await client.fetchTrustBundle(), ca.trustBundle)

  const issued = logs.find((line) => line.includes('certificate issued'))
  t.match(issued, /"node":"node-a"/)
  t.match(issued, WEB)
  const secretPart = token.split('.')[2] as string
  t.notOk(logs.some((line) => line.includes(secretPart) || line.includes('PRIVATE KEY')), 'no token or key in the logs')
})

t.test('the CA server refuses with clear reasons', async (t) => {
  const { server, tokens, logs } = await startServer(t)
  const json = { 'content-type': 'application/json' }
  const auth = { ...json, authorization: `Bearer ${tokens.tokenFor('node-a')}` }
  const csr = await createCsr(generateKeyPair(), WEB)

  const nodeB = new CaClient({ url: server.url, token: tokens.tokenFor('node-b'), trustBundle: ca.trustBundle })
  const refusal = await nodeB.requestCertificate('shop', 'web', 'cluster.local').catch((err: unknown) => err)
  t.type(refusal, CaRefusedError)
  t.match(refusal, { status: 403, message: 'the CA refused: node node-b has no pod with service account shop/web' })

  const stranger = new CaClient({ url: server.url, token: new NodeTokens().tokenFor('node-a'), trustBundle: ca.trustBundle })
  await t.rejects(stranger.requestCertificate('shop', 'web', 'cluster.local'),
    { name: 'CaRefusedError', status: 401, message: /the bearer token is not valid for any node/ })

  const body = (fields: Record<string, string>): string => JSON.stringify({ csr, namespace: 'shop', serviceAccount: 'web', ...fields })
  const cases: Array<[string, Promise<RawReply>, number, string, RegExp]> = [
    ['no token', raw(server, 'POST', '/v1/certificates', json, body({})), 401, 'UNAUTHENTICATED', /missing bearer token/],
    ['garbage CSR', raw(server, 'POST', '/v1/certificates', auth, body({ csr: 'garbage' })), 400, 'BAD_REQUEST', /PKCS#10/],
    ['not JSON', raw(server, 'POST', '/v1/certificates', auth, '{csr'), 400, 'BAD_REQUEST', /must be JSON/],
    ['no namespace', raw(server, 'POST', '/v1/certificates', auth, JSON.stringify({ csr, serviceAccount: 'web' })),
      400, 'BAD_REQUEST', /'namespace' must be a non-empty string/],
    ['bad namespace', raw(server, 'POST', '/v1/certificates', auth, body({ namespace: 'Shop!' })), 400, 'BAD_REQUEST',
      /namespace 'Shop!' is not a DNS-1123 label/],
    ['too large', raw(server, 'POST', '/v1/certificates', auth, body({ csr: 'x'.repeat(70_000) })), 413, 'PAYLOAD_TOO_LARGE',
      /larger than 65536 bytes/],
    ['too large, streamed', raw(server, 'POST', '/v1/certificates', { ...auth, 'transfer-encoding': 'chunked' },
      body({ csr: 'x'.repeat(200_000) })), 413, 'PAYLOAD_TOO_LARGE', /larger than 65536 bytes/],
    ['unknown path', raw(server, 'GET', '/v1/nothing', {}), 404, 'NOT_FOUND', /no such resource/],
    ['wrong method', raw(server, 'GET', '/v1/certificates', auth), 405, 'METHOD_NOT_ALLOWED', /use POST/]
  ]
  for (const [name, reply, status, code, message] of cases) {
    const { status: got, body: answer } = await reply
    t.equal(got, status, name)
    t.match(answer, { code, message }, name)
  }
  t.equal((await raw(server, 'GET', '/v1/certificates', {})).headers.allow, 'POST')
  const bundle = await raw(server, 'GET', '/v1/trust-bundle', {})
  t.same(bundle.body, { trustBundle: ca.trustBundle }, 'the trust bundle is public')
  t.ok(logs.some((line) => line.includes('node node-b has no pod')), 'refusals are logged')
})

t.test('CaClient checks the server and what it returns', async (t) => {
  const { server, tokens } = await startServer(t)
  const token = tokens.tokenFor('node-a')

  const misled = new CaClient({ url: server.url, token, trustBundle: otherCa.trustBundle })
  const err = await misled.requestCertificate('shop', 'web', 'cluster.local').catch((e: unknown) => e)
  t.type(err, CertificateError, 'a server certificate from another CA is refused')
  t.notOk(err instanceof CaRefusedError)
  t.match(err, { message: /is not trusted/ })

  /** A server that proves itself with `ca` but signs differently. */
  async function clientOf (sign: CaSigner['sign']): Promise<CaClient> {
    const signer: CaSigner = { trustDomain: ca.trustDomain, trustBundle: ca.trustBundle, issueServingCertificate: ca.issueServingCertificate.bind(ca), sign }
    const { server, tokens } = await startServer(t, signer)
    return new CaClient({ url: server.url, token: tokens.tokenFor('node-a'), trustBundle: ca.trustBundle })
  }
  const foreign = await clientOf((csr, id, ttl) => otherCa.sign(csr, id, ttl))
  await t.rejects(foreign.requestCertificate('shop', 'web', 'cluster.local'),
    { name: 'PeerCertificateError', problem: 'untrusted', message: /the CA returned an unusable certificate for spiffe:\/\/cluster.local\/ns\/shop\/sa\/web/ })
  const wrongId = await clientOf((csr, _id, ttl) => ca.sign(csr, 'spiffe://cluster.local/ns/shop/sa/admin', ttl))
  await t.rejects(wrongId.requestCertificate('shop', 'web', 'cluster.local'), { name: 'PeerCertificateError', problem: 'unexpected-identity' })
  const wrongKey = await clientOf(async (_csr, id, ttl) => ca.sign(await createCsr(generateKeyPair(), id), id, ttl))
  await t.rejects(wrongKey.requestCertificate('shop', 'web', 'cluster.local'), { message: /that is not for our key/ })

  const closed = await startServer(t)
  await closed.server.close()
  const nobody = new CaClient({ url: closed.server.url, token, trustBundle: ca.trustBundle, timeoutMs: 5000 })
  await t.rejects(nobody.requestCertificate('shop', 'web', 'cluster.local'), CaUnavailableError)
  t.ok(PeerCertificateError.prototype instanceof CertificateError)
})

t.test('issued identities carry mutual TLS, each end checking the other', async (t) => {
  const { server, tokens } = await startServer(t)
  const identityOf = (node: string, sa: string): Promise<TlsIdentity> =>
    new CaClient({ url: server.url, token: tokens.tokenFor(node), trustBundle: ca.trustBundle })
      .requestCertificate('shop', sa, 'cluster.local')
  const [web, db] = await Promise.all([identityOf('node-a', 'web'), identityOf('node-b', 'db')])

  const seenByServer: string[] = []
  const tlsServer = createTlsServer({ ...tlsOptions(db), requestCert: true, rejectUnauthorized: true }, (socket) => {
    seenByServer.push(verifyPeerCertificate(peerCertificateChain(socket), db.trustBundle, WEB))
    socket.end('hello')
  })
  tlsServer.listen(0, '127.0.0.1')
  await new Promise((resolve) => tlsServer.once('listening', resolve))
  t.teardown(() => new Promise((resolve) => tlsServer.close(resolve)))
  const port = (tlsServer.address() as { port: number }).port

  const socket: TLSSocket = connect({
    host: '127.0.0.1',
    port,
    secureContext: createSecureContext(tlsOptions(web)),
    // SPIFFE certificates have no DNS names: the SPIFFE id check below replaces the host name check.
    checkServerIdentity: () => undefined
  })
  t.teardown(() => socket.destroy())
  await new Promise((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
  t.equal(verifyPeerCertificate(peerCertificateChain(socket), web.trustBundle, 'spiffe://cluster.local/ns/shop/sa/db'),
    'spiffe://cluster.local/ns/shop/sa/db')
  const greeting = await new Promise<string>((resolve) => {
    let text = ''
    socket.on('data', (chunk: Buffer) => { text += chunk.toString() })
    socket.on('end', () => resolve(text))
  })
  t.equal(greeting, 'hello')
  t.same(seenByServer, [WEB])
  t.equal(peerCertificateChain(socket)[0]?.fingerprint256, new X509Certificate(db.certChain).fingerprint256)
})
