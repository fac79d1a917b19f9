/**
 * Traffic capture without eBPF: iptables nat rules, installed by the ztunnel in its node's
 * network namespace, that hand meshed pods' TCP connections to the ztunnel.
 *
 * Topology they assume: pods live in their own network namespaces, joined to the node's by veth
 * pairs and routed through it, so their packets enter the node through PREROUTING.
 *
 *   PREROUTING -> AMBIT_PREROUTING
 *     marked by the ztunnel                      RETURN
 *     TCP from a meshed pod                      REDIRECT to 15001 (outbound capture)
 *     TCP to a meshed pod, except to 15008       REDIRECT to 15006 (inbound plaintext capture)
 *   OUTPUT -> AMBIT_OUTPUT
 *     marked by the ztunnel (or its uid)         RETURN
 *     TCP from a meshed pod's address            REDIRECT to 15001
 *
 * - Outbound rules come first, so pod-to-pod traffic on one node is captured once, as outbound.
 * - The ztunnel's own connections to pods start in the node namespace (OUTPUT), where nothing
 *   captures traffic *to* pods: they, and node-local clients such as kubelet probes, reach pods
 *   untouched. HBONE arrives addressed to the node's IP:15008, not a pod's, so it is not
 *   captured either; traffic to a pod's own 15008 is left alone for the same reason.
 * - AMBIT_OUTPUT's source rule only matters where a pod's address is local to the node (local
 *   mode) or where the ztunnel connects from a pod's address (source preservation). The ztunnel
 *   must therefore open its upstream sockets with SO_MARK = ztunnelMark (see markedSocket() in
 *   sockopt.ts), or run under `exemptUid`, or it would capture itself.
 *
 * Everything lives in our own two chains, so uninstall removes exactly what we added. Every
 * change rewrites both chains in one atomic `iptables-restore --noflush`, serialized.
 * IPv4 only for now.
 */
import { execFile } from 'node:child_process'
import { isIPv4 } from 'node:net'
import { CaptureError, ConfigError } from '../policy/errors.js'

export const PREROUTING_CHAIN = 'AMBIT_PREROUTING'
export const OUTPUT_CHAIN = 'AMBIT_OUTPUT'
/** Which built-in nat chain jumps to which of ours. */
const JUMPS = [
  { from: 'PREROUTING', to: PREROUTING_CHAIN },
  { from: 'OUTPUT', to: OUTPUT_CHAIN }
] as const
/** 1337, as Istio marks its proxies' traffic; the mask leaves other bits to other tools. */
export const ZTUNNEL_MARK = 0x539
export const ZTUNNEL_MARK_MASK = 0xfff

/** Runs a command (with `input` on its stdin) and resolves with its stdout; rejects on failure. */
export type CommandRunner = (command: string, args: readonly string[], input?: string) => Promise<string>

/** The iptables-save / iptables-restore pair of one backend (nft or legacy). */
export interface Iptables {
  readonly save: string
  readonly restore: string
}

export interface CaptureOptions {
  /** Where outbound connections of meshed pods go. Default 15001. */
  readonly outboundPort?: number
  /** Where plaintext connections to meshed pods go. Default 15006. */
  readonly inboundPort?: number
  /** Destination ports of pods that are never captured inbound. Default [15008] (HBONE). */
  readonly inboundExcludedPorts?: readonly number[]
  /** SO_MARK the ztunnel sets on its own sockets. Default ZTUNNEL_MARK. */
  readonly ztunnelMark?: number
  /** Which mark bits are compared. Default ZTUNNEL_MARK_MASK. */
  readonly ztunnelMarkMask?: number
  /** Also exempt every socket of this uid (for a ztunnel that runs as its own user). */
  readonly exemptUid?: number
  /** Backend to use; detected with detectIptables() when absent. */
  readonly iptables?: Iptables
  /** How commands run; tests run them inside a network namespace. Default: execFile. */
  readonly exec?: CommandRunner
}

/** The options with their defaults filled in: all the rule renderer needs. */
export interface CaptureConfig {
  readonly outboundPort: number
  readonly inboundPort: number
  readonly inboundExcludedPorts: readonly number[]
  readonly ztunnelMark: number
  readonly ztunnelMarkMask: number
  readonly exemptUid: number | undefined
}

export class CaptureRules {
  private readonly config: CaptureConfig
  private readonly exec: CommandRunner
  private iptables: Iptables | undefined
  private readonly pods = new Set<string>()
  private installed = false
  private queue: Promise<unknown> = Promise.resolve()
  private pendingSync: Promise<void> | undefined

  constructor (options: CaptureOptions = {}) {
    this.config = {
      outboundPort: options.outboundPort ?? 15001,
      inboundPort: options.inboundPort ?? 15006,
      inboundExcludedPorts: options.inboundExcludedPorts ?? [15008],
      ztunnelMark: options.ztunnelMark ?? ZTUNNEL_MARK,
      ztunnelMarkMask: options.ztunnelMarkMask ?? ZTUNNEL_MARK_MASK,
      exemptUid: options.exemptUid
    }
    this.exec = options.exec ?? runCommand
    this.iptables = options.iptables
  }

  /**
   * Creates our chains and the jumps to them, replacing whatever a previous (maybe crashed) run
   * left: stale rules in our chains and duplicate jumps. Idempotent.
   */
  install (): Promise<void> {
    return this.serialized(async () => {
      const iptables = await this.backend()
      const saved = await this.exec(iptables.save, ['-t', 'nat'])
      await this.restore(renderInstall(this.config, this.pods, saved))
      this.installed = true
    })
  }

  /** Starts capturing a meshed pod's traffic (recorded only, until install()). */
  async addPod (ip: string): Promise<void> {
    this.pods.add(checkPodIp(ip))
    await this.sync()
  }

  async removePod (ip: string): Promise<void> {
    this.pods.delete(ip)
    await this.sync()
  }

  /** Makes the captured pods exactly `ips`. */
  async syncPods (ips: ReadonlySet<string>): Promise<void> {
    const checked = [...ips].map(checkPodIp)
    this.pods.clear()
    for (const ip of checked) this.pods.add(ip)
    await this.sync()
  }

  /** Removes our jumps and chains (also those of a crashed earlier run). Idempotent. */
  uninstall (): Promise<void> {
    return this.serialized(async () => {
      const iptables = await this.backend()
      const script = renderUninstall(await this.exec(iptables.save, ['-t', 'nat']))
      if (script !== undefined) await this.restore(script)
      this.installed = false
    })
  }

  /** The rules we want in place, in iptables-restore format (for the admin config dump). */
  rulesDump (): string {
    return renderChains(this.config, this.pods)
  }

  /**
   * Rewrites our chains from the current pod set. Changes made while a rewrite is waiting in the
   * queue ride along with it, since it reads the set only when it runs.
   */
  private sync (): Promise<void> {
    this.pendingSync ??= this.serialized(async () => {
      this.pendingSync = undefined
      if (this.installed) await this.restore(renderChains(this.config, this.pods))
    })
    return this.pendingSync
  }

  private serialized<T> (task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task)
    this.queue = run.catch(() => {})
    return run
  }

  private async backend (): Promise<Iptables> {
    this.iptables ??= await detectIptables(this.exec)
    return this.iptables
  }

  private async restore (script: string): Promise<void> {
    const iptables = await this.backend()
    await this.exec(iptables.restore, ['-w', '--noflush'], script)
  }
}

// ---------------------------------------------------------------------------------------------
// Pure rule rendering, in iptables-restore format. Rules are written exactly as iptables-save
// prints them back, so a test can find each of them in the live table.

/** Our chains' rules, one `-A CHAIN ...` line each. */
export function captureRuleLines (config: CaptureConfig, pods: ReadonlySet<string>): string[] {
  const exemptMark = `-m mark --mark ${formatMark(config.ztunnelMark, config.ztunnelMarkMask)} -j RETURN`
  const toOutbound = `-p tcp -j REDIRECT --to-ports ${config.outboundPort}`
  const excluded = config.inboundExcludedPorts.length > 0 ? `-m multiport ! --dports ${config.inboundExcludedPorts.join(',')} ` : ''
  const toInbound = `-p tcp ${excluded}-j REDIRECT --to-ports ${config.inboundPort}`
  const sorted = [...pods].sort()
  return [
    `-A ${PREROUTING_CHAIN} ${exemptMark}`,
    ...sorted.map((ip) => `-A ${PREROUTING_CHAIN} -s ${ip}/32 ${toOutbound}`),
    ...sorted.map((ip) => `-A ${PREROUTING_CHAIN} -d ${ip}/32 ${toInbound}`),
    `-A ${OUTPUT_CHAIN} ${exemptMark}`,
    ...(config.exemptUid === undefined ? [] : [`-A ${OUTPUT_CHAIN} -m owner --uid-owner ${config.exemptUid} -j RETURN`]),
    ...sorted.map((ip) => `-A ${OUTPUT_CHAIN} -s ${ip}/32 ${toOutbound}`)
  ]
}

/** Rewrites our chains (declaring a chain in `--noflush` mode creates or empties it). */
export function renderChains (config: CaptureConfig, pods: ReadonlySet<string>): string {
  return natTable([...chainDeclarations(), ...captureRuleLines(config, pods)])
}

/** Our chains, with one jump to each at the top of its built-in chain (older jumps removed). */
export function renderInstall (config: CaptureConfig, pods: ReadonlySet<string>, saved: string): string {
  return natTable([
    ...chainDeclarations(),
    ...jumpsToOurChains(saved).map(deleteRule),
    ...JUMPS.map(({ from, to }) => `-I ${from} 1 -j ${to}`),
    ...captureRuleLines(config, pods)
  ])
}

/** Removes every jump to our chains, then the chains; undefined when there is nothing to remove. */
export function renderUninstall (saved: string): string | undefined {
  const jumps = jumpsToOurChains(saved)
  const chains = JUMPS.map(({ to }) => to).filter((chain) => saved.split('\n').some((line) => line.startsWith(`:${chain} `)))
  if (jumps.length === 0 && chains.length === 0) return undefined
  return natTable([
    ...jumps.map(deleteRule),
    ...chains.map((chain) => `-F ${chain}`),
    ...chains.map((chain) => `-X ${chain}`)
  ])
}

/** Rules (in iptables-save output) of other chains that jump to ours. */
export function jumpsToOurChains (saved: string): string[] {
  const ours = new Set<string>(JUMPS.map(({ to }) => to))
  return saved.split('\n').filter((line) => {
    const rule = /^-A (\S+) .*-j (\S+)$/.exec(line.trim())
    return rule !== null && !ours.has(rule[1]) && ours.has(rule[2])
  }).map((line) => line.trim())
}

function chainDeclarations (): string[] {
  return JUMPS.map(({ to }) => `:${to} - [0:0]`)
}

function deleteRule (appendLine: string): string {
  return appendLine.replace(/^-A /, '-D ')
}

function natTable (lines: readonly string[]): string {
  return ['*nat', ...lines, 'COMMIT', ''].join('\n')
}

function formatMark (mark: number, mask: number): string {
  const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`
  return mask >>> 0 === 0xffffffff ? hex(mark) : `${hex(mark)}/${hex(mask)}`
}

function checkPodIp (ip: string): string {
  if (!isIPv4(ip)) throw new ConfigError(`traffic capture handles IPv4 pod addresses only, not '${ip}'`)
  return ip
}

// ---------------------------------------------------------------------------------------------
// Commands

/** execFile, with `input` written to stdin; a failure carries the command's stderr. */
export const runCommand: CommandRunner = (command, args, input) => new Promise((resolve, reject) => {
  const child = execFile(command, [...args], { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
    if (err === null) resolve(stdout)
    else reject(new CaptureError(`${command} ${args.join(' ')}: ${stderr.trim() || err.message}`, { cause: err }))
  })
  child.stdin?.on('error', () => {}) // a command that exits without reading its input is reported above
  child.stdin?.end(input)
})

const BACKENDS: readonly Iptables[] = [
  { save: 'iptables-nft-save', restore: 'iptables-nft-restore' },
  { save: 'iptables-legacy-save', restore: 'iptables-legacy-restore' },
  { save: 'iptables-save', restore: 'iptables-restore' }
]

/**
 * The iptables backend to use here. Rules in both nft and legacy tables would both apply, so we
 * follow whichever already holds nat rules (as Kubernetes' iptables-wrapper does); on a clean
 * namespace, nft. Falls back to plain `iptables-save` where the variants are not installed.
 */
export async function detectIptables (exec: CommandRunner = runCommand): Promise<Iptables> {
  const working: Iptables[] = []
  const failures: string[] = []
  for (const backend of BACKENDS) {
    try {
      const saved = await exec(backend.save, ['-t', 'nat'])
      if (saved.split('\n').some((line) => line.startsWith('-A '))) return backend
      working.push(backend)
    } catch (err) {
      failures.push(err instanceof Error ? err.message : String(err))
    }
  }
  if (working.length > 0) return working[0]
  throw new CaptureError(`no working iptables found: ${failures.join('; ')}`)
}
