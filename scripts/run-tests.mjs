#!/usr/bin/env node
// Runs the tap suite, then prints the line CI reads: "N passed, N failed[, N skipped]".
// tap's own closing output is not a line CI recognises, so we count from the raw TAP results
// tap saves under .tap/test-results (one file per test file).
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'

const resultsDir = '.tap/test-results'
rmSync(resultsDir, { recursive: true, force: true })
const tap = spawnSync('npx', ['tap', ...process.argv.slice(2)], { stdio: 'inherit' })

function* files (dir) {
  let names
  try { names = readdirSync(dir) } catch { return }
  for (const name of names) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) yield* files(path)
    else if (path.endsWith('.tap')) yield path
  }
}

// Count test points at every depth: each assertion and each subtest is one test point.
let passed = 0; let failed = 0; let skipped = 0
for (const file of files(resultsDir)) {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^\s*(not ok|ok)\s+\d+/.exec(line)
    if (m === null) continue
    if (/#\s*(SKIP|TODO)/i.test(line)) skipped++
    else if (m[1] === 'ok') passed++
    else failed++
  }
}
// A file that crashed before printing a result still counts as a failure.
if (tap.status !== 0 && failed === 0) failed = 1
console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`)
process.exit(tap.status ?? 1)
