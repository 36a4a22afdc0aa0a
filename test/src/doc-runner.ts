// Runs the shell recipes of a Markdown document for real: two peers on loopback, `fpeer` on PATH and for `npx`, temp homes.
import {type ChildProcess, spawn} from 'node:child_process'
import {chmod, cp, mkdir, readFile, readdir, rm, symlink, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {FPEER, ROOT, tempDir} from './harness.js'

/**
 * A fenced ```sh block and its info string. Every sh block in a tested document says what
 * to do with it: `norun` (e.g. `npm ci`), or `peer=NAME` (run as that peer: its own
 * FPEER_HOME, the shared working directory), plus `bg` for a long-running command (ready
 * once it prints "serving on" or a JSON document with "control"; stopped at the end).
 */
export interface Block {
  line: number
  info: string[]
  code: string
  peer?: string
  bg: boolean
  norun: boolean
}

export function extractBlocks(markdown: string): Block[] {
  const blocks: Block[] = []
  const lines = markdown.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)(.*)$/.exec(lines[i]!)
    if (!open) continue
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!)
    if (open[1] !== 'sh') continue
    const info = open[2]!.trim().split(/\s+/).filter(Boolean)
    const peer = info.find((t) => t.startsWith('peer='))?.slice(5)
    blocks.push({line: start + 1, info, code: body.join('\n') + '\n', ...(peer ? {peer} : {}), bg: info.includes('bg'), norun: info.includes('norun')})
  }
  return blocks
}

export interface BlockResult {
  block: Block
  code: number | null
  stdout: string
  stderr: string
}

/** A scratch world for one document: a working directory, a bin dir with an `fpeer` shim, one home per peer. */
export class DocWorld {
  readonly dir: string
  readonly work: string
  readonly bin: string
  readonly #homes = new Map<string, string>()
  readonly #bg: ChildProcess[] = []
  readonly env: NodeJS.ProcessEnv

  private constructor(dir: string, env: NodeJS.ProcessEnv) {
    this.dir = dir
    this.work = path.join(dir, 'work')
    this.bin = path.join(dir, 'bin')
    this.env = env
  }

  static async create(extraEnv: NodeJS.ProcessEnv = {}): Promise<DocWorld> {
    const dir = await tempDir('fpeer-docs-')
    const env: NodeJS.ProcessEnv = {...process.env, FPEER_LOG_LEVEL: 'info', ...extraEnv}
    delete env.NODE_OPTIONS
    delete env.DEBUG
    const world = new DocWorld(dir, env)
    await mkdir(world.work, {recursive: true})
    await mkdir(world.bin, {recursive: true})
    const shim = path.join(world.bin, 'fpeer')
    await writeFile(shim, `#!/bin/sh\nexec "${process.execPath}" "${FPEER}" "$@"\n`)
    await chmod(shim, 0o755)
    // The working directory stands for the clone, where `npm ci` linked the workspace's bin: `npx fpeer` finds it there and never asks the registry.
    await mkdir(path.join(world.work, 'node_modules/.bin'), {recursive: true})
    await symlink(shim, path.join(world.work, 'node_modules/.bin/fpeer'))
    env.npm_config_update_notifier = 'false'
    env.PATH = `${world.bin}:${process.env.PATH}`
    return world
  }

  /** Copies a fixture tree into the working directory. */
  async fixture(name: string, files: Record<string, string>): Promise<void> {
    for (const [rel, content] of Object.entries(files)) {
      await mkdir(path.join(this.work, name, path.dirname(rel)), {recursive: true})
      await writeFile(path.join(this.work, name, rel), content)
    }
  }

  async copyInto(from: string, name: string): Promise<void> {
    await cp(from, path.join(this.work, name), {recursive: true})
  }

  home(peer: string): string {
    let h = this.#homes.get(peer)
    if (!h) {
      h = path.join(this.dir, `home-${peer}`)
      this.#homes.set(peer, h)
    }
    return h
  }

  peerEnv(peer: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    return {...this.env, FPEER_HOME: this.home(peer), ...extra}
  }

  /** Runs a script with bash -eo pipefail as `peer`; a `bg` script is left running once it is ready. */
  async run(
    code: string,
    peer: string,
    options: {bg?: boolean; timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string; home?: string; pipefail?: boolean} = {},
  ): Promise<{code: number | null; stdout: string; stderr: string}> {
    const child = spawn('bash', [...(options.pipefail === false ? ['-e'] : ['-eo', 'pipefail']), '-c', code], {
      cwd: options.cwd ?? this.work,
      env: this.peerEnv(peer, {...(options.home ? {FPEER_HOME: options.home} : {}), ...options.env}),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    if (options.bg) {
      this.#bg.push(child)
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`not ready within 20 s: ${code}\n${stdout}\n${stderr}`)), 20_000)
        const check = () => {
          if (/serving on|"control"/.test(stdout + stderr)) {
            clearTimeout(t)
            resolve()
          }
        }
        child.stdout!.on('data', check)
        child.stderr!.on('data', check)
        child.once('exit', (c) => {
          clearTimeout(t)
          reject(new Error(`exited ${c} before it was ready: ${code}\n${stdout}\n${stderr}`))
        })
      })
      return {code: null, stdout, stderr}
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        killGroup(child, 'SIGKILL')
        reject(new Error(`timed out: ${code}\n${stdout}\n${stderr}`))
      }, options.timeoutMs ?? 60_000)
      child.once('close', (c) => {
        clearTimeout(t)
        resolve({code: c, stdout, stderr})
      })
    })
  }

  /** Stops every background process (SIGTERM, then SIGKILL) and removes the scratch directory. */
  async destroy(): Promise<void> {
    await this.stopAll()
    await rm(this.dir, {recursive: true, force: true})
  }

  async stopAll(): Promise<void> {
    await Promise.all(
      this.#bg.splice(0).map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
        killGroup(child, 'SIGTERM')
        const t = setTimeout(() => killGroup(child, 'SIGKILL'), 5000)
        await exited
        clearTimeout(t)
        // A block's shell can exit before the fpeer it started has finished writing its home: wait for the whole group.
        if (!(await groupGone(child.pid!, 10_000))) {
          killGroup(child, 'SIGKILL')
          await groupGone(child.pid!, 5000)
        }
      }),
    )
  }
}

/**
 * Resolves true once no live process of the group led by `pid` is left, false after
 * `timeoutMs`. Read from /proc, not with kill(-pid, 0): an orphan's zombie counts for kill
 * and is never reaped where PID 1 does not reap.
 */
async function groupGone(pid: number, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (!(await groupAlive(pid))) return true
    if (Date.now() > end) return false
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function groupAlive(pgid: number): Promise<boolean> {
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '')
    // Fields after the command name (which may hold spaces): state, ppid, pgrp.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') return true
  }
  return false
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal)
  } catch {
    child.kill(signal)
  }
}

/** Runs every runnable block of a document in order; throws at the first that fails, naming its line. */
export async function runDocument(world: DocWorld, file: string, markdown: string): Promise<BlockResult[]> {
  const results: BlockResult[] = []
  for (const block of extractBlocks(markdown)) {
    if (block.norun) continue
    if (!block.peer) throw new Error(`${file}:${block.line}: an sh block needs "peer=NAME" or "norun" in its info string`)
    const r = await world.run(block.code, block.peer, {bg: block.bg})
    results.push({block, ...r})
    if (!block.bg && r.code !== 0)
      throw new Error(`${file}:${block.line} (peer=${block.peer}) exited ${r.code}\n--- script\n${block.code}--- stdout\n${r.stdout}--- stderr\n${r.stderr}`)
  }
  return results
}

export const DOCS = path.join(ROOT, 'docs')
