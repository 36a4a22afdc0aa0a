// The SFTP transport server: an ssh2 server keyed by this peer's identity, public-key login by peer ID, and a small read-only SFTP v3 server over a FileSource.
//
// No maintained read-only SFTP server exists for ssh2, so the SFTP requests are answered
// here. Every byte on disk is reached through the FileSource core hands us, with
// `who = {address, peer}`: it confines paths by realpath and decides who may read what.
// This file only maps the virtual tree `/<folder>/<path>` onto it and refuses everything
// that would change anything.
import net from 'node:net'
import type {Readable} from 'node:stream'
import ssh2 from 'ssh2'
import type {AuthContext, Connection, SFTPWrapper, ServerChannel} from 'ssh2'
import {ConnectionGuard, FpeerError, PeerId, fromSystemError, isFpeerError, silentLogger, verifySignature} from '@fpeer/core/plugin'
import type {AccessContext, FileSource, GuardedConnection, FileStat, Logger, ServeOptions, TransportServer} from '@fpeer/core/plugin'
import {ED25519, fingerprint, parsePublicKeyBlob, privateKeyPem} from './keys.js'

/** Bounds that keep one misbehaving or greedy client from exhausting the server. */
export interface SftpServerLimits {
  /** Open TCP connections at once, authenticated or not (core's ConnectionGuard shares them fairly). */
  maxConnections: number
  /** Open TCP connections at once from one address. */
  maxConnectionsPerAddress: number
  /** SSH session channels per connection (each may run one SFTP subsystem). */
  maxSessionsPerConnection: number
  /** Open file and directory handles per SFTP session. */
  maxHandlesPerSession: number
  /** SFTP requests being answered at once per session; more are refused with FAILURE. */
  maxPendingRequests: number
  /** Largest READ answered; longer requests get a short read, as the protocol allows. */
  maxReadBytes: number
  /** Failed login attempts before the connection is dropped. */
  maxAuthAttempts: number
  /** Time from TCP accept to successful login. */
  loginTimeoutMs: number
  /** Time without any SFTP request after which an authenticated connection is ended. */
  idleTimeoutMs: number
}

export const DEFAULT_SERVER_LIMITS: Readonly<SftpServerLimits> = {
  maxConnections: 64,
  maxConnectionsPerAddress: 16,
  maxSessionsPerConnection: 4,
  maxHandlesPerSession: 32,
  maxPendingRequests: 512,
  maxReadBytes: 256 * 1024,
  maxAuthAttempts: 8,
  loginTimeoutMs: 10_000,
  idleTimeoutMs: 5 * 60_000,
}

/** SFTP v3 status codes (draft-ietf-secsh-filexfer-02 §7). */
const STATUS = {OK: 0, EOF: 1, NO_SUCH_FILE: 2, PERMISSION_DENIED: 3, FAILURE: 4, BAD_MESSAGE: 5, OP_UNSUPPORTED: 8} as const
/** SSH_FXF_* open flags: anything but READ asks to change the file. */
const OPEN_READ = 0x1
/** Replies queued on the channel (waiting for the client's window) before READs pause. */
const MAX_QUEUED_REPLIES = 64
const READDIR_BATCH = 100
const S_IFDIR = 0o040000
const S_IFREG = 0o100000

// ─── paths ──────────────────────────────────────────────────────────────────

/**
 * Normalises an SFTP path POSIX-style against `/` (the session's only working directory):
 * `.` and empty segments go, `..` climbs but never above `/`. Backslashes are ordinary
 * characters. Returns the segments; `[]` is the root that lists the folders.
 */
export function normalizeSftpPath(p: string): string[] {
  const out: string[] = []
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue
    if (seg === '..') out.pop()
    else out.push(seg)
  }
  return out
}

function toSftpPath(segments: string[]): string {
  return '/' + segments.join('/')
}

// ─── attributes and listings ────────────────────────────────────────────────

interface Attrs {
  mode: number
  uid: number
  gid: number
  size: number
  atime: number
  mtime: number
}

function attrsOf(st: FileStat): Attrs {
  const mtime = Math.floor(st.mtimeMs / 1000)
  // Everything served is read-only to the client, whatever the modes on disk.
  const mode = st.type === 'directory' ? S_IFDIR | 0o555 : S_IFREG | 0o444
  return {mode, uid: 0, gid: 0, size: st.type === 'directory' ? 0 : st.size, atime: mtime, mtime}
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

/**
 * The `ls -l` line OpenSSH's `ls -l` prints verbatim. Control characters in the name are
 * shown as `?` so that a hostile file name cannot forge extra lines of a listing; the
 * `filename` field beside it carries the exact name.
 */
export function longname(name: string, st: FileStat, now = Date.now()): string {
  const perms = st.type === 'directory' ? 'dr-xr-xr-x' : '-r--r--r--'
  const d = new Date(st.mtimeMs)
  const recent = Math.abs(now - st.mtimeMs) < 182 * 24 * 3600 * 1000
  const day = String(d.getUTCDate()).padStart(2, ' ')
  const when = recent ? `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}` : ` ${d.getUTCFullYear()}`
  const size = String(st.type === 'directory' ? 0 : st.size).padStart(8, ' ')
  // eslint-disable-next-line no-control-regex
  const shown = name.replace(/[\u0000-\u001f\u007f]/g, '?')
  return `${perms}    1 fpeer    fpeer    ${size} ${MONTHS[d.getUTCMonth()]} ${day} ${when} ${shown}`
}

/** Maps a FileSource error to the SFTP status a client understands. */
function statusOf(err: unknown): {code: number; message: string} {
  if (isFpeerError(err)) {
    switch (err.code) {
      case 'E_NOT_FOUND':
      case 'E_UNKNOWN_FOLDER':
        return {code: STATUS.NO_SUCH_FILE, message: 'No such file'}
      case 'E_ACCESS':
      case 'E_PATH_UNSAFE':
        return {code: STATUS.PERMISSION_DENIED, message: 'Permission denied'}
      default:
        return {code: STATUS.FAILURE, message: 'Failure'}
    }
  }
  return {code: STATUS.FAILURE, message: 'Failure'}
}

// ─── reading a file sequentially ────────────────────────────────────────────

/**
 * One open read position in a file: a FileSource stream from `pos` onward, read in exact
 * slices. SFTP clients read a file front to back with many READs in flight, so almost every
 * READ continues where the last one ended and is a slice of the same stream; only a seek
 * reopens. Works with byte streams and object-mode streams alike.
 */
class SequentialReader {
  pos: number
  readonly #stream: Readable
  #leftover: Buffer | undefined
  #ended = false
  #error: Error | undefined
  #wake: (() => void) | undefined

  constructor(stream: Readable, start: number) {
    this.pos = start
    this.#stream = stream
    const wake = () => {
      const w = this.#wake
      this.#wake = undefined
      w?.()
    }
    stream.on('readable', wake)
    stream.on('end', () => {
      this.#ended = true
      wake()
    })
    stream.on('error', (err) => {
      this.#error = err
      wake()
    })
    stream.on('close', () => {
      // A stream closed without 'end' (destroyed underneath us) has nothing more to give.
      this.#ended = true
      wake()
    })
  }

  /**
   * Exactly `n` bytes from `pos`, fewer only at the end of the file, null at the end. A
   * short answer in mid-file would make the client ask for the rest out of order (a seek).
   */
  async take(n: number): Promise<Buffer | null> {
    const parts: Buffer[] = []
    let got = 0
    while (got < n) {
      if (this.#leftover) {
        const buf = this.#leftover
        const want = n - got
        parts.push(buf.length > want ? buf.subarray(0, want) : buf)
        this.#leftover = buf.length > want ? buf.subarray(want) : undefined
        got += Math.min(buf.length, want)
        continue
      }
      if (this.#error) throw this.#error
      const chunk: unknown = this.#stream.readableObjectMode
        ? this.#stream.read()
        : this.#stream.read(Math.min(n - got, this.#stream.readableLength || n - got))
      if (chunk !== null && chunk !== undefined) {
        const buf = Buffer.isBuffer(chunk) ? chunk : typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array)
        if (buf.length > 0) this.#leftover = buf
        continue
      }
      if (this.#ended || this.#stream.readableEnded) break
      await new Promise<void>((resolve) => {
        this.#wake = resolve
      })
    }
    if (got === 0) return null
    this.pos += got
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, got)
  }

  close(): void {
    this.#stream.destroy()
  }
}

/** SequentialReader's counterpart for a range the FileSource handed over already read. */
class BufferReader {
  pos: number
  readonly #data: Buffer
  readonly #start: number

  constructor(data: Buffer, start: number) {
    this.pos = start
    this.#data = data
    this.#start = start
  }

  /** Exactly `n` bytes from `pos`, fewer only at the end, null at the end. */
  async take(n: number): Promise<Buffer | null> {
    const from = this.pos - this.#start
    if (from >= this.#data.length) return null
    const piece = this.#data.subarray(from, from + n)
    this.pos += piece.length
    return piece
  }

  close(): void {}
}

// ─── one SFTP session ───────────────────────────────────────────────────────

interface FileHandle {
  kind: 'file'
  folder: string
  rel: string
  stat: FileStat
  reader: SequentialReader | BufferReader | undefined
  /** A read failed: later READs on this handle fail too instead of reopening past the fault. */
  failed: boolean
  /** READs on one handle are answered in order, one at a time. */
  queue: Promise<void>
  closed: boolean
}

interface DirHandle {
  kind: 'dir'
  entries: Array<{filename: string; longname: string; attrs: Attrs}>
  next: number
}

type Handle = FileHandle | DirHandle

interface SessionContext {
  files: FileSource
  who: AccessContext
  limits: SftpServerLimits
  log: Logger
  touch(): void
}

/** Answers the SFTP requests of one subsystem channel. */
class ReadOnlySftpSession {
  readonly #sftp: SFTPWrapper
  readonly #ctx: SessionContext
  readonly #handles = new Map<string, Handle>()
  #nextHandle = 0
  #pending = 0
  #closed = false

  constructor(sftp: SFTPWrapper, ctx: SessionContext) {
    this.#sftp = sftp
    this.#ctx = ctx
    const deny = (reqid: number) => this.#reply(() => sftp.status(reqid, STATUS.PERMISSION_DENIED, 'Read-only server'))
    const unsupported = (reqid: number) => this.#reply(() => sftp.status(reqid, STATUS.OP_UNSUPPORTED, 'Not supported'))
    sftp.on('OPEN', (reqid: number, filename: string, flags: number) => this.#run(reqid, () => this.#open(reqid, filename, flags)))
    sftp.on('READ', (reqid: number, handle: Buffer, offset: number, length: number) => this.#read(reqid, handle, offset, length))
    sftp.on('CLOSE', (reqid: number, handle: Buffer) => this.#run(reqid, async () => this.#close(reqid, handle)))
    sftp.on('FSTAT', (reqid: number, handle: Buffer) => this.#run(reqid, async () => this.#fstat(reqid, handle)))
    sftp.on('OPENDIR', (reqid: number, path: string) => this.#run(reqid, () => this.#opendir(reqid, path)))
    sftp.on('READDIR', (reqid: number, handle: Buffer) => this.#run(reqid, async () => this.#readdir(reqid, handle)))
    sftp.on('STAT', (reqid: number, path: string) => this.#run(reqid, () => this.#stat(reqid, path)))
    sftp.on('LSTAT', (reqid: number, path: string) => this.#run(reqid, () => this.#stat(reqid, path)))
    sftp.on('REALPATH', (reqid: number, path: string) => this.#run(reqid, async () => this.#realpath(reqid, path)))
    for (const ev of ['WRITE', 'FSETSTAT', 'SETSTAT', 'REMOVE', 'RMDIR', 'MKDIR', 'RENAME', 'SYMLINK']) sftp.on(ev, deny)
    for (const ev of ['READLINK', 'EXTENDED']) sftp.on(ev, unsupported)
    sftp.on('error', (err: Error) => this.#ctx.log.debug('sftp session error', {error: err.message}))
    sftp.on('close', () => this.dispose())
    sftp.on('end', () => {
      // The client sent EOF: it will not ask for more, and waits for us to close the channel.
      this.dispose()
      try {
        sftp.end()
      } catch {
        // already closed
      }
    })
  }

  /** Frees every handle; called when the channel goes away. */
  dispose(): void {
    if (this.#closed) return
    this.#closed = true
    for (const h of this.#handles.values()) if (h.kind === 'file') this.#closeFile(h)
    this.#handles.clear()
  }

  // Replies after the channel closed are dropped; a reply must never throw into ssh2.
  #reply(send: () => void): void {
    if (this.#closed) return
    try {
      send()
    } catch (err) {
      this.#ctx.log.debug('sftp reply failed', {error: (err as Error).message})
    }
  }

  #fail(reqid: number, err: unknown): void {
    const {code, message} = statusOf(err)
    if (!isFpeerError(err)) this.#ctx.log.warn('sftp request failed', {error: (err as Error)?.message ?? String(err)})
    this.#reply(() => this.#sftp.status(reqid, code, message))
  }

  /** Runs one request with the pending-request bound, turning every failure into a status. */
  #run(reqid: number, fn: () => Promise<void>): void {
    this.#ctx.touch()
    if (this.#pending >= this.#ctx.limits.maxPendingRequests) {
      this.#reply(() => this.#sftp.status(reqid, STATUS.FAILURE, 'Too many requests'))
      return
    }
    this.#pending++
    fn()
      .catch((err) => this.#fail(reqid, err))
      .finally(() => {
        this.#pending--
        this.#ctx.touch()
      })
  }

  #resolve(path: string): {segments: string[]; folder: string | undefined; rel: string} {
    if (path.includes('\0')) throw new FpeerError('E_PATH_UNSAFE', 'NUL in path')
    const segments = normalizeSftpPath(path)
    return {segments, folder: segments[0], rel: segments.slice(1).join('/')}
  }

  async #statPath(folder: string | undefined, rel: string): Promise<FileStat> {
    if (folder === undefined) return {type: 'directory', size: 0, mtimeMs: Date.now()}
    return this.#ctx.files.stat(folder, rel, this.#ctx.who)
  }

  #newHandle(h: Handle): Buffer | undefined {
    if (this.#handles.size >= this.#ctx.limits.maxHandlesPerSession) return undefined
    const id = Buffer.alloc(4)
    id.writeUInt32BE(this.#nextHandle++ >>> 0)
    this.#handles.set(id.toString('hex'), h)
    return id
  }

  #handle(id: Buffer): Handle | undefined {
    return Buffer.isBuffer(id) && id.length === 4 ? this.#handles.get(id.toString('hex')) : undefined
  }

  async #realpath(reqid: number, path: string): Promise<void> {
    const p = toSftpPath(this.#resolve(path).segments)
    this.#reply(() => this.#sftp.name(reqid, [{filename: p, longname: p, attrs: {} as Attrs}]))
  }

  async #stat(reqid: number, path: string): Promise<void> {
    const {folder, rel} = this.#resolve(path)
    const st = await this.#statPath(folder, rel)
    this.#reply(() => this.#sftp.attrs(reqid, attrsOf(st)))
  }

  async #open(reqid: number, filename: string, flags: number): Promise<void> {
    if ((flags & ~OPEN_READ) !== 0 || (flags & OPEN_READ) === 0) {
      this.#reply(() => this.#sftp.status(reqid, STATUS.PERMISSION_DENIED, 'Read-only server'))
      return
    }
    const {folder, rel} = this.#resolve(filename)
    if (folder === undefined || rel === '') {
      // `/` and a folder itself are directories.
      if (folder !== undefined) await this.#statPath(folder, rel)
      this.#reply(() => this.#sftp.status(reqid, STATUS.FAILURE, 'Is a directory'))
      return
    }
    // OPEN checks that the file is there and may be read by this peer; the bytes are opened
    // at the first READ, at its offset, so a resumed transfer opens the file once, where it resumes.
    const st = await this.#ctx.files.stat(folder, rel, this.#ctx.who)
    if (st.type !== 'file') {
      this.#reply(() => this.#sftp.status(reqid, STATUS.FAILURE, 'Is a directory'))
      return
    }
    const h: FileHandle = {kind: 'file', folder, rel, stat: st, reader: undefined, failed: false, queue: Promise.resolve(), closed: false}
    const id = this.#closed ? undefined : this.#newHandle(h)
    if (!id) {
      this.#reply(() => this.#sftp.status(reqid, STATUS.FAILURE, 'Too many open handles'))
      return
    }
    this.#reply(() => this.#sftp.handle(reqid, id))
  }

  #read(reqid: number, id: Buffer, offset: number, length: number): void {
    this.#ctx.touch()
    const h = this.#handle(id)
    if (!h || h.kind !== 'file') {
      this.#reply(() => this.#sftp.status(reqid, STATUS.FAILURE, 'Bad handle'))
      return
    }
    if (this.#pending >= this.#ctx.limits.maxPendingRequests) {
      this.#reply(() => this.#sftp.status(reqid, STATUS.FAILURE, 'Too many requests'))
      return
    }
    this.#pending++
    const len = Math.min(length, this.#ctx.limits.maxReadBytes)
    h.queue = h.queue
      .then(async () => {
        if (h.closed) throw new FpeerError('E_NOT_FOUND', 'handle closed')
        if (h.failed) throw new FpeerError('E_IO', 'an earlier read on this handle failed')
        await this.#drained()
        let buf: Buffer | null
        try {
          buf = len === 0 ? Buffer.alloc(0) : await this.#readAt(h, offset, len)
        } catch (err) {
          h.failed = true
          throw err
        }
        if (buf === null) this.#reply(() => this.#sftp.status(reqid, STATUS.EOF, 'End of file'))
        else this.#reply(() => this.#sftp.data(reqid, buf))
      })
      .catch((err) => this.#fail(reqid, err))
      .finally(() => {
        this.#pending--
        this.#ctx.touch()
      })
  }

  async #readAt(h: FileHandle, offset: number, len: number): Promise<Buffer | null> {
    if (!h.reader || h.reader.pos !== offset) {
      // The first READ, or a seek: open at this offset. Past the end the source gives an empty stream.
      h.reader?.close()
      h.reader = undefined
      const opened = await this.#ctx.files.open(h.folder, h.rel, this.#ctx.who, {start: offset})
      if (h.closed) {
        opened.stream.destroy()
        return null
      }
      // A small file comes already read (`data`): slices of it, no stream to make and drain.
      h.reader = opened.data ? new BufferReader(opened.data, offset) : new SequentialReader(opened.stream, offset)
    }
    return h.reader.take(len)
  }

  /**
   * Waits while many replies sit in the channel's queue because the client does not open
   * its window: ssh2 queues replies without bound, so a client that sends READs but never
   * reads the answers would otherwise grow the server's memory.
   */
  async #drained(): Promise<void> {
    const queued = () => (this.#sftp as unknown as {_buffer?: unknown[]})._buffer?.length ?? 0
    while (!this.#closed && queued() > MAX_QUEUED_REPLIES) {
      await new Promise((r) => setTimeout(r, 5))
    }
  }

  async #fstat(reqid: number, id: Buffer): Promise<void> {
    const h = this.#handle(id)
    if (!h) throw new FpeerError('E_INTERNAL', 'bad handle')
    const st: FileStat = h.kind === 'file' ? h.stat : {type: 'directory', size: 0, mtimeMs: Date.now()}
    this.#reply(() => this.#sftp.attrs(reqid, attrsOf(st)))
  }

  #closeFile(h: FileHandle): void {
    h.closed = true
    h.reader?.close()
    h.reader = undefined
  }

  async #close(reqid: number, id: Buffer): Promise<void> {
    const h = this.#handle(id)
    if (!h) throw new FpeerError('E_INTERNAL', 'bad handle')
    this.#handles.delete(id.toString('hex'))
    if (h.kind === 'file') this.#closeFile(h)
    this.#reply(() => this.#sftp.status(reqid, STATUS.OK))
  }

  async #opendir(reqid: number, path: string): Promise<void> {
    const {folder, rel} = this.#resolve(path)
    const now = Date.now()
    let entries: Array<{name: string} & FileStat>
    if (folder === undefined) {
      entries = []
      for (const name of await this.#ctx.files.folders(this.#ctx.who)) {
        const st = await this.#ctx.files.stat(name, '', this.#ctx.who).catch(() => undefined)
        if (st) entries.push({name, ...st, type: 'directory'})
      }
    } else {
      const st = await this.#ctx.files.stat(folder, rel, this.#ctx.who)
      if (st.type !== 'directory') throw new FpeerError('E_NOT_FOUND', 'not a directory')
      entries = await this.#ctx.files.list(folder, rel, this.#ctx.who)
    }
    if (this.#handles.size >= this.#ctx.limits.maxHandlesPerSession) {
      this.#reply(() => this.#sftp.status(reqid, STATUS.FAILURE, 'Too many open handles'))
      return
    }
    const id = this.#newHandle({
      kind: 'dir',
      entries: entries.map((e) => ({filename: e.name, longname: longname(e.name, e, now), attrs: attrsOf(e)})),
      next: 0,
    })!
    this.#reply(() => this.#sftp.handle(reqid, id))
  }

  async #readdir(reqid: number, id: Buffer): Promise<void> {
    const h = this.#handle(id)
    if (!h || h.kind !== 'dir') throw new FpeerError('E_INTERNAL', 'bad handle')
    if (h.next >= h.entries.length) {
      this.#reply(() => this.#sftp.status(reqid, STATUS.EOF, 'End of directory'))
      return
    }
    const batch = h.entries.slice(h.next, h.next + READDIR_BATCH)
    h.next += batch.length
    this.#reply(() => this.#sftp.name(reqid, batch))
  }
}

// ─── the SSH server ─────────────────────────────────────────────────────────

function plainAddress(address: string | undefined): string {
  if (!address) return ''
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

/** Per-TCP-connection state. */
interface ConnState {
  socket: net.Socket
  address: string
  peer: PeerId | undefined
  authAttempts: number
  sessions: number
  guarded: GuardedConnection
  client: Connection | undefined
}

/**
 * Starts the SFTP server. Login is by public key only, ed25519 only: the key a client
 * proves it holds is its peer ID, and `admit` decides whether that peer may connect. Only
 * the `sftp` subsystem is offered; shells, commands and forwarding are refused.
 */
export async function serveSftp(options: ServeOptions, limitOverrides: Partial<SftpServerLimits> = {}): Promise<TransportServer> {
  const limits: SftpServerLimits = {...DEFAULT_SERVER_LIMITS, ...limitOverrides}
  const log = options.log ?? silentLogger
  const conns = new Map<string, ConnState>()
  let closing = false

  const ssh = new ssh2.Server({
    hostKeys: [privateKeyPem(options.identity)],
    ident: 'fpeer',
    algorithms: {serverHostKey: [ED25519]},
  })
  ssh.on('error', (err: Error) => log.debug('ssh server error', {error: err.message}))

  ssh.on('connection', (client: Connection, info: {ip: string; port: number}) => {
    const state = conns.get(`${info.ip}|${info.port}`)
    if (!state || closing) {
      client.end()
      return
    }
    state.client = client
    client.on('error', (err: Error) => log.debug('ssh connection error', {address: state.address, error: err.message}))
    client.on('authentication', (ctx: AuthContext) => authenticate(state, ctx))
    client.on('ready', () => {
      // Logged in: the guard's login deadline is met; from now on its idle deadline runs between requests.
      state.guarded.idle()
      log.info('sftp login', {address: state.address, peer: state.peer?.short})
    })
    client.on('session', (accept: () => ssh2.Session, reject: () => void) => {
      if (!state.peer || state.sessions >= limits.maxSessionsPerConnection) {
        reject()
        return
      }
      state.sessions++
      const session = accept()
      // Only the sftp subsystem has a listener; ssh2 refuses shell, exec, pty, env, x11…
      session.on('sftp', (acceptSftp: () => SFTPWrapper) => {
        const sftp = acceptSftp()
        new ReadOnlySftpSession(sftp, {
          files: options.files,
          who: {address: state.address, peer: state.peer},
          limits,
          log,
          touch: () => state.guarded.touch(),
        })
      })
      ;(session as unknown as ServerChannel).on?.('close', () => {
        state.sessions--
      })
    })
    // No 'tcpip', 'openssh.streamlocal' or 'request' listeners: ssh2 refuses all forwarding.
  })

  function authenticate(state: ConnState, ctx: AuthContext): void {
    const refuse = () => {
      if (++state.authAttempts >= limits.maxAuthAttempts) {
        ctx.reject()
        endConnection(state)
      } else {
        ctx.reject(['publickey'])
      }
    }
    if (ctx.method !== 'publickey' || ctx.key.algo !== ED25519) return refuse()
    const publicKey = parsePublicKeyBlob(ctx.key.data)
    if (!publicKey) return refuse()
    const peer = PeerId.fromPublicKey(publicKey)
    let admitted = true
    try {
      admitted = options.admit ? options.admit({address: state.address, peer}) === true : true
    } catch (err) {
      log.warn('admit failed', {error: (err as Error).message})
      admitted = false
    }
    if (!admitted) {
      log.info('sftp login refused', {address: state.address, peer: peer.short, key: fingerprint(publicKey)})
      return refuse()
    }
    // Without a signature the client only asks whether this key would do (PK_OK); the login
    // itself needs the signature over the session ID.
    if (!ctx.signature) return ctx.accept()
    if (!ctx.blob || !verifySignature(ctx.blob, ctx.signature, publicKey)) return refuse()
    state.peer = peer
    ctx.accept()
  }

  function endConnection(state: ConnState): void {
    try {
      state.client?.end()
    } catch {
      // already gone
    }
    // A client that does not close its side is cut off.
    setTimeout(() => state.socket.destroy(), 1000).unref()
  }

  // Login within loginTimeoutMs, then closed after idleTimeoutMs without an SFTP request (SSH has no farewell text).
  const guard = new ConnectionGuard({
    name: 'sftp',
    limits: {
      maxConnections: limits.maxConnections,
      maxPerAddress: limits.maxConnectionsPerAddress,
      firstMs: limits.loginTimeoutMs,
      idleMs: limits.idleTimeoutMs,
      quietMs: Math.min(5000, limits.idleTimeoutMs),
    },
    log,
  })

  const tcp = net.createServer((socket) => {
    if (closing) return void socket.destroy()
    const guarded = guard.admit(socket)
    if (!guarded) return
    const address = plainAddress(socket.remoteAddress)
    const key = `${socket.remoteAddress}|${socket.remotePort}`
    const state: ConnState = {socket, address, peer: undefined, authAttempts: 0, sessions: 0, guarded, client: undefined}
    conns.set(key, state)
    socket.on('close', () => conns.delete(key))
    socket.setNoDelay(true)
    ssh.injectSocket(socket)
  })

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(fromSystemError(err, `cannot listen on ${options.host}:${options.port}`))
    tcp.once('error', onError)
    tcp.listen(options.port, options.host, () => {
      tcp.off('error', onError)
      resolve()
    })
  })
  tcp.on('error', (err) => log.warn('sftp server error', {error: err.message}))
  const bound = tcp.address() as net.AddressInfo
  log.info('sftp server listening', {host: bound.address, port: bound.port, hostKey: fingerprint(options.identity.publicKey)})

  let closed: Promise<void> | undefined
  return {
    host: bound.address,
    port: bound.port,
    close(): Promise<void> {
      closed ??= (async () => {
        closing = true
        guard.closeIdle()
        const listening = new Promise<void>((resolve) => tcp.close(() => resolve()))
        const all = [...conns.values()].map(
          (state) =>
            new Promise<void>((resolve) => {
              if (state.socket.destroyed) return resolve()
              state.socket.once('close', () => resolve())
              endConnection(state)
            }),
        )
        await Promise.all([listening, ...all])
        guard.close()
      })()
      return closed
    },
  }
}
