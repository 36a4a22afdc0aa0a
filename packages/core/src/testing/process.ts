// Ports and child processes for tests: a free port, a port to wait for, tools run to completion, and processes whose exit is awaited before cleanup.
import {type ChildProcess, type SpawnOptions, execFile, spawn} from 'node:child_process'
import net from 'node:net'

/** A TCP port on `host` that was free a moment ago (the OS picked it; closed again before use). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject)
    srv.listen(0, host, resolve)
  })
  const port = (srv.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

/**
 * Waits until something accepts connections on `host:port`, polling every 50 ms; fails at
 * once when `child` (the process that should listen) exits, and after `timeoutMs`.
 */
export async function waitForPort(port: number, options: {host?: string; child?: ChildProcess; timeoutMs?: number; name?: string} = {}): Promise<void> {
  const host = options.host ?? '127.0.0.1'
  const name = options.name ?? 'the server'
  const deadline = Date.now() + (options.timeoutMs ?? 30_000)
  while (Date.now() < deadline) {
    if (options.child && options.child.exitCode !== null) throw new Error(`${name} exited with ${options.child.exitCode}`)
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host, () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (up) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${name} did not listen on ${host}:${port} within ${options.timeoutMs ?? 30_000} ms`)
}

export interface ToolResult {
  /** The exit code; null when it was killed (the timeout) or could not start. */
  code: number | null
  stdout: Buffer
  stderr: string
}

/**
 * Runs a tool to completion with a hard timeout (SIGKILL) and never rejects, so a test asserts
 * on the exit code. It does not block the event loop: a server under test may live in this process.
 */
export function runTool(file: string, args: readonly string[], options: {timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv} = {}): Promise<ToolResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      {
        timeout: options.timeoutMs ?? 30_000,
        killSignal: 'SIGKILL',
        encoding: 'buffer',
        maxBuffer: 64 << 20,
        ...(options.cwd ? {cwd: options.cwd} : {}),
        ...(options.env ? {env: options.env} : {}),
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as {code?: unknown}).code === 'number' ? (err as {code: number}).code : null) : 0
        resolve({code, stdout, stderr: stderr.toString()})
      },
    )
  })
}

/**
 * A child process a test owns: its output is collected, lines can be awaited, and `stop()`
 * resolves only once it has exited, so its files may then be removed.
 */
export class OwnedProcess {
  readonly child: ChildProcess
  stdout = ''
  stderr = ''
  /** Resolves with the exit code (null: killed by a signal) once the process has exited. */
  readonly exited: Promise<{code: number | null; signal: NodeJS.Signals | null}>
  readonly #waiters = new Set<() => void>()

  constructor(command: string, args: readonly string[], options: SpawnOptions = {}) {
    this.child = spawn(command, args, {stdio: ['ignore', 'pipe', 'pipe'], ...options})
    this.child.stdout?.on('data', (d: Buffer) => {
      this.stdout += d.toString()
      this.#wake()
    })
    this.child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString()
      this.#wake()
    })
    this.exited = new Promise((resolve) => {
      // 'close', not 'exit': the output is complete by then.
      this.child.once('close', (code, signal) => {
        this.#wake()
        resolve({code, signal})
      })
      this.child.once('error', (err) => {
        this.stderr += String(err)
        this.#wake()
        resolve({code: null, signal: null})
      })
    })
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w()
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /**
   * Waits for a line of stdout (or stderr with `from: 'stderr'`) matching `pattern`, and
   * returns its match. Fails when the process exits first, or after `timeoutMs`.
   */
  waitForLine(pattern: RegExp, options: {timeoutMs?: number; from?: 'stdout' | 'stderr'} = {}): Promise<RegExpMatchArray> {
    const timeoutMs = options.timeoutMs ?? 30_000
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const check = () => {
        const text = options.from === 'stderr' ? this.stderr : this.stdout
        for (const line of text.split('\n')) {
          const m = line.match(pattern)
          if (m) return done(() => resolve(m))
        }
        if (!this.running)
          done(() =>
            reject(new Error(`the process exited (${this.child.exitCode ?? this.child.signalCode}) before printing ${pattern}: ${this.stderr.slice(-2000)}`)),
          )
      }
      const done = (fn: () => void) => {
        clearTimeout(timer)
        this.#waiters.delete(check)
        fn()
      }
      timer = setTimeout(() => done(() => reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms: ${this.stderr.slice(-2000)}`))), timeoutMs)
      this.#waiters.add(check)
      check()
    })
  }

  /** Sends `signal`, then SIGKILL after `graceMs`; resolves once the process has exited. Safe to call twice. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<{code: number | null; signal: NodeJS.Signals | null}> {
    if (this.running) {
      this.child.kill(signal)
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
      timer.unref()
      try {
        return await this.exited
      } finally {
        clearTimeout(timer)
      }
    }
    return this.exited
  }
}

/** Spawns a process the test owns (see OwnedProcess); stdin is ignored unless `options.stdio` says otherwise. */
export function startProcess(command: string, args: readonly string[], options: SpawnOptions = {}): OwnedProcess {
  return new OwnedProcess(command, args, options)
}
