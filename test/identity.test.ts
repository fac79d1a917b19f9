/**
 * SPIFFE ids, key pairs, CSRs and peer-certificate verification (policy/identity.ts,
 * policy/certs.ts), checked against the real openssl where it has an opinion.
 */
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { CertificateAuthority } from '../control/ca.js'
import {
  certificateInfo, createCsr, generateKeyPair, privateKeyPem, verifyPeerCertificate
} from '../policy/certs.js'
import { CertificateError, PeerCertificateError, type PeerCertificateProblem } from '../policy/errors.js'
import { parseSpiffeId, principalOf, spiffeId } from '../policy/identity.js'
import { openssl, opensslIssue, opensslOk, tempDir } from './helpers/pki.js'

const WEB = 'spiffe://cluster.local/ns/shop/sa/web'

t.test('spiffeId builds and parseSpiffeId splits the Istio form', async (t) => {
  t.equal(spiffeId('cluster.local', 'shop', 'web'), WEB)
  t.same(parseSpiffeId(WEB), { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'web' })
  t.same(parseSpiffeId('spiffe://example.org/ns/kube-system/sa/my.robot-1'),
    { trustDomain: 'example.org', namespace: 'kube-system', serviceAccount: 'my.robot-1' })
  t.equal(principalOf(WEB), 'cluster.local/ns/shop/sa/web')
})

t.test('spiffeId refuses invalid segments, naming the one that is wrong', async (t) => {
  t.throws(() => spiffeId('Cluster.Local', 'shop', 'web'), { name: 'CertificateError', message: /trust domain 'Cluster.Local'/ })
  t.throws(() => spiffeId('cluster.local', 'shop/x', 'web'), { message: /namespace 'shop\/x' is not a DNS-1123 label/ })
  t.throws(() => spiffeId('cluster.local', 'shop', ''), { message: /service account '' is not a DNS-1123 subdomain/ })
  t.throws(() => spiffeId('cluster.local', 'a'.repeat(64), 'web'), { message: /namespace/ })
  t.throws(() => spiffeId('cluster.local', 'shop', 'web-'), { message: /service account 'web-'/ })
})

t.test('parseSpiffeId refuses anything but spiffe://td/ns/NS/sa/SA', async (t) => {
  const bad: Array<[string, RegExp]> = [
    ['https://cluster.local/ns/shop/sa/web', /must start with 'spiffe:\/\/'/],
    ['spiffe://cluster.local', /has no path/],
    ['spiffe://cluster.local/ns/shop', /path must be/],
    ['spiffe://cluster.local/ns/shop/sa/web/extra', /path must be/],
    ['spiffe://cluster.local/ns/shop/serviceaccount/web', /path must be/],
    ['spiffe://cluster.local/ns//sa/web', /namespace ''/],
    ['spiffe://cluster.local:8080/ns/shop/sa/web', /trust domain/],
    ['spiffe://user@cluster.local/ns/shop/sa/web', /trust domain/],
    ['spiffe://cluster.local/ns/shop/sa/web?x=1', /service account/],
    ['spiffe://cluster.local/ns/shop/sa/web#frag', /service account/],
    ['spiffe:///ns/shop/sa/web', /trust domain ''/],
    [`spiffe://cluster.local/ns/shop/sa/${'a'.repeat(2100)}`, /longer than 2048/]
  ]
  for (const [uri, message] of bad) {
    t.throws(() => parseSpiffeId(uri), { name: 'CertificateError', code: 'AMBIT_CERTIFICATE', message }, uri.slice(0, 60))
  }
  t.throws(() => principalOf('spiffe://cluster.local/ns/shop'), CertificateError)
})

t.test('generateKeyPair makes ECDSA P-256 keys; createCsr signs a request naming the SPIFFE id', async (t) => {
  const keyPair = generateKeyPair()
  t.equal(keyPair.privateKey.asymmetricKeyType, 'ec')
  t.equal(keyPair.privateKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  t.match(privateKeyPem(keyPair.privateKey), /^-----BEGIN PRIVATE KEY-----/)

  const csr = await createCsr(keyPair, WEB)
  t.match(csr, /^-----BEGIN CERTIFICATE REQUEST-----/)
  const dir = await tempDir(t)
  await writeFile(join(dir, 'web.csr'), csr)
  const result = await openssl(['req', '-in', 'web.csr', '-noout', '-verify', '-text'], dir)
  t.equal(result.code, 0, result.stderr)
  t.match(result.stdout + result.stderr, /verify OK/)
  t.match(result.stdout, `URI:${WEB}`)
  t.match(result.stdout, /prime256v1/)
  await t.rejects(createCsr(keyPair, 'spiffe://cluster.local/ns/shop'), CertificateError)
})

t.test('certificateInfo agrees with openssl', async (t) => {
  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' })
  const { certChain } = await ca.sign(await createCsr(generateKeyPair(), WEB), WEB)
  const info = certificateInfo(certChain)
  const dir = await tempDir(t)
  await writeFile(join(dir, 'leaf.pem'), certChain)
  const serial = await opensslOk(['x509', '-in', 'leaf.pem', '-noout', '-serial'], dir)
  const fingerprint = await opensslOk(['x509', '-in', 'leaf.pem', '-noout', '-fingerprint', '-sha256'], dir)
  const dates = await opensslOk(['x509', '-in', 'leaf.pem', '-noout', '-startdate', '-enddate'], dir)
  t.equal(info.spiffeId, WEB)
  t.equal(`serial=${info.serial}`, serial.trim())
  t.equal(fingerprint.trim().split('=')[1], info.fingerprint)
  const [, start, end] = /notBefore=(.*)\nnotAfter=(.*)/.exec(dates) ?? []
  t.equal(info.notBefore.getTime(), new Date(start ?? '').getTime())
  t.equal(info.notAfter.getTime(), new Date(end ?? '').getTime())
  t.equal(certificateInfo(ca.trustBundle[0] as string).spiffeId, undefined, 'a root has no SPIFFE id')
  t.throws(() => certificateInfo('no pem here'), CertificateError)
})

t.test('verifyPeerCertificate', async (t) => {
  const ca = await CertificateAuthority.create({ trustDomain: 'cluster.local' })
  const other = await CertificateAuthority.create({ trustDomain: 'cluster.local' })
  const csr = await createCsr(generateKeyPair(), WEB)
  const { certChain, notAfter } = await ca.sign(csr, WEB)
  const bundle = ca.trustBundle

  /** The problem verifyPeerCertificate reports, and its message. */
  function refusal (run: () => unknown): { problem: PeerCertificateProblem | undefined, message: string } {
    try {
      run()
    } catch (err) {
      if (err instanceof PeerCertificateError) return { problem: err.problem, message: err.message }
      throw err
    }
    return { problem: undefined, message: '' }
  }

  t.test('accepts a chain to the bundle and returns the SPIFFE id', async (t) => {
    t.equal(verifyPeerCertificate(certChain, bundle), WEB)
    t.equal(verifyPeerCertificate(certChain, bundle, WEB), WEB)
    t.equal(verifyPeerCertificate([new X509Certificate(certChain)], bundle, (id) => id.endsWith('/sa/web')), WEB)
    t.equal(verifyPeerCertificate([certChain], [new X509Certificate(bundle[0] as string)], WEB), WEB)
    t.equal(verifyPeerCertificate(certChain, [...other.trustBundle, ...bundle], WEB), WEB, 'any root of the bundle will do')
  })

  t.test('refuses, each time with its own reason', async (t) => {
    const dir = await tempDir(t)
    await ca.save({ certFile: join(dir, 'root.pem'), keyFile: join(dir, 'root.key') })
    const twoIds = await opensslIssue(dir, 'two', { cert: 'root.pem', key: 'root.key' }, [
      'basicConstraints=critical,CA:FALSE',
      `subjectAltName=URI:${WEB},URI:spiffe://cluster.local/ns/shop/sa/admin`
    ])
    const serving = await ca.issueServingCertificate(['localhost'])
    const fromOther = await other.sign(csr, WEB)

    const cases: Array<[string, PeerCertificateProblem, () => unknown]> = [
      ['another CA', 'untrusted', () => verifyPeerCertificate(fromOther.certChain, bundle, WEB)],
      ['expired', 'expired',
        () => verifyPeerCertificate(certChain, bundle, WEB, { now: new Date(notAfter.getTime() + 1000) })],
      ['not yet valid', 'not-yet-valid',
        () => verifyPeerCertificate(certChain, bundle, WEB, { now: new Date(Date.now() - 3_600_000) })],
      ['unexpected identity', 'unexpected-identity',
        () => verifyPeerCertificate(certChain, bundle, 'spiffe://cluster.local/ns/shop/sa/db')],
      ['no URI SAN', 'no-identity', () => verifyPeerCertificate(serving.certChain, bundle)],
      ['two URI SANs', 'many-identities', () => verifyPeerCertificate(twoIds.pem, bundle)],
      ['no certificate', 'malformed', () => verifyPeerCertificate([], bundle)],
      ['a CA certificate', 'malformed', () => verifyPeerCertificate(bundle[0] as string, bundle)]
    ]
    const messages = new Set<string>()
    for (const [name, problem, run] of cases) {
      const result = refusal(run)
      t.equal(result.problem, problem, name)
      messages.add(result.message)
    }
    t.equal(messages.size, cases.length, 'every refusal has its own message')
    t.match(refusal(cases[0]![2]).message, /not signed by the trust bundle/)
    t.match(refusal(cases[1]![2]).message, /expired at/)
    t.match(refusal(cases[3]![2]).message,
      'the peer is spiffe://cluster.local/ns/shop/sa/web but spiffe://cluster.local/ns/shop/sa/db was expected')
    t.equal(refusal(() => verifyPeerCertificate(certChain, bundle, () => false)).problem, 'unexpected-identity')
    t.throws(() => verifyPeerCertificate(certChain, bundle, 'x'), { code: 'AMBIT_CERTIFICATE' }, 'still a CertificateError')
  })

  t.test('a certificate really expires', async (t) => {
    const shortLived = await ca.sign(csr, WEB, 1)
    await sleep(1500)
    t.throws(() => verifyPeerCertificate(shortLived.certChain, bundle, WEB), { name: 'PeerCertificateError', problem: 'expired' })
  })
})
