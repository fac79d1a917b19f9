#!/usr/bin/env -S node --no-memory-reducer
/**
 * `ambit`: one CLI, one subcommand per role. Exit codes: 0 success, 1 failure, 2 bad usage.
 * Every failure prints one line naming what was wrong.
 *
 * Node runs it with --no-memory-reducer (here, in `npm start` and in the image's entrypoint):
 * after some idle seconds V8's memory reducer shrinks the heap, and a waypoint loaded after that
 * spent ≈ 25% more CPU per request for good (bench/RESULTS.md). A proxy keeps its peak heap
 * instead, as Envoy does.
 */
import { readFileSync } from 'node:fs'
import { helpText, parseCommandArgs } from './command.js'
import { COMMAND_NAMES, loadCommand, loadCommands } from './commands/index.js'
import { AmbitError, ConfigError, InvalidResourcesError } from '../policy/errors.js'

function version (): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

async function overview (): Promise<string> {
  const commands = await loadCommands()
  const width = Math.max(...commands.map((c) => c.name.length)) + 2
  return [
    'ambit: an eBPF-free, node-level (ambient) service mesh',
    '',
    'usage: ambit <command> [flags]   (ambit <command> --help for its flags)',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`)
  ].join('\n')
}

/** Finds the longest command name that prefixes argv ('waypoint apply' before 'waypoint'). */
function findCommand (argv: readonly string[]): { name: string, rest: string[] } | undefined {
  const byLength = [...COMMAND_NAMES].sort((a, b) => b.split(' ').length - a.split(' ').length)
  for (const name of byLength) {
    const words = name.split(' ')
    if (words.every((w, i) => argv[i] === w)) return { name, rest: argv.slice(words.length) }
  }
  return undefined
}

async function main (argv: readonly string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    console.log(await overview())
    return argv.length === 0 ? 2 : 0
  }
  if (argv[0] === '--version') {
    console.log(version())
    return 0
  }
  const found = findCommand(argv)
  if (found === undefined) {
    console.error(`ambit: unknown command "${argv[0]}"; run ambit --help`)
    return 2
  }
  const command = await loadCommand(found.name)
  const rest = found.rest
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(helpText(command))
    return 0
  }
  try {
    return await command.run(parseCommandArgs(command, rest))
  } catch (err) {
    console.error(`ambit ${command.name}: ${describe(err)}`)
    return err instanceof ConfigError ? 2 : 1
  }
}

function describe (err: unknown): string {
  if (err instanceof InvalidResourcesError) {
    return [`${err.errors.length} invalid resource(s); nothing was changed`, ...err.errors.map((e) => `  ${e.message}`)].join('\n')
  }
  if (err instanceof AmbitError) return err.message
  if (err instanceof Error) return err.message.split('\n')[0] ?? String(err)
  return String(err)
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err: unknown) => {
  console.error(`ambit: ${describe(err)}`)
  process.exitCode = 1
})
