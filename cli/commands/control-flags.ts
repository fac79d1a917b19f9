/** Flags shared by the commands that run a control plane (controller, up). */
import type { FlagSpec, ParsedArgs } from '../command.js'
import { listFlag, numberFlag, stringFlag } from '../command.js'
import { ConfigError } from '../../policy/errors.js'
import { DEFAULT_ROOT_NAMESPACE, DEFAULT_TRUST_DOMAIN } from '../../policy/state.js'
import type { ControlPlaneOptions } from '../../control/control-plane.js'
import type { Store } from '../../control/store.js'
import type { Logger } from 'pino'

export const MESH_FLAGS: Readonly<Record<string, FlagSpec>> = {
  'trust-domain': { type: 'string', value: 'DOMAIN', default: DEFAULT_TRUST_DOMAIN, description: 'SPIFFE trust domain' },
  'root-namespace': { type: 'string', value: 'NS', default: DEFAULT_ROOT_NAMESPACE, description: 'namespace whose policies apply mesh-wide' }
}

export const CONTROL_PLANE_FLAGS: Readonly<Record<string, FlagSpec>> = {
  ...MESH_FLAGS,
  'ca-cert': { type: 'string', value: 'FILE', description: 'root CA certificate (PEM); a fresh root is generated when absent' },
  'ca-key': { type: 'string', value: 'FILE', description: 'root CA private key (PEM), with --ca-cert' },
  'ca-address': { type: 'string', value: 'HOST', default: '127.0.0.1', description: 'address the CA signing server listens on' },
  'ca-port': { type: 'string', value: 'PORT', default: '15012', description: 'CA signing server port (HTTPS)' },
  'credentials-dir': { type: 'string', value: 'DIR', description: 'write ca-root.pem and NODE.token files there, for ztunnels in other processes' },
  'node-token-secret-file': { type: 'string', value: 'FILE', description: 'secret the node tokens derive from (random per start when absent)' }
}

export async function controlPlaneOptions (args: ParsedArgs, store: Store, logger: Logger): Promise<ControlPlaneOptions> {
  const caCert = stringFlag(args, 'ca-cert')
  const caKey = stringFlag(args, 'ca-key')
  if ((caCert === undefined) !== (caKey === undefined)) throw new ConfigError(`--ca-cert and --ca-key go together`)
  const secretFile = stringFlag(args, 'node-token-secret-file')
  const credentialsDir = stringFlag(args, 'credentials-dir')
  return {
    store,
    files: listFlag(args, 'file'),
    trustDomain: stringFlag(args, 'trust-domain') ?? DEFAULT_TRUST_DOMAIN,
    rootNamespace: stringFlag(args, 'root-namespace') ?? DEFAULT_ROOT_NAMESPACE,
    logger,
    ...(caCert !== undefined && caKey !== undefined && { caFiles: { certFile: caCert, keyFile: caKey } }),
    caHost: stringFlag(args, 'ca-address') ?? '127.0.0.1',
    caPort: numberFlag(args, 'ca-port') ?? 15012,
    ...(credentialsDir !== undefined && { credentialsDir }),
    ...(secretFile !== undefined && { nodeTokenSecret: (await readSecret(secretFile)) })
  }
}

async function readSecret (file: string): Promise<string> {
  const { readFile } = await import('node:fs/promises')
  try {
    return (await readFile(file, 'utf8')).trim()
  } catch (err) {
    throw new ConfigError(`cannot read --node-token-secret-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}
