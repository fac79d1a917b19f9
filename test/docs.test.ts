/**
 * Keeps the user documentation (README.md and docs/*.md) honest: every `ambit ...` command
 * line names a command that exists and only flags that command has, every `--flag` mentioned
 * in prose is a flag of some command, every ```yaml block loads without errors, and every
 * relative link points at a file of the repository.
 */
import t from 'tap'
import { readdir, readFile, stat } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { parse } from 'yaml'
import { REPO_ROOT } from './helpers/mesh.js'
import { loadCommands } from '../cli/commands/index.js'
import type { Command } from '../cli/command.js'
import { parseResources } from '../policy/load.js'

/** A first line that marks a ```yaml block as intentionally partial: the YAML check skips it. */
const FRAGMENT_MARK = '# fragment'

/**
 * Kustomize's build file is not a mesh resource; docs/kubernetes.md shows overlays of k8s/ with
 * it, and test/k8s-docs.test.ts checks that those overlays apply. Any other kind must load.
 */
const KUSTOMIZATION_API = 'kustomize.config.k8s.io/'

interface CodeBlock {
  readonly language: string
  readonly text: string
  /** 1-based line of the opening fence. */
  readonly line: number
}

interface MarkdownFile {
  /** Relative to the repository root, for messages. */
  readonly name: string
  readonly path: string
  readonly blocks: readonly CodeBlock[]
  /** Lines outside fenced blocks, with their 1-based line numbers. */
  readonly prose: ReadonlyArray<readonly [number, string]>
}

const FENCE = /^\s*```\s*([\w-]*)\s*$/

function parseMarkdown (path: string, text: string): MarkdownFile {
  const blocks: CodeBlock[] = []
  const prose: Array<readonly [number, string]> = []
  let open: { language: string, line: number, lines: string[] } | undefined
  text.split('\n').forEach((line, index) => {
    const fence = FENCE.exec(line)
    if (open === undefined && fence !== null) {
      open = { language: fence[1]!, line: index + 1, lines: [] }
    } else if (open !== undefined && /^\s*```\s*$/.test(line)) {
      blocks.push({ language: open.language, text: open.lines.join('\n') + '\n', line: open.line })
      open = undefined
    } else if (open !== undefined) {
      open.lines.push(line)
    } else {
      prose.push([index + 1, line])
    }
  })
  return { name: relative(REPO_ROOT, path), path, blocks, prose }
}

async function userDocs (): Promise<MarkdownFile[]> {
  const docs = (await readdir(join(REPO_ROOT, 'docs'))).filter((f) => f.endsWith('.md')).map((f) => join(REPO_ROOT, 'docs', f))
  const paths = [join(REPO_ROOT, 'README.md'), ...docs.sort()]
  return await Promise.all(paths.map(async (path) => parseMarkdown(path, await readFile(path, 'utf8'))))
}

// ---- command lines ----

const SHELL_LANGUAGES = new Set(['', 'sh', 'bash', 'shell', 'console'])
/** Tokens after which `ambit` starts a command (a shell prompt, a list of commands, a wrapper). */
const COMMAND_STARTERS = new Set(['$', '&&', '||', '|', ';', 'npx', 'sudo', 'exec', 'time'])
const PROMPT = /^\s*\$ /
/** Where the ambit part of a shell line ends. */
const COMMAND_END = /\s(#|&&|\|\|?|;|>|2>)(\s|$)/

interface CommandLine {
  readonly where: string
  readonly text: string
}

/** Each `ambit ...` invocation in a shell line (continuation lines joined), from `ambit` to its end. */
function ambitInvocations (line: string): string[] {
  const tokens = line.trim().split(/\s+/)
  const found: string[] = []
  tokens.forEach((token, i) => {
    if (token !== 'ambit' || (i > 0 && !COMMAND_STARTERS.has(tokens[i - 1]!))) return
    const rest = ` ${tokens.slice(i).join(' ')} `
    const end = COMMAND_END.exec(rest.slice(1))
    found.push(rest.slice(1, end === null ? undefined : end.index + 1).trim())
  })
  return found
}

function commandLines (file: MarkdownFile): CommandLine[] {
  const lines: CommandLine[] = []
  for (const block of file.blocks.filter((b) => SHELL_LANGUAGES.has(b.language))) {
    const joined = block.text.replace(/\\\n/g, ' ').split('\n')
    // A block with `$ ` prompts is a terminal session: only the prompted lines are commands, the rest is their output.
    const session = joined.some((line) => PROMPT.test(line))
    joined.forEach((line, i) => {
      if (session && !PROMPT.test(line)) return
      for (const text of ambitInvocations(line)) lines.push({ where: `${file.name}:${block.line + 1 + i}`, text })
    })
  }
  for (const [number, line] of file.prose) {
    for (const [, span] of line.matchAll(/`([^`]+)`/g)) {
      if (/^ambit \S/.test(span!)) lines.push({ where: `${file.name}:${number}`, text: span! })
    }
  }
  return lines
}

/** The command a line runs: the longest command name its first words spell. */
function commandOf (text: string, commands: readonly Command[]): Command | undefined {
  const words = text.split(/\s+/).slice(1)
  const byLength = [...commands].sort((a, b) => b.name.split(' ').length - a.name.split(' ').length)
  return byLength.find((c) => c.name.split(' ').every((part, i) => words[i] === part))
}

const LONG_FLAG = /(?<![\w-])--([a-z][a-z0-9-]*)/g
const SHORT_FLAG = /(?<![\w-])-([a-zA-Z])(?![\w-])/g

function flagProblems (text: string, command: Command): string[] {
  const longs = new Set(Object.keys(command.flags))
  const shorts = new Set(Object.values(command.flags).flatMap((f) => f.short ?? []))
  return [
    ...[...text.matchAll(LONG_FLAG)].map((m) => m[1]!).filter((f) => !longs.has(f)).map((f) => `--${f}`),
    ...[...text.matchAll(SHORT_FLAG)].map((m) => m[1]!).filter((f) => !shorts.has(f)).map((f) => `-${f}`)
  ].map((flag) => `ambit ${command.name} has no flag ${flag}`)
}

/** `--flag` written in prose (inline code or not), outside any command line. */
function proseFlags (file: MarkdownFile): Array<{ where: string, flag: string }> {
  const flags: Array<{ where: string, flag: string }> = []
  for (const [number, line] of file.prose) {
    // Inline command lines are checked against their own command; other inline commands (curl, kubectl) have their own flags.
    const outsideCommands = line.replace(/`([^`]+)`/g, (span: string, code: string) => code.startsWith('--') ? span : ' ')
    for (const m of outsideCommands.matchAll(LONG_FLAG)) flags.push({ where: `${file.name}:${number}`, flag: m[1]! })
  }
  return flags
}

t.test('every ambit command line in the docs runs a command that exists, with its own flags', async (t) => {
  const commands = await loadCommands()
  const docs = await userDocs()
  const lines = docs.flatMap(commandLines)
  t.ok(lines.length >= 20, `the docs show ambit at work (${lines.length} command lines)`)
  const used = new Set<string>()
  for (const { where, text } of lines) {
    const command = commandOf(text, commands)
    if (command === undefined) {
      t.fail(`${where}: "${text}" names no ambit command`)
      continue
    }
    used.add(command.name)
    t.strictSame(flagProblems(text, command), [], `${where}: ${text}`)
  }
  for (const command of commands) t.ok(used.has(command.name), `the docs show ambit ${command.name}`)
})

t.test('every --flag the docs mention in prose is a flag of some ambit command', async (t) => {
  const commands = await loadCommands()
  const known = new Set(commands.flatMap((c) => Object.keys(c.flags)))
  const mentioned = (await userDocs()).flatMap(proseFlags)
  t.ok(mentioned.length > 0, 'the docs mention flags')
  for (const { where, flag } of mentioned) t.ok(known.has(flag), `${where}: --${flag} is an ambit flag`)
})

t.test('the checks catch a made-up command and a made-up flag', async (t) => {
  const commands = await loadCommands()
  const file = parseMarkdown(join(REPO_ROOT, 'x.md'), '```sh\n$ ambit waypoint apply -n shop --colour red\nambit up: the output\n$ ambit frobnicate\n```\nuse `--no-such-flag`\n')
  t.equal(commandLines(file).length, 2, 'output lines of a terminal session are not commands')
  const [apply, unknown] = commandLines(file)
  t.equal(commandOf(apply!.text, commands)?.name, 'waypoint apply', 'the longest command name wins')
  t.strictSame(flagProblems(apply!.text, commandOf(apply!.text, commands)!), ['ambit waypoint apply has no flag --colour'])
  t.equal(commandOf(unknown!.text, commands), undefined)
  t.strictSame(proseFlags(file).map((f) => f.flag), ['no-such-flag'])
  t.strictSame(ambitInvocations('docker run --rm ambit --help'), [], 'an image named ambit is not a command line')
  t.strictSame(ambitInvocations('ambit get workloads -o json | jq .  # all of them'), ['ambit get workloads -o json'])
})

// ---- YAML ----

function isKustomization (document: unknown): boolean {
  const apiVersion = (document as { apiVersion?: unknown } | null)?.apiVersion
  return typeof apiVersion === 'string' && apiVersion.startsWith(KUSTOMIZATION_API)
}

/** Why ambit would not load a ```yaml block, with Kustomize's build files (not mesh resources) left out. */
function yamlProblems (block: CodeBlock, where: string): string[] {
  try {
    const documents = block.text.split(/^---\s*$/m).filter((d) => !isKustomization(parse(d)))
    return parseResources(documents.join('\n---\n'), where).errors.map((e) => e.message)
  } catch (err) {
    return [(err as Error).message]
  }
}

t.test('every yaml block in the docs loads without errors', async (t) => {
  let checked = 0
  for (const file of await userDocs()) {
    for (const block of file.blocks.filter((b) => b.language === 'yaml')) {
      const where = `${file.name}:${block.line}`
      if (block.text.split('\n', 1)[0]!.trim() === FRAGMENT_MARK) continue
      checked++
      t.strictSame(yamlProblems(block, where), [], `${where} loads`)
    }
  }
  t.ok(checked >= 10, `the docs have resource examples (${checked} checked)`)
})

t.test('the YAML check finds a bad field', async (t) => {
  const block = { language: 'yaml', line: 1, text: 'apiVersion: v1\nkind: Service\nmetadata: { name: Bad_Name }\n' }
  t.equal(yamlProblems(block, 'x.md:1').length, 1)
})

// ---- links ----

const LINK = /\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g

t.test('every relative link in the docs points at a file that exists', async (t) => {
  let checked = 0
  for (const file of await userDocs()) {
    for (const [number, line] of file.prose) {
      for (const [, target] of line.matchAll(LINK)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target!) || target!.startsWith('#')) continue
        const path = join(dirname(file.path), decodeURIComponent(target!.split('#')[0]!))
        checked++
        t.ok(await stat(path).then(() => true, () => false), `${file.name}:${number}: ${target} exists`)
      }
    }
  }
  t.ok(checked >= 5, `the docs link to each other (${checked} links)`)
})
