#!/usr/bin/env node
// `node bench/scale.js [files]`: time and peak RSS of every fpeer process on a folder of many small files (issue #11), beside rsync's daemon.
//
//   node bench/scale.js 100000      share, files --json, serve + request, rsync daemon (default 100000)
//   SCALE_DATA=/tmp/x               where the workload lives (kept between runs: generating it is slow)
//   SCALE_RSYNC=0                   skip the rsync daemon anchor
//   SCALE_BUILDS=/work/main,.       checkouts to compare in the same run (default: this one); each must be built
//   SCALE_HOST_ADDR=127.0.0.1       loopback address the host serves on (default 127.0.0.1)
//   SCALE_REQ_ADDR=127.0.0.2        loopback address the requester binds (default 127.0.0.2)
//   --json                          one JSON document on stdout
//
// Peak RSS of a short-lived process is GNU time's "Maximum resident set size"; of `fpeer
// serve`, its VmHWM read from /proc just before it is stopped. Loopback only: the host
// serves on SCALE_HOST_ADDR, the requester binds SCALE_REQ_ADDR.
import './usage.js'
import {spawn} from 'node:child_process'
import {mkdirSync, existsSync, readFileSync, writeFileSync} from 'node:fs'
import {mkdtemp, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {createHash} from 'node:crypto'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BUILDS = (process.env.SCALE_BUILDS || ROOT).split(',').map((b) => path.resolve(ROOT, b))
const N = Math.max(1, Math.min(2_000_000, Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 100_000)))
const DATA = process.env.SCALE_DATA || `/tmp/fpeer-scale-${N}`
const JSON_OUT = process.argv.includes('--json')
const TIMEOUT_MS = 1_800_000
const HOST_ADDR = process.env.SCALE_HOST_ADDR || '127.0.0.1'
const REQ_ADDR = process.env.SCALE_REQ_ADDR || '127.0.0.2'
const temps = new Set()
const children = new Set()

function log(line) {
  process.stderr.write(`scale: ${line}\n`)
}

/** N files of 1 KiB, 1,000 to a directory, deterministic content; written once. */
function makeData() {
  const done = path.join(DATA, '.complete')
  if (existsSync(done)) return path.join(DATA, 'set')
  log(`generating ${N} files in ${DATA}`)
  const set = path.join(DATA, 'set')
  let seed = createHash('sha256').update('fpeer-scale').digest()
  for (let i = 0; i < N; i++) {
    if (i % 1000 === 0) mkdirSync(path.join(set, `d${String(i / 1000).padStart(4, '0')}`), {recursive: true})
    if (i % 32 === 0) seed = createHash('sha256').update(seed).digest()
    const buf = Buffer.alloc(1024, seed)
    buf.writeUInt32BE(i, 0)
    writeFileSync(path.join(set, `d${String(Math.floor(i / 1000)).padStart(4, '0')}`, `f${String(i % 1000).padStart(3, '0')}.dat`), buf)
  }
  writeFileSync(done, '')
  return set
}

async function tempDir(prefix) {
  const d = await mkdtemp(path.join(os.tmpdir(), prefix))
  temps.add(d)
  return d
}

/** Runs to completion under GNU time; resolves with exit code, output, wall ms and peak RSS (MB). */
function timed(args, env) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    const child = spawn('/usr/bin/time', ['-f', 'SCALE_RSS_KB=%M SCALE_CPU_S=%U+%S', ...args], {env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true})
    children.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-50_000)))
    const timer = setTimeout(() => process.kill(-child.pid, 'SIGKILL'), TIMEOUT_MS)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      children.delete(child)
      const kb = Number(/SCALE_RSS_KB=(\d+)/.exec(stderr)?.[1] ?? NaN)
      const cpu = /SCALE_CPU_S=([\d.]+)\+([\d.]+)/.exec(stderr)
      resolve({code, stdout, stderr, ms: Number(process.hrtime.bigint() - t0) / 1e6, rssMB: kb / 1024, cpuS: cpu ? Number(cpu[1]) + Number(cpu[2]) : NaN, sysS: cpu ? Number(cpu[2]) : NaN})
    })
  })
}

function startServe(FPEER, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FPEER, 'serve', '--host', HOST_ADDR, '--port', '0', '--data-port', 'HTTP=0', '--json'], {env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true})
    children.add(child)
    let out = ''
    let err = ''
    child.stderr.on('data', (d) => (err = (err + d).slice(-20_000)))
    child.stdout.on('data', (d) => {
      out += d
      const nl = out.indexOf('\n')
      if (nl >= 0) resolve({child, ready: JSON.parse(out.slice(0, nl))})
    })
    child.once('close', (code) => reject(new Error(`serve exited ${code}: ${err}`)))
  })
}

async function stopServe(child) {
  const rssMB = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]) / 1024
  // utime and stime, fields 14 and 15 of /proc/PID/stat (after the parenthesised name), in clock ticks of 10 ms.
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ')
  const cpuS = (Number(stat[11]) + Number(stat[12])) / 100
  const closed = new Promise((r) => child.once('close', r))
  process.kill(-child.pid, 'SIGTERM')
  await closed
  children.delete(child)
  return {rssMB, cpuS}
}

async function peerEnv(label) {
  const home = await tempDir(`fpeer-scale-${label}-`)
  const env = {...process.env, FPEER_HOME: home, FPEER_LOG_LEVEL: 'warn', XDG_DATA_HOME: `${home}/xdg/data`, XDG_CONFIG_HOME: `${home}/xdg/config`, XDG_CACHE_HOME: `${home}/xdg/cache`}
  delete env.NODE_OPTIONS
  return env
}

function check(r, what) {
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr.slice(-3000)}`)
  return r
}

// CPU is user + system; the system part (creating 100,000 files) swings most with the machine's load.
const fmt = (r) => `${(r.ms / 1000).toFixed(2)} s wall, ${r.cpuS.toFixed(2)} s CPU (${r.sysS.toFixed(2)} s system), ${r.rssMB.toFixed(0)} MB peak RSS`
const fig = (r) => ({ms: Math.round(r.ms), cpuS: r.cpuS, sysS: r.sysS, rssMB: Math.round(r.rssMB)})

/** Every fpeer figure of one checkout: share, files --json, then a request against serve. */
async function runBuild(build, set) {
  const FPEER = path.join(build, 'packages/cli/bin/run.js')
  const out = {build}
  const tag = path.basename(build)
  const host = await peerEnv('host')
  const share = check(await timed([process.execPath, FPEER, 'share', set, '--name', 'scale', '--open', '--json'], host), 'share')
  out.share = fig(share)
  log(`${tag} share: ${fmt(share)}`)
  const files = check(await timed([process.execPath, FPEER, 'files', 'scale', '--json'], host), 'files')
  out.files_json = fig(files)
  log(`${tag} files --json: ${fmt(files)}`)
  const serve = await startServe(FPEER, host)
  try {
    const req = await peerEnv('req')
    const dst = await tempDir('fpeer-scale-dst-')
    const r = check(await timed([process.execPath, FPEER, 'request', `${HOST_ADDR}:${serve.ready.control}`, 'scale', '--into', path.join(dst, 'scale'), '--bind', REQ_ADDR, '--progress', 'none', '--stall-timeout', '600'], req), 'request')
    out.request = fig(r)
    log(`${tag} request: ${fmt(r)}`)
    await rm(dst, {recursive: true, force: true})
  } finally {
    const s = await stopServe(serve.child)
    out.serve = {cpuS: s.cpuS, rssMB: Math.round(s.rssMB)}
    log(`${tag} serve (host, through the request): ${s.cpuS.toFixed(2)} s CPU, ${s.rssMB.toFixed(0)} MB peak RSS`)
  }
  return out
}

async function main() {
  const set = makeData()
  const out = {files: N, data: set, load: os.loadavg()[0], builds: []}
  for (const b of BUILDS) out.builds.push(await runBuild(b, set))
  if (process.env.SCALE_RSYNC !== '0') {
    const w = await tempDir('fpeer-scale-rsync-')
    writeFileSync(path.join(w, 'rsyncd.conf'), `pid file = ${w}/rsyncd.pid\nuse chroot = no\n[data]\npath = ${set}\nread only = yes\n`)
    const d = spawn('rsync', ['--daemon', '--no-detach', '--port', '18731', '--address', HOST_ADDR, '--config', `${w}/rsyncd.conf`], {stdio: 'ignore', detached: true})
    children.add(d)
    await new Promise((r) => setTimeout(r, 500)) // the daemon has no ready line; its bind is immediate
    const r = check(await timed(['rsync', '-a', `rsync://${HOST_ADDR}:18731/data/`, `${w}/dst/`]), 'rsync')
    out.rsync = fig(r)
    log(`rsync daemon: ${fmt(r)}`)
    process.kill(-d.pid, 'SIGTERM')
    children.delete(d)
    for (const b of out.builds) {
      b.requestOverRsync = b.request.ms / out.rsync.ms
      log(`${path.basename(b.build)} request / rsync daemon: ${b.requestOverRsync.toFixed(2)}x`)
    }
  }
  if (JSON_OUT) process.stdout.write(JSON.stringify(out, null, 2) + '\n')
}

try {
  await main()
} finally {
  for (const c of children) {
    try {
      process.kill(-c.pid, 'SIGKILL')
    } catch {}
  }
  await Promise.all([...temps].map((d) => rm(d, {recursive: true, force: true})))
}
