/**
 * Test helpers for certificates: a temp dir that disappears after the test, the real `openssl`
 * binary, and certificates made by openssl that our CA would refuse to make (an intermediate
 * CA, a leaf with two URI SANs), signed with a key from CertificateAuthority.save().
 *
 *   const dir = await tempDir(t)
 *   const { code, stdout } = await openssl(['verify', '-CAfile', 'root.pem', 'leaf.pem'], dir)
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** The part of a tap Test this helper needs. */
export interface Teardown {
  teardown (fn: () => unknown): void
}

export interface OpensslResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export async function tempDir (t: Teardown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-pki-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Runs openssl in `cwd`; resolves with its exit code and output (never rejects on failure). */
export function openssl (args: readonly string[], cwd: string): Promise<OpensslResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** Like openssl(), but throws with openssl's stderr when it fails. */
export async function opensslOk (args: readonly string[], cwd: string): Promise<string> {
  const result = await openssl(args, cwd)
  if (result.code !== 0) throw new Error(`openssl ${args.join(' ')} failed (${result.code}): ${result.stderr}`)
  return result.stdout
}

/** The SAN entries openssl prints for a certificate, e.g. ['URI:spiffe://...']. */
export async function subjectAltNames (certFile: string, cwd: string): Promise<string[]> {
  const out = await opensslOk(['x509', '-in', certFile, '-noout', '-ext', 'subjectAltName'], cwd)
  // First line is the extension title ('X509v3 Subject Alternative Name: critical').
  return out.split('\n').slice(1).join(',').split(',').map((s) => s.trim()).filter((s) => s !== '')
}

/**
 * A certificate for a new EC P-256 key signed by `issuer` with openssl; `extensions` are
 * openssl config lines (e.g. 'basicConstraints=critical,CA:TRUE'). Returns the file names.
 */
export async function opensslIssue (dir: string, name: string, issuer: { cert: string, key: string }, extensions: readonly string[]):
Promise<{ cert: string, key: string, pem: string }> {
  const key = `${name}.key`
  const cert = `${name}.pem`
  await opensslOk(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key], dir)
  await opensslOk(['req', '-new', '-key', key, '-subj', `/CN=${name}`, '-out', `${name}.csr`], dir)
  await writeFile(join(dir, `${name}.ext`), extensions.join('\n') + '\n')
  await opensslOk(['x509', '-req', '-in', `${name}.csr`, '-CA', issuer.cert, '-CAkey', issuer.key, '-CAcreateserial',
    '-days', '30', '-sha256', '-extfile', `${name}.ext`, '-out', cert], dir)
  return { cert, key, pem: await readFile(join(dir, cert), 'utf8') }
}
