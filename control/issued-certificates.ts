/**
 * The workload certificates the CA has issued, latest per (node, identity): what the dashboard
 * shows as each workload's certificate expiry. Only metadata is kept, never a key.
 */

export interface IssuedCertificate {
  readonly node: string
  readonly spiffeId: string
  readonly serial: string
  readonly notAfter: Date
}

export class IssuedCertificates {
  private readonly latest = new Map<string, IssuedCertificate>()

  record (issued: IssuedCertificate): void {
    const key = `${issued.node} ${issued.spiffeId}`
    const known = this.latest.get(key)
    if (known === undefined || known.notAfter <= issued.notAfter) this.latest.set(key, issued)
  }

  /** The latest certificate `node` holds for `spiffeId`, if the CA issued one. */
  find (node: string, spiffeId: string): IssuedCertificate | undefined {
    return this.latest.get(`${node} ${spiffeId}`)
  }
}
