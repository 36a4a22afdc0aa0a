#!/usr/bin/env node
// Runs every compiled test file (packages, plugins, test/) with node's test runner.
import {readFileSync, readdirSync, statSync} from 'node:fs'
import path from 'node:path'
import {finished} from 'node:stream/promises'
import {run} from 'node:test'
import {spec} from 'node:test/reporters'
import {pathToFileURL} from 'node:url'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const only = process.argv.slice(2)

// Tests import @fpeer/core, and run fpeer, through their bundles: after a bare `tsc -b`, bring
// them up to date once here (each fpeer process started would otherwise rebuild the CLI's).
const core = path.join(root, 'packages/core')
const cli = path.join(root, 'packages/cli')
const {bundleIsStale, writeBundle} = await import(pathToFileURL(path.join(core, 'bundle.js')).href)
if (bundleIsStale(core)) await writeBundle(core, {prune: true})
const {cliBundleIsStale, writeCliBundle} = await import(pathToFileURL(path.join(cli, 'bundle.js')).href)
if (cliBundleIsStale(cli)) await writeCliBundle(cli, {prune: true})

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
/**
 * The files that take longest, longest first (wall seconds of a quiet run at concurrency 3).
 * The runner starts files in the order given, so these begin while the short ones fill the
 * other slots, instead of one of them starting last and running alone while the rest wait.
 * Only the order depends on this list: a file missing from it runs after these, as before.
 */
const SLOWEST_FIRST = [
  'test/dist/src/plugins-install.test.js', // 104 s
  'test/dist/src/docs.test.js', // 95
  'test/dist/src/reliability-io.test.js', // 86
  'test/dist/security/fuzz.test.js', // 85
  'test/dist/src/updates.test.js', // 85
  'test/dist/src/cli-json.test.js', // 71
  'test/dist/security/connections.test.js', // 70
  'test/dist/src/churn.test.js', // 67
  'test/dist/src/converge.test.js', // 46
  'test/dist/src/protocols.test.js', // 41
  'test/dist/src/errors.test.js', // 40
  'test/dist/src/interrupt.test.js', // 36
  'test/dist/src/copying.test.js', // 35
  'test/dist/src/crash-apply.test.js', // 33
  'test/dist/src/hostile-host.test.js', // 30
  'test/dist/src/trust.test.js', // 29
  'plugins/ftp/dist/conformance.test.js', // 26
]
const rank = (f) => {
  const i = SLOWEST_FIRST.findIndex((s) => f.endsWith(s))
  return i < 0 ? SLOWEST_FIRST.length : i
}
let files = dirs
  .flatMap((d) => find(path.join(root, d)))
  .sort()
  .sort((a, b) => rank(a) - rank(b))
if (only.length) files = files.filter((f) => only.some((o) => f.includes(o)))
if (files.length === 0) {
  console.error('no test files found: run `npm run build` first')
  process.exit(1)
}
/**
 * Four files at once on a 2-core machine: each file mostly waits (on processes it started,
 * on peers converging), about half a core each, so three left a core idle on a quiet machine
 * and gave the suite too small a share beside other busy processes.
 */
const concurrency = Number(process.env.FPEER_TEST_CONCURRENCY || 4)
// The runner's API, not `node --test`: the command line sorts its files by name, the API starts them in the order given.
const stream = run({files, concurrency})
// The run's totals, from the closing diagnostics the reporters print ("pass 1381", …).
const totals = {}
stream.on('test:diagnostic', ({nesting, message}) => {
  const m = nesting === 0 ? /^(\w+) ([\d.]+)$/.exec(message) : null
  if (m) totals[m[1]] = Number(m[2])
})
const report = stream.compose(spec)
report.pipe(process.stdout)
await finished(report)
// One plain closing line for CI: "N passed, N failed, N skipped".
const count = (k) => totals[k] ?? 0
const failed = count('fail') + count('cancelled')
console.log(`\ntests: ${count('pass')} passed, ${failed} failed, ${count('skipped') + count('todo')} skipped`)
process.exit(failed === 0 && count('tests') > 0 ? 0 : 1)
