#!/usr/bin/env node
// `npm run bench`: times a full `fpeer request` (handshake, transfer and the host's fetch-back
// check) between two peers on loopback, beside `cp -a` and the reference tools of
// ../shared/bench/anchors.sh measured in the same run, and prints the ratios and each run's phases.
//
//   BENCH=a,b                scenarios (default: small, large, small-ftp, large-ftp, small-sftp,
//                            large-sftp, chain10; `all` adds 100k; 1m only when named; http, ftp
//                            and sftp pick a protocol's). 100k and 1m also time `fpeer share` and
//                            `fpeer files --json` of the folder, and every figure carries peak RSS.
//   BENCH_RUNS=3             runs per scenario and per anchor; the median is reported
//   BENCH_ANCHORS=a,b|none   override the reference tools (names of anchors.sh, or `syncthing`)
//   BENCH_TIMEOUT_S=600      one fpeer run or one anchors.sh invocation is killed after this
//   BENCH_FPEER_ROOT=DIR     time the fpeer built in another checkout (e.g. an older commit's
//                            worktree) with this bench, to compare two builds on the same data
//   BENCH_PROF=DIR           every fpeer process writes a V8 CPU profile (--cpu-prof) into DIR
//   BENCH_NODE_FLAGS='…'     more node flags for every fpeer process, e.g. `--heapsnapshot-signal=SIGUSR2
//                            --diagnostic-dir=DIR` or `--import=FILE` (a probe of its own)
//   BENCH_PROGRESS=json      the requester's --progress (json: a line per file, which the phase
//                            timeline is read from; none: as a script would run it, silent like
//                            the anchors, without phases; 1.52 s against 1.61-1.66 s for the small
//                            set on tmpfs)
//   BENCH_HOST, BENCH_REQUESTER  loopback addresses of the host and the requester (default
//                            127.0.0.1 and 127.0.0.2), so two benches can run side by side
//   --tmpfs                  data, fpeer homes, targets and the anchors' work on a tmpfs (a fresh
//                            directory under /dev/shm, removed at the end): the software alone
//   --json                   one JSON document on stdout (the tables then go to stderr)
//   --link=RATE              emulate a full-duplex link of RATE each way (tc's units: 1gbit,
//                            500mbit) between the serving and the fetching side, for fpeer and
//                            the anchors alike: loopback has no bandwidth limit, a LAN does, and
//                            there a request's two transfers (fetch, fetch-back) can overlap.
//                            Needs root and tc; shapes loopback's egress (HTB) and removes it at the end
//
// Loopback only: the host serves on 127.0.0.1, the requester binds 127.0.0.2 (BENCH_HOST and
// BENCH_REQUESTER change them). Every process
// started here is killed and every temp directory removed on exit, including on Ctrl-C.
import './usage.js'
import {spawn} from 'node:child_process'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {chmod, mkdir, mkdtemp, readFile, rm, readdir, stat, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
/** Which build of fpeer is timed: this tree's, or another checkout's (to compare two builds on the same data). */
const FPEER_ROOT = path.resolve(process.env.BENCH_FPEER_ROOT || ROOT)
const FPEER = path.join(FPEER_ROOT, 'packages/cli/bin/run.js')
const SHARED = process.env.BENCH_SHARED || path.resolve(ROOT, '../shared/bench')
const RUNS = Math.max(1, Math.min(50, Number(process.env.BENCH_RUNS || 3) || 3))
const TIMEOUT_MS = Math.max(10, Number(process.env.BENCH_TIMEOUT_S || 600) || 600) * 1000
const JSON_OUT = process.argv.includes('--json')
const TMPFS = process.argv.includes('--tmpfs')
const LINK = process.argv.find((a) => a.startsWith('--link='))?.slice('--link='.length)
const HOST = process.env.BENCH_HOST || '127.0.0.1'
const REQUESTER = process.env.BENCH_REQUESTER || '127.0.0.2'
/** GNU time gives each process's peak RSS from the kernel's own accounting (wait4). */
const GNU_TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined

/**
 * Where the workloads, the fpeer homes and targets, and anchors.sh's servers and targets live.
 * On disk the workloads stay in /tmp/fpeer-bench between runs (mkdata.sh's default); with
 * --tmpfs everything is under one fresh directory of /dev/shm, removed at the end.
 */
const place = {base: undefined, data: '/tmp/fpeer-bench', work: '/tmp/fpeer-anchors', temp: os.tmpdir()}

/** What is compared: per workload, fpeer over one protocol against the tools a user would pick instead. */
const SCENARIOS = [
  {name: 'small', kind: 'request', workload: 'small', protocol: 'HTTP', anchors: ['cp-local-limit', 'rsync-daemon', 'rclone-http-nginx']},
  {name: 'large', kind: 'request', workload: 'large', protocol: 'HTTP', anchors: ['cp-local-limit', 'lftp-mirror-vsftpd', 'rsync-daemon', 'rclone-http-nginx']},
  {name: 'small-ftp', kind: 'request', workload: 'small', protocol: 'FTP', plugins: ['ftp'], anchors: ['cp-local-limit', 'lftp-mirror-vsftpd', 'rclone-ftp-vsftpd']},
  {name: 'large-ftp', kind: 'request', workload: 'large', protocol: 'FTP', plugins: ['ftp'], anchors: ['cp-local-limit', 'lftp-mirror-vsftpd']},
  {name: 'small-sftp', kind: 'request', workload: 'small', protocol: 'SFTP', plugins: ['sftp'], anchors: ['cp-local-limit', 'sftp-openssh', 'rclone-sftp-openssh']},
  {name: 'large-sftp', kind: 'request', workload: 'large', protocol: 'SFTP', plugins: ['sftp'], anchors: ['cp-local-limit', 'sftp-openssh']},
  {name: 'chain10', kind: 'chain', workload: 'small', protocol: 'HTTP', peers: 10, anchors: []},
  {name: '100k', kind: 'request', workload: '100k', protocol: 'HTTP', extras: true, anchors: ['cp-local-limit', 'rsync-daemon']},
  // A share, a request (the second peer joining) and a one-file update, each process's peak RSS.
  {name: '1m', kind: 'chain', workload: '1m', protocol: 'HTTP', peers: 2, extras: true, runs: 1, anchors: ['rsync-daemon']},
]
const DEFAULT_SET = ['small', 'large', 'small-ftp', 'large-ftp', 'small-sftp', 'large-sftp', 'chain10']
/** Generated here (mkdata.sh makes small and large): file count, size, files per directory. */
const GENERATED = {'100k': {files: 100_000, size: 1024, perDir: 100}, '1m': {files: 1_000_000, size: 256, perDir: 1000}}

// --- process and temp-dir bookkeeping ------------------------------------------------------
const children = new Set()
const temps = new Set()

async function tempDir(prefix) {
  const d = await mkdtemp(path.join(place.temp, prefix))
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
  if (place.base) await rm(place.base, {recursive: true, force: true})
  if (linkShaped) await tc(['qdisc', 'del', 'dev', 'lo', 'root'])
}

/** The anchors' server ports (anchors.sh): a packet from one goes down the link, a packet to one goes up. */
const ANCHOR_PORTS = [
  [18730, 18730],
  [18080, 18080],
  [12222, 12222],
  [12121, 12121],
  [12200, 12299],
]

/** A range of ports as u32 value/mask pairs (as a CIDR cover of an address range). */
function portMasks([lo, hi]) {
  const out = []
  for (let at = lo; at <= hi; ) {
    let size = 1
    while ((at & (size * 2 - 1)) === 0 && at + size * 2 - 1 <= hi && size < 0x10000) size *= 2
    out.push([at, 0xffff & ~(size - 1)])
    at += size
  }
  return out
}

let linkShaped = false

function tc(args) {
  return new Promise((resolve, reject) => {
    const child = spawn('tc', args, {stdio: ['ignore', 'ignore', 'pipe']})
    let err = ''
    child.stderr.on('data', (d) => (err += d))
    child.on('error', reject)
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tc ${args.join(' ')}: ${err.trim() || `exit ${code}`}`))))
  })
}

/**
 * --link=RATE: two HTB classes on loopback's egress, one per direction, each of RATE: down
 * (to the requester's address, and from an anchor's server port) and up (from the requester's
 * address, and to an anchor's server port). Everything else on loopback is not shaped.
 */
async function shapeLink(rate) {
  if (!/^\d+(\.\d+)?[kmg]?bit$/.test(rate)) throw new Error(`--link=${rate}: give a rate as tc writes it, e.g. 1gbit or 500mbit`)
  const r = await run('tc', ['qdisc', 'show', 'dev', 'lo'], {timeoutMs: 10_000})
  if (r.code !== 0) throw new Error(`--link needs tc (apt-get install iproute2) and root: ${r.stderr.trim()}`)
  if (!/noqueue|pfifo_fast/.test(r.stdout) || /htb|tbf|netem/.test(r.stdout)) throw new Error(`--link: loopback is shaped already (${r.stdout.trim()}); remove that first`)
  await tc(['qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '30'])
  linkShaped = true
  const cls = (id, ceil) => tc(['class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', `1:${id}`, 'htb', 'rate', ceil, 'ceil', ceil, 'quantum', '65536', 'burst', '1m', 'cburst', '1m'])
  await cls(10, rate)
  await cls(20, rate)
  await cls(30, '100gbit')
  const filter = (flow, ...match) => tc(['filter', 'add', 'dev', 'lo', 'protocol', 'ip', 'parent', '1:', 'prio', '1', 'u32', ...match, 'flowid', `1:${flow}`])
  await filter(10, 'match', 'ip', 'dst', `${REQUESTER}/32`)
  await filter(20, 'match', 'ip', 'src', `${REQUESTER}/32`)
  for (const range of ANCHOR_PORTS)
    for (const [port, mask] of portMasks(range)) {
      await filter(10, 'match', 'ip', 'sport', String(port), `0x${mask.toString(16)}`)
      await filter(20, 'match', 'ip', 'dport', String(port), `0x${mask.toString(16)}`)
    }
  log(`link: ${rate} each way between the serving side and ${REQUESTER} (and the anchors' servers), on loopback`)
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
 * Resolves with its exit code, output and wall time (ms, from spawn to exit), the wall-clock
 * time it was spawned at (`t0`, for the phase timeline), and with `rss` its peak RSS in bytes.
 * `onLine` sees every stderr line as it comes (only the last 20 KB of stderr are kept).
 */
function run(cmd, args, {env = process.env, timeoutMs = TIMEOUT_MS, cwd = ROOT, rss = false, onLine} = {}) {
  args = profiled(cmd, args)
  const rssFile = rss && GNU_TIME ? path.join(place.temp, `fpeer-bench-rss-${process.pid}-${Math.random().toString(36).slice(2)}`) : undefined
  if (rssFile) [cmd, args] = [GNU_TIME, ['-f', '%M %U %S', '-o', rssFile, cmd, ...args]]
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    const wall0 = Date.now()
    const child = spawn(cmd, args, {env, cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true})
    children.add(child)
    let stdout = ''
    let stderr = ''
    let partial = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => {
      stderr = (stderr + d).slice(-20_000)
      if (!onLine) return
      const lines = (partial + d).split('\n')
      partial = lines.pop()
      for (const l of lines) onLine(l)
    })
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
      const ms = Number(process.hrtime.bigint() - t0) / 1e6
      let peak
      let cpuMs
      if (rssFile) {
        // GNU time writes "Command exited with non-zero status N" before the figures on a failure.
        const [kb, user, sys] = readFileSync(rssFile, 'utf8').trim().split('\n').pop().split(' ').map(Number)
        if (Number.isFinite(kb)) peak = kb * 1024
        // CPU seconds (user + system) say what a run cost even when other load stretches its wall time.
        if (Number.isFinite(user) && Number.isFinite(sys)) cpuMs = (user + sys) * 1000
        void rm(rssFile, {force: true})
      }
      resolve({code: code ?? (signal ? 128 : 1), stdout, stderr, ms, t0: wall0, rss: peak, cpuMs})
    })
  })
}

/** A live process's peak RSS in bytes since its start or the last resetPeak (VmHWM). */
function peakRss(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : undefined
  } catch {
    return undefined
  }
}

/** A live process's CPU time so far (user + system, ms), from proc(5) stat; undefined when gone. */
function cpuMsOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100
  } catch {
    return undefined
  }
}

/** Restarts a live process's peak RSS from its current RSS (proc(5), clear_refs "5"), so one run's peak is its own. */
function resetPeak(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5')
  } catch {
    // Not ours to reset (another user's, or no procfs): the peak then covers the process's whole life.
  }
}

/** With BENCH_PROF, an fpeer process is started with --cpu-prof, and with BENCH_NODE_FLAGS' flags (neither is allowed in NODE_OPTIONS). */
function profiled(cmd, args) {
  if (cmd !== process.execPath || args[0] !== FPEER) return args
  const flags = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean)
  if (process.env.BENCH_PROF) flags.push('--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.BENCH_PROF)}`)
  return [...flags, ...args]
}

/** Starts a long-running process and resolves with it and its first stdout line (a JSON ready document). */
function startServer(cmd, args, env) {
  args = profiled(cmd, args)
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
  // FPEER_DATA_DIR: the plugins linked by xdgFor (fpeer keeps them in a home, and each peer has its own).
  const env = {...process.env, FPEER_HOME: home, FPEER_DATA_DIR: `${xdg}/home/plugins`, FPEER_LOG_LEVEL: process.env.FPEER_LOG_LEVEL || 'warn', XDG_DATA_HOME: `${xdg}/data`, XDG_CONFIG_HOME: `${xdg}/config`, XDG_CACHE_HOME: `${xdg}/cache`}
  // A loaded machine can take longer than the default 60 s stall timeout to fetch, and the
  // requester's wait for TrustedPeerConfirm counts the host's silence from the FilesToGet on
  // (reported to core): a long fetch must not read as a stalled host here.
  env.FPEER_STALL_TIMEOUT_MS ??= '600000'
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
    const r = await run(process.execPath, [FPEER, 'plugins:link', '--no-install', path.join(FPEER_ROOT, 'plugins', p)], {env, timeoutMs: 60_000})
    if (r.code !== 0) throw new Error(`fpeer plugins:link plugins/${p} failed: ${r.stderr}`)
  }
  xdgDirs.set(key, xdg)
  return xdg
}

/**
 * The phases of one `fpeer request`, in ms from its spawn, from the NDJSON events of
 * `--progress json` (each stamped with the wall clock) and the result's `confirmedAt`:
 * start (process start to BePeerRequest sent), offer (to the FilesToGet), fetch (to the
 * FilesUpdated, all files landed and checked), check (the host's fetch-back, to its
 * TrustedPeerConfirm), finish (to the exit).
 */
function phaseRecorder() {
  const at = {}
  return {
    onLine(line) {
      if (!line.startsWith('{')) return
      try {
        const ev = JSON.parse(line)
        const t = Date.parse(ev.time)
        if (ev.event === 'phase' && ev.phase === 'BePeerRequest') at.bpr ??= t
        else if (ev.event === 'files-to-get') at.ftg ??= t
        else if (ev.event === 'phase' && ev.phase === 'FilesUpdated') at.fu = t
      } catch {
        // a log line that is not an event
      }
    },
    phases(r) {
      const confirmed = Date.parse(/"confirmedAt":\s*"([^"]+)"/.exec(r.stdout)?.[1] ?? '')
      const end = r.t0 + r.ms
      const points = [r.t0, at.bpr, at.ftg, at.fu, confirmed, end]
      if (points.some((x) => !Number.isFinite(x))) return undefined
      const names = ['start', 'offer', 'fetch', 'check', 'finish']
      return Object.fromEntries(names.map((n, i) => [n, Math.max(0, points[i + 1] - points[i])]))
    },
  }
}

/** One timed fpeer command: its wall time and peak RSS, or why it failed. */
async function timed(label, args, env) {
  const r = await run(process.execPath, [FPEER, ...args], {env, rss: true})
  if (r.code !== 0) throw new Error(`fpeer ${args[0]} failed (exit ${r.code}): ${r.stderr.slice(-500)}`)
  log(`${label}: ${(r.ms / 1000).toFixed(2)} s, peak RSS ${mib(r.rss)} MiB`)
  return {ms: r.ms, rss: r.rss, stdout: r.stdout}
}

/**
 * A full `fpeer request` of one workload: a host that already shares it (`fpeer share`, timed
 * but apart from the request, as for a user whose folder is shared) runs `fpeer serve` on
 * 127.0.0.1; each run is a fresh requester (new FPEER_HOME, new destination) binding
 * 127.0.0.2, timed from the spawn of `fpeer request` to its exit, and checked afterwards
 * (exit 0, every file there). Each run records its phases and the peak RSS of the requester
 * and of the host's serve (reset before each run).
 */
async function benchRequest(sc, source, runs) {
  const xdg = await xdgFor(sc.plugins)
  const host = await peerEnv('host', xdg)
  const share = await timed(`${sc.name} share`, ['share', source, '--name', sc.workload, '--open', '--json'], host.env)
  const expected = JSON.parse(share.stdout)
  const extra = {share: {ms: share.ms, rss: share.rss}}
  if (sc.extras) {
    const files = await timed(`${sc.name} files --json`, ['files', sc.workload, '--json'], host.env)
    extra.files = {ms: files.ms, rss: files.rss}
  }
  const dataPorts = ['HTTP', ...(sc.protocol === 'HTTP' ? [] : [sc.protocol])].flatMap((p) => ['--data-port', `${p}=0`])
  const server = await startServer(process.execPath, [FPEER, 'serve', '--host', HOST, '--port', '0', ...dataPorts, '--json'], host.env)
  const times = []
  const phases = []
  const rss = {requester: [], host: []}
  const cpu = {requester: [], host: []}
  let status = 'ok'
  try {
    for (let i = 0; i < runs && !stopping; i++) {
      const req = await peerEnv('req', xdg)
      const dst = path.join(req.home, 'dst')
      const args = [FPEER, 'request', `${HOST}:${server.ready.control}`, sc.workload, '--into', dst, '--bind', REQUESTER, '--protocol', sc.protocol, '--progress', process.env.BENCH_PROGRESS ?? 'json', '--json']
      const rec = phaseRecorder()
      resetPeak(server.child.pid)
      const hostCpu0 = cpuMsOf(server.child.pid)
      const r = await run(process.execPath, args, {env: req.env, rss: true, onLine: rec.onLine})
      rss.requester.push(r.rss)
      rss.host.push(peakRss(server.child.pid))
      const hostCpuMs = hostCpu0 === undefined ? undefined : cpuMsOf(server.child.pid) - hostCpu0
      cpu.requester.push(r.cpuMs)
      cpu.host.push(hostCpuMs)
      let ok = r.code === 0 ? 'ok' : `exit ${r.code}`
      if (r.code === 0) {
        const got = await bytesOf(dst).catch(() => ({files: -1, bytes: -1}))
        if (got.files !== expected.files || got.bytes !== expected.bytes) ok = `MISMATCH (${got.files} files, ${got.bytes} bytes)`
      } else {
        // Under --json the error is the document on stdout.
        log(`${sc.name} run ${i + 1}: ${r.stdout.trim().slice(-500)} ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`)
      }
      if (ok !== 'ok' && status === 'ok') status = ok
      times.push(r.ms)
      const ph = rec.phases(r)
      phases.push(ph)
      log(`${sc.name} run ${i + 1}/${runs}: ${(r.ms / 1000).toFixed(2)} s ${ok}; ${fmtPhases(ph)}; peak RSS requester ${mib(r.rss)} MiB, host ${mib(rss.host.at(-1))} MiB; CPU requester ${fmtMs(r.cpuMs)} s, host ${fmtMs(hostCpuMs)} s`)
      await removeTemp(req.home)
    }
  } finally {
    await stopServer(server.child)
    await removeTemp(host.home)
  }
  return {tool: `fpeer request (${sc.protocol})`, times, median: median(times), status, bytes: expected.bytes, files: expected.files, phases: medianPhases(phases), runPhases: phases, rss: {requester: maxOf(rss.requester), host: maxOf(rss.host)}, cpuMs: {requester: median(cpu.requester.filter(Number.isFinite)), host: median(cpu.host.filter(Number.isFinite))}, extra}
}

function mib(bytes) {
  return Number.isFinite(bytes) ? (bytes / 1048576).toFixed(0) : '-'
}

function maxOf(xs) {
  const ok = xs.filter(Number.isFinite)
  return ok.length ? Math.max(...ok) : undefined
}

function fmtPhases(ph) {
  return ph ? Object.entries(ph).map(([k, v]) => `${k} ${(v / 1000).toFixed(2)}`).join(', ') : 'no phase events'
}

/** The median of each phase over the runs that reported all of them. */
function medianPhases(list) {
  const ok = list.filter(Boolean)
  if (!ok.length) return undefined
  return Object.fromEntries(Object.keys(ok[0]).map((k) => [k, median(ok.map((p) => p[k]))]))
}

/**
 * Issue 4's update benchmark: a chain of `sc.peers` peers (127.0.20.1 … .N, each its own home
 * and `fpeer serve` on the default ports) sharing the workload, joined one after the other
 * (each join a timed `fpeer request`). Each run changes one file at one end and times until
 * the last peer holds the new content; every peer's counters then say how many files it
 * fetched (exactly one each is the goal) and each serve's peak RSS over the run.
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
  const share = await timed(`${sc.name} share`, ['share', first.dir, '--name', sc.workload, '--json'], first.env)
  const expected = JSON.parse(share.stdout)
  const extra = {share: {ms: share.ms, rss: share.rss}, joins: []}
  if (sc.extras) {
    const files = await timed(`${sc.name} files --json`, ['files', sc.workload, '--json'], first.env)
    extra.files = {ms: files.ms, rss: files.rss}
  }
  const servers = []
  const perPeer = async () => {
    const out = []
    for (const p of peers) out.push(JSON.parse(await readFile(path.join(p.home, 'stats.json'), 'utf8').catch(() => '{}')))
    return out
  }
  const times = []
  let status = 'ok'
  let moved = {bytes: 0, files: 0, messages: 0, fetchesPerPeer: []}
  let serveRss
  try {
    for (const p of peers) servers.push(await startServer(process.execPath, [FPEER, 'serve', '--host', p.address, '--json'], p.env))
    for (let i = 1; i < peers.length; i++) {
      const idr = await run(process.execPath, [FPEER, 'id', '--json'], {env: peers[i].env})
      await run(process.execPath, [FPEER, 'allow', sc.workload, JSON.parse(idr.stdout).id], {env: peers[i - 1].env})
      const rec = phaseRecorder()
      const r = await run(process.execPath, [FPEER, 'request', `${peers[i - 1].address}:7734`, sc.workload, '--into', peers[i].dir, '--bind', peers[i].address, '--progress', process.env.BENCH_PROGRESS ?? 'json', '--json'], {env: peers[i].env, rss: true, onLine: rec.onLine})
      if (r.code !== 0) throw new Error(`chain join ${i} failed: ${r.stderr.slice(-500)}`)
      extra.joins.push({ms: r.ms, rss: r.rss, phases: rec.phases(r)})
      log(`${sc.name}: peer ${i} joined in ${(r.ms / 1000).toFixed(2)} s (${fmtPhases(rec.phases(r))}), peak RSS ${mib(r.rss)} MiB`)
    }
    // Let the joins' own after-effects (peer lists, first counters) settle before timing an update.
    await new Promise((r) => setTimeout(r, 3000))
    const rel = sc.workload === 'small' ? 'd50/f050.dat' : await firstFile(first.dir)
    const last = path.join(peers[peers.length - 1].dir, rel)
    for (let i = 0; i < runs && !stopping; i++) {
      const before = await perPeer()
      for (const s of servers) resetPeak(s.child.pid)
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
      const after = await perPeer()
      const delta = (k) => after.map((a, n) => (a[k] ?? 0) - (before[n][k] ?? 0))
      const sum = (xs) => xs.reduce((x, y) => x + y, 0)
      moved = {bytes: sum(delta('bytesFetched')), files: sum(delta('filesFetched')), messages: sum(delta('messagesIn')), fetchesPerPeer: delta('filesFetched').slice(1)}
      serveRss = maxOf(servers.map((s) => peakRss(s.child.pid)))
      log(`${sc.name} run ${i + 1}/${runs}: ${(ms / 1000).toFixed(2)} s, fetches per peer [${moved.fetchesPerPeer.join(' ')}], ${moved.bytes} bytes fetched, ${moved.messages} messages, serve peak RSS ${mib(serveRss)} MiB ${ok ? 'ok' : 'TIMEOUT'}`)
    }
  } finally {
    for (const s of servers) await stopServer(s.child)
    for (const p of peers) await removeTemp(p.home)
  }
  return {tool: `fpeer update, chain of ${sc.peers}`, times, median: median(times), status, bytes: expected.bytes, files: expected.files, moved, rss: {serve: serveRss, requester: maxOf(extra.joins.map((j) => j.rss))}, extra}
}

/** Some file of a generated workload, to change for the update. */
async function firstFile(dir) {
  for (const ent of (await readdir(dir, {withFileTypes: true})).sort((a, b) => a.name.localeCompare(b.name))) {
    if (ent.isFile() && !ent.name.startsWith('.')) return ent.name
    if (ent.isDirectory() && !ent.name.startsWith('.')) return path.join(ent.name, await firstFile(path.join(dir, ent.name)))
  }
  throw new Error(`no file in ${dir}`)
}

/**
 * Writes `count` files of `size` bytes, `perDir` to a directory, each different (its number
 * leads its bytes); a `.complete` marker lets a later run on disk reuse them.
 */
async function generate(dir, {files: count, size, perDir}) {
  // Beside the set, not in it: fpeer and the anchors would copy it.
  const marker = path.join(path.dirname(dir), `.${path.basename(dir)}.complete`)
  if (existsSync(marker)) return
  log(`generating ${count} files of ${size} B in ${dir}`)
  await rm(dir, {recursive: true, force: true})
  const fill = Buffer.alloc(size)
  for (let i = 0; i < size; i++) fill[i] = (i * 131 + 7) & 0xff
  for (let d = 0; d * perDir < count && !stopping; d++) {
    const sub = path.join(dir, `d${String(d).padStart(5, '0')}`)
    await mkdir(sub, {recursive: true})
    const jobs = []
    for (let f = d * perDir; f < Math.min(count, (d + 1) * perDir); f++) {
      const buf = Buffer.from(fill)
      buf.write(`${f}\n`, 0)
      jobs.push(writeFile(path.join(sub, `f${String(f).padStart(7, '0')}.dat`), buf))
    }
    await Promise.all(jobs)
  }
  if (!stopping) await writeFile(marker, '')
}

// --- anchors ------------------------------------------------------------------------------

/** Runs anchors.sh once per workload for every anchor the chosen scenarios name; caches the results. */
const anchorResults = new Map()
async function anchors(workload, names, runs) {
  const todo = names.filter((n) => !anchorResults.has(`${workload}/${n}`))
  const sh = todo.filter((n) => n !== 'syncthing')
  if (sh.length) {
    log(`anchors.sh ${workload}: ${sh.join(' ')}`)
    const r = await run('bash', [path.join(SHARED, 'anchors.sh'), workload, String(runs)], {env: {...process.env, NAMES: sh.join(' '), FPEER_BENCH_ROOT: place.data, FPEER_BENCH_WORK: place.work}, timeoutMs: TIMEOUT_MS * sh.length})
    for (const line of r.stdout.split('\n')) {
      // <name> <set> median <ms> ms  runs <a b c>  <MiB/s> MiB/s  <status>
      const m = /^(\S+)\s+(\S+)\s+median\s+(\d+) ms\s+runs ([\d ]+?)\s+([\d.]+) MiB\/s\s+(.*)$/.exec(line.trim())
      if (m) anchorResults.set(`${workload}/${m[1]}`, {tool: m[1], times: m[4].trim().split(/\s+/).map(Number), median: Number(m[3]), status: m[6].trim()})
    }
    for (const n of sh) if (!anchorResults.has(`${workload}/${n}`)) anchorResults.set(`${workload}/${n}`, {tool: n, times: [], median: NaN, status: `failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`})
  }
  if (todo.includes('syncthing')) {
    log(`syncthing.sh ${workload}`)
    const r = await run('bash', [path.join(SHARED, 'syncthing.sh'), workload, String(runs)], {env: {...process.env, FPEER_BENCH_ROOT: place.data}, timeoutMs: TIMEOUT_MS * runs})
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
    if (w === 'all') SCENARIOS.filter((s) => s.name !== '1m').forEach((s) => names.add(s.name))
    else if (w === 'ftp' || w === 'sftp' || w === 'http') SCENARIOS.filter((s) => s.protocol === w.toUpperCase() && s.kind === 'request' && !s.extras).forEach((s) => names.add(s.name))
    else if (SCENARIOS.some((s) => s.name === w)) names.add(w)
    else throw new Error(`unknown scenario ${JSON.stringify(w)}; known: ${SCENARIOS.map((s) => s.name).join(', ')}, http, ftp, sftp, all`)
  }
  return SCENARIOS.filter((s) => names.has(s.name))
}

function fmtMs(ms) {
  return Number.isFinite(ms) ? (ms / 1000).toFixed(2) : '-'
}

function layout(rows, numeric) {
  const width = rows[0].map((_, i) => Math.max(...rows.map((row) => String(row[i]).length)))
  return rows.map((row) => row.map((c, i) => (numeric(i) ? String(c).padStart(width[i]) : String(c).padEnd(width[i]))).join('  ').trimEnd()).join('\n')
}

function table(results) {
  const rows = [['scenario', 'tool', 'median s', 'runs (s)', 'MiB/s', 'fpeer ÷ tool', 'status']]
  for (const r of results) {
    const f = r.fpeer
    const row = (tool, x, ratio) => [r.scenario, tool, fmtMs(x.median), x.times.map(fmtMs).join(' '), Number.isFinite(x.median) && r.kind === 'request' ? (r.bytes / 1048576 / (x.median / 1000)).toFixed(1) : '-', ratio, x.status]
    rows.push(row(f.tool, f, ''))
    for (const a of r.anchors) rows.push(row(a.tool, a, Number.isFinite(a.ratio) ? `${a.ratio.toFixed(2)}×` : '-'))
  }
  const out = [layout(rows, (i) => i >= 2 && i <= 5)]
  // Where the time of a request goes (medians over the runs), and what each process held at most.
  const ph = [['scenario', 'start', 'offer', 'fetch', 'check', 'finish', 'requester CPU s', 'host CPU s', 'requester MiB', 'host/serve MiB', 'share s', 'share MiB', 'files s', 'files MiB', 'update']]
  for (const r of results) {
    const f = r.fpeer
    const p = f.phases ?? r.fpeer.extra?.joins?.at(-1)?.phases
    const e = f.extra ?? {}
    const upd = r.kind === 'chain' ? `fetches/peer [${f.moved.fetchesPerPeer.join(' ')}]` : ''
    ph.push([r.scenario, ...['start', 'offer', 'fetch', 'check', 'finish'].map((k) => fmtMs(p?.[k])), fmtMs(f.cpuMs?.requester), fmtMs(f.cpuMs?.host), mib(f.rss?.requester), mib(f.rss?.host ?? f.rss?.serve), fmtMs(e.share?.ms), mib(e.share?.rss), fmtMs(e.files?.ms), mib(e.files?.rss), upd])
  }
  out.push('', 'phases of a request, median s (start: to BePeerRequest; offer: to FilesToGet; fetch: to FilesUpdated; check: host fetch-back, to TrustedPeerConfirm; finish: to exit); chain rows: the last join; CPU: user + system of each process during a run', layout(ph, (i) => i >= 1 && i <= 13))
  return out.join('\n')
}

/** --tmpfs: one fresh directory on a tmpfs for everything; /dev/shm is one on Linux, checked, not assumed. */
async function useTmpfs() {
  const mounts = readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' '))
  if (!mounts.some((m) => m[1] === '/dev/shm' && m[2] === 'tmpfs')) throw new Error('--tmpfs: /dev/shm is not a tmpfs here')
  place.base = await mkdtemp('/dev/shm/fpeer-bench-')
  // mkdtemp makes it 0700; nginx's workers (www-data) serve the rclone-http anchor from under it.
  await chmod(place.base, 0o755)
  place.data = path.join(place.base, 'data')
  place.work = path.join(place.base, 'anchors')
  place.temp = path.join(place.base, 'tmp')
  await mkdir(place.temp, {recursive: true})
}

async function main() {
  const scenarios = pickScenarios()
  if (TMPFS) await useTmpfs()
  if (LINK) await shapeLink(LINK)
  log(`runs ${RUNS}; scenarios ${scenarios.map((s) => s.name).join(', ')}; data in ${place.data}${TMPFS ? ' (tmpfs)' : ''}`)
  const workloads = new Set(scenarios.map((s) => s.workload))
  if (workloads.has('small') || workloads.has('large')) {
    const mk = await run('bash', [path.join(SHARED, 'mkdata.sh'), place.data], {timeoutMs: 600_000})
    if (mk.code !== 0) throw new Error(`mkdata.sh failed: ${mk.stderr}`)
  }
  for (const w of workloads) if (GENERATED[w]) await generate(path.join(place.data, w), GENERATED[w])
  // A folder a user shares was not written in the last two seconds. A file hashed while its mtime
  // is that recent is marked racy and read again by the next scan (fs/scan.ts RACY_MS), so the
  // first run's host would hash the whole set again, once, while it serves: 0.45 CPU-s for the
  // 512 MiB file. Sharing after that window times what every later run times.
  await new Promise((resolve) => setTimeout(resolve, 2_100))
  const anchorOverride = process.env.BENCH_ANCHORS
  const results = []
  for (const sc of scenarios) {
    if (stopping) break
    const source = path.join(place.data, sc.workload)
    const names = anchorOverride === undefined ? sc.anchors : anchorOverride === 'none' ? [] : anchorOverride.split(/[,\s]+/).filter(Boolean)
    const runs = sc.runs ?? RUNS
    const fpeer = sc.kind === 'chain' ? await benchChain(sc, source, runs) : await benchRequest(sc, source, runs)
    // A chain's anchors are the tools' copy of the whole set, set against the second peer's join.
    const refs = (names.length ? await anchors(sc.workload, names, runs) : []).map((a) => {
      const mine = sc.kind === 'chain' ? fpeer.extra.joins[0]?.ms : fpeer.median
      // A tool that failed (not installed: exit 127) has no figure to compare with.
      return {...a, ratio: a.status === 'ok' ? mine / a.median : NaN}
    })
    results.push({scenario: sc.name, kind: sc.kind, workload: sc.workload, protocol: sc.protocol, bytes: fpeer.bytes, files: fpeer.files, fpeer, anchors: refs})
  }
  const doc = {date: new Date().toISOString(), fpeer: FPEER_ROOT, node: process.version, cpus: os.cpus().length, runs: RUNS, storage: TMPFS ? 'tmpfs' : 'disk', link: LINK ?? 'loopback', results}
  // With --json the tables still reach a person, on stderr.
  if (JSON_OUT) process.stderr.write(`${table(results)}\n`)
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
