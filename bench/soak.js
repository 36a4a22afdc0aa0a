#!/usr/bin/env node
// `npm run soak`: the churn of the churn test for a long time (default 30 minutes, 20 peers), in
// cycles: churn (edits, kill -9 and restarts), then every peer up and a wait until all hold the
// expected tree. Reports convergence times (median, max), bytes fetched per change, and each serve
// process's RSS and open fds at start and end (from /proc); peers 0 and 1 are never killed, so
// theirs show growth over the whole run. Fails when a cycle does not converge.
//
//   --minutes M        churn for this long in all (default 30)
//   --peers N          peers (default 20), on 127.0.93.1 … 127.0.93.N with the default ports
//   --cycle-seconds S  churn per cycle before each convergence wait (default 60)
//   --seed S           the run's seed (default: from the clock; printed)
//   --catch-up-ms T    FPEER_SYNC_INTERVAL_MS of every peer (default 4000; see test/src/churn.test.ts)
//   --log-dir DIR      keep each serve's stderr in DIR/peer<i>.log (appended across restarts)
//   --json             one JSON summary on stdout instead of the text report
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const {Churn} = await import(path.join(ROOT, 'test/dist/src/churn.js'))

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return dflt
  const v = Number(process.argv[i + 1])
  if (!Number.isFinite(v) || v < 0) {
    console.error(`--${name} wants a number`)
    process.exit(2)
  }
  return v
}

const minutes = arg('minutes', 30)
const peers = arg('peers', 20)
const cycleMs = arg('cycle-seconds', 60) * 1000
const seed = arg('seed', Date.now() % 1_000_000)
const catchUpMs = arg('catch-up-ms', 4000)
const json = process.argv.includes('--json')
const logDir = process.argv.includes('--log-dir') ? path.resolve(process.argv[process.argv.indexOf('--log-dir') + 1] ?? '.') : undefined
const cycles = Math.max(1, Math.round((minutes * 60_000) / cycleMs))
const say = (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`)

const churn = new Churn({
  peers,
  prefix: '127.0.93',
  seed,
  extraEdges: Math.ceil(peers / 3),
  // Two concurrent edits per cycle.
  sharedFiles: cycles * 2,
  stable: 2,
  env: {FPEER_SYNC_INTERVAL_MS: String(catchUpMs), FPEER_RESCAN_INTERVAL_MS: '10000', FPEER_STALL_TIMEOUT_MS: '5000', FPEER_LOG_LEVEL: 'warn'},
  log: say,
  logDir,
})
let stopping = false
const cleanUp = async () => {
  if (stopping) return
  stopping = true
  await churn.destroy().catch(() => {})
}
process.once('SIGINT', () => void cleanUp().then(() => process.exit(130)))

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? 0 : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

let failure
const converged = []
let startProcs = []
let endProcs = []
let bytes = 0
let changes = 0
try {
  say(`soak: ${peers} peers, ${cycles} cycles of ${cycleMs / 1000} s, seed ${seed}`)
  await churn.build()
  await churn.converge(120_000)
  startProcs = await churn.procs()
  const bytesAtStart = await churn.bytesFetched()
  for (let c = 0; c < cycles && !stopping; c++) {
    await churn.run(cycleMs, 400, 4000, 2)
    await churn.allUp()
    const ms = await churn.converge(300_000)
    converged.push(ms)
    say(`cycle ${c + 1}/${cycles}: ${churn.changes} changes, ${churn.kills} kills so far; converged ${ms} ms after every peer was up`)
    // The never-killed peers' RSS and fds each cycle: the trend, and figures even from a run cut short.
    const now = (await churn.procs()).filter((p) => p.peer < 2)
    say(`cycle ${c + 1}/${cycles}: ${now.map((p) => `peer${p.peer} rss ${(p.rssKiB / 1024).toFixed(1)} MiB fds ${p.fds}`).join('; ')}`)
  }
  // Counters are flushed once a second: let the last ones land.
  await new Promise((r) => setTimeout(r, 2000))
  bytes = (await churn.bytesFetched()) - bytesAtStart
  changes = churn.changes
  endProcs = await churn.procs()
} catch (err) {
  failure = err
  changes = churn.changes
  endProcs = await churn.procs().catch(() => [])
} finally {
  await cleanUp()
}

const byPeer = new Map(startProcs.map((p) => [p.peer, p]))
const procRows = endProcs.map((e) => {
  const s = byPeer.get(e.peer)
  return {peer: e.peer, restarted: !s || s.pid !== e.pid, rssKiB: [s?.rssKiB ?? null, e.rssKiB], fds: [s?.fds ?? null, e.fds]}
})
const summary = {
  seed,
  peers,
  cycles: converged.length,
  edges: churn.edges.length,
  changes,
  kills: churn.kills,
  convergeMs: {median: median(converged), max: Math.max(0, ...converged), all: converged},
  bytesFetched: bytes,
  bytesPerChange: changes ? Math.round(bytes / changes) : 0,
  spuriousConflictCopies: [...churn.spurious],
  procs: procRows,
  ...(failure ? {error: String(failure.message ?? failure)} : {}),
}
if (json) process.stdout.write(JSON.stringify(summary) + '\n')
else {
  console.log(`soak: ${peers} peers, ${summary.edges} edges, seed ${seed}: ${summary.cycles} cycles, ${changes} changes, ${summary.kills} kills`)
  console.log(`convergence after every peer was up: median ${summary.convergeMs.median} ms, max ${summary.convergeMs.max} ms`)
  console.log(`bytes fetched: ${bytes} in all, ${summary.bytesPerChange} per change (over ${peers - 1} other peers)`)
  if (churn.spurious.size) console.log(`conflict copies of files only their owner wrote (nothing lost): ${churn.spurious.size}`)
  console.log('peer  restarted  RSS start→end (MiB)   fds start→end')
  for (const r of procRows) console.log(`${String(r.peer).padStart(4)}  ${r.restarted ? 'yes' : 'no '}        ${r.rssKiB.map((k) => (k === null ? '-' : (k / 1024).toFixed(1))).join(' → ').padEnd(18)}   ${r.fds.map((f) => f ?? '-').join(' → ')}`)
  if (failure) console.log(`FAILED: ${failure.message ?? failure}`)
}
process.exit(failure ? 1 : 0)
