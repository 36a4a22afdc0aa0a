// A connected pair of MessageChannels over an in-memory duplex: the control connection's two ends without a socket.
import type net from 'node:net'
import {Duplex} from 'node:stream'
import {type ChannelOptions, MessageChannel} from '../net/channel.js'

/** The two ends' addresses, as a TCP connection would show them. */
export interface PairAddresses {
  /** The side that "connected" (the requester). Default 127.0.0.2:40000. */
  client?: {address: string; port: number}
  /** The side that "accepted" (the host). Default 127.0.0.1:7654. */
  server?: {address: string; port: number}
}

/**
 * One end of an in-memory connection: what MessageChannel uses of a net.Socket (data, end,
 * close, error, write, end(), destroy(), pause(), addresses), with bytes handed to the other
 * end on the next tick so that ordering and half-close behave as on a socket.
 */
class MemorySocket extends Duplex {
  peer: MemorySocket | undefined
  readonly localAddress: string
  readonly localPort: number
  readonly remoteAddress: string
  readonly remotePort: number

  constructor(local: {address: string; port: number}, remote: {address: string; port: number}) {
    super({allowHalfOpen: true})
    this.localAddress = local.address
    this.localPort = local.port
    this.remoteAddress = remote.address
    this.remotePort = remote.port
  }

  setNoDelay(): this {
    return this
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const peer = this.peer
    if (!peer || peer.destroyed) return cb(Object.assign(new Error('write EPIPE'), {code: 'EPIPE'}))
    // A copy: the writer may reuse its buffer, as it may with a socket.
    const copy = Buffer.from(chunk)
    setImmediate(() => {
      if (!peer.destroyed) peer.push(copy)
    })
    cb()
  }

  override _final(cb: (err?: Error | null) => void): void {
    const peer = this.peer
    setImmediate(() => {
      if (peer && !peer.destroyed) peer.push(null)
    })
    cb()
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const peer = this.peer
    if (peer && !peer.destroyed) {
      setImmediate(() => {
        if (peer.destroyed) return
        // Destroyed with an error: the other end sees a reset. Without one: the end of its input, then the close.
        if (err) return void peer.destroy(Object.assign(new Error('read ECONNRESET'), {code: 'ECONNRESET'}))
        peer.push(null)
        setImmediate(() => peer.destroy())
      })
    }
    cb(err)
  }
}

/** Two raw connected ends, for tests that write bytes by hand on one side. */
export function socketPair(addresses: PairAddresses = {}): {client: net.Socket; server: net.Socket} {
  const c = addresses.client ?? {address: '127.0.0.2', port: 40_000}
  const s = addresses.server ?? {address: '127.0.0.1', port: 7654}
  const client = new MemorySocket(c, s)
  const server = new MemorySocket(s, c)
  client.peer = server
  server.peer = client
  return {client: client as unknown as net.Socket, server: server as unknown as net.Socket}
}

/** A connected pair of MessageChannels: what `connectChannel` and a control server's accept would give. */
export function channelPair(options: {client?: ChannelOptions; server?: ChannelOptions; addresses?: PairAddresses} = {}): {
  client: MessageChannel
  server: MessageChannel
} {
  const {client, server} = socketPair(options.addresses)
  return {client: new MessageChannel(client, options.client), server: new MessageChannel(server, options.server)}
}
