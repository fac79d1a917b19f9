/**
 * The CA's authenticator in a cluster: a ztunnel proves its node with its projected
 * ServiceAccount token (audience 'ambit-ca'). The controller asks the API server about it with
 * a TokenReview, requires the ztunnel's ServiceAccount, and reads which pod the token is bound
 * to; that pod's spec.nodeName is the caller's node. The CA's usual rule then applies: only
 * service accounts of pods scheduled on that node.
 *
 * A waypoint pod proves itself the same way with its own ServiceAccount's token, which is
 * named after its Gateway (k8s/waypoint-template.yaml). It is accepted when a Gateway of that
 * name and class ambit-waypoint exists in the token's namespace and the token's pod is one of
 * its instances (labelled gateway.networking.k8s.io/gateway-name); it then speaks for that
 * pod's node, for the waypoint's own identity only.
 *
 * Tokens are never logged. A token accepted once is remembered (by its hash) for a short while,
 * so that a ztunnel asking for many certificates at start costs one review.
 */
import { createHash } from 'node:crypto'
import { AuthenticationV1Api, CoreV1Api, type KubeConfig, type V1TokenReviewStatus } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import type { CaAuthorizer, NodeCredential } from './ca-server.js'
import { AMBIT_NAMESPACE, CA_TOKEN_AUDIENCE, ZTUNNEL_SERVICE_ACCOUNT } from './kubernetes-access.js'
import { apiError, statusOf } from './kubernetes-api.js'
import { CaRefusedError, ConfigError } from '../policy/errors.js'
import { namespaceProblem, serviceAccountProblem } from '../policy/identity.js'
import { GATEWAY_NAME_LABEL } from '../policy/resolve.js'

export interface ServiceAccountRef {
  readonly namespace: string
  readonly name: string
}

/** The ServiceAccount of the ztunnel DaemonSet (k8s/). */
export const DEFAULT_ZTUNNEL_SERVICE_ACCOUNT: ServiceAccountRef = { namespace: AMBIT_NAMESPACE, name: ZTUNNEL_SERVICE_ACCOUNT }

/** 'namespace/name' (as the --ztunnel-service-account flag gives it). */
export function parseServiceAccount (text: string): ServiceAccountRef {
  const [namespace = '', name = '', ...rest] = text.split('/')
  const problem = rest.length > 0 ? 'expected NAMESPACE/NAME' : namespaceProblem(namespace) ?? serviceAccountProblem(name)
  if (problem !== undefined) throw new ConfigError(`'${text}' is not a ServiceAccount: ${problem}`)
  return { namespace, name }
}

export interface TokenReviewOptions {
  readonly kubeConfig: KubeConfig
  readonly ztunnelServiceAccount?: ServiceAccountRef
  /** The audiences a token must be for (default ['ambit-ca']). */
  readonly audiences?: readonly string[]
  /** A pod from a local cache (the informers'); the API server is asked for pods not in it. */
  readonly cachedPod?: (namespace: string, name: string) => PodPlacement | undefined
  /** Whether namespace/name is a Gateway of class ambit-waypoint (none is when absent). */
  readonly isWaypoint?: (namespace: string, name: string) => boolean
  /** How long an accepted token is remembered (default 30 s; 0 asks every time). */
  readonly cacheMs?: number
  readonly logger?: Logger
}

export interface PodPlacement {
  readonly nodeName?: string
  readonly uid?: string
  readonly labels?: Readonly<Record<string, string>>
}

const POD_NAME = 'authentication.kubernetes.io/pod-name'
const POD_UID = 'authentication.kubernetes.io/pod-uid'
const DEFAULT_CACHE_MS = 30_000
const MAX_CACHED = 10_000

/** The pod a reviewed token is bound to. */
export interface BoundPod {
  readonly pod: string
  readonly uid?: string
}

/** The ServiceAccount and pod a review's token is bound to, or why the token proves nothing. */
export function reviewedPod (
  status: V1TokenReviewStatus | undefined, audiences: readonly string[]
): (BoundPod & { serviceAccount: ServiceAccountRef }) | { refused: string } {
  if (status?.authenticated !== true) return { refused: `the token is not valid (${status?.error ?? 'not authenticated'})` }
  // An API server that ignores audiences answers none: the token may be meant for someone else.
  if (!(status.audiences ?? []).some((a) => audiences.includes(a))) return { refused: `the token is not for audience ${audiences.join(', ')}` }
  const username = status.user?.username ?? ''
  const [prefix, account, namespace = '', name = '', ...rest] = username.split(':')
  if (prefix !== 'system' || account !== 'serviceaccount' || rest.length > 0 || namespace === '' || name === '') {
    return { refused: `the token is ${username === '' ? 'nobody' : username}'s, not a ServiceAccount's` }
  }
  const pod = status.user?.extra?.[POD_NAME]?.[0]
  if (pod === undefined) return { refused: 'the token is not bound to a pod (a projected token is required)' }
  const uid = status.user?.extra?.[POD_UID]?.[0]
  return { serviceAccount: { namespace, name }, pod, ...(uid !== undefined && { uid }) }
}

/** The pod a review's token is bound to, or why the token does not authenticate a ztunnel. */
export function ztunnelPod (
  status: V1TokenReviewStatus | undefined, serviceAccount: ServiceAccountRef, audiences: readonly string[]
): BoundPod | { refused: string } {
  const bound = reviewedPod(status, audiences)
  if ('refused' in bound) return bound
  if (!sameAccount(bound.serviceAccount, serviceAccount)) {
    return { refused: `the token is ${usernameOf(bound.serviceAccount)}'s, not ${usernameOf(serviceAccount)}'s` }
  }
  return bound.uid === undefined ? { pod: bound.pod } : { pod: bound.pod, uid: bound.uid }
}

function usernameOf (account: ServiceAccountRef): string {
  return `system:serviceaccount:${account.namespace}:${account.name}`
}

function sameAccount (a: ServiceAccountRef, b: ServiceAccountRef): boolean {
  return a.namespace === b.namespace && a.name === b.name
}

export class TokenReviewAuthenticator {
  private readonly authentication: AuthenticationV1Api
  private readonly core: CoreV1Api
  private readonly serviceAccount: ServiceAccountRef
  private readonly audiences: readonly string[]
  private readonly accepted = new Map<string, { readonly credential: NodeCredential, readonly until: number }>()

  constructor (private readonly options: TokenReviewOptions) {
    this.authentication = options.kubeConfig.makeApiClient(AuthenticationV1Api)
    this.core = options.kubeConfig.makeApiClient(CoreV1Api)
    this.serviceAccount = options.ztunnelServiceAccount ?? DEFAULT_ZTUNNEL_SERVICE_ACCOUNT
    this.audiences = options.audiences ?? [CA_TOKEN_AUDIENCE]
  }

  /** For CaAuthorizer.authenticate: the caller's node, or undefined when the token does not prove one. */
  readonly authenticate: CaAuthorizer['authenticate'] = async (token) => {
    const hash = createHash('sha256').update(token).digest('hex')
    const remembered = this.accepted.get(hash)
    if (remembered !== undefined && remembered.until > Date.now()) return remembered.credential
    const credential = await this.review(token)
    if (credential !== undefined) this.remember(hash, credential)
    return credential
  }

  private async review (token: string): Promise<NodeCredential | undefined> {
    let status: V1TokenReviewStatus | undefined
    try {
      const review = await this.authentication.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [...this.audiences] } }
      })
      status = review.status
    } catch (err) {
      throw this.unavailable(apiError('TokenReview', err))
    }
    const bound = reviewedPod(status, this.audiences)
    if ('refused' in bound) return this.refuse(bound.refused)
    const account = bound.serviceAccount
    if (sameAccount(account, this.serviceAccount)) return await this.nodeOf(account.namespace, bound)
    if (this.options.isWaypoint?.(account.namespace, account.name) === true) return await this.waypointNode(account, bound)
    return this.refuse(`the token is ${usernameOf(account)}'s, not ${usernameOf(this.serviceAccount)}'s nor a waypoint's`)
  }

  /** The node of the pod the token is bound to. */
  private async nodeOf (namespace: string, bound: BoundPod, check?: (pod: PodPlacement) => string | undefined): Promise<NodeCredential | undefined> {
    const pod = await this.placement(namespace, bound.pod)
    if (pod === undefined) return this.refuse(`the token's pod ${namespace}/${bound.pod} does not exist`)
    // A pod of the same name created since is not the one the token was bound to.
    if (bound.uid !== undefined && pod.uid !== undefined && bound.uid !== pod.uid) return this.refuse(`the token's pod ${bound.pod} was replaced`)
    const problem = check?.(pod)
    if (problem !== undefined) return this.refuse(problem)
    if (pod.nodeName === undefined) return this.refuse(`the token's pod ${bound.pod} is not scheduled on a node`)
    return { node: pod.nodeName }
  }

  /** A waypoint instance speaks for its node, but only for its own identity there. */
  private async waypointNode (account: ServiceAccountRef, bound: BoundPod): Promise<NodeCredential | undefined> {
    const credential = await this.nodeOf(account.namespace, bound, (pod) => pod.labels?.[GATEWAY_NAME_LABEL] === account.name
      ? undefined
      : `the token's pod ${account.namespace}/${bound.pod} is not an instance of waypoint ${account.name}`)
    return credential === undefined ? undefined : { ...credential, only: { namespace: account.namespace, serviceAccount: account.name } }
  }

  private async placement (namespace: string, name: string): Promise<PodPlacement | undefined> {
    const cached = this.options.cachedPod?.(namespace, name)
    if (cached !== undefined) return cached
    try {
      const pod = await this.core.readNamespacedPod({ namespace, name })
      return { nodeName: pod.spec?.nodeName, uid: pod.metadata?.uid, labels: pod.metadata?.labels ?? {} }
    } catch (err) {
      if (statusOf(err) === 404) return undefined
      throw this.unavailable(apiError(`reading pod ${namespace}/${name}`, err))
    }
  }

  private remember (hash: string, credential: NodeCredential): void {
    const ttl = this.options.cacheMs ?? DEFAULT_CACHE_MS
    if (ttl <= 0) return
    if (this.accepted.size >= MAX_CACHED) this.accepted.clear()
    this.accepted.set(hash, { credential, until: Date.now() + ttl })
  }

  private refuse (reason: string): undefined {
    this.options.logger?.warn({ reason }, 'CA caller not authenticated')
    return undefined
  }

  /** 503 to the caller (CaClient retries), not 401: its token may be fine. */
  private unavailable (err: Error): CaRefusedError {
    this.options.logger?.error({ err: err.message }, 'cannot check a CA caller\'s token')
    return new CaRefusedError('cannot check the token with the Kubernetes API now; try again', 503)
  }
}
