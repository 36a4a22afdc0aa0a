#!/usr/bin/env node
// `node bench/list-memory.js [files]`: the heap a received file list holds (issue #11), and the time to parse it.
//
//   node bench/list-memory.js 100000     a FilesToGet of that many files, each with a signed version, as a peer sends it
//   LIST_BUILDS=/tmp/old,.               checkouts to compare, each built (default: this one)
//   --json                               one JSON document on stdout
//
// For each build, in a process of its own run with --expose-gc: the message is made and
// encoded, then parsed; the figures are heapUsed after full collections, less what was
// held before the parse, once with the parsed entries held (what a requester keeps during
// its fetch) and once with only the versions made from them (what a peer's records keep).
// The message's bytes are let go before measuring. Parse time is the median of 5 parses.
import './usage.js'
import {execFileSync} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const N = Math.max(1, Math.min(1_000_000, Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 100_000)))
const BUILDS = (process.env.LIST_BUILDS || ROOT).split(',').map((b) => path.resolve(ROOT, b))
const JSON_OUT = process.argv.includes('--json')

/** Runs in the child: `build` and `n` from argv. Prints one JSON line. */
const CHILD = `
const [build, n] = [process.argv[1], Number(process.argv[2])]
const {formatMessage, parseMessage} = await import(new URL('packages/core/dist/wire/index.js', build))
const {entryToVersion} = await import(new URL('packages/core/dist/wire/version.js', build))
const held = () => { gc(); gc(); return process.memoryUsage().heapUsed }
const origins = ['A', 'B', 'C'].map((c) => c.repeat(52))
const make = () => {
  const files = []
  for (let i = 0; i < n; i++) {
    const origin = origins[i % 3]
    files.push({path: 'd' + String(Math.floor(i / 100)).padStart(4, '0') + '/f' + String(i).padStart(7, '0') + '.bin', size: 1024,
      sha256: i.toString(16).padStart(8, '0').repeat(8), mtimeMs: 1_700_000_000_000 + i,
      ext: {ver: String(i + 1), origin, vv: origin + ':' + (i + 1), osig: (i % 256).toString(16).padStart(2, '0').repeat(64)}})
  }
  return Buffer.from(formatMessage({type: 'FilesToGet', folder: 'big', port: 1234, protocol: 'HTTP', files, meta: {}}))
}
let bytes = make()
const size = bytes.length
const times = []
for (let k = 0; k < 5; k++) { const t0 = performance.now(); parseMessage(bytes); times.push(performance.now() - t0) }
times.sort((a, b) => a - b)
let base = held()
let entries = parseMessage(bytes).files
bytes = undefined
const entriesBytes = held() - base
let versions = entries.map(entryToVersion)
entries = undefined
const versionsBytes = held() - base
if (versions.length !== n) throw new Error('lost versions')
console.log(JSON.stringify({messageBytes: size, parseMs: times[2], entriesBytes, versionsBytes}))
`

const results = []
for (const build of BUILDS) {
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', CHILD, pathToFileURL(build + '/').href, String(N)], {encoding: 'utf8', maxBuffer: 1 << 20})
  results.push({build, files: N, ...JSON.parse(out.trim().split('\n').at(-1))})
}
const mib = (b) => (b / 1048576).toFixed(1)
if (JSON_OUT) process.stdout.write(JSON.stringify({files: N, results}, null, 2) + '\n')
else {
  process.stdout.write(`a FilesToGet of ${N} files with versions (${mib(results[0].messageBytes)} MiB on the wire)\n`)
  for (const r of results)
    process.stdout.write(
      `${r.build}: parse ${r.parseMs.toFixed(0)} ms; entries hold ${mib(r.entriesBytes)} MiB (${Math.round(r.entriesBytes / N)} B/file); versions alone ${mib(r.versionsBytes)} MiB (${Math.round(r.versionsBytes / N)} B/file)\n`,
    )
}
