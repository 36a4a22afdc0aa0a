// Lands checked small files in a worker thread, so the main thread receives and checks the next ones meanwhile.
import {Worker} from 'node:worker_threads'
import {FpeerError} from '../errors.js'
import {WORKER_LIMITS} from '../memory.js'
import type {Dir} from './folder-dirs.js'

/**
 * Request buffers kept for reuse, and the least one holds: 64 files of 4 KiB (fetch.ts's
 * LAND_CHUNK); larger requests get a buffer of their size.
 */
const SPARE_BUFFERS = 4
const MIN_BUFFER_BYTES = 256 << 10
/**
 * Requests the thread may have queued before room() makes senders wait. Landing (an open,
 * write, rename per file) can be slower than receiving: without a bound, a fetch onto a disk
 * slower than the network would hold every file received here until the thread caught up.
 */
const MAX_QUEUED = 8

/** One file for the worker: where (a held directory's /proc/self/fd path), under which names, which bytes of the request's buffer. */
export interface LandRequest {
  id: number
  buf: ArrayBuffer
  items: Array<{base: string; prefix: string; name: string; off: number; len: number; mtimeMs?: number; mode: number}>
}

/** The items of a request that did not land (each part file already removed), by index; and the fstat of each that did ([size, mtimeMs, ino]; null when unknown). */
export interface LandReply {
  id: number
  /** The request's buffer, given back to be filled again. */
  buf: ArrayBuffer
  failures: Array<{i: number; message: string; code?: string; syscall?: string; unsafe?: boolean}>
  landed: Array<[number, number, number] | null>
}

/** A landed file as its own descriptor said just before it was renamed into place: what the folder's record keeps. */
export interface LandedStat {
  size: number
  mtimeMs: number
  ino: number
}

/** A checked file to land: its content, the held directory and the names in it. */
export interface LandItem {
  dir: Dir
  prefix: string
  name: string
  data: Buffer
  mtimeMs?: number
  mode: number
  /** The file's path in the folder, for errors. */
  rel: string
}

/**
 * A worker that lands checked files (create the part exclusively without following links,
 * write, keep the mtime, rename it over the target), through the /proc/self/fd/N paths of
 * directories the main thread holds: threads share the process's descriptors, so the same
 * held directories are used, with the same system calls landSmall makes (fetch.ts). Only for
 * directories held by descriptor; the caller checks their place around the renames, as
 * for its own. One per fetch; close() ends it.
 */
export class Lander {
  readonly #worker: Worker
  /**
   * Request buffers the thread gave back. A fresh ArrayBuffer is zero-filled and faulted in
   * page by page as it is written: for 10,000 files of 4 KiB, a tenth of a second of the
   * main thread's copying. Reused, the copy touches warm memory.
   */
  readonly #spare: ArrayBuffer[] = []
  readonly #waiting = new Map<number, {resolve: (r: LandReply) => void; reject: (e: Error) => void}>()
  /** Senders waiting in room(), let go as replies come back (or when the thread fails). */
  #roomWaiters: Array<() => void> = []
  #next = 0
  #broken: Error | undefined

  constructor() {
    this.#worker = new Worker(new URL('./lander-thread.js', import.meta.url), {resourceLimits: WORKER_LIMITS})
    this.#worker.on('message', (r: LandReply) => {
      if (this.#spare.length < SPARE_BUFFERS) this.#spare.push(r.buf)
      const w = this.#waiting.get(r.id)
      this.#waiting.delete(r.id)
      w?.resolve(r)
      this.#letWaitersGo()
    })
    const fail = (err: Error) => {
      this.#broken ??= err
      for (const w of this.#waiting.values()) w.reject(err)
      this.#waiting.clear()
      this.#letWaitersGo()
    }
    this.#worker.on('error', fail)
    this.#worker.on('exit', () => fail(new FpeerError('E_INTERNAL', 'the landing thread stopped')))
  }

  /**
   * Resolves once the thread has fewer than MAX_QUEUED requests queued (at once when it has,
   * or when it failed: land() then says so). A sender that awaits it before reading more
   * holds back its peer through TCP instead of holding the bytes here.
   */
  room(): Promise<void> {
    if (this.#waiting.size < MAX_QUEUED || this.#broken) return Promise.resolve()
    return new Promise((resolve) => this.#roomWaiters.push(resolve))
  }

  #letWaitersGo(): void {
    while (this.#waiting.size < MAX_QUEUED || this.#broken) {
      const go = this.#roomWaiters.shift()
      if (!go) return
      go()
    }
  }

  /**
   * Lands `items` in order; resolves with, per item, its LandedStat (landed; undefined when
   * its fstat failed) or the error that stopped it (a system error with its code, or
   * E_PATH_UNSAFE for a directory at the target).
   */
  async land(items: LandItem[]): Promise<Array<Error | LandedStat | undefined>> {
    if (this.#broken) throw this.#broken
    // One buffer for the request, handed over (not copied): cloning a Buffer that views a
    // socket chunk would copy the whole chunk.
    const total = items.reduce((n, it) => n + it.data.length, 0)
    const reuse = this.#spare.findIndex((b) => b.byteLength >= total)
    const buf = (reuse >= 0 ? this.#spare.splice(reuse, 1)[0] : undefined) ?? new ArrayBuffer(Math.max(total, MIN_BUFFER_BYTES))
    const view = Buffer.from(buf)
    let off = 0
    const wire: LandRequest['items'] = items.map((it) => {
      it.data.copy(view, off)
      const w = {
        base: it.dir.base,
        prefix: it.prefix,
        name: it.name,
        off,
        len: it.data.length,
        mode: it.mode,
        ...(it.mtimeMs === undefined ? {} : {mtimeMs: it.mtimeMs}),
      }
      off += it.data.length
      return w
    })
    const id = this.#next++
    const reply = await new Promise<LandReply>((resolve, reject) => {
      this.#waiting.set(id, {resolve, reject})
      this.#worker.postMessage({id, buf, items: wire} satisfies LandRequest, [buf])
    })
    const out: Array<Error | LandedStat | undefined> = items.map((_it, i) => {
      const st = reply.landed[i]
      return st ? {size: st[0], mtimeMs: st[1], ino: st[2]} : undefined
    })
    for (const f of reply.failures) {
      const rel = items[f.i]?.rel ?? ''
      out[f.i] = f.unsafe
        ? new FpeerError('E_PATH_UNSAFE', `${rel}: ${f.message}`)
        : Object.assign(new Error(f.message), {...(f.code ? {code: f.code} : {}), ...(f.syscall ? {syscall: f.syscall} : {})})
    }
    return out
  }

  async close(): Promise<void> {
    await this.#worker.terminate()
  }
}
