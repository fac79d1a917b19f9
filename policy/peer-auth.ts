/**
 * PeerAuthentication: the mTLS mode a workload accepts, resolved as Istio does
 * (https://istio.io/latest/docs/reference/config/security/peer_authentication/ and
 * istiod's ComposePeerAuthentication):
 *
 *  - three levels: workload-specific (a selector in the workload's namespace that matches
 *    its labels) over namespace-wide (no selector, same namespace) over mesh-wide (no
 *    selector, root namespace);
 *  - a level whose mode is UNSET inherits the level above; nothing set means PERMISSIVE;
 *  - portLevelMtls counts only on a workload-specific policy; an UNSET port inherits the
 *    workload's resolved mode.
 *
 * Istio ignores a policy with a selector in the root namespace, and treats an empty
 * selector as no selector; so does ambit.
 */
import type { Labels, MtlsMode, PeerAuthenticationResource } from './resources.js'
import type { MtlsState } from './state.js'
import { selectorMatches } from './selector.js'

export const DEFAULT_MTLS_MODE: MtlsMode = 'PERMISSIVE'

export interface MtlsWorkload {
  readonly namespace: string
  readonly labels: Labels
}

export function resolveMtls (
  workload: MtlsWorkload, policies: readonly PeerAuthenticationResource[], rootNamespace: string
): MtlsState {
  const levels = applicablePolicies(workload, policies, rootNamespace)
  // Least specific first, so that each level set overrides the one before it.
  let mode: MtlsMode = DEFAULT_MTLS_MODE
  let decidedBy: PeerAuthenticationResource | undefined
  for (const policy of [levels.mesh, levels.namespace, levels.workload]) {
    if (policy?.mode !== undefined) {
      mode = policy.mode
      decidedBy = policy
    }
  }
  const ports = levels.workload === undefined ? {} : portModes(levels.workload, mode)
  return decidedBy === undefined ? { mode, ports } : { mode, ports, policy: policyKey(decidedBy) }
}

/** The mode of one target port: its port-level override, else the workload's mode. */
export function mtlsModeForPort (state: MtlsState, port: number): MtlsMode {
  return state.ports[String(port)] ?? state.mode
}

interface ApplicablePolicies {
  readonly workload?: PeerAuthenticationResource
  readonly namespace?: PeerAuthenticationResource
  readonly mesh?: PeerAuthenticationResource
}

/**
 * The one policy that counts at each level. When several match at one level Istio keeps
 * the oldest (by creation time); ambit has no timestamps, so the first by name wins.
 */
export function applicablePolicies (
  workload: MtlsWorkload, policies: readonly PeerAuthenticationResource[], rootNamespace: string
): ApplicablePolicies {
  let workloadLevel: PeerAuthenticationResource | undefined
  let namespaceLevel: PeerAuthenticationResource | undefined
  let meshLevel: PeerAuthenticationResource | undefined
  for (const policy of policies) {
    const namespace = policy.metadata.namespace
    if (!hasSelector(policy)) {
      if (namespace === rootNamespace) meshLevel = firstByName(meshLevel, policy)
      else if (namespace === workload.namespace) namespaceLevel = firstByName(namespaceLevel, policy)
    } else if (namespace === workload.namespace && namespace !== rootNamespace &&
      selectorMatches(policy.selector, workload.labels)) {
      workloadLevel = firstByName(workloadLevel, policy)
    }
  }
  return { workload: workloadLevel, namespace: namespaceLevel, mesh: meshLevel }
}

function hasSelector (policy: PeerAuthenticationResource): boolean {
  return policy.selector !== undefined && Object.keys(policy.selector).length > 0
}

function firstByName (
  current: PeerAuthenticationResource | undefined, candidate: PeerAuthenticationResource
): PeerAuthenticationResource {
  return current === undefined || candidate.metadata.name < current.metadata.name ? candidate : current
}

function portModes (policy: PeerAuthenticationResource, workloadMode: MtlsMode): Record<string, MtlsMode> {
  const ports: Record<string, MtlsMode> = {}
  for (const [port, mode] of Object.entries(policy.portLevelMtls)) {
    ports[port] = mode ?? workloadMode
  }
  return ports
}

function policyKey (policy: PeerAuthenticationResource): string {
  return `${policy.metadata.namespace}/${policy.metadata.name}`
}
