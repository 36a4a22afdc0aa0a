// A control connection: whole wire messages over a TCP socket, with size limits and timeouts.
import net from 'node:net'
import {FpeerError, fromSystemError} from '../errors.js'
import {parseLines, formatBodyChunks, formatHead, formatMessage} from '../wire/codec.js'
import {takeSignedBody} from '../wire/signing.js'
import {FrameDecoder, messageLines} from '../wire/frame.js'
import {DEFAULT_MESSAGE_TIMEOUT_MS, REPLY_BYTES_PER_FILE, REPLY_HEAD_BYTES} from '../wire/limits.js'
import type {Message} from '../wire/types.js'
import type {ByteBudget} from './limits.js'

export interface ChannelOptions {
  /** A message must be complete this long after its first byte (slow senders are cut off). */
  messageTimeoutMs?: number
  /** Sees every whole message as it crosses this connection (`fpeer demo` shows them); it must not throw. */
  tap?(direction: 'sent' | 'received', text: string): void
  /**
   * Shared by a server's connections: bytes received count against it until the message
   * they make is handled (the next `next()` call, a failure or the close); past it the
   * channel fails with E_BUSY. Clients (a requester reading its host) have none.
   */
  budget?: ByteBudget
  /**
   * A server's second budget, for replies to the file lists it sends: after a list of B bytes
   * and N files goes out, the next 2 × (B + N × REPLY_BYTES_PER_FILE) + REPLY_HEAD_BYTES
   * bytes received (the progress messages and the final FilesUpdated that repeat the list)
   * are charged here rather than to `budget`. A 1,000,000-file reply does not fit the shared
   * budget; a peer cannot use this one for anything it was not asked for.
   */
  replyBudget?: ByteBudget
  /** Told when the first complete line and the first complete message arrive (for the connection guard). */
  onProgress?(what: 'line' | 'message'): void
  /**
   * A server's channel: the first message may carry at most this many file lines (an
   * update's cap), and each later one at most as many as the last message sent with a
   * file list (FilesUpdated repeats the FilesToGet's list, TrustedPeerConfirm the
   * FilesUpdated's). More is refused as the bytes arrive (E_MSG_TOO_MANY_FILES), before
   * any line is decoded. Clients (a requester reading its host's list) set none.
   */
  firstMaxFiles?: number
}

/** File lists of at least this many files are sent in slices (MessageChannel.send). */
const SLICED_FROM_FILES = 1000

/** Strips the IPv4-mapped prefix so `::ffff:127.0.0.2` and `127.0.0.2` are one address. */
export function normalizeAddress(address: string | undefined): string {
  if (!address) return ''
  return address.startsWith('::ffff:') ? address.slice(7) : address
}

export class MessageChannel {
  readonly socket: net.Socket
  #decoder = new FrameDecoder()
  /** Whole messages received and not yet read, as their bytes: each is decoded as it is parsed. */
  readonly #queue: Array<Buffer[]> = []
  /** The last write queued: writes go out one after another, so a keep-alive never lands inside a message sent in slices. */
  #writing: Promise<unknown> = Promise.resolve()
  #queued = 0
  #error: FpeerError | undefined
  #closed = false
  #waiter: {resolve: () => void} | undefined
  #messageTimer: NodeJS.Timeout | undefined
  readonly #messageTimeoutMs: number
  readonly #tap: ChannelOptions['tap']
  readonly #budget: ByteBudget | undefined
  /** Bytes taken from the budget for what is buffered here. */
  #held = 0
  readonly #replyBudget: ByteBudget | undefined
  /** Bytes the replies to the list sent last may still take from the reply budget. */
  #allowance = 0
  /** Bytes taken from the reply budget for what is buffered here. */
  #pooled = 0
  #progress: ChannelOptions['onProgress']
  #sawLine = false
  /** When the peer last sent a byte (a message or a keep-alive): what a stall timeout measures. */
  #lastByteAt = Date.now()
  /** Read once: a socket that is reset forgets its remote address, and the host fetches back from it later. */
  readonly #remoteAddress: string
  /** firstMaxFiles was given: replies are bounded by the file list we sent last. */
  readonly #repliesBound: boolean

  constructor(socket: net.Socket, options: ChannelOptions = {}) {
    this.socket = socket
    this.#remoteAddress = normalizeAddress(socket.remoteAddress)
    // Reset before we accepted it (the kernel still hands over the bytes that came first):
    // there is nobody to answer or fetch back from, so none of its messages is read.
    if (!this.#remoteAddress) this.#error = new FpeerError('E_CONNECTION_LOST', 'the peer reset the connection before it was accepted')
    this.#tap = options.tap
    this.#messageTimeoutMs = options.messageTimeoutMs ?? DEFAULT_MESSAGE_TIMEOUT_MS
    this.#budget = options.budget
    this.#replyBudget = options.replyBudget
    this.#progress = options.onProgress
    this.#repliesBound = options.firstMaxFiles !== undefined
    if (options.firstMaxFiles !== undefined) this.#decoder.maxFiles = options.firstMaxFiles
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    socket.on('error', (err) => this.#fail(fromSystemError(err, 'control connection')))
    // The peer finished sending (half-close, e.g. `nc -N`): answer what we have, then expect nothing more.
    socket.on('end', () => {
      this.#closed = true
      this.#wake()
    })
    socket.on('close', () => {
      this.#closed = true
      this.#clearTimer()
      // A message under way can no longer complete: drop it, so its bytes are freed with the budget.
      this.#decoder = new FrameDecoder()
      if (this.#queue.length === 0) this.#release()
      this.#wake()
    })
  }

  get remoteAddress(): string {
    return this.#remoteAddress
  }

  get localAddress(): string {
    return normalizeAddress(this.socket.localAddress)
  }

  get localPort(): number {
    return this.socket.localPort ?? 0
  }

  get remotePort(): number {
    return this.socket.remotePort ?? 0
  }

  #onData(chunk: Buffer): void {
    if (this.#error) return
    this.#lastByteAt = Date.now()
    if (this.#allowance >= chunk.length && this.#replyBudget?.take(chunk.length)) {
      this.#allowance -= chunk.length
      this.#pooled += chunk.length
    } else if (this.#budget) {
      if (!this.#budget.take(chunk.length)) {
        this.#fail(new FpeerError('E_BUSY', `messages in flight use the server's whole buffer (${this.#budget.limit} bytes); try again later`))
        return
      }
      this.#held += chunk.length
    }
    const wasIn = this.#decoder.inMessage
    let done: Buffer[][]
    try {
      done = this.#decoder.pushRaw(chunk)
    } catch (err) {
      this.#fail(err as FpeerError)
      return
    }
    if (this.#progress) {
      if (!this.#sawLine && (done.length > 0 || this.#decoder.lines > 0)) {
        this.#sawLine = true
        this.#progress('line')
      }
      if (done.length > 0) {
        this.#progress('message')
        this.#progress = undefined
      }
    }
    for (const lines of done) {
      this.#queue.push(lines)
      this.#tap?.('received', [...messageLines(lines)].join('\n') + '\n\n')
    }
    if (done.length > 0) this.#clearTimer()
    if (this.#decoder.inMessage && (!wasIn || done.length > 0) && !this.#messageTimer) {
      this.#messageTimer = setTimeout(() => {
        this.#fail(new FpeerError('E_MSG_TIMEOUT', `message not complete within ${this.#messageTimeoutMs} ms`))
      }, this.#messageTimeoutMs)
      this.#messageTimer.unref()
    }
    if (this.#queue.length > 0) this.#wake()
  }

  #clearTimer(): void {
    if (this.#messageTimer) clearTimeout(this.#messageTimer)
    this.#messageTimer = undefined
  }

  #fail(err: FpeerError): void {
    this.#error ??= err
    this.#clearTimer()
    this.socket.pause()
    // Nothing more is read from a failed channel: its buffers go before its budget is given back.
    this.#decoder = new FrameDecoder()
    this.#queue.length = 0
    this.#release()
    this.#wake()
  }

  /** Gives back the budget for everything buffered (nothing buffered is read after a failure or close). */
  #release(): void {
    this.#replyBudget?.give(this.#pooled)
    this.#pooled = 0
    if (this.#held === 0) return
    this.#budget?.give(this.#held)
    this.#held = 0
  }

  #wake(): void {
    const w = this.#waiter
    this.#waiter = undefined
    w?.resolve()
  }

  /**
   * The next message. Throws the framing or parse error (a FpeerError with an E_MSG_* code),
   * E_TIMEOUT when nothing arrives within `timeoutMs`, or E_CONNECTION_LOST.
   */
  async next(timeoutMs: number, options: {stallMs?: number} = {}): Promise<Message> {
    const started = Date.now()
    const deadline = started + timeoutMs
    const stallMs = options.stallMs
    // The message returned last stays charged to the budget until its reader asks for the
    // next one (or the connection ends): while it is handled (an update's 10,000 versions
    // checked) its strings and objects take more memory than its bytes did, and releasing
    // it at parse time let further messages fill the budget again beside it.
    if (this.#queue.length === 0 && !this.#decoder.inMessage) this.#release()
    // Whether the clock ran out once already with nothing read since: see below.
    let lookedAgain = false
    for (;;) {
      const lines = this.#queue.shift()
      if (lines) {
        try {
          return parseLines(messageLines(lines))
        } catch (err) {
          this.#fail(err as FpeerError)
          throw err
        }
      }
      if (this.#error) throw this.#error
      if (this.#closed) throw new FpeerError('E_CONNECTION_LOST', 'the peer closed the connection')
      // With stallMs, any byte (a keep-alive's empty line too) restarts the clock, up to timeoutMs in all.
      // The clock starts no earlier than this wait: a peer is not stalled for having been
      // silent while it waited for us (a host while its requester fetched 100,000 files).
      const now = Date.now()
      const left = stallMs === undefined ? deadline - now : Math.min(deadline, Math.max(this.#lastByteAt, started) + stallMs) - now
      if (left <= 0 && !lookedAgain) {
        // A timer that fires runs before the sockets are read in the same turn of the event
        // loop. When this process itself got no CPU for a while (a loaded machine, a laptop
        // resumed), the peer's bytes may be waiting in the socket already: read them first,
        // and only a clock still out after that is the peer's silence.
        lookedAgain = true
        await new Promise<void>((resolve) => setImmediate(resolve))
        continue
      }
      if (left <= 0) {
        const stalled = stallMs !== undefined && deadline > now
        throw new FpeerError(
          'E_TIMEOUT',
          stalled
            ? `no progress from ${this.remoteAddress}:${this.remotePort} for ${stallMs / 1000} s`
            : `no reply from ${this.remoteAddress}:${this.remotePort} within ${timeoutMs / 1000} s`,
          {
            details: {address: `${this.remoteAddress}:${this.remotePort}`, timeoutMs: stalled ? stallMs : timeoutMs},
            hint: stalled
              ? 'the peer stopped making progress: is it still running? (FPEER_STALL_TIMEOUT_MS sets how long to wait)'
              : 'the peer accepted the connection but did not answer: is that an fpeer peer, and is it overloaded?',
          },
        )
      }
      lookedAgain = false
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.#waiter = {
          resolve: () => {
            clearTimeout(t)
            resolve()
          },
        }
      })
    }
  }

  async send(msg: Message): Promise<void> {
    if (this.#repliesBound && 'files' in msg) this.#decoder.maxFiles = msg.files.length
    // The bytes a signed list was signed over are written as they are; none are kept past this send.
    const signed = takeSignedBody(msg)
    // A file list goes out in chunks as it is formatted (or as it was when signed): a
    // 100,000-file FilesToGet is never built as one string. A tapped channel (`fpeer demo`)
    // shows whole messages, and small ones are one write anyway.
    if (this.#tap || !('files' in msg) || msg.files.length < SLICED_FROM_FILES) {
      const text = formatMessage(msg)
      if ('files' in msg) this.#allowReply(Buffer.byteLength(text), msg.files.length)
      return this.sendRaw(text)
    }
    // Line 1 (and the folder name's check) before anything is queued: a bad message fails before any byte is.
    const head = `${formatHead(msg)}\n`
    const body = signed ?? formatBodyChunks(msg, true)
    const files = msg.files.length
    await this.#serial(async () => {
      // Granted as the bytes go out, before the peer can have them: its first reply may follow the last chunk at once.
      this.#allowReply(Buffer.byteLength(head), files)
      await this.#write(head)
      for (const chunk of body) {
        this.#allowReply(chunk.length, 0, true)
        await this.#write(chunk)
      }
    })
  }

  /**
   * A list of `bytes` and `files` lines goes out (with `more`: `bytes` more of the same
   * list). Its replies (progress messages, then the final FilesUpdated, each repeating lines
   * of it) may take the reply budget for as much as they can hold. Granted once per list,
   * never given back: what a peer sends beyond it meets the shared budget.
   */
  #allowReply(bytes: number, files: number, more = false): void {
    if (!this.#replyBudget) return
    const grant = 2 * (bytes + files * REPLY_BYTES_PER_FILE)
    this.#allowance = more ? this.#allowance + grant : grant + REPLY_HEAD_BYTES
  }

  async sendRaw(text: string): Promise<void> {
    await this.#serial(() => this.#write(text))
    this.#tap?.('sent', text)
  }

  /** Runs `fn` after every write queued before it; at once (the bytes queued on the socket now) when none is. */
  #serial(fn: () => Promise<void>): Promise<void> {
    const run = this.#queued === 0 ? fn() : this.#writing.then(fn, fn)
    this.#queued++
    this.#writing = run.finally(() => this.#queued--).catch(() => {})
    return run
  }

  async #write(data: string | Buffer): Promise<void> {
    if (this.socket.destroyed || this.socket.writableEnded) throw new FpeerError('E_CONNECTION_LOST', 'the connection is closed')
    await new Promise<void>((resolve, reject) => {
      this.socket.write(data, 'utf8', (err) => (err ? reject(fromSystemError(err, 'send')) : resolve()))
    })
  }

  /**
   * While long work runs (a transfer), sends a keep-alive (one empty line, which every
   * receiver skips between messages, docs/protocol.md section 2) every `everyMs`, but only
   * when `progress()` moved since the last one: a stalled transfer sends nothing, so the
   * peer's stall timeout still fires. Returns the function that stops it.
   */
  keepAlive(progress: () => number, everyMs: number): () => void {
    let last = progress()
    const t = setInterval(() => {
      const now = progress()
      if (now === last) return
      last = now
      void this.sendRaw('\n').catch(() => {})
    }, everyMs)
    t.unref()
    return () => clearInterval(t)
  }

  /** Ends the connection after pending writes. */
  async close(): Promise<void> {
    this.#clearTimer()
    // Nothing is read after this: what is buffered, and the message just handled, go back to the budget.
    this.#decoder = new FrameDecoder()
    this.#queue.length = 0
    this.#release()
    if (this.socket.destroyed) return
    let timer: NodeJS.Timeout | undefined
    await new Promise<void>((resolve) => {
      this.socket.end(() => resolve())
      timer = setTimeout(() => {
        this.socket.destroy()
        resolve()
      }, 2000).unref()
    })
    // Not left pending for 2 s after a clean end (a stopped peer holds no timer).
    clearTimeout(timer)
  }
}

/** Opens a control connection; `localAddress` binds the source address (`--bind`). */
export async function connectChannel(
  host: string,
  port: number,
  options: ChannelOptions & {localAddress?: string; timeoutMs?: number} = {},
): Promise<MessageChannel> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({host, port, ...(options.localAddress ? {localAddress: options.localAddress} : {})})
    const t = setTimeout(() => {
      s.destroy()
      reject(
        new FpeerError('E_TIMEOUT', `no answer from ${host}:${port} within ${(options.timeoutMs ?? 10_000) / 1000} s`, {
          details: {address: `${host}:${port}`},
          hint: 'is the address right, and does a firewall drop the packets?',
        }),
      )
    }, options.timeoutMs ?? 10_000)
    s.once('connect', () => {
      clearTimeout(t)
      resolve(s)
    })
    s.once('error', (err) => {
      clearTimeout(t)
      const e = fromSystemError(err, `connecting to ${host}:${port}`)
      reject(new FpeerError(e.code, e.message, {cause: err, details: {...e.details, address: `${host}:${port}`}, ...(e.hint ? {hint: e.hint} : {})}))
    })
  })
  return new MessageChannel(socket, options)
}
