#!/usr/bin/env node
// `npm run bench`: times a full `fpeer request` (handshake, transfer and the host's fetch-back
// check) between two peers on loopback, beside `cp -a` and the reference tools of
// ../shared/bench/anchors.sh measured in the same run, and prints the ratios.
//
//   BENCH=small,large        scenarios to run (default: small,large; `all` adds FTP, SFTP and chain10,
//                            the update of one file along a chain of 10 peers sharing the small set)
//   BENCH_RUNS=3             runs per scenario and per anchor; the median is reported
//   BENCH_ANCHORS=a,b|none   override the reference tools (names of anchors.sh, or `syncthing`)
//   BENCH_TIMEOUT_S=600      one fpeer run or one anchors.sh invocation is killed after this
//   --json                   one JSON document on stdout instead of the table
//
// Loopback only: the host serves on 127.0.0.1, the requester binds 127.0.0.2. Every process
// started here is killed and every temp directory removed on exit, including on Ctrl-C.
import {spawn} from 'node:child_process'
import {mkdtemp, readFile, rm, readdir, stat, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const FPEER = path.join(ROOT, 'packages/cli/bin/run.js')
const SHARED = process.env.BENCH_SHARED || path.resolve(ROOT, '../shared/bench')
/** Where mkdata.sh writes the workloads and anchors.sh reads them (fixed there). */
const DATA = '/tmp/fpeer-bench'
const RUNS = Math.max(1, Math.min(50, Number(process.env.BENCH_RUNS || 3) || 3))
const TIMEOUT_MS = Math.max(10, Number(process.env.BENCH_TIMEOUT_S || 600) || 600) * 1000
const JSON_OUT = process.argv.includes('--json')
const HOST = '127.0.0.1'
const REQUESTER = '127.0.0.2'

/** What is compared: per workload, fpeer over one protocol against the tools a user would pick instead. */
const SCENARIOS = [
  {name: 'small', kind: 'request', workload: 'small', protocol: 'HTTP', anchors: ['cp-local-limit', 'rsync-daemon', 'rclone-http-nginx']},
  {name: 'large', kind: 'request', workload: 'large', protocol: 'HTTP', anchors: ['cp-local-limit', 'lftp-mirror-vsftpd', 'rsync-daemon', 'rclone-http-nginx']},
  {name: 'small-ftp', kind: 'request', workload: 'small', protocol: 'FTP', plugins: ['ftp'], anchors: ['cp-local-limit', 'lftp-mirror-vsftpd', 'rclone-ftp-vsftpd']},
  {name: 'large-ftp', kind: 'request', workload: 'large', protocol: 'FTP', plugins: ['ftp'], anchors: ['cp-local-limit', 'lftp-mirror-vsftpd']},
  {name: 'small-sftp', kind: 'request', workload: 'small', protocol: 'SFTP', plugins: ['sftp'], anchors: ['cp-local-limit', 'sftp-openssh', 'rclone-sftp-openssh']},
  {name: 'large-sftp', kind: 'request', workload: 'large', protocol: 'SFTP', plugins: ['sftp'], anchors: ['cp-local-limit', 'sftp-openssh']},
  {name: 'chain10', kind: 'chain', workload: 'small', protocol: 'HTTP', peers: 10, anchors: []},
]
const DEFAULT_SET = ['small', 'large']

// --- process and temp-dir bookkeeping ------------------------------------------------------
const children = new Set()
const temps = new Set()

async function tempDir(prefix) {
  const d = await mkdtemp(path.join(os.tmpdir(), prefix))
  temps.add(d)
  return d
}

async function removeTemp(d) {
  temps.delete(d)
  await rm(d, {recursive: true, force: true})
}

function killTree(child, signal = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-child.pid, signal) // its own process group: anchors.sh's servers go with it
  } catch {
    child.kill(signal)
  }
}

async function cleanup() {
  for (const c of children) killTree(c)
  await new Promise((r) => setTimeout(r, children.size ? 300 : 0))
  for (const c of children) killTree(c, 'SIGKILL')
  await Promise.all([...temps].map((d) => rm(d, {recursive: true, force: true})))
}

let stopping = false
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (stopping) return
    stopping = true
    process.stderr.write(`\nbench: ${sig}, cleaning up\n`)
    void cleanup().finally(() => process.exit(130))
  })
}

/**
 * Runs a command to completion in its own process group, bounded by `timeoutMs`.
 * Resolves with its exit code, output and wall time (ms, from spawn to exit).
 */
function run(cmd, args, {env = process.env, timeoutMs = TIMEOUT_MS, cwd = ROOT} = {}) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    const child = spawn(cmd, args, {env, cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true})
    children.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-20_000)))
    const timer = setTimeout(() => {
      process.stderr.write(`bench: ${path.basename(cmd)} ${args.slice(0, 3).join(' ')} timed out after ${timeoutMs / 1000} s\n`)
      killTree(child, 'SIGKILL')
    }, timeoutMs)
    child.once('error', (err) => {
      clearTimeout(timer)
      children.delete(child)
      reject(err)
    })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      children.delete(child)
      resolve({code: code ?? (signal ? 128 : 1), stdout, stderr, ms: Number(process.hrtime.bigint() - t0) / 1e6})
    })
  })
}

/** Starts a long-running process and resolves with it and its first stdout line (a JSON ready document). */
function startServer(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true})
    children.add(child)
    let out = ''
    let err = ''
    const timer = setTimeout(() => fail(new Error('did not start in 60 s')), 60_000)
    const fail = (e) => {
      clearTimeout(timer)
      killTree(child, 'SIGKILL')
      reject(new Error(`${e.message}: ${err.slice(-2000)}`))
    }
    child.stderr.on('data', (d) => (err = (err + d).slice(-20_000)))
    child.stdout.on('data', (d) => {
      out += d
      const nl = out.indexOf('\n')
      if (nl < 0) return
      clearTimeout(timer)
      try {
        resolve({child, ready: JSON.parse(out.slice(0, nl)), stderr: () => err})
      } catch (e) {
        fail(e)
      }
    })
    child.once('close', (code) => fail(new Error(`exited ${code}`)))
  })
}

async function stopServer(child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const closed = new Promise((r) => child.once('close', r))
  killTree(child, 'SIGTERM')
  const t = setTimeout(() => killTree(child, 'SIGKILL'), 5000)
  await closed
  clearTimeout(t)
  children.delete(child)
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

async function bytesOf(dir) {
  let n = 0
  let files = 0
  for (const ent of await readdir(dir, {withFileTypes: true})) {
    const p = path.join(dir, ent.name)
    if (ent.isDirectory()) {
      const r = await bytesOf(p)
      n += r.bytes
      files += r.files
    } else if (ent.isFile()) {
      n += (await stat(p)).size
      files++
    }
  }
  return {bytes: n, files}
}

function log(line) {
  process.stderr.write(`bench: ${line}\n`)
}

// --- fpeer --------------------------------------------------------------------------------

/**
 * The environment of one peer: its own FPEER_HOME, and oclif data/config/cache dirs of the
 * bench's own, so a user's installed plugins never load and the `plugins` listed are linked in.
 */
async function peerEnv(label, xdg) {
  const home = await tempDir(`fpeer-bench-${label}-`)
  const env = {...process.env, FPEER_HOME: home, FPEER_LOG_LEVEL: process.env.FPEER_LOG_LEVEL || 'warn', XDG_DATA_HOME: `${xdg}/data`, XDG_CONFIG_HOME: `${xdg}/config`, XDG_CACHE_HOME: `${xdg}/cache`}
  delete env.NODE_OPTIONS
  delete env.DEBUG
  return {home, env}
}

/** One oclif data dir per plugin set, with the plugins linked (as `fpeer plugins:link` does). */
const xdgDirs = new Map()
async function xdgFor(plugins = []) {
  const key = [...plugins].sort().join(',')
  if (xdgDirs.has(key)) return xdgDirs.get(key)
  const xdg = await tempDir('fpeer-bench-xdg-')
  const env = {...process.env, XDG_DATA_HOME: `${xdg}/data`, XDG_CONFIG_HOME: `${xdg}/config`, XDG_CACHE_HOME: `${xdg}/cache`, FPEER_HOME: `${xdg}/home`}
  for (const p of plugins) {
    const r = await run(process.execPath, [FPEER, 'plugins:link', '--no-install', path.join(ROOT, 'plugins', p)], {env, timeoutMs: 60_000})
    if (r.code !== 0) throw new Error(`fpeer plugins:link plugins/${p} failed: ${r.stderr}`)
  }
  xdgDirs.set(key, xdg)
  return xdg
}

/**
 * A full `fpeer request` of one workload: a host that already shares it (`fpeer share`, not
 * timed, as for a user whose folder is shared) runs `fpeer serve` on 127.0.0.1; each run is
 * a fresh requester (new FPEER_HOME, new destination) binding 127.0.0.2, timed from the
 * spawn of `fpeer request` to its exit, and checked afterwards (exit 0, every file there).
 */
async function benchRequest(sc, source, runs) {
  const xdg = await xdgFor(sc.plugins)
  const host = await peerEnv('host', xdg)
  const share = await run(process.execPath, [FPEER, 'share', source, '--name', sc.workload, '--open', '--json'], {env: host.env})
  if (share.code !== 0) throw new Error(`fpeer share failed: ${share.stdout} ${share.stderr}`)
  const expected = JSON.parse(share.stdout)
  const dataPorts = ['HTTP', ...(sc.protocol === 'HTTP' ? [] : [sc.protocol])].flatMap((p) => ['--data-port', `${p}=0`])
  const server = await startServer(process.execPath, [FPEER, 'serve', '--host', HOST, '--port', '0', ...dataPorts, '--json'], host.env)
  const times = []
  let status = 'ok'
  try {
    for (let i = 0; i < runs && !stopping; i++) {
      const req = await peerEnv('req', xdg)
      const dst = path.join(req.home, 'dst')
      const args = [FPEER, 'request', `${HOST}:${server.ready.control}`, sc.workload, '--into', dst, '--bind', REQUESTER, '--protocol', sc.protocol, '--progress', 'none']
      const r = await run(process.execPath, args, {env: req.env})
      let ok = r.code === 0 ? 'ok' : `exit ${r.code}`
      if (r.code === 0) {
        const got = await bytesOf(dst).catch(() => ({files: -1, bytes: -1}))
        if (got.files !== expected.files || got.bytes !== expected.bytes) ok = `MISMATCH (${got.files} files, ${got.bytes} bytes)`
      } else {
        log(`${sc.name} run ${i + 1}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`)
      }
      if (ok !== 'ok' && status === 'ok') status = ok
      times.push(r.ms)
      log(`${sc.name} run ${i + 1}/${runs}: ${(r.ms / 1000).toFixed(2)} s ${ok}`)
      await removeTemp(req.home)
    }
  } finally {
    await stopServer(server.child)
    await removeTemp(host.home)
  }
  return {tool: `fpeer request (${sc.protocol})`, times, median: median(times), status, bytes: expected.bytes, files: expected.files}
}

/**
 * Issue 4's update benchmark: a chain of `sc.peers` peers (127.0.20.1 … .N, each its own home
 * and `fpeer serve` on the default ports) sharing the workload, joined one after the other
 * (not timed). Each run changes one file at one end and times until the last peer holds the
 * new content; the bytes moved are the fetched bytes (and fetch-back checks) every peer counted.
 */
async function benchChain(sc, source, runs) {
  const xdg = await xdgFor([])
  const peers = []
  for (let i = 0; i < sc.peers; i++) {
    const p = await peerEnv(`chain${i}`, xdg)
    p.env.FPEER_SYNC_INTERVAL_MS = '3600000'
    p.env.FPEER_RESCAN_INTERVAL_MS = '3600000'
    p.address = `127.0.20.${i + 1}`
    p.dir = path.join(p.home, 'folder')
    peers.push(p)
  }
  const first = peers[0]
  const cp = await run('cp', ['-a', source, first.dir])
  if (cp.code !== 0) throw new Error(`cp -a failed: ${cp.stderr}`)
  const share = await run(process.execPath, [FPEER, 'share', first.dir, '--name', sc.workload, '--json'], {env: first.env})
  if (share.code !== 0) throw new Error(`fpeer share failed: ${share.stderr}`)
  const servers = []
  const stats = async () => {
    let bytes = 0
    let files = 0
    let messages = 0
    for (const p of peers) {
      const s = JSON.parse(await readFile(path.join(p.home, 'stats.json'), 'utf8').catch(() => '{}'))
      bytes += s.bytesFetched ?? 0
      files += s.filesFetched ?? 0
      messages += s.messagesIn ?? 0
    }
    return {bytes, files, messages}
  }
  const times = []
  let status = 'ok'
  let moved = {bytes: 0, files: 0, messages: 0}
  try {
    for (const p of peers) servers.push(await startServer(process.execPath, [FPEER, 'serve', '--host', p.address, '--json'], p.env))
    for (let i = 1; i < peers.length; i++) {
      const idr = await run(process.execPath, [FPEER, 'id', '--json'], {env: peers[i].env})
      await run(process.execPath, [FPEER, 'allow', sc.workload, JSON.parse(idr.stdout).id], {env: peers[i - 1].env})
      const r = await run(process.execPath, [FPEER, 'request', `${peers[i - 1].address}:7734`, sc.workload, '--into', peers[i].dir, '--bind', peers[i].address, '--progress', 'none'], {env: peers[i].env})
      if (r.code !== 0) throw new Error(`chain join ${i} failed: ${r.stderr.slice(-500)}`)
      log(`${sc.name}: peer ${i} joined`)
    }
    await new Promise((r) => setTimeout(r, 3000))
    const rel = 'd50/f050.dat'
    const last = path.join(peers[peers.length - 1].dir, rel)
    for (let i = 0; i < runs && !stopping; i++) {
      const before = await stats()
      const content = Buffer.alloc(4096, i + 1)
      const t0 = process.hrtime.bigint()
      await writeFile(path.join(first.dir, rel), content)
      const deadline = Date.now() + TIMEOUT_MS
      let ok = false
      while (Date.now() < deadline) {
        const got = await readFile(last).catch(() => undefined)
        if (got && got.equals(content)) {
          ok = true
          break
        }
        await new Promise((r) => setTimeout(r, 10))
      }
      const ms = Number(process.hrtime.bigint() - t0) / 1e6
      times.push(ms)
      if (!ok && status === 'ok') status = 'TIMEOUT'
      // Counters are written once a second: let the last ones land, then read the bytes moved.
      await new Promise((r) => setTimeout(r, 2500))
      const after = await stats()
      moved = {bytes: after.bytes - before.bytes, files: after.files - before.files, messages: after.messages - before.messages}
      log(`${sc.name} run ${i + 1}/${runs}: ${(ms / 1000).toFixed(2)} s, ${moved.files} files / ${moved.bytes} bytes fetched, ${moved.messages} messages ${ok ? 'ok' : 'TIMEOUT'}`)
    }
  } finally {
    for (const s of servers) await stopServer(s.child)
    for (const p of peers) await removeTemp(p.home)
  }
  return {tool: `fpeer update, chain of ${sc.peers} (${moved.files} fetches, ${moved.bytes} B, ${moved.messages} msgs)`, times, median: median(times), status, bytes: moved.bytes, files: moved.files}
}

// --- anchors ------------------------------------------------------------------------------

/** Runs anchors.sh once per workload for every anchor the chosen scenarios name; caches the results. */
const anchorResults = new Map()
async function anchors(workload, names, runs) {
  const todo = names.filter((n) => !anchorResults.has(`${workload}/${n}`))
  const sh = todo.filter((n) => n !== 'syncthing')
  if (sh.length) {
    log(`anchors.sh ${workload}: ${sh.join(' ')}`)
    const r = await run('bash', [path.join(SHARED, 'anchors.sh'), workload, String(runs)], {env: {...process.env, NAMES: sh.join(' ')}, timeoutMs: TIMEOUT_MS * sh.length})
    for (const line of r.stdout.split('\n')) {
      // <name> <set> median <ms> ms  runs <a b c>  <MiB/s> MiB/s  <status>
      const m = /^(\S+)\s+(\S+)\s+median\s+(\d+) ms\s+runs ([\d ]+?)\s+([\d.]+) MiB\/s\s+(.*)$/.exec(line.trim())
      if (m) anchorResults.set(`${workload}/${m[1]}`, {tool: m[1], times: m[4].trim().split(/\s+/).map(Number), median: Number(m[3]), status: m[6].trim()})
    }
    for (const n of sh) if (!anchorResults.has(`${workload}/${n}`)) anchorResults.set(`${workload}/${n}`, {tool: n, times: [], median: NaN, status: `failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`})
  }
  if (todo.includes('syncthing')) {
    log(`syncthing.sh ${workload}`)
    const r = await run('bash', [path.join(SHARED, 'syncthing.sh'), workload, String(runs)], {timeoutMs: TIMEOUT_MS * runs})
    const m = /^(syncthing\S*)\s+\S+\s+median\s+(\d+) ms\s+runs ([\d ]+?)\s+([\d.]+) MiB\/s\s+(.*)$/m.exec(r.stdout)
    anchorResults.set(`${workload}/syncthing`, m ? {tool: m[1], times: m[3].trim().split(/\s+/).map(Number), median: Number(m[2]), status: m[5].trim()} : {tool: 'syncthing', times: [], median: NaN, status: `failed (exit ${r.code})`})
  }
  return names.map((n) => anchorResults.get(`${workload}/${n}`))
}

// --- main ---------------------------------------------------------------------------------

function pickScenarios() {
  const want = (process.env.BENCH || DEFAULT_SET.join(','))
    .split(/[,\s]+/)
    .filter(Boolean)
  const names = new Set()
  for (const w of want) {
    if (w === 'all') SCENARIOS.forEach((s) => names.add(s.name))
    else if (w === 'ftp' || w === 'sftp' || w === 'http') SCENARIOS.filter((s) => s.protocol === w.toUpperCase()).forEach((s) => names.add(s.name))
    else if (SCENARIOS.some((s) => s.name === w)) names.add(w)
    else throw new Error(`unknown scenario ${JSON.stringify(w)}; known: ${SCENARIOS.map((s) => s.name).join(', ')}, http, ftp, sftp, all`)
  }
  return SCENARIOS.filter((s) => names.has(s.name))
}

function fmtMs(ms) {
  return Number.isFinite(ms) ? (ms / 1000).toFixed(2) : '-'
}

function table(results) {
  const rows = [['scenario', 'tool', 'median s', 'runs (s)', 'MiB/s', 'fpeer ÷ tool', 'status']]
  for (const r of results) {
    const f = r.fpeer
    const row = (tool, x, ratio) => [r.scenario, tool, fmtMs(x.median), x.times.map(fmtMs).join(' '), Number.isFinite(x.median) ? (r.bytes / 1048576 / (x.median / 1000)).toFixed(1) : '-', ratio, x.status]
    rows.push(row(f.tool, f, ''))
    for (const a of r.anchors) rows.push(row(a.tool, a, Number.isFinite(a.median) ? `${(f.median / a.median).toFixed(2)}×` : '-'))
  }
  const width = rows[0].map((_, i) => Math.max(...rows.map((row) => String(row[i]).length)))
  return rows.map((row) => row.map((c, i) => (i >= 2 && i <= 5 ? String(c).padStart(width[i]) : String(c).padEnd(width[i]))).join('  ').trimEnd()).join('\n')
}

async function main() {
  const scenarios = pickScenarios()
  log(`runs ${RUNS}; scenarios ${scenarios.map((s) => s.name).join(', ')}`)
  const mk = await run('bash', [path.join(SHARED, 'mkdata.sh'), DATA], {timeoutMs: 600_000})
  if (mk.code !== 0) throw new Error(`mkdata.sh failed: ${mk.stderr}`)
  const anchorOverride = process.env.BENCH_ANCHORS
  const results = []
  for (const sc of scenarios) {
    if (stopping) break
    const source = path.join(DATA, sc.workload)
    const names = anchorOverride === undefined ? sc.anchors : anchorOverride === 'none' ? [] : anchorOverride.split(/[,\s]+/).filter(Boolean)
    const fpeer = sc.kind === 'chain' ? await benchChain(sc, source, RUNS) : await benchRequest(sc, source, RUNS)
    const refs = names.length ? await anchors(sc.workload, names, RUNS) : []
    results.push({scenario: sc.name, workload: sc.workload, protocol: sc.protocol, bytes: fpeer.bytes, files: fpeer.files, fpeer, anchors: refs})
  }
  const doc = {date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, runs: RUNS, results}
  process.stdout.write(JSON_OUT ? JSON.stringify(doc, null, 2) + '\n' : `${table(results)}\n`)
  const failed = results.some((r) => r.fpeer.status !== 'ok')
  return failed ? 1 : 0
}

main()
  .then(async (code) => {
    await cleanup()
    process.exitCode = code
  })
  .catch(async (err) => {
    process.stderr.write(`bench: ${err.stack ?? err}\n`)
    await cleanup()
    process.exitCode = 1
  })
