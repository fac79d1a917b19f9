/**
 * How a subcommand is declared: its flags (the single source of truth for parsing, --help and
 * the tests that check manifests and docs against the CLI), and what it runs.
 */
import { parseArgs } from 'node:util'
import { ConfigError } from '../policy/errors.js'

export interface FlagSpec {
  readonly type: 'string' | 'boolean'
  readonly short?: string
  readonly multiple?: boolean
  readonly default?: string
  /** Shown in --help; also the placeholder for the value (e.g. 'URL', 'PATH'). */
  readonly value?: string
  readonly description: string
}

export interface ParsedArgs {
  readonly flags: Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>
  readonly positionals: readonly string[]
}

export interface Command {
  readonly name: string
  readonly summary: string
  readonly usage: string
  readonly flags: Readonly<Record<string, FlagSpec>>
  readonly positionals?: { readonly min: number, readonly max: number }
  /** Resolves to the exit code. Long-running commands resolve when they have shut down. */
  run (args: ParsedArgs): Promise<number>
}

export function parseCommandArgs (command: Command, argv: readonly string[]): ParsedArgs {
  const options = Object.fromEntries(Object.entries(command.flags).map(([name, f]) => [name, {
    type: f.type,
    ...(f.short !== undefined && { short: f.short }),
    ...(f.multiple === true && { multiple: true }),
    ...(f.default !== undefined && { default: f.default })
  }]))
  let parsed
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true })
  } catch (err) {
    throw new ConfigError((err as Error).message.split('\n')[0] ?? 'bad arguments')
  }
  const { min, max } = command.positionals ?? { min: 0, max: 0 }
  if (parsed.positionals.length < min || parsed.positionals.length > max) {
    throw new ConfigError(`expected ${min === max ? min : `${min} to ${max}`} argument(s), got ${parsed.positionals.length}; usage: ${command.usage}`)
  }
  return { flags: parsed.values, positionals: parsed.positionals }
}

export function helpText (command: Command): string {
  const lines = [`ambit ${command.name}: ${command.summary}`, '', `usage: ${command.usage}`, '', 'flags:']
  const flags = Object.entries(command.flags).map(([name, f]) => {
    const short = f.short !== undefined ? `-${f.short}, ` : '    '
    const value = f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''
    const def = f.default !== undefined ? ` (default ${f.default})` : ''
    return [`  ${short}--${name}${value}`, `${f.description}${def}`] as const
  })
  const width = Math.max(...flags.map(([left]) => left.length)) + 2
  for (const [left, right] of flags) lines.push(left.padEnd(width) + right)
  return lines.join('\n')
}

/** Typed accessors, so command bodies read flags without casts. */
export function stringFlag (args: ParsedArgs, name: string): string | undefined {
  const v = args.flags[name]
  return typeof v === 'string' ? v : undefined
}

export function requiredFlag (args: ParsedArgs, name: string): string {
  const v = stringFlag(args, name)
  if (v === undefined || v === '') throw new ConfigError(`--${name} is required`)
  return v
}

export function listFlag (args: ParsedArgs, name: string): string[] {
  const v = args.flags[name]
  if (Array.isArray(v)) return v.filter((item): item is string => typeof item === 'string')
  return typeof v === 'string' ? [v] : []
}

export function booleanFlag (args: ParsedArgs, name: string): boolean {
  return args.flags[name] === true
}

export function numberFlag (args: ParsedArgs, name: string): number | undefined {
  const v = stringFlag(args, name)
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n) || n < 0) throw new ConfigError(`--${name} must be a non-negative number, got "${v}"`)
  return n
}

export const HELP_FLAG: FlagSpec = { type: 'boolean', short: 'h', description: 'show this help' }
export const STORE_FLAG: FlagSpec = {
  type: 'string', value: 'URL', default: 'memory',
  description: 'state store: memory, redis://HOST:PORT[/DB], redis+sentinel://H:P,H:P/MASTER or redis+cluster://H:P,H:P'
}
export const FILE_FLAG: FlagSpec = {
  type: 'string', short: 'f', multiple: true, value: 'PATH', description: 'YAML file or directory of resources (repeatable; - for stdin)'
}
export const LOG_LEVEL_FLAG: FlagSpec = {
  type: 'string', value: 'LEVEL', default: 'warn', description: 'log level: fatal, error, warn, info, debug, trace'
}
