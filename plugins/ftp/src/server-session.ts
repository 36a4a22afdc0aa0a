// One FTP control connection: login, working directory, passive data endpoint, and the read-only command set.
import {isIPv6, type Socket} from 'node:net'
import type {Readable} from 'node:stream'
import {isFpeerError, positionalReader, type AccessContext, type FileSource, type FileStat, type Logger} from '@fpeer/core/plugin'
import {
  MLST_FACTS,
  formatEpsv,
  formatListLine,
  formatMlstFeature,
  formatMlsxLine,
  formatPasv,
  formatTimeVal,
  isListableName,
  parseMlstOpts,
  type ListEntry,
  type MlstFact,
} from './list-format.js'
import {PassivePort, type PassiveEndpoint} from './passive.js'
import {
  PRE_LOGIN_VERBS,
  WRITE_VERBS,
  baseName,
  formatReply,
  parseCommand,
  parseRestOffset,
  plainAddress,
  quotePath,
  resolvePath,
  splitLines,
  splitPath,
  stripListOptions,
  type ParsedCommand,
} from './server-commands.js'

/** Bounds that keep one bad or slow client from holding the server. */
export interface FtpLimits {
  /** Open control connections, in all. */
  maxConnections: number
  /** Open control connections from one address. */
  maxConnectionsPerAddress: number
  /** A control connection with no command under way for this long is closed (421), even one that drips bytes. */
  idleTimeoutMs: number
  /** From accept to the first complete command line. */
  firstLineTimeoutMs: number
  /** How long a passive port waits for its connection, and how long a transfer may stall. */
  dataTimeoutMs: number
  /** Commands a client may send ahead while a transfer runs. */
  maxQueuedCommands: number
  /** Longest command line, in bytes. */
  maxLineBytes: number
}

export const DEFAULT_LIMITS: Readonly<FtpLimits> = {
  maxConnections: 128,
  maxConnectionsPerAddress: 32,
  idleTimeoutMs: 60_000,
  firstLineTimeoutMs: 10_000,
  dataTimeoutMs: 60_000,
  maxQueuedCommands: 64,
  maxLineBytes: 8192,
}

/** A failure that already knows its FTP reply. */
class ReplyError extends Error {
  constructor(
    readonly code: number,
    text: string,
  ) {
    super(text)
  }
}

type Outcome = 'ok' | 'source' | 'client' | 'aborted'

/** Replies queued for a client that does not read them, before it is cut off. */
const MAX_UNREAD_REPLY_BYTES = 1 << 20

const ROOT_STAT: FileStat = {type: 'directory', size: 0, mtimeMs: 0}

export interface SessionDeps {
  files: FileSource
  log: Logger
  limits: FtpLimits
  onClose(): void
  /** Told when commands start running (true) and when none is left (false), for the connection guard. */
  onActivity?(busy: boolean): void
}

export class FtpSession {
  readonly #socket: Socket
  readonly #deps: SessionDeps
  readonly #who: AccessContext
  readonly #localHost: string
  #pending: Buffer = Buffer.alloc(0)
  readonly #queue: ParsedCommand[] = []
  #running = false
  #closed = false
  #user: string | undefined
  #loggedIn = false
  #cwd = '/'
  #rest = 0
  #facts = new Set<MlstFact>(MLST_FACTS)
  #passive: PassiveEndpoint | undefined
  /** The session's one passive listener, opened at its first PASV/EPSV. */
  #port: PassivePort | undefined
  /** The endpoint a running command took: teardown must close it too, or its listener outlives the session. */
  #inUse: PassiveEndpoint | undefined
  #transfer: {abort(): void} | undefined
  /** MODE: S (stream, RFC 959's default: a data connection per transfer) or B (block: one kept across transfers). */
  #mode: 'S' | 'B' = 'S'
  /** Block mode's data connection, kept from one transfer to the next until MODE S, PASV/EPSV, a failed transfer or the session's end. */
  #blockData: Socket | undefined

  constructor(socket: Socket, deps: SessionDeps) {
    this.#socket = socket
    this.#deps = deps
    this.#who = {address: plainAddress(socket.remoteAddress)}
    this.#localHost = plainAddress(socket.localAddress)
  }

  get address(): string {
    return this.#who.address
  }

  start(): void {
    const s = this.#socket
    s.on('error', (err) => this.#deps.log.debug('ftp: control connection error', {peer: this.#who.address, error: err.message}))
    s.on('close', () => this.#teardown())
    s.on('data', (chunk: Buffer) => this.#onData(chunk))
    s.setTimeout(this.#deps.limits.idleTimeoutMs, () => {
      // The control connection is quiet during a transfer; the data side has its own timeout.
      if (this.#transfer) return
      this.#reply(421, 'Idle timeout, closing control connection')
      this.#end()
    })
    this.#reply(220, 'fpeer FTP server ready (read-only)')
  }

  /** Ends the session at once (server shutdown). */
  destroy(): void {
    this.#reply(421, 'Server shutting down')
    this.#teardown()
    this.#socket.destroy()
  }

  #teardown(): void {
    if (this.#closed) return
    this.#closed = true
    this.#queue.length = 0
    this.#transfer?.abort()
    this.#passive?.close()
    this.#passive = undefined
    this.#inUse?.close()
    this.#dropBlockData()
    this.#port?.close()
    this.#deps.onClose()
  }

  #end(): void {
    this.#teardown()
    this.#socket.end()
    // A client that never closes its side must not keep the socket open.
    setTimeout(() => this.#socket.destroy(), 2000).unref()
  }

  #reply(code: number, text: string | readonly string[]): void {
    if (this.#closed || !this.#socket.writable) return
    // A client that sends commands but never reads the replies must not grow our buffers.
    if (this.#socket.writableLength > MAX_UNREAD_REPLY_BYTES) {
      this.#deps.log.warn('ftp: client does not read replies, closing', {peer: this.#who.address})
      this.#teardown()
      this.#socket.destroy()
      return
    }
    // Replies of one turn of the event loop leave in one write: a 226 and the next file's
    // 229 often come together, and each write(2) of a short reply on a no-delay socket is a
    // packet and a wake-up of the peer.
    if (this.#socket.writableCorked === 0) {
      this.#socket.cork()
      process.nextTick(() => this.#socket.uncork())
    }
    this.#socket.write(formatReply(code, text))
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return
    const {lines, rest, overflow} = splitLines(this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk, this.#deps.limits.maxLineBytes)
    this.#pending = Buffer.from(rest)
    for (const line of lines) {
      const cmd = parseCommand(line)
      // ABOR must act while a transfer runs, not queue behind it.
      if ('verb' in cmd && cmd.verb === 'ABOR' && this.#transfer) {
        this.#transfer.abort()
        continue
      }
      this.#queue.push(cmd)
    }
    if (overflow) {
      this.#reply(500, 'Command line too long, closing control connection')
      this.#end()
      return
    }
    if (this.#queue.length > this.#deps.limits.maxQueuedCommands) {
      this.#reply(421, 'Too many commands queued, closing control connection')
      this.#end()
      return
    }
    void this.#drain()
  }

  async #drain(): Promise<void> {
    if (this.#running) return
    this.#running = true
    this.#deps.onActivity?.(true)
    try {
      while (!this.#closed && this.#queue.length > 0) {
        const cmd = this.#queue.shift()!
        try {
          await this.#dispatch(cmd)
        } catch (err) {
          this.#replyError(err)
        }
      }
    } finally {
      this.#running = false
      this.#deps.onActivity?.(false)
    }
  }

  #replyError(err: unknown): void {
    if (err instanceof ReplyError) return this.#reply(err.code, err.message)
    if (isFpeerError(err)) {
      switch (err.code) {
        case 'E_NOT_FOUND':
        case 'E_UNKNOWN_FOLDER':
          return this.#reply(550, 'No such file or directory')
        case 'E_ACCESS':
        case 'E_PATH_UNSAFE':
          return this.#reply(550, 'Permission denied')
      }
    }
    this.#deps.log.warn('ftp: command failed', {peer: this.#who.address, error: (err as Error)?.message ?? String(err)})
    this.#reply(451, 'Local error, action aborted')
  }

  async #dispatch(cmd: ParsedCommand): Promise<void> {
    if ('error' in cmd)
      return this.#reply(cmd.error === 'encoding' ? 501 : 500, cmd.error === 'encoding' ? 'Command is not valid UTF-8' : 'Syntax error, command unrecognized')
    const {verb, arg} = cmd
    this.#deps.log.debug('ftp: command', {peer: this.#who.address, verb})
    if (!this.#loggedIn && !PRE_LOGIN_VERBS.has(verb)) return this.#reply(530, 'Log in with USER and PASS first')
    if (WRITE_VERBS.has(verb)) {
      if (verb === 'STOR' || verb === 'STOU' || verb === 'APPE') this.#takePassive()?.close()
      return verb === 'SITE' ? this.#reply(502, 'SITE commands are not supported') : this.#reply(550, 'Permission denied: this server is read-only')
    }
    switch (verb) {
      case 'USER':
        this.#user = arg
        this.#loggedIn = false
        return this.#reply(331, 'Any password will do: fpeer FTP has no accounts')
      case 'PASS':
        if (this.#user === undefined) return this.#reply(503, 'Send USER first')
        this.#loggedIn = true
        // The password is the grant secret a peer was given (§4.6); anonymous logins see open folders only.
        if (/^[A-Za-z0-9_-]{16,128}$/.test(arg)) this.#who.grant = arg
        else delete this.#who.grant
        return this.#reply(230, 'Logged in, read-only access')
      case 'QUIT':
        this.#reply(221, 'Goodbye')
        return this.#end()
      case 'SYST':
        return this.#reply(215, 'UNIX Type: L8')
      case 'FEAT':
        return this.#reply(211, ['Features:', 'EPSV', 'MDTM', formatMlstFeature(this.#facts), 'PASV', 'REST STREAM', 'SIZE', 'TVFS', 'UTF8', 'End'])
      case 'OPTS':
        return this.#opts(arg)
      case 'NOOP':
        return this.#reply(200, 'NOOP ok')
      case 'HELP':
        return this.#reply(214, [
          'Commands:',
          'USER PASS QUIT SYST FEAT OPTS NOOP PWD CWD CDUP TYPE MODE STRU PASV EPSV',
          'SIZE MDTM REST RETR LIST NLST MLSD MLST ABOR',
          'Read-only, passive mode only.',
        ])
      case 'AUTH':
      case 'PBSZ':
      case 'PROT':
        return this.#reply(502, 'TLS is not supported')
      case 'PORT':
      case 'EPRT':
      case 'LPRT':
        // Active mode would let a command make this server connect to any address.
        return this.#reply(502, 'Active mode is refused, use PASV or EPSV')
      case 'PWD':
      case 'XPWD':
        return this.#reply(257, `"${quotePath(this.#cwd)}" is the current directory`)
      case 'CWD':
      case 'XCWD':
        return this.#cwdTo(resolvePath(this.#cwd, arg))
      case 'CDUP':
      case 'XCUP':
        return this.#cwdTo(resolvePath(this.#cwd, '..'))
      case 'TYPE':
        return this.#type(arg)
      case 'MODE':
        return this.#setMode(arg)
      case 'STRU':
        return arg.toUpperCase() === 'F' ? this.#reply(200, 'Structure set to F') : this.#reply(504, 'Only file structure is supported')
      case 'PASV':
        return this.#pasv(false, arg)
      case 'EPSV':
        return this.#pasv(true, arg)
      case 'REST': {
        // Block mode restarts at markers, not byte offsets (RFC 959 3.5): fpeer sends none.
        if (this.#mode === 'B') return this.#reply(504, 'REST needs stream mode (MODE S)')
        const offset = parseRestOffset(arg)
        if (offset === undefined) return this.#reply(501, 'REST needs a byte offset')
        this.#rest = offset
        return this.#reply(350, `Restarting at ${offset}, send RETR`)
      }
      case 'SIZE': {
        const st = await this.#stat(resolvePath(this.#cwd, arg))
        return st.type === 'file' ? this.#reply(213, String(st.size)) : this.#reply(550, 'Not a plain file')
      }
      case 'MDTM': {
        const st = await this.#stat(resolvePath(this.#cwd, arg))
        return st.type === 'file' ? this.#reply(213, formatTimeVal(st.mtimeMs)) : this.#reply(550, 'Not a plain file')
      }
      case 'MLST': {
        const target = resolvePath(this.#cwd, arg)
        const st = await this.#stat(target)
        return this.#reply(250, [`Listing ${target}`, ` ${formatMlsxLine(st, target, this.#facts)}`, 'End'])
      }
      case 'RETR':
        return this.#retr(arg)
      case 'LIST':
      case 'NLST':
      case 'MLSD':
        return this.#listing(verb, arg)
      case 'ABOR':
        // No transfer is running (a running one is aborted as the line arrives).
        this.#takePassive()?.close()
        return this.#reply(225, 'No transfer to abort')
      default:
        return this.#reply(500, `${verb} not understood`)
    }
  }

  #opts(arg: string): void {
    const space = arg.indexOf(' ')
    const what = (space === -1 ? arg : arg.slice(0, space)).toUpperCase()
    const value = space === -1 ? '' : arg.slice(space + 1)
    if (what === 'UTF8' || what === 'UTF-8') {
      return value.toUpperCase() === 'OFF' ? this.#reply(504, 'Names are always UTF-8') : this.#reply(200, 'Always in UTF-8 mode')
    }
    if (what === 'MLST') {
      this.#facts = parseMlstOpts(value)
      return this.#reply(200, `MLST OPTS ${[...this.#facts].map((f) => `${f};`).join('')}`)
    }
    this.#reply(501, 'Option not understood')
  }

  /**
   * MODE S or MODE B. Block mode (RFC 959 3.4.2) frames each transfer as blocks, a 3-byte
   * header (descriptor, 16-bit count) before each, and ends it with an EOF block, so one data
   * connection carries any number of files: no connect, accept and close per small file.
   */
  #setMode(arg: string): void {
    const mode = arg.toUpperCase()
    if (mode !== 'S' && mode !== 'B') return this.#reply(504, 'Only stream (S) and block (B) modes are supported')
    this.#mode = mode
    if (mode === 'S') this.#dropBlockData()
    this.#reply(200, `Mode set to ${mode}`)
  }

  #dropBlockData(): void {
    this.#blockData?.destroy()
    this.#blockData = undefined
  }

  #type(arg: string): void {
    const t = arg.toUpperCase().replace(/ +/g, ' ')
    // ASCII mode is accepted but sends bytes unchanged, like vsftpd by default: fpeer moves files, not text.
    if (t === 'I' || t === 'L 8' || t === 'A' || t === 'A N') return this.#reply(200, `Type set to ${t}`)
    this.#reply(504, 'Only types A and I are supported')
  }

  async #cwdTo(target: string): Promise<void> {
    const st = await this.#stat(target)
    if (st.type !== 'directory') return this.#reply(550, 'Not a directory')
    this.#cwd = target
    this.#reply(250, `Directory changed to ${target}`)
  }

  /** The entry at an absolute FTP path: `/` is the virtual root listing the folders. */
  async #stat(abs: string): Promise<FileStat> {
    const {folder, rel} = splitPath(abs)
    if (folder === undefined) return ROOT_STAT
    return this.#deps.files.stat(folder, rel, this.#who)
  }

  async #entries(abs: string): Promise<ListEntry[]> {
    const {folder, rel} = splitPath(abs)
    if (folder !== undefined) return this.#deps.files.list(folder, rel, this.#who)
    const out: ListEntry[] = []
    for (const name of await this.#deps.files.folders(this.#who)) {
      const st = await this.#deps.files.stat(name, '', this.#who).catch(() => undefined)
      if (st) out.push({...st, name})
    }
    return out
  }

  async #pasv(extended: boolean, arg: string): Promise<void> {
    const v6 = isIPv6(this.#localHost)
    if (extended) {
      const proto = arg.toUpperCase()
      if (proto === 'ALL') return this.#reply(200, 'EPSV ALL ok')
      if (proto !== '' && proto !== (v6 ? '2' : '1')) return this.#reply(522, `Network protocol not supported, use (${v6 ? 2 : 1})`)
    } else if (v6) {
      return this.#reply(502, 'PASV cannot name an IPv6 address, use EPSV')
    }
    // A new data connection is asked for: block mode's kept one is done with.
    this.#dropBlockData()
    this.#takePassive()?.close()
    let endpoint: PassiveEndpoint
    try {
      this.#port ??= new PassivePort({host: this.#localHost, peer: this.#who.address, acceptTimeoutMs: this.#deps.limits.dataTimeoutMs, log: this.#deps.log})
      endpoint = await this.#port.open()
    } catch (err) {
      this.#deps.log.warn('ftp: cannot open a passive port', {error: (err as Error).message})
      return this.#reply(425, 'Cannot open a passive data port')
    }
    if (this.#closed) return endpoint.close()
    this.#passive = endpoint
    this.#reply(extended ? 229 : 227, extended ? formatEpsv(endpoint.port) : formatPasv(this.#localHost, endpoint.port)!)
  }

  /**
   * The data connection for one transfer: stream mode's passive slot, used once and closed;
   * in block mode, the connection kept from an earlier transfer, or else the slot's, kept.
   */
  #takeChannel(): DataChannel | undefined {
    const kept = this.#blockData
    if (this.#mode === 'B' && kept && !kept.destroyed) return {connection: async () => kept, done: () => {}, block: true, reused: true}
    if (this.#mode === 'S') {
      const passive = this.#takePassive()
      return passive && {connection: () => passive.connection(), done: () => passive.close(), block: false, reused: false}
    }
    // Block mode: the slot stays the session's until its connection comes and is kept, so a
    // RETR refused before that (550) leaves it to the next one.
    const passive = this.#passive
    if (!passive) return undefined
    return {
      connection: async () => {
        const socket = await passive.connection()
        if (this.#passive === passive) this.#passive = undefined
        this.#blockData = passive.keep()
        passive.close()
        return socket
      },
      done: () => {},
      block: true,
      reused: false,
    }
  }

  /** The prepared data endpoint, taken for one command: each transfer uses one and closes it. */
  #takePassive(): PassiveEndpoint | undefined {
    const p = this.#passive
    this.#passive = undefined
    this.#inUse = p
    return p
  }

  async #retr(arg: string): Promise<void> {
    const start = this.#rest
    this.#rest = 0
    const passive = this.#takeChannel()
    if (!passive) return this.#reply(425, 'Use PASV or EPSV first')
    try {
      const abs = resolvePath(this.#cwd, arg)
      const {folder, rel} = splitPath(abs)
      if (folder === undefined || rel === '') return this.#reply(550, 'Not a plain file')
      // Open before 150, so a missing or unreadable file is a clean 550.
      const opened = await this.#deps.files.open(folder, rel, this.#who, {start})
      if (start > opened.size) {
        if (!opened.data) opened.stream.destroy()
        return this.#reply(554, 'Restart offset is beyond the end of the file')
      }
      // A small file comes already read (`data`): one write, no stream to make and drain.
      // A large one is read into a few reused buffers where the source can (`read`), not streamed.
      await this.#send(
        passive,
        `${baseName(abs)} (${opened.size - start} bytes)`,
        opened.data ?? opened.stream,
        opened.size - start,
        opened.data ? undefined : positionalReader(opened.stream),
      )
    } finally {
      passive.done()
    }
  }

  async #listing(verb: 'LIST' | 'NLST' | 'MLSD', arg: string): Promise<void> {
    this.#rest = 0
    const passive = this.#takeChannel()
    if (!passive) return this.#reply(425, 'Use PASV or EPSV first')
    try {
      const target = resolvePath(this.#cwd, verb === 'MLSD' ? arg : stripListOptions(arg))
      const st = await this.#stat(target)
      let entries: ListEntry[]
      if (st.type === 'directory') entries = await this.#entries(target)
      else if (verb === 'MLSD') throw new ReplyError(501, 'Not a directory')
      else entries = [{...st, name: baseName(target)}]
      const now = Date.now()
      const lines = entries
        .filter((e) => isListableName(e.name))
        .map((e) => (verb === 'LIST' ? formatListLine(e, now) : verb === 'NLST' ? e.name : formatMlsxLine(e, e.name, this.#facts)))
      const body = Buffer.from(lines.map((l) => `${l}\r\n`).join(''))
      await this.#send(passive, verb === 'MLSD' ? 'MLSD' : 'file list', body, body.length)
    } finally {
      passive.done()
    }
  }

  /** Waits for the data connection, sends `source` on it and gives the final reply. Never 226 unless every byte went. */
  async #send(channel: DataChannel, what: string, source: Readable | Buffer, expected: number, reads?: (buf: Buffer) => Promise<number>): Promise<void> {
    let data: Socket
    try {
      data = await channel.connection()
    } catch {
      if (!Buffer.isBuffer(source)) source.destroy()
      return this.#reply(425, 'No data connection')
    }
    if (channel.reused) this.#reply(125, `Data connection already open, block mode transfer of ${what}`)
    else this.#reply(150, `Opening BINARY ${channel.block ? 'block' : 'stream'} mode data connection for ${what}`)
    const outcome = channel.block ? await this.#pumpBlocks(data, source, expected, reads) : await this.#pump(data, source, expected, reads)
    // A block transfer that failed has lost its framing: its connection was dropped, the next transfer needs a new one.
    if (channel.block && outcome !== 'ok' && this.#blockData === data) this.#blockData = undefined
    switch (outcome) {
      case 'ok':
        // Block mode keeps the connection: 250, not 226 ("closing data connection").
        return channel.block ? this.#reply(250, 'Transfer complete, data connection kept open') : this.#reply(226, 'Transfer complete')
      case 'source':
        return this.#reply(451, 'Local error reading the file, transfer aborted')
      case 'client':
        return this.#reply(426, 'Data connection closed, transfer aborted')
      case 'aborted':
        this.#reply(426, 'Transfer aborted')
        return this.#reply(226, 'ABOR successful')
    }
  }

  /**
   * Sends up to `expected` bytes by positional reads into a few buffers, each reused once the
   * socket has taken it (a stream hands out a new MiB per read, which the garbage collector
   * then chases). Stops early, without error, when `stopped()`; returns the bytes sent, so a
   * file that shrank shows as fewer than `expected`.
   */
  async #sendByReads(
    write: Write,
    read: (buf: Buffer) => Promise<number>,
    expected: number,
    stopped: () => boolean,
    onWait: (wake: () => void) => void,
  ): Promise<number> {
    const free = Array.from({length: SEND_BUFFERS}, () => Buffer.allocUnsafe(SEND_BUFFER_BYTES))
    let wake: (() => void) | undefined
    let sent = 0
    while (sent < expected && !stopped()) {
      while (free.length === 0 && !stopped())
        await new Promise<void>((resolve) => {
          wake = resolve
          onWait(resolve)
        })
      const buf = free.pop()
      if (!buf || stopped()) break
      const n = await read(buf.length <= expected - sent ? buf : buf.subarray(0, expected - sent))
      if (n === 0 || stopped()) break
      sent += n
      write(n === buf.length ? buf : buf.subarray(0, n), (err) => {
        if (!err) free.push(buf)
        const w = wake
        wake = undefined
        w?.()
      })
    }
    return sent
  }

  /**
   * Sends a file's bytes by `write`: by positional reads where the source allows (`reads`),
   * else as the source yields them (a small file: its one Buffer). Stops when `stopped()`, and
   * before a chunk that would pass `expected` (more than announced: in block mode it could not
   * be framed as this file). Returns the bytes counted, so a file that shrank or grew shows as
   * other than `expected`.
   */
  async #sendBody(
    data: Socket,
    write: Write,
    body: Readable | Buffer,
    expected: number,
    reads: ((buf: Buffer) => Promise<number>) | undefined,
    stopped: () => boolean,
    onWait: (wake: () => void) => void,
  ): Promise<number> {
    if (reads) return this.#sendByReads(write, reads, expected, stopped, onWait)
    let sent = 0
    for await (const chunk of Buffer.isBuffer(body) ? [body] : body) {
      if (stopped()) break
      const buf = chunk as Buffer
      sent += buf.length
      if (sent > expected) break
      if (!write(buf)) await drainOrClose(data)
    }
    return sent
  }

  async #pump(data: Socket, body: Readable | Buffer, expected: number, reads?: (buf: Buffer) => Promise<number>): Promise<Outcome> {
    const source: Readable | undefined = Buffer.isBuffer(body) ? undefined : body
    let outcome: Outcome | undefined
    let finished = false
    // Wakes a send by reads that waits for a buffer the socket still holds.
    let wake: (() => void) | undefined
    const fail = (o: Outcome) => {
      if (outcome !== undefined || finished) return
      outcome = o
      const w = wake
      wake = undefined
      w?.()
      // With reads, the source is destroyed (its descriptor closed) only once no read is under way: below.
      if (!reads) source?.destroy()
      // The 451/426 that follows on the control connection is what marks the file as cut (a 226
      // never follows). No reset: it would throw away bytes already in flight, which the client
      // can keep and resume from, and on Linux it can read as a clean end anyway. After a read
      // failure the data connection is ended, not dropped: see `closeGracefully`.
      if (o !== 'source' && !data.destroyed) data.destroy()
    }
    this.#transfer = {abort: () => fail('aborted')}
    data.setTimeout(this.#deps.limits.dataTimeoutMs, () => fail('client'))
    data.on('error', () => fail('client'))
    data.on('close', () => fail('client'))
    source?.on('error', () => {}) // reported through the iterator below; keep a late one from crashing
    try {
      const sent = await this.#sendBody(
        data,
        (buf, done) => data.write(buf, done),
        body,
        expected,
        reads,
        () => outcome !== undefined,
        (w) => (wake = w),
      )
      if (outcome === undefined && sent !== expected) fail('source')
      if (outcome === undefined) {
        await new Promise<void>((resolve, reject) => data.end((err?: Error | null) => (err ? reject(err) : resolve())))
        if (outcome === undefined) finished = true
      }
    } catch {
      fail(data.destroyed ? 'client' : 'source')
    } finally {
      this.#transfer = undefined
      if (reads) source?.destroy()
    }
    if (outcome === 'source') await closeGracefully(data, this.#deps.limits.dataTimeoutMs)
    return outcome ?? 'ok'
  }

  /**
   * Sends `expected` bytes on block mode's kept connection: blocks of at most 65,535 bytes,
   * each after its header (descriptor 0, count), then an empty EOF block (descriptor 64).
   * Whatever goes wrong (the file ended short or grew, the client went, an ABOR) drops the
   * connection: a file cut midway cannot be framed, and the client must not take the next
   * file's bytes for this one's. Its listeners come off again, for the next transfer.
   */
  async #pumpBlocks(data: Socket, body: Readable | Buffer, expected: number, reads?: (buf: Buffer) => Promise<number>): Promise<Outcome> {
    const source: Readable | undefined = Buffer.isBuffer(body) ? undefined : body
    let outcome: Outcome | undefined
    let wake: (() => void) | undefined
    const fail = (o: Outcome) => {
      if (outcome !== undefined) return
      outcome = o
      const w = wake
      wake = undefined
      w?.()
      if (!reads) source?.destroy()
      data.destroy()
    }
    const gone = () => fail('client')
    this.#transfer = {abort: () => fail('aborted')}
    data.setTimeout(this.#deps.limits.dataTimeoutMs)
    data.on('timeout', gone)
    data.on('error', gone)
    data.on('close', gone)
    source?.on('error', () => {}) // reported through the iterator below; keep a late one from crashing
    try {
      const sent = await this.#sendBody(
        data,
        (buf, done) => writeBlocks(data, buf, done),
        body,
        expected,
        reads,
        () => outcome !== undefined,
        (w) => (wake = w),
      )
      if (outcome === undefined && sent !== expected) fail('source')
      if (outcome === undefined) await new Promise<void>((resolve) => writeBlocks(data, EOF_BLOCK, () => resolve(), true))
    } catch {
      fail(data.destroyed ? 'client' : 'source')
    } finally {
      this.#transfer = undefined
      if (reads) source?.destroy()
      data.off('timeout', gone)
      data.off('error', gone)
      data.off('close', gone)
      data.setTimeout(0)
    }
    return outcome ?? 'ok'
  }
}

/** Hands bytes to the data connection; `done` once the kernel has them; false when it wants a drain first. */
type Write = (buf: Buffer, done?: (err?: Error | null) => void) => boolean

/** The data connection of one transfer (FtpSession.#takeChannel). */
interface DataChannel {
  connection(): Promise<Socket>
  /** The transfer is over: stream mode's slot closes; block mode's kept connection stays. */
  done(): void
  block: boolean
  /** Block mode's connection, open since an earlier transfer (125, not 150). */
  reused: boolean
}

/** Block mode's last block of a transfer: descriptor 64 (EOF), no bytes. */
const EOF_BLOCK = Buffer.from([0x40, 0, 0])
/** The most bytes one block carries: its count is 16 bits. */
const MAX_BLOCK = 0xffff

/**
 * Writes `buf` as blocks of at most 65,535 bytes, each after its header (descriptor 0), in one
 * write(2) where the socket allows; `raw` writes `buf` as it is (a header already made).
 * `done` is called once all of it was handed to the kernel. Returns write()'s backpressure.
 */
function writeBlocks(data: Socket, buf: Buffer, done?: (err?: Error | null) => void, raw = false): boolean {
  if (raw) return data.write(buf, done)
  if (buf.length === 0) {
    if (done) process.nextTick(done)
    return true
  }
  if (data.writableCorked === 0) {
    data.cork()
    process.nextTick(() => data.uncork())
  }
  let ok = true
  for (let at = 0; at < buf.length; at += MAX_BLOCK) {
    const piece = buf.subarray(at, at + MAX_BLOCK)
    data.write(Buffer.from([0, piece.length >> 8, piece.length & 0xff]))
    ok = data.write(piece, at + MAX_BLOCK >= buf.length ? done : undefined)
  }
  return ok
}

/** Buffers one large file is sent through, each reused once the data socket has taken it. */
const SEND_BUFFERS = 3
const SEND_BUFFER_BYTES = 1 << 20

/**
 * Ends a data connection and waits until the client has closed its side too, that is, has
 * read every byte and the end. Only then may the 451 go out: a client reads the control and
 * the data connection independently, and a 451 that overtakes the data (150 and 451 in one
 * segment, once replies are sent without Nagle's delay) made it drop bytes that had arrived,
 * or see none at all. Bounded by the data timeout, after which the connection is dropped.
 */
function closeGracefully(socket: Socket, timeoutMs: number): Promise<void> {
  if (socket.destroyed) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => socket.destroy(), timeoutMs)
    socket.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
    // The data connection was accepted paused: read (and drop) to see the client's end.
    socket.resume()
    socket.end()
  })
}

function drainOrClose(socket: Socket): Promise<void> {
  if (socket.destroyed) return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done)
      socket.off('close', done)
      resolve()
    }
    socket.on('drain', done)
    socket.on('close', done)
  })
}
