// Test support (not shipped): a served tree with hostile names, a raw FTP control client, and a bounded process runner.
import {mkdir, mkdtemp, rm, symlink, writeFile} from 'node:fs/promises'
import {connect, type Socket} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {Identity, LocalFileSource, generateKeyPair, type AccessContext, type FileSource, type TransportServer} from '@fpeer/core'
import {HOSTILE_NAMES, pseudoRandom} from '@fpeer/core/conformance'
import {serveFtp, type FtpLimits} from './server.js'

export const FOLDER = 'share'
export const BIG_FILE = 'big.bin'
export const BIG_BYTES = 3 * (1 << 20) + 17
/** Names FTP cannot carry: the server must leave them out of listings, not break on them. */
export const UNSENDABLE_NAMES = ['new\nline.txt', 'carriage\rreturn.txt']
/** Names beyond core's hostile set that stress FTP command parsing and the tools' URL/glob handling. */
export const FTP_HOSTILE_NAMES = [
  ...HOSTILE_NAMES,
  ' one leading space.txt',
  'trailing space.txt ',
  'tab\there.txt',
  'back\\slash.txt',
  'star*[1].txt',
  'semi;colon=fact; x.txt',
  'pipe|and<angle>.txt',
  '~tilde.txt',
]
export const OUTSIDE_SECRET = 'outside: never served\n'

export interface Tree {
  base: string
  root: string
  /** Every served regular file's path, `/`-separated. */
  files: string[]
  dispose(): Promise<void>
}

/** A temp tree: hostile names, an empty file, a big file, names FTP cannot carry, and a symlink out. */
export async function makeTree(): Promise<Tree> {
  const base = await mkdtemp(path.join(tmpdir(), 'fpeer-ftp-'))
  const root = path.join(base, FOLDER)
  const files: string[] = []
  const put = async (rel: string, data: string | Buffer) => {
    const abs = path.join(root, ...rel.split('/'))
    await mkdir(path.dirname(abs), {recursive: true})
    await writeFile(abs, data)
  }
  await mkdir(root, {recursive: true})
  for (const [i, name] of FTP_HOSTILE_NAMES.entries()) {
    await put(name, `file ${i}: ${name}\n`)
    files.push(name)
  }
  await put('empty.bin', '')
  await put(BIG_FILE, pseudoRandom('ftp-big', BIG_BYTES))
  files.push('empty.bin', BIG_FILE)
  for (const name of UNSENDABLE_NAMES) await put(name, 'cannot travel over FTP\n')
  await mkdir(path.join(base, 'outside'))
  await writeFile(path.join(base, 'outside', 'secret'), OUTSIDE_SECRET)
  await symlink(path.join(base, 'outside', 'secret'), path.join(root, 'escape.txt'))
  return {base, root, files: files.sort(), dispose: () => rm(base, {recursive: true, force: true})}
}

export function localSource(tree: Tree, mayRead: (folder: string, who: AccessContext) => boolean = () => true): LocalFileSource {
  return new LocalFileSource({root: (f) => (f === FOLDER ? tree.root : undefined), mayRead}, () => [FOLDER])
}

/** Serves `files` with the FTP transport's server on 127.0.0.1 at a free port. */
export function serve(files: FileSource, limits: Partial<FtpLimits> = {}, host = '127.0.0.1'): Promise<TransportServer> {
  return serveFtp({host, port: 0, files, identity: new Identity(generateKeyPair())}, limits)
}

export interface Reply {
  code: number
  /** The reply's lines joined with LF, codes included. */
  text: string
}

/** A bare FTP control connection that shows replies exactly as sent, for testing the server's protocol. */
export class RawFtp {
  readonly socket: Socket
  #buf = ''
  #lines: string[] = []
  #replies: Reply[] = []
  #waiter: (() => void) | undefined
  #closed = false

  private constructor(socket: Socket) {
    this.socket = socket
    socket.setEncoding('utf8')
    socket.on('data', (s: string) => this.#onData(s))
    socket.on('error', () => {})
    socket.on('close', () => {
      this.#closed = true
      this.#waiter?.()
    })
  }

  static async open(port: number, options: {host?: string; localAddress?: string} = {}): Promise<RawFtp> {
    const socket = connect({host: options.host ?? '127.0.0.1', port, ...(options.localAddress ? {localAddress: options.localAddress} : {})})
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    return new RawFtp(socket)
  }

  /** Connects, reads the greeting and logs in anonymously. */
  static async login(port: number, options: {localAddress?: string} = {}): Promise<RawFtp> {
    const ftp = await RawFtp.open(port, options)
    await ftp.expect(220)
    await ftp.cmd('USER anonymous', 331)
    await ftp.cmd('PASS x@', 230)
    return ftp
  }

  get closed(): boolean {
    return this.#closed
  }

  #onData(s: string): void {
    this.#buf += s
    for (let i = this.#buf.indexOf('\r\n'); i !== -1; i = this.#buf.indexOf('\r\n')) {
      const line = this.#buf.slice(0, i)
      this.#buf = this.#buf.slice(i + 2)
      this.#lines.push(line)
      const first = this.#lines[0]!
      const code = first.slice(0, 3)
      if (first[3] !== '-' || (this.#lines.length > 1 && line.startsWith(`${code} `))) {
        this.#replies.push({code: Number(code), text: this.#lines.join('\n')})
        this.#lines = []
      }
    }
    this.#waiter?.()
  }

  /** The next reply; rejects after `timeoutMs` or when the server closed without one. */
  async next(timeoutMs = 5000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs
    while (this.#replies.length === 0) {
      if (this.#closed) throw new Error('control connection closed without a reply')
      const left = deadline - Date.now()
      if (left <= 0) throw new Error('no reply in time')
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.#waiter = () => {
          clearTimeout(t)
          resolve()
        }
      })
      this.#waiter = undefined
    }
    return this.#replies.shift()!
  }

  async expect(code: number, timeoutMs?: number): Promise<Reply> {
    const r = await this.next(timeoutMs)
    if (r.code !== code) throw new Error(`expected ${code}, got ${r.text}`)
    return r
  }

  send(line: string | Buffer): void {
    this.socket.write(typeof line === 'string' ? `${line}\r\n` : line)
  }

  /** Sends a command and returns its reply; with `code`, asserts it. */
  async cmd(line: string, code?: number): Promise<Reply> {
    this.send(line)
    return code === undefined ? this.next() : this.expect(code)
  }

  /** EPSV, then connects the data socket (from `localAddress` if given). */
  async epsv(localAddress?: string): Promise<Socket> {
    const r = await this.cmd('EPSV', 229)
    const port = Number(/\(\|\|\|(\d+)\|\)/.exec(r.text)![1])
    return connectData(port, localAddress)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.socket.destroy()
    await new Promise<void>((resolve) => (this.#closed ? resolve() : this.socket.once('close', () => resolve())))
  }
}

export async function connectData(port: number, localAddress?: string): Promise<Socket> {
  const s = connect({host: '127.0.0.1', port, ...(localAddress ? {localAddress} : {})})
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve)
    s.once('error', reject)
  })
  return s
}

/** Everything a data socket delivers until it closes, and whether it ended with an error (a reset). */
export function drain(socket: Socket, timeoutMs = 10_000): Promise<{data: Buffer; error?: string}> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let error: string | undefined
    const t = setTimeout(() => socket.destroy(new Error('drain timed out')), timeoutMs)
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message))
    socket.on('close', () => {
      clearTimeout(t)
      resolve({data: Buffer.concat(chunks), ...(error ? {error} : {})})
    })
  })
}

// Tools run to completion and free ports are the shared test helpers of @fpeer/core/testing.
export {freePort, runTool as run, type ToolResult as RunResult} from '@fpeer/core/testing'

/** Percent-encodes each segment of a path for an ftp:// URL. */
export function urlPath(rel: string): string {
  return rel
    .split('/')
    .map((s) => encodeURIComponent(s).replace(/[!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/')
}

/**
 * Decodes block mode's framing (RFC 959 3.4.2): the files ended by an EOF block, the
 * descriptors seen, and the bytes of a file not ended (a connection cut mid-file).
 */
export function parseBlocks(buf: Buffer): {files: Buffer[]; descriptors: Set<number>; unfinished: Buffer | undefined} {
  const files: Buffer[] = []
  const descriptors = new Set<number>()
  let current: Buffer[] | undefined
  let at = 0
  while (at + 3 <= buf.length) {
    const desc = buf[at]!
    const count = buf.readUInt16BE(at + 1)
    descriptors.add(desc)
    current ??= []
    current.push(buf.subarray(at + 3, Math.min(buf.length, at + 3 + count)))
    at += 3 + count
    if (at <= buf.length && desc & 0x40) {
      files.push(Buffer.concat(current))
      current = undefined
    }
  }
  if (at < buf.length) (current ??= []).push(buf.subarray(at))
  return {files, descriptors, unfinished: current && Buffer.concat(current)}
}
