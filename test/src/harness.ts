// End-to-end harness: runs the built `fpeer` binary as separate peers, each with its own FPEER_HOME.
import {type ChildProcess, spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

/** The repository root (this file runs from test/dist/src/). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
export const FPEER = path.join(ROOT, 'packages/cli/bin/run.js')

/**
 * Every fpeer process the tests start runs with these: a rejection nobody handles ends it
 * (fault cases included), and runFpeer and Peer.stop fail on the crash.
 */
export const NODE_ARGS = ['--unhandled-rejections=strict']

/** What Node prints last when an uncaught exception or unhandled rejection ends a process. */
const FATAL = /^Node\.js v\d+\.\d+\.\d+$/m

/** Throws when `stderr` shows that a process died of an uncaught exception or unhandled rejection. */
export function assertNoCrash(what: string, stderr: string): void {
  if (FATAL.test(stderr)) throw new Error(`${what} crashed (uncaught exception or unhandled rejection):\n${stderr.slice(-4000)}`)
}

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/** oclif's data, config and cache directories in `dir`, so linked plugins never touch the user's. */
export function oclifDirs(dir: string): NodeJS.ProcessEnv {
  return {FPEER_DATA_DIR: path.join(dir, 'data'), FPEER_CONFIG_DIR: path.join(dir, 'config'), FPEER_CACHE_DIR: path.join(dir, 'cache')}
}

/** Links the FTP and SFTP workspace plugins (no npm install) into the oclif dirs of `env`. */
export async function linkPlugins(env: NodeJS.ProcessEnv, plugins = ['ftp', 'sftp']): Promise<void> {
  for (const p of plugins) {
    const r = await runFpeer(['plugins:link', '--no-install', path.join(ROOT, 'plugins', p)], {env: {...process.env, ...env}})
    if (r.code !== 0) throw new Error(`linking ${p} failed: ${r.stderr}`)
  }
}

export async function tempDir(prefix = 'fpeer-e2e-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix))
}

/** A peer: a home directory and the environment every fpeer process of it runs with. */
export class Peer {
  readonly home: string
  readonly address: string
  readonly env: NodeJS.ProcessEnv
  #serve: ChildProcess | undefined
  serveStderr = ''
  ready: {id: string; host: string; control: number; ports: Record<string, number>} | undefined

  constructor(home: string, address: string, env: NodeJS.ProcessEnv = {}) {
    this.home = home
    this.address = address
    this.env = {...process.env, FPEER_HOME: home, FPEER_LOG_LEVEL: 'info', ...env}
    delete this.env.NODE_OPTIONS
  }

  static async create(address: string, env: NodeJS.ProcessEnv = {}): Promise<Peer> {
    return new Peer(await tempDir('fpeer-home-'), address, env)
  }

  /** Runs one fpeer command to completion (bounded by `timeoutMs`). */
  run(args: string[], options: {input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv} = {}): Promise<RunResult> {
    return runFpeer(args, {...options, env: {...this.env, ...options.env}})
  }

  async json<T = any>(args: string[]): Promise<T> {
    const r = await this.run([...args, '--json'])
    if (r.code !== 0) throw new Error(`fpeer ${args.join(' ')} exited ${r.code}: ${r.stdout} ${r.stderr}`)
    return JSON.parse(r.stdout) as T
  }

  async id(): Promise<string> {
    return (await this.json<{id: string}>(['id'])).id
  }

  /**
   * Starts `fpeer serve --json` on this peer's address; resolves once it is listening. With
   * free ports (the default) every port is picked by the OS; `ports: 'default'` keeps the
   * documented ones (control 7734, HTTP 7735), which peers that push updates rely on.
   */
  async serve(
    args: string[] = [],
    env: NodeJS.ProcessEnv = {},
    options: {ports?: 'free' | 'default'; readyTimeoutMs?: number; nodeArgs?: string[]} = {},
  ): Promise<NonNullable<Peer['ready']>> {
    const portArgs = options.ports === 'default' ? [] : ['--port', '0', '--data-port', 'HTTP=0', '--data-port', 'FTP=0', '--data-port', 'SFTP=0']
    const child = spawn(process.execPath, [...NODE_ARGS, ...(options.nodeArgs ?? []), FPEER, 'serve', '--host', this.address, ...portArgs, '--json', ...args], {
      env: {...this.env, ...env},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.#serve = child
    this.serveStderr = ''
    child.stderr!.on('data', (d: Buffer) => (this.serveStderr += d.toString()))
    const ready = await new Promise<NonNullable<Peer['ready']>>((resolve, reject) => {
      let out = ''
      // A bound for a start that hangs, not an expected time: a fresh serve takes 7-10 s to say it listens at load 45.
      const waitMs = options.readyTimeoutMs ?? 60_000
      const t = setTimeout(() => reject(new Error(`serve did not start within ${waitMs} ms (pid ${child.pid}): ${this.serveStderr}`)), waitMs)
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString()
        const nl = out.indexOf('\n')
        if (nl >= 0) {
          clearTimeout(t)
          const doc = JSON.parse(out.slice(0, nl))
          if (doc.error || typeof doc.control !== 'number') reject(new Error(`serve failed: ${out.slice(0, nl)} ${this.serveStderr}`))
          else resolve(doc)
        }
      })
      child.once('exit', (code) => {
        clearTimeout(t)
        reject(new Error(`serve exited ${code}: ${this.serveStderr}`))
      })
    })
    this.ready = ready
    return ready
  }

  /** The running `fpeer serve` process, for tests that signal it or read its /proc entries. */
  get serveProcess(): ChildProcess | undefined {
    return this.#serve
  }

  get control(): string {
    return `${this.address}:${this.ready!.control}`
  }

  async stop(): Promise<void> {
    const child = this.#serve
    this.#serve = undefined
    if (!child) return
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(t)
    }
    assertNoCrash(`fpeer serve on ${this.address}`, this.serveStderr)
  }

  async destroy(): Promise<void> {
    await this.stop()
    await rm(this.home, {recursive: true, force: true})
  }
}

export function runFpeer(args: string[], options: {input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv} = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...NODE_ARGS, FPEER, ...args], {env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const t = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`fpeer ${args.join(' ')} timed out; stderr: ${stderr}`))
    }, options.timeoutMs ?? 120_000)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(t)
      try {
        assertNoCrash(`fpeer ${args.join(' ')}`, stderr)
      } catch (err) {
        reject(err)
        return
      }
      resolve({code, stdout, stderr})
    })
    child.stdin.end(options.input ?? '')
  })
}

/** Every regular file under `dir` with its SHA-256, keyed by relative path. */
export async function treeHashes(dir: string, rel = ''): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const ent of await readdir(path.join(dir, rel), {withFileTypes: true})) {
    const r = rel ? `${rel}/${ent.name}` : ent.name
    if (ent.isDirectory()) for (const [k, v] of await treeHashes(dir, r)) out.set(k, v)
    else if (ent.isFile())
      out.set(
        r,
        createHash('sha256')
          .update(await readFile(path.join(dir, r)))
          .digest('hex'),
      )
  }
  return out
}

export async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  )
}

/** Deterministic pseudo-random bytes (xorshift), fast enough for tens of MiB. */
export function pseudoRandom(size: number, seed = 1): Buffer {
  const buf = Buffer.allocUnsafe(size)
  let x = seed >>> 0 || 1
  let i = 0
  for (; i + 4 <= size; i += 4) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    buf.writeUInt32LE(x, i)
  }
  for (; i < size; i++) buf[i] = i & 0xff
  return buf
}

/** The shared tree: nested folders, spaces, unicode, % and #, an empty file and a 50 MiB file. */
export async function makeTree(dir: string, bigBytes = 50 * 1024 * 1024): Promise<void> {
  const files: Record<string, Buffer | string> = {
    'readme.txt': 'hello peers\n',
    'with space/and more spaces.txt': 'spaces\n',
    'unicode/çé 文件 ✓.md': 'unicode\n',
    'percent/100% done #1.txt': 'percent and hash\n',
    'percent/%41%2F not decoded.txt': 'literal percent escapes\n',
    'nested/a/b/c/d/deep.txt': 'deep\n',
    'empty.bin': '',
    'big/fifty.bin': pseudoRandom(bigBytes, 7),
  }
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(path.join(dir, path.dirname(rel)), {recursive: true})
    await writeFile(path.join(dir, rel), content)
  }
}

/** Polls `check` until it returns true or `timeoutMs` passes (then throws with `what`). */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000, everyMs = 200): Promise<void> {
  const end = Date.now() + timeoutMs
  for (;;) {
    // A file caught mid-rename is "not yet", not a failure.
    if (
      await Promise.resolve()
        .then(check)
        .catch(() => false)
    )
      return
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
