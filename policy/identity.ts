/**
 * Workload identities as SPIFFE ids: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`,
 * the form Istio uses, so principals in AuthorizationPolicies read the same in both meshes.
 */
import { CertificateError } from './errors.js'

export interface WorkloadIdentity {
  readonly trustDomain: string
  readonly namespace: string
  readonly serviceAccount: string
}

const SCHEME = 'spiffe://'
// The SPIFFE spec caps an id at 2048 bytes; anything longer is not worth parsing.
const MAX_ID_LENGTH = 2048
// SPIFFE trust domains: lowercase letters, digits, dots, dashes and underscores.
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/
// A Kubernetes namespace is a DNS-1123 label.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/
// A Kubernetes service account name is a DNS-1123 subdomain.
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/

/** Why `value` is not a valid trust domain, or undefined when it is. */
export function trustDomainProblem (value: string): string | undefined {
  if (!TRUST_DOMAIN.test(value)) return `trust domain '${value}' must be 1-255 of [a-z0-9._-]`
  if (value === '.' || value === '..') return `trust domain '${value}' is not a name`
  return undefined
}

/** Why `value` is not a valid namespace, or undefined when it is. */
export function namespaceProblem (value: string): string | undefined {
  return DNS_LABEL.test(value) ? undefined : `namespace '${value}' is not a DNS-1123 label`
}

/** Why `value` is not a valid service account name, or undefined when it is. */
export function serviceAccountProblem (value: string): string | undefined {
  return value.length <= 253 && DNS_SUBDOMAIN.test(value)
    ? undefined
    : `service account '${value}' is not a DNS-1123 subdomain`
}

function check (problem: string | undefined): void {
  if (problem !== undefined) throw new CertificateError(`invalid SPIFFE id: ${problem}`)
}

/** 'spiffe://td/ns/NS/sa/SA'; throws CertificateError when a segment is invalid. */
export function spiffeId (trustDomain: string, namespace: string, serviceAccount: string): string {
  check(trustDomainProblem(trustDomain))
  check(namespaceProblem(namespace))
  check(serviceAccountProblem(serviceAccount))
  return `${SCHEME}${trustDomain}/ns/${namespace}/sa/${serviceAccount}`
}

/** Splits a SPIFFE id into its parts; throws CertificateError saying what is wrong with it. */
export function parseSpiffeId (uri: string): WorkloadIdentity {
  if (uri.length > MAX_ID_LENGTH) throw new CertificateError(`invalid SPIFFE id: longer than ${MAX_ID_LENGTH} characters`)
  if (!uri.startsWith(SCHEME)) throw new CertificateError(`invalid SPIFFE id '${uri}': it must start with '${SCHEME}'`)
  const rest = uri.slice(SCHEME.length)
  const slash = rest.indexOf('/')
  if (slash < 0) throw new CertificateError(`invalid SPIFFE id '${uri}': it has no path`)
  const trustDomain = rest.slice(0, slash)
  // Ports, user info, queries and fragments are all forbidden by the SPIFFE spec; the
  // trust-domain and segment checks below reject their characters.
  const segments = rest.slice(slash + 1).split('/')
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa') {
    throw new CertificateError(`invalid SPIFFE id '${uri}': the path must be /ns/<namespace>/sa/<service-account>`)
  }
  const [, namespace, , serviceAccount] = segments as [string, string, string, string]
  check(trustDomainProblem(trustDomain))
  check(namespaceProblem(namespace))
  check(serviceAccountProblem(serviceAccount))
  return { trustDomain, namespace, serviceAccount }
}

/** Istio's principal form of a SPIFFE id: 'td/ns/NS/sa/SA' (the id without its scheme). */
export function principalOf (id: string): string {
  const { trustDomain, namespace, serviceAccount } = parseSpiffeId(id)
  return `${trustDomain}/ns/${namespace}/sa/${serviceAccount}`
}
