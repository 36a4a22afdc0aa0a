// A socket's bytes read straight into a few reused slabs and handed on as views: the receiving end of a large file, for any transport that reads a socket itself.
import {Readable} from 'node:stream'

/**
 * Why a transport reads a large file through this instead of a socket's 'data' events: every
 * 64 KiB read then becomes a Buffer, an event, a stream push and a promise hop in core's
 * `for await`, which cost more CPU than the bytes' SHA-256. Here each read lands in the free
 * tail of a SLAB-sized buffer (the socket's `onread`), core receives views of whole runs of
 * reads, never a copy, and hands each back (`release`, transport.ts) once it has hashed and
 * written it. A slab every view of which came back is read into again: a fresh slab costs a
 * page fault per 4 KiB the first time it is written, and its collection later, which for
 * 512 MiB was as much system time as the transfer itself.
 */
const SLAB = 2 << 20
/** A slab with less room than this is left for a new one: a read into a sliver would be a wasted syscall. */
const SLAB_MIN_ROOM = 64 << 10
/** Bytes gathered before they are handed on; less is handed on once the reads of one turn of the event loop are done. */
const PUSH_BYTES = 1 << 20
/** Released slabs kept for reuse. */
const SPARE_SLABS = 8

interface Slab {
  buf: Buffer
  /** Views of it handed on and not yet released. */
  out: number
  /** The socket reads into another slab now. */
  retired: boolean
}

/** What the socket that feeds a SlabStream must do for it. */
export interface SlabSocket {
  /** The reader is behind: stop reading (and stop counting the silence against the peer). */
  pause(): void
  /** The reader wants more. */
  resume(): void
  /** The reader went away: close the connection. */
  destroy(): void
}

/**
 * The body of one transfer. Give `onread` to `new net.Socket({onread})` (or `net.connect`);
 * the socket's data then arrives here only. Call `commit(n)` for the bytes of a read that
 * belong to the body (all of them, or fewer when a protocol's length ends it), `end()` once
 * the body is complete, `fail(err)` when it cannot be. `stream` is what core reads (object
 * mode: one view per chunk, never joined), and `release` what it hands chunks back with.
 */
export class SlabStream {
  readonly stream: Readable
  readonly #socket: SlabSocket
  readonly #spare: Buffer[] = []
  readonly #held = new Map<ArrayBufferLike, Slab>()
  readonly #given = new WeakSet<Buffer>()
  #slab: Slab
  #used = 0
  /** Where the bytes not yet handed on begin, in the current slab. */
  #from = 0
  #flushQueued = false
  #paused = false

  constructor(socket: SlabSocket) {
    this.#socket = socket
    this.#slab = this.#newSlab()
    this.stream = new Readable({
      // Chunks are counted, not measured: `read()` in byte mode would join buffered chunks into a copy.
      objectMode: true,
      highWaterMark: 8,
      read: () => {
        if (!this.#paused) return
        this.#paused = false
        this.#socket.resume()
      },
      destroy: (err, cb) => {
        this.#socket.destroy()
        cb(err)
      },
    })
  }

  /** The free tail of the current slab, where the next read goes: `onread.buffer`. */
  room(): Buffer {
    if (SLAB - this.#used < SLAB_MIN_ROOM) {
      this.#handOn()
      this.#slab.retired = true
      this.#recycle(this.#slab)
      this.#slab = this.#newSlab()
      this.#used = this.#from = 0
    }
    return this.#slab.buf.subarray(this.#used)
  }

  /** The first `n` bytes of the last `room()` are the body's. */
  commit(n: number): void {
    this.#used += n
    if (this.#used - this.#from >= PUSH_BYTES) this.#handOn()
    else if (!this.#flushQueued && n > 0) {
      this.#flushQueued = true
      setImmediate(() => this.#handOn())
    }
  }

  /** Copies `bytes` in as body (what came with a reply's head). */
  write(bytes: Buffer): void {
    for (let at = 0; at < bytes.length; ) {
      const room = this.room()
      const n = bytes.copy(room, 0, at)
      at += n
      this.commit(n)
    }
  }

  /** The body is complete: what is gathered is handed on, then the end. */
  end(): void {
    this.#handOn()
    this.stream.push(null)
  }

  /** The body cannot be completed: the reader gets `err` after what it already has. */
  fail(err: Error): void {
    if (!this.stream.destroyed) this.stream.destroy(err)
  }

  /** TransferClient.get's `release`: core is done with `chunk`. Only a view this stream handed on counts, once. */
  release(chunk: Buffer): void {
    if (!this.#given.delete(chunk)) return
    const slab = this.#held.get(chunk.buffer)
    if (!slab) return
    slab.out--
    this.#recycle(slab)
  }

  /** The `onread` option of the socket that feeds this body. */
  get onread(): {buffer: () => Buffer; callback: (n: number) => boolean} {
    return {buffer: () => this.room(), callback: (n) => (this.commit(n), true)}
  }

  #newSlab(): Slab {
    const slab = {buf: this.#spare.pop() ?? Buffer.allocUnsafe(SLAB), out: 0, retired: false}
    this.#held.set(slab.buf.buffer, slab)
    return slab
  }

  #recycle(slab: Slab): void {
    if (!slab.retired || slab.out > 0) return
    this.#held.delete(slab.buf.buffer)
    if (this.#spare.length < SPARE_SLABS) this.#spare.push(slab.buf)
  }

  #handOn(): void {
    this.#flushQueued = false
    if (this.#used <= this.#from || this.stream.destroyed) return
    const view = this.#slab.buf.subarray(this.#from, this.#used)
    this.#from = this.#used
    this.#given.add(view)
    this.#slab.out++
    if (!this.stream.push(view) && !this.#paused) {
      this.#paused = true
      this.#socket.pause()
    }
  }
}
