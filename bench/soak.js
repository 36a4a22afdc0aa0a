#!/usr/bin/env node
// `npm run soak`: the churn of the churn test for a long time (default 30 minutes, 20 peers), in
// cycles: churn (edits, kill -9 and restarts), then every peer up and a wait until all hold the
// expected tree. Reports convergence times (median, max), bytes fetched per change, and each serve
// process's RSS (with its split: private memory, and mapped files' pages such as the node
// binary's code) and open fds at start and end (from /proc, each once the never-killed peers
// have been idle long enough to give back what their last work grew: idle to idle); peers 0
// and 1 are never killed, so theirs show growth over the whole run. Prints bytes per change for every cycle, every peer in
// the end table, and PASS/FAIL on convergence, on restarts and on growth past 10 %; exits 1 on any
// FAIL. Growth is judged after the warm-up: the first cycle is a young serve's (V8 compiles the
// code churn runs, 3-4 MiB, and malloc's arenas take the size of the first bursts), and where
// "start" is taken after the joins that build the network, what malloc kept of that burst moved
// the verdict by itself (never-killed peers started at 67.5-101.2 MiB with one configuration).
// A serve also fills what it holds by design for its first 10 minutes (the replay guard keeps
// each nonce for twice the 5-minute freshness window; V8 compiles more of the code churn runs).
// So, with cycles enough, the median of the idle readings of the first 3 cycles that end 10
// minutes or more into the churn is compared with the median of the last 3 cycles' (one reading
// at each end judged malloc's swing of freed memory it keeps, about 9 % of the RSS: the same
// seed gave +11.4 % and +5.4 %); with fewer, the end of cycle 1 with the end; with one, start
// with end. Start → end and the end of cycle 1 → end are printed beside it. A restart that never says it listens is a finding (its log tail printed, the others
// converge without it, the next cycle tries it again), not the end of the run; so is a cycle that
// does not converge within 5 minutes (what differed is printed, the next cycle goes on from there).
// Each cycle also prints the never-killed peers' memory by kind (from stats.json: heap used and
// total, each V8 space, external, array buffers), and the end their RSS growth after cycle 1 (the
// warm-up of a young serve: JIT code, malloc's arenas), then what the program itself holds at
// both ends (V8 heap used, and with --malloc-stats malloc's bytes in use).
//
//   --minutes M        churn for this long in all (default 30)
//   --peers N          peers (default 20), on 127.0.93.1 … 127.0.93.N with the default ports
//   --prefix A.B.C     the peers' loopback /24 instead of 127.0.93 (two soaks on one machine)
//   --cycle-seconds S  churn per cycle before each convergence wait (default 60)
//   --warm-up-minutes M how long into the churn the growth verdict's first band starts (default 10)
//   --seed S           the run's seed (default: from the clock; printed)
//   --catch-up-ms T    FPEER_SYNC_INTERVAL_MS of every peer (default 300000, fpeer's own: what users run;
//                      0 turns the periodic catch-up off, as the churn test does, so only the exchange at
//                      start, owed forwards and retries bring peers together)
//   --max-own-files N  once a peer owns N live files, its edits only modify them, each rewriting
//                      the file's edit line: neither the tree nor any file grows after the first
//                      cycles, so RSS growth after that is not data the peers are asked to keep
//                      (default: unbounded, the tree and its files grow all run)
//   --log-dir DIR      keep each serve's stderr in DIR/peer<i>.log (appended across restarts)
//   --log-level L      FPEER_LOG_LEVEL of every serve (default warn; info or debug to trace a slow cycle)
//   --stable-node-options "FLAGS"
//                      NODE_OPTIONS of the never-killed peers only, for diagnosis (e.g.
//                      "--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=/tmp/snaps")
//   --stable-env "K=V …" more environment of the never-killed peers only, to compare settings a user
//                      can give serve (e.g. "MALLOC_ARENA_MAX=2"); it wins over the unit's
//   --no-unit-env      leave out the environment docs/fpeer.service gives serve (its Environment=
//                      lines but FPEER_HOME), which every serve of the soak otherwise runs with: the
//                      soak measures serve as the documented unit runs it
//   --malloc-stats     with gdb on PATH: each line of the never-killed peers' memory also gives glibc's
//                      own account (malloc_stats(), the serve paused for a moment): what malloc holds
//                      from the system and how much of it is in use, so growth that is freed memory
//                      malloc keeps is told apart from memory the program holds
//   --json             one JSON summary on stdout instead of the text report
// SIGINT ends the run after the cycle under way and reports the cycles done; a second one ends it at once.
import './usage.js'
import {execFile} from 'node:child_process'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {unitEnvironment} from './unit-env.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const {Churn} = await import(path.join(ROOT, 'test/dist/src/churn.js'))
const {MESSAGE_WINDOW_MS} = await import(path.join(ROOT, 'packages/core/dist/access/replay-guard.js'))

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
const catchUpMs = arg('catch-up-ms', 300_000)
const maxOwnFiles = process.argv.includes('--max-own-files') ? arg('max-own-files', undefined) : undefined
const json = process.argv.includes('--json')
const prefix = process.argv.includes('--prefix') ? process.argv[process.argv.indexOf('--prefix') + 1] : '127.0.93'
if (!/^127\.\d{1,3}\.\d{1,3}$/.test(prefix ?? '')) {
  console.error('--prefix wants the first three parts of a loopback address, e.g. 127.0.94')
  process.exit(2)
}
const logDir = process.argv.includes('--log-dir') ? path.resolve(process.argv[process.argv.indexOf('--log-dir') + 1] ?? '.') : undefined
const logLevel = process.argv.includes('--log-level') ? process.argv[process.argv.indexOf('--log-level') + 1] : 'warn'
const stableNodeOptions = process.argv.includes('--stable-node-options') ? process.argv[process.argv.indexOf('--stable-node-options') + 1] : undefined
const stableEnvArg = process.argv.includes('--stable-env') ? process.argv[process.argv.indexOf('--stable-env') + 1] : undefined
const stableEnv = {}
for (const kv of (stableEnvArg ?? '').split(/\s+/).filter(Boolean)) {
  const at = kv.indexOf('=')
  if (at < 1) {
    console.error(`--stable-env wants K=V pairs, not ${JSON.stringify(kv)}`)
    process.exit(2)
  }
  stableEnv[kv.slice(0, at)] = kv.slice(at + 1)
}
if (stableNodeOptions) stableEnv.NODE_OPTIONS = stableNodeOptions
// What docs/fpeer.service sets in serve's environment (glibc's malloc settings), but the home: every serve runs with it.
let unitEnv = {}
if (!process.argv.includes('--no-unit-env')) {
  try {
    unitEnv = unitEnvironment(await readFile(path.join(ROOT, 'docs/fpeer.service'), 'utf8'))
  } catch (err) {
    console.error(`${err.message} (--no-unit-env runs the soak without the unit's environment)`)
    process.exit(2)
  }
}
const mallocStats = process.argv.includes('--malloc-stats')
const cycles = Math.max(1, Math.round((minutes * 60_000) / cycleMs))
const say = (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`)

const churn = new Churn({
  peers,
  prefix,
  seed,
  extraEdges: Math.ceil(peers / 3),
  // Two concurrent edits per cycle.
  sharedFiles: cycles * 2,
  stable: 2,
  ...(maxOwnFiles !== undefined ? {maxOwnFiles} : {}),
  ...(Object.keys(stableEnv).length ? {stableEnv} : {}),
  env: {...unitEnv, FPEER_SYNC_INTERVAL_MS: String(catchUpMs), FPEER_RESCAN_INTERVAL_MS: '10000', FPEER_STALL_TIMEOUT_MS: '5000', FPEER_LOG_LEVEL: logLevel},
  log: say,
  logDir,
})
let stopping = false
const cleanUp = async () => {
  if (stopping) return
  stopping = true
  await churn.destroy().catch(() => {})
}
// The first SIGINT ends the run after the cycle under way, with the report of the cycles done; a second one at once.
let interrupted = false
process.once('SIGINT', () => {
  interrupted = true
  say('SIGINT: stopping after this cycle (again: at once)')
  process.once('SIGINT', () => void cleanUp().then(() => process.exit(130)))
})

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? 0 : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** What peer `i`'s last stats flush says of its memory by kind (heap used/total, external, array buffers), in MiB. */
/** A peer's stats.json (replaced whole by serve; {} when there is none yet). */
const statsOf = async (i) => {
  try {
    return JSON.parse(await readFile(path.join(churn.peers[i].home, 'stats.json'), 'utf8'))
  } catch {
    return {}
  }
}

/** One never-killed serve as the log lines show it: RSS, its private and file-backed parts, fds, then `mem` (memoryOf). */
const procLine = (p, mem) => {
  const mib = (kib) => (kib / 1024).toFixed(1)
  const malloc = p.malloc ? `, malloc holds ${mib(p.malloc.systemKiB)} MiB, ${mib(p.malloc.inUseKiB)} in use` : mallocStats ? ', malloc: no figures (gdb?)' : ''
  return `peer${p.peer} rss ${mib(p.rssKiB)} MiB (anon ${mib(p.anonKiB)}, file ${mib(p.fileKiB)}) fds ${p.fds}${mem}${malloc}`
}

/** V8 heap used (KiB) in peer `i`'s last stats flush, or null. */
const heapUsedOf = async (i) => {
  const used = (await statsOf(i)).memory?.heapUsed
  return typeof used === 'number' ? Math.round(used / 1024) : null
}

const memoryOf = async (i) => {
  const m = (await statsOf(i)).memory
  const f = (b) => (b / 1048576).toFixed(1)
  const spaces = m?.spaces ? `, spaces ${Object.entries(m.spaces).filter(([, k]) => k >= 1024).map(([n, k]) => `${n} ${(k / 1024).toFixed(1)}`).join(' ')}` : ''
  return m ? ` (heap ${f(m.heapUsed)}/${f(m.heapTotal)}, external ${f(m.external)}, arrayBuffers ${f(m.arrayBuffers)}${spaces})` : ''
}

/**
 * glibc's account of process `pid`'s malloc, from malloc_stats() called in it through gdb (its
 * stderr pointed at a file for the call, then put back): {systemKiB, inUseKiB} of all arenas and
 * mapped blocks, or undefined (no gdb, not glibc, not allowed to attach).
 */
async function mallocOf(pid) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fpeer-soak-malloc-'))
  const out = path.join(dir, 'stats')
  try {
    // open(2) flags O_WRONLY|O_CREAT (65), mode 0600 (384).
    const commands = ['set $s = (int) dup(2)', `set $f = (int) open("${out}", 65, 384)`, 'call (int) dup2($f, 2)', 'call (void) malloc_stats()', 'call (int) dup2($s, 2)', 'call (int) close($f)', 'call (int) close($s)']
    await new Promise((resolve, reject) => execFile('gdb', ['-p', String(pid), '-batch', ...commands.flatMap((c) => ['-ex', c])], {timeout: 60_000}, (err) => (err ? reject(err) : resolve())))
    const text = await readFile(out, 'utf8')
    const total = text.slice(text.lastIndexOf('Total'))
    const system = Number(/system bytes\s*=\s*(\d+)/.exec(total)?.[1])
    const inUse = Number(/in use bytes\s*=\s*(\d+)/.exec(total)?.[1])
    return Number.isFinite(system) && Number.isFinite(inUse) ? {systemKiB: Math.round(system / 1024), inUseKiB: Math.round(inUse / 1024)} : undefined
  } catch {
    return undefined
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
}

/** With --malloc-stats, adds `malloc` ({systemKiB, inUseKiB}) to each of `procs` (in place); returns them. */
async function withMalloc(procs) {
  if (mallocStats) for (const p of procs) p.malloc = await mallocOf(p.pid)
  return procs
}

/**
 * RSS is compared idle to idle: a serve gives back, once idle, the memory its last burst of
 * work grew (FPEER_IDLE_RECLAIM_MS, packages/core/src/memory.ts), and what it keeps then is
 * what it holds. Waits (at most 30 s) until each never-killed peer's stats.json shows a reclaim
 * after `since`; returns the peers that showed none (measured anyway).
 */
const idleSettled = async (since) => {
  const end = Date.now() + 30_000
  const pending = new Set([0, 1].filter((i) => i < peers))
  while (pending.size && Date.now() < end) {
    for (const i of [...pending]) {
      const m = (await statsOf(i)).memory
      if ((m?.reclaims?.lastAt ?? 0) > since) pending.delete(i)
    }
    if (pending.size) await new Promise((r) => setTimeout(r, 250))
  }
  if (pending.size) say(`peer ${[...pending].join(', ')}: no idle reclaim within 30 s; measured as they are`)
  return [...pending]
}

let failure
const converged = []
/** One row per cycle, converged or not: its changes, kills, bytes fetched and convergence time (null: it did not converge). */
const cycleRows = []
let startProcs = []
/** When the last cycle's churn ended: a reclaim after it is one of the idle peer that followed. */
let churnEnd = 0
/** The processes after the first cycle, idle: a young serve warms up then (JIT code, malloc's arenas), shown apart from growth after it. */
let warmProcs = []
/** The never-killed peers' idle readings at the end of each cycle, in order: the bands the growth verdict compares. */
const cycleProcs = []
/** When each of cycleProcs was read. */
const cycleAt = []
/** When the first cycle's churn began (after the joins): the warm-up is counted from here. */
let churnStart = 0
let endProcs = []
let bytes = 0
let bytesAtStart = 0
let changes = 0
let changesAtStart = 0
/** Counters are flushed once a second: let the last ones land before reading them. */
const settleCounters = () => new Promise((r) => setTimeout(r, 1500))
try {
  say(`soak: ${peers} peers, ${cycles} cycles of ${cycleMs / 1000} s, seed ${seed}${maxOwnFiles !== undefined ? `, at most ${maxOwnFiles} own files per peer` : ''}${Object.keys(unitEnv).length ? `; every serve with docs/fpeer.service's ${Object.entries(unitEnv).map(([k, v]) => `${k}=${v}`).join(' ')}` : ''}`)
  await churn.build()
  await churn.converge(120_000)
  // Any reclaim since the serves started: their start-up (scan, joins, first exchanges) is over.
  await idleSettled(0)
  startProcs = await churn.procs()
  churnStart = Date.now()
  const first = await withMalloc(startProcs.filter((p) => p.peer < 2))
  const firstMem = await Promise.all(first.map((p) => memoryOf(p.peer)))
  say(`start: ${first.map((p, k) => procLine(p, firstMem[k])).join('; ')}`)
  bytesAtStart = await churn.bytesFetched()
  changesAtStart = churn.changes
  for (let c = 0; c < cycles && !stopping && !interrupted; c++) {
    const before = {bytes: await churn.bytesFetched(), changes: churn.changes, kills: churn.kills}
    await churn.run(cycleMs, 400, 4000, 2)
    churnEnd = Date.now()
    // A restart that never came up is a finding (churn.startFailures, with the peer's log tail),
    // not the end of the run: the others converge without it, and the next cycle tries it again.
    const failedBefore = churn.startFailures.length
    await churn.allUp().catch(() => {})
    for (const f of churn.startFailures.slice(failedBefore)) say(`FINDING: peer${f.peer} did not come up after ${f.attempts} tries; its log tail:\n    ${f.logTail.join('\n    ')}`)
    const down = churn.up.flatMap((u, i) => (u ? [] : [i]))
    const row = {cycle: c + 1, changes: churn.changes - before.changes, kills: churn.kills - before.kills, down, convergeMs: null, bytes: 0, bytesPerChange: 0}
    cycleRows.push(row)
    const laggingBefore = churn.lagging.length
    try {
      row.convergeMs = await churn.converge(300_000, 500, {skipDown: true})
      converged.push(row.convergeMs)
    } catch (err) {
      // A cycle that did not converge in time is a finding too (what still differed, and its history);
      // the next cycle goes on from there, and the verdict stays FAIL.
      row.notConverged = String(err.message ?? err)
        .split('\n')
        .slice(0, 12)
        .join('\n')
      say(`FINDING: cycle ${c + 1} did not converge:\n    ${String(err.message ?? err).split('\n').slice(0, 40).join('\n    ')}`)
    } finally {
      // Bytes per change of this cycle, converged or not: a storm shows as bytes that grow with no convergence.
      await settleCounters()
      row.bytes = (await churn.bytesFetched()) - before.bytes
      row.bytesPerChange = row.changes ? Math.round(row.bytes / row.changes) : 0
      // What still differed as the peers came together: a straggler or a general lag.
      say(`cycle ${c + 1}/${cycles} convergence:\n    ${churn.lagging.slice(laggingBefore).join('\n    ')}`)
      say(`cycle ${c + 1}/${cycles}: ${row.changes} changes, ${row.kills} kills${down.length ? `, peer ${down.join(', ')} down (did not restart)` : ''}; ${row.convergeMs === null ? 'NOT converged' : `converged ${row.convergeMs} ms after every peer was up`}; ${row.bytes} bytes fetched, ${row.bytesPerChange} per change`)
    }
    // The never-killed peers' RSS and fds each cycle, idle (after a reclaim since the churn ended):
    // the trend, and figures even from a run cut short.
    await idleSettled(churnEnd)
    const all = await churn.procs()
    const now = await withMalloc(all.filter((p) => p.peer < 2))
    const mem = await Promise.all(now.map((p) => memoryOf(p.peer)))
    cycleProcs.push(now)
    cycleAt.push(Date.now())
    if (c === 0) {
      for (const p of now) p.heapUsedKiB = await heapUsedOf(p.peer)
      warmProcs = all
    }
    say(`cycle ${c + 1}/${cycles}: ${now.map((p, k) => procLine(p, mem[k])).join('; ')}`)
  }
} catch (err) {
  failure = err
} finally {
  await settleCounters()
  bytes = (await churn.bytesFetched().catch(() => bytesAtStart)) - bytesAtStart
  changes = churn.changes - changesAtStart
  if (!failure) await idleSettled(churnEnd).catch(() => {})
  endProcs = await churn.procs().catch(() => [])
  const last = await withMalloc(endProcs.filter((p) => p.peer < 2)).catch(() => [])
  const lastMem = await Promise.all(last.map((p) => memoryOf(p.peer).catch(() => '')))
  for (const p of last) p.heapUsedKiB = await heapUsedOf(p.peer).catch(() => null)
  say(`end: ${last.map((p, k) => procLine(p, lastMem[k])).join('; ')}`)
  churn.tallyLogs()
  await cleanUp()
}

const pct = (a, b) => (a === null || a === undefined || !a ? null : Math.round(((b - a) / a) * 1000) / 10)
const startBy = new Map(startProcs.map((p) => [p.peer, p]))
const warmBy = new Map(warmProcs.map((p) => [p.peer, p]))
const endBy = new Map(endProcs.map((p) => [p.peer, p]))
// Every peer, up or not at the end: a peer missing from the table is a peer nobody looked at.
const procRows = Array.from({length: peers}, (_, peer) => {
  const s = startBy.get(peer)
  const e = endBy.get(peer)
  const restarted = !s || !e || s.pid !== e.pid
  const w = warmBy.get(peer)
  // What the verdict judges: growth from the idle end of cycle 1 (the serve warmed up) to the end.
  const afterCycle1 = restarted || !w || w.pid !== e.pid ? null : {rssKiB: w.rssKiB, fds: w.fds, rssPct: pct(w.rssKiB, e.rssKiB), fdsPct: pct(w.fds, e.fds)}
  // What the program holds at both ends of that: V8 heap used, and malloc's bytes in use (--malloc-stats).
  const heldKiB = afterCycle1 && peer < 2 ? {heapUsed: [w.heapUsedKiB ?? null, e.heapUsedKiB ?? null], ...(mallocStats ? {mallocInUse: [w.malloc?.inUseKiB ?? null, e.malloc?.inUseKiB ?? null]} : {})} : undefined
  return {peer, up: e !== undefined, restarted, rssKiB: [s?.rssKiB ?? null, e?.rssKiB ?? null], anonKiB: [s?.anonKiB ?? null, e?.anonKiB ?? null], fileKiB: [s?.fileKiB ?? null, e?.fileKiB ?? null], fds: [s?.fds ?? null, e?.fds ?? null], ...(mallocStats && peer < 2 ? {mallocKiB: [s?.malloc ?? null, e?.malloc ?? null]} : {}), growthPct: restarted ? null : {rss: pct(s.rssKiB, e.rssKiB), fds: pct(s.fds, e.fds)}, afterCycle1, ...(heldKiB ? {heldKiB} : {})}
})
const GROWTH_LIMIT_PCT = 10
/**
 * With enough cycles, growth is judged band to band, after the warm-up: the median of the idle
 * readings of the first three cycles that end WARM_UP_MS or more into the churn, against the
 * median of the last three cycles'. Why a band: what malloc keeps of freed memory swings 7 MiB
 * (9 % of a serve's RSS) from one idle reading to the next while what the program holds moves by
 * tenths of a MiB, so one reading at each end judged that swing (the same command and seed gave
 * +11.4 % and +5.4 %). Why 10 minutes: a serve fills what it holds by design for that long. The
 * replay guard keeps each nonce for twice the 5-minute freshness window (access/replay-guard.ts),
 * and V8 keeps compiling code the churn runs; a 30-minute run of 20 peers (seed 708807) rose
 * from 79.7 MiB (cycles 2-4) to 88.3 (cycles 9-11) and then stayed at 85.6-90.7 MiB for 22
 * cycles, ending at 88.5. Start → end and the end of cycle 1 → end are printed beside it.
 */
const BAND = 3
const WARM_UP_MS = arg('warm-up-minutes', (2 * MESSAGE_WINDOW_MS) / 60_000) * 60_000
const warmAt = cycleAt.findIndex((at) => at - churnStart >= WARM_UP_MS)
const warm = Math.max(1, warmAt)
const banded = warmAt >= 0 && cycleProcs.length >= warm + 2 * BAND
const bandOf = (peer, readings, pid) => {
  const mine = readings.map((ps) => ps.find((p) => p.peer === peer)).filter((p) => p && p.pid === pid)
  return mine.length === readings.length ? {rssKiB: median(mine.map((p) => p.rssKiB)), fds: median(mine.map((p) => p.fds)), cycles: readings.length} : null
}
for (const r of procRows) {
  const e = endBy.get(r.peer)
  if (!banded || r.restarted || !e || r.peer >= 2) continue
  const early = bandOf(r.peer, cycleProcs.slice(warm, warm + BAND), e.pid)
  const late = bandOf(r.peer, cycleProcs.slice(-BAND), e.pid)
  if (early && late) r.bands = {early: {...early, from: warm + 1, to: warm + BAND}, late: {...late, from: cycleProcs.length - BAND + 1, to: cycleProcs.length}, rssPct: pct(early.rssKiB, late.rssKiB), fdsPct: pct(early.fds, late.fds)}
}
// Band to band after the warm-up with enough cycles; else from the end of cycle 1 when there was more than one; else start → end.
const fromWarm = cycleRows.length > 1
const growthFrom = banded ? `median of cycles ${warm + 1}-${warm + BAND} (the first ${WARM_UP_MS / 60_000} minutes are warm-up) → median of the last ${BAND}` : fromWarm ? 'end of cycle 1 → end' : 'start → end'
const judged = (r) => (banded ? r.bands && {rss: r.bands.rssPct, fds: r.bands.fdsPct} : fromWarm ? r.afterCycle1 && {rss: r.afterCycle1.rssPct, fds: r.afterCycle1.fdsPct} : r.growthPct)
const longLived = procRows.filter((r) => judged(r))
const grew = longLived.filter((r) => judged(r).rss > GROWTH_LIMIT_PCT || judged(r).fds > GROWTH_LIMIT_PCT)
const allConverged = !failure && (interrupted || cycleRows.length === cycles) && cycleRows.every((r) => r.convergeMs !== null)
const summary = {
  seed,
  peers,
  ...(maxOwnFiles !== undefined ? {maxOwnFiles} : {}),
  cycles: cycleRows.length,
  ...(interrupted ? {interrupted: `stopped by SIGINT after ${cycleRows.length} of ${cycles} cycles`} : {}),
  edges: churn.edges.length,
  unitEnv,
  changes,
  kills: churn.kills,
  convergeMs: {median: median(converged), max: Math.max(0, ...converged), all: converged},
  cycleRows,
  bytesFetched: bytes,
  bytesPerChange: changes ? Math.round(bytes / changes) : 0,
  codes: Object.fromEntries([...churn.codes].sort((a, b) => b[1] - a[1])),
  spuriousConflictCopies: [...churn.spurious],
  startFailures: churn.startFailures,
  startMs: {median: median(churn.startMs), max: Math.max(0, ...churn.startMs), starts: churn.startMs.length},
  procs: procRows,
  verdict: {convergence: allConverged ? 'PASS' : 'FAIL', restarts: churn.startFailures.length ? 'FAIL' : 'PASS', growth: longLived.length === 0 ? 'n/a' : grew.length ? 'FAIL' : 'PASS', growthLimitPct: GROWTH_LIMIT_PCT, growthFrom},
  ...(failure ? {error: String(failure.message ?? failure)} : {}),
}
const mib = (k) => (k === null ? '-' : (k / 1024).toFixed(1))
const signed = (x) => (x === null ? '-' : `${x > 0 ? '+' : ''}${x}%`)
if (json) process.stdout.write(JSON.stringify(summary) + '\n')
else {
  console.log(`soak: ${peers} peers, ${summary.edges} edges, seed ${seed}${maxOwnFiles !== undefined ? `, at most ${maxOwnFiles} own files per peer` : ''}: ${summary.cycles} cycles${interrupted ? ` (of ${cycles}: stopped by SIGINT)` : ''}, ${changes} changes, ${summary.kills} kills`)
  console.log(`convergence after every peer was up: median ${summary.convergeMs.median} ms, max ${summary.convergeMs.max} ms (${converged.length} of ${cycleRows.length} cycles converged)`)
  console.log('cycle  changes  kills  converged (ms)  bytes fetched  bytes/change')
  for (const r of cycleRows) console.log(`${String(r.cycle).padStart(5)}  ${String(r.changes).padStart(7)}  ${String(r.kills).padStart(5)}  ${String(r.convergeMs ?? 'NO').padStart(14)}  ${String(r.bytes).padStart(13)}  ${String(r.bytesPerChange).padStart(12)}`)
  console.log(`bytes fetched: ${bytes} in all, ${summary.bytesPerChange} per change (over ${peers - 1} other peers)`)
  console.log(`logged error codes: ${Object.entries(summary.codes).map(([c, n]) => `${c} ${n}`).join(', ') || 'none'}`)
  if (churn.spurious.size) console.log(`conflict copies of files only their owner wrote (nothing lost): ${churn.spurious.size}`)
  console.log('peer  up   restarted  RSS start→end (MiB)   growth   fds start→end   growth')
  for (const r of procRows) console.log(`${String(r.peer).padStart(4)}  ${r.up ? 'yes' : 'no '}  ${r.restarted ? 'yes' : 'no '}        ${r.rssKiB.map(mib).join(' → ').padEnd(18)}   ${signed(r.growthPct?.rss ?? null).padStart(7)}   ${r.fds.map((f) => f ?? '-').join(' → ').padEnd(13)}   ${signed(r.growthPct?.fds ?? null).padStart(7)}`)
  console.log(`convergence: ${summary.verdict.convergence}${allConverged ? '' : ` (${cycleRows.length - converged.length} of ${cycleRows.length} cycles did not converge${failure ? `; ${failure.message?.split('\n')[0] ?? failure}` : ''})`}`)
  console.log(`serve starts: ${summary.startMs.starts}, ready after median ${summary.startMs.median} ms, max ${summary.startMs.max} ms`)
  console.log(`restarts: ${summary.verdict.restarts}${churn.startFailures.length ? ` (${churn.startFailures.length} did not come up: ${churn.startFailures.map((f) => `peer${f.peer}`).join(', ')})` : ''}`)
  for (const f of churn.startFailures) console.log(`  peer${f.peer} at ${(f.at / 1000).toFixed(1)} s: ${f.error}\n    ${f.logTail.slice(-10).join('\n    ')}`)
  for (const r of procRows.filter((r) => r.mallocKiB?.every(Boolean))) {
    const [a, b] = r.mallocKiB
    console.log(`peer ${r.peer}: malloc holds ${mib(a.systemKiB)} → ${mib(b.systemKiB)} MiB, ${mib(a.inUseKiB)} → ${mib(b.inUseKiB)} MiB of it in use`)
  }
  for (const r of procRows.filter((r) => r.afterCycle1)) console.log(`peer ${r.peer}: RSS after cycle 1 ${mib(r.afterCycle1.rssKiB)} MiB, ${signed(r.afterCycle1.rssPct)} to the end; fds ${r.afterCycle1.fds} → ${r.fds[1]}`)
  for (const r of procRows.filter((r) => r.heldKiB)) {
    const {heapUsed, mallocInUse} = r.heldKiB
    console.log(`peer ${r.peer}: held by the program after cycle 1 → end: V8 heap used ${heapUsed.map(mib).join(' → ')} MiB${mallocInUse ? `, malloc in use ${mallocInUse.map(mib).join(' → ')} MiB` : ''}`)
  }
  for (const r of procRows.filter((r) => r.bands)) {
    const {early, late} = r.bands
    console.log(`peer ${r.peer}: RSS median of cycles ${early.from}-${early.to} ${mib(early.rssKiB)} MiB → of cycles ${late.from}-${late.to} ${mib(late.rssKiB)} MiB (${signed(r.bands.rssPct)}); fds ${early.fds} → ${late.fds}`)
  }
  console.log(`growth of never-restarted peers (RSS and fds, ${growthFrom}, limit ${GROWTH_LIMIT_PCT}%): ${summary.verdict.growth}${grew.length ? ` (peer ${grew.map((r) => r.peer).join(', ')})` : ''}`)
  if (failure) console.log(`FAILED: ${failure.message ?? failure}`)
}
process.exit(failure || summary.verdict.convergence === 'FAIL' || summary.verdict.restarts === 'FAIL' || summary.verdict.growth === 'FAIL' ? 1 : 0)
