/**
 * A throwaway CA, a server and a client certificate for the peer proxy pairs, made with the
 * openssl command. ECDSA P-256, as ambit's workload certificates, so the handshakes cost the same.
 */
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { TlsFiles } from './configs.js'

const run = promisify(execFile)
const SERVER_NAME = 'server.bench'

async function openssl (dir: string, args: readonly string[]): Promise<void> {
  await run('openssl', args, { cwd: dir })
}

async function issue (dir: string, name: string, subject: string, extensions: string): Promise<void> {
  await openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${subject}`])
  await writeFile(join(dir, `${name}.ext`), extensions)
  await openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-out', `${name}.crt`, '-extfile', `${name}.ext`])
  const pem = (await readFile(join(dir, `${name}.crt`), 'utf8')) + (await readFile(join(dir, `${name}.key`), 'utf8'))
  await writeFile(join(dir, `${name}.pem`), pem)
}

export async function makeTlsFiles (dir: string): Promise<TlsFiles> {
  await openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=bench-l4-ca'])
  await issue(dir, 'server', SERVER_NAME, `subjectAltName=DNS:${SERVER_NAME}\nextendedKeyUsage=serverAuth\n`)
  await issue(dir, 'client', 'client.bench', 'subjectAltName=DNS:client.bench\nextendedKeyUsage=clientAuth\n')
  const file = (name: string): string => join(dir, name)
  return {
    ca: file('ca.pem'),
    serverName: SERVER_NAME,
    serverCert: file('server.crt'),
    serverKey: file('server.key'),
    serverPem: file('server.pem'),
    clientCert: file('client.crt'),
    clientKey: file('client.key'),
    clientPem: file('client.pem')
  }
}
