// A control connection: whole wire messages over a TCP socket, with size limits and timeouts.
import net from 'node:net'
import {FpeerError, fromSystemError} from '../errors.js'
import {parseLines, formatMessage} from '../wire/codec.js'
import {FrameDecoder} from '../wire/frame.js'
import {DEFAULT_MESSAGE_TIMEOUT_MS} from '../wire/limits.js'
import type {Message} from '../wire/types.js'

export interface ChannelOptions {
  /** A message must be complete this long after its first byte (slow senders are cut off). */
  messageTimeoutMs?: number
}

/** Strips the IPv4-mapped prefix so `::ffff:127.0.0.2` and `127.0.0.2` are one address. */
export function normalizeAddress(address: string | undefined): string {
  if (!address) return ''
  return address.startsWith('::ffff:') ? address.slice(7) : address
}

export class MessageChannel {
  readonly socket: net.Socket
  readonly #decoder = new FrameDecoder()
  readonly #queue: Array<string[]> = []
  #error: FpeerError | undefined
  #closed = false
  #waiter: {resolve: () => void} | undefined
  #messageTimer: NodeJS.Timeout | undefined
  readonly #messageTimeoutMs: number
  /** Read once: a socket that is reset forgets its remote address, and the host fetches back from it later. */
  readonly #remoteAddress: string

  constructor(socket: net.Socket, options: ChannelOptions = {}) {
    this.socket = socket
    this.#remoteAddress = normalizeAddress(socket.remoteAddress)
    // Reset before we accepted it (the kernel still hands over the bytes that came first):
    // there is nobody to answer or fetch back from, so none of its messages is read.
    if (!this.#remoteAddress) this.#error = new FpeerError('E_CONNECTION_LOST', 'the peer reset the connection before it was accepted')
    this.#messageTimeoutMs = options.messageTimeoutMs ?? Number(process.env.FPEER_MESSAGE_TIMEOUT_MS || DEFAULT_MESSAGE_TIMEOUT_MS)
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
      this.#wake()
    })
  }

  get remoteAddress(): string {
    return this.#remoteAddress
  }

  get localAddress(): string {
    return normalizeAddress(this.socket.localAddress)
  }

  #onData(chunk: Buffer): void {
    if (this.#error) return
    const wasIn = this.#decoder.inMessage
    let done: string[][]
    try {
      done = this.#decoder.push(chunk)
    } catch (err) {
      this.#fail(err as FpeerError)
      return
    }
    for (const lines of done) this.#queue.push(lines)
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
    this.#wake()
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
  async next(timeoutMs: number): Promise<Message> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const lines = this.#queue.shift()
      if (lines) {
        try {
          return parseLines(lines)
        } catch (err) {
          this.#fail(err as FpeerError)
          throw err
        }
      }
      if (this.#error) throw this.#error
      if (this.#closed) throw new FpeerError('E_CONNECTION_LOST', 'the peer closed the connection')
      const left = deadline - Date.now()
      if (left <= 0) throw new FpeerError('E_TIMEOUT', `no message within ${timeoutMs} ms`)
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
    await this.sendRaw(formatMessage(msg))
  }

  async sendRaw(text: string): Promise<void> {
    if (this.socket.destroyed || this.socket.writableEnded) throw new FpeerError('E_CONNECTION_LOST', 'the connection is closed')
    await new Promise<void>((resolve, reject) => {
      this.socket.write(text, 'utf8', (err) => (err ? reject(fromSystemError(err, 'send')) : resolve()))
    })
  }

  /** Ends the connection after pending writes. */
  async close(): Promise<void> {
    this.#clearTimer()
    if (this.socket.destroyed) return
    await new Promise<void>((resolve) => {
      this.socket.end(() => resolve())
      setTimeout(() => {
        this.socket.destroy()
        resolve()
      }, 2000).unref()
    })
  }
}

/** Opens a control connection; `localAddress` binds the source address (`--bind`). */
export async function connectChannel(host: string, port: number, options: ChannelOptions & {localAddress?: string; timeoutMs?: number} = {}): Promise<MessageChannel> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({host, port, ...(options.localAddress ? {localAddress: options.localAddress} : {})})
    const t = setTimeout(() => {
      s.destroy()
      reject(new FpeerError('E_TIMEOUT', `no answer from ${host}:${port} within ${options.timeoutMs ?? 10_000} ms`))
    }, options.timeoutMs ?? 10_000)
    s.once('connect', () => {
      clearTimeout(t)
      resolve(s)
    })
    s.once('error', (err) => {
      clearTimeout(t)
      reject(fromSystemError(err, `connecting to ${host}:${port}`))
    })
  })
  return new MessageChannel(socket, options)
}
