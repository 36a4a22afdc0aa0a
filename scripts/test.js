#!/usr/bin/env node
// Runs every compiled test file (packages, plugins, test/) with node's test runner.
import {spawnSync} from 'node:child_process'
import {readFileSync, readdirSync, rmSync, statSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const only = process.argv.slice(2)

function find(dir) {
  let out = []
  let entries
  try {
    entries = readdirSync(dir)
  } catch {
    return out
  }
  for (const name of entries) {
    if (name === 'node_modules') continue
    const p = path.join(dir, name)
    if (statSync(p).isDirectory()) out = out.concat(find(p))
    else if (name.endsWith('.test.js')) out.push(p)
  }
  return out
}

// The workspaces are the one list of packages (CONTRIBUTING.md): a new plugin's tests run without an edit here.
const workspaces = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).workspaces
const dirs = [...workspaces, 'test'].map((w) => `${w}/dist`)
let files = dirs.flatMap((d) => find(path.join(root, d))).sort()
if (only.length) files = files.filter((f) => only.some((o) => f.includes(o)))
if (files.length === 0) {
  console.error('no test files found: run `npm run build` first')
  process.exit(1)
}
const tap = path.join(os.tmpdir(), `fpeer-test-${process.pid}.tap`)
const r = spawnSync(
  process.execPath,
  ['--test', '--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=tap', `--test-reporter-destination=${tap}`, `--test-concurrency=${process.env.FPEER_TEST_CONCURRENCY || 3}`, ...files],
  {stdio: 'inherit', cwd: root},
)
// One plain closing line for CI: "N passed, N failed, N skipped".
const text = readFileSync(tap, 'utf8')
const count = (k) => Number((new RegExp(`^# ${k} (\\d+)$`, 'm').exec(text) ?? [])[1] ?? 0)
rmSync(tap, {force: true})
console.log(`\ntests: ${count('pass')} passed, ${count('fail') + count('cancelled')} failed, ${count('skipped') + count('todo')} skipped`)
process.exit(r.status ?? 1)
