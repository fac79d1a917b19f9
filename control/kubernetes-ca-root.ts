/**
 * In a cluster the root CA lives in the Secret CA_ROOT_SECRET (ambit-system/ambit-ca-root), so
 * a restarted controller keeps signing under the root every proxy already trusts. The first
 * controller to start creates it; two starting at once cannot both win, since a create of an
 * existing Secret fails (409) and the loser loads the winner's. The key is never logged.
 */
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { CertificateAuthority } from './ca.js'
import type { CaRoot } from './control-plane.js'
import { CA_ROOT_SECRET } from './kubernetes-access.js'
import { apiError, statusOf } from './kubernetes-api.js'
import { ConfigError } from '../policy/errors.js'
import { splitPem } from '../policy/certs.js'

export interface CaRootSecretOptions {
  readonly kubeConfig: KubeConfig
  readonly trustDomain: string
  readonly logger?: Logger
}

const { namespace, name } = CA_ROOT_SECRET

/** Loads the root from its Secret, creating the Secret with a fresh root when there is none. */
export async function loadOrCreateCaRoot (options: CaRootSecretOptions): Promise<CaRoot> {
  const core = options.kubeConfig.makeApiClient(CoreV1Api)
  const existing = await readSecret(core)
  if (existing !== undefined) {
    options.logger?.info({ secret: `${namespace}/${name}` }, 'CA root loaded from its Secret')
    return await caRootFromSecret(existing, options.trustDomain)
  }
  const fresh = await CertificateAuthority.create({ trustDomain: options.trustDomain })
  try {
    await core.createNamespacedSecret({ namespace, body: secretOf(fresh) })
    options.logger?.info({ secret: `${namespace}/${name}` }, 'CA root created in a new Secret')
    return { ca: fresh, extraRoots: [] }
  } catch (err) {
    if (statusOf(err) !== 409) throw apiError(`creating Secret ${namespace}/${name}`, err)
  }
  // Another controller created it first: use its root, not ours.
  const winner = await readSecret(core)
  if (winner === undefined) throw new ConfigError(`Secret ${namespace}/${name} was created and deleted at once; start again`)
  options.logger?.info({ secret: `${namespace}/${name}` }, 'CA root loaded from the Secret another controller created')
  return await caRootFromSecret(winner, options.trustDomain)
}

/** The CA a Secret holds (ca.crt, ca.key, optional trust-bundle.pem). */
export async function caRootFromSecret (secret: V1Secret, trustDomain: string): Promise<CaRoot> {
  const certificate = secretText(secret, CA_ROOT_SECRET.certKey)
  const key = secretText(secret, CA_ROOT_SECRET.keyKey)
  if (certificate === undefined || key === undefined) {
    throw new ConfigError(`Secret ${namespace}/${name} must hold ${CA_ROOT_SECRET.certKey} and ${CA_ROOT_SECRET.keyKey}`)
  }
  const ca = await CertificateAuthority.fromPem({ trustDomain, certificate, key })
  return { ca, extraRoots: splitPem(secretText(secret, CA_ROOT_SECRET.trustBundleKey) ?? '') }
}

function secretOf (ca: CertificateAuthority): V1Secret {
  const { certificate, key } = ca.exportPem()
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'ambit' } },
    data: {
      [CA_ROOT_SECRET.certKey]: Buffer.from(certificate).toString('base64'),
      [CA_ROOT_SECRET.keyKey]: Buffer.from(key).toString('base64')
    }
  }
}

async function readSecret (core: CoreV1Api): Promise<V1Secret | undefined> {
  try {
    return await core.readNamespacedSecret({ namespace, name })
  } catch (err) {
    if (statusOf(err) === 404) return undefined
    throw apiError(`reading Secret ${namespace}/${name}`, err)
  }
}

function secretText (secret: V1Secret, key: string): string | undefined {
  const encoded = secret.data?.[key]
  return encoded === undefined ? undefined : Buffer.from(encoded, 'base64').toString('utf8')
}
