// A FileSource wrapper for the conformance suite: records what the server asked for and injects read faults.
import {Readable} from 'node:stream'
import {FpeerError} from '../errors.js'
import type {AccessContext, FileSource, FileStat} from '../transport.js'

export interface FaultPlan {
  /** Paths the source refuses to open with E_ACCESS, the way a file without read permission fails (root ignores chmod). */
  unreadable?: Set<string>
  /** Paths whose next `times` opens yield `afterBytes` bytes and then fail, as a disk error mid-read would. */
  drop?: Map<string, {times: number; afterBytes: number}>
  /** Paths whose opens yield this many bytes and then nothing, until the stream is destroyed: a peer that stops sending. */
  stall?: Map<string, number>
}

export interface OpenCall {
  folder: string
  path: string
  range?: {start?: number; end?: number}
  who: AccessContext
}

/** Yields the first `limit` bytes of `src`, then errors: the server sees a read fail after the response has begun. */
function cutAfter(src: Readable, limit: number): Readable {
  return Readable.from(
    (async function* () {
      let sent = 0
      for await (const chunk of src) {
        const buf = chunk as Buffer
        if (sent + buf.length >= limit) {
          if (limit > sent) yield buf.subarray(0, limit - sent)
          throw new Error('injected fault: read failed mid-file')
        }
        sent += buf.length
        yield buf
      }
    })(),
    {objectMode: false},
  )
}

/**
 * Yields the first `limit` bytes of `src`, then holds the stream open without a byte more or
 * an end, until it is destroyed: only the client's abort (or a timeout) can end such a transfer.
 */
function holdAfter(src: Readable, limit: number, onHold: () => void): Readable {
  let sent = 0
  const out = new Readable({
    read() {
      if (sent < limit) src.resume()
    },
    destroy(err, callback) {
      src.destroy()
      callback(err)
    },
  })
  src.on('data', (chunk: Buffer) => {
    if (sent >= limit) return
    const part = chunk.subarray(0, limit - sent)
    sent += part.length
    if (sent >= limit) {
      // Stop reading the file, keep the response open.
      src.destroy()
      onHold()
    }
    if (!out.push(part)) src.pause()
  })
  src.on('error', (err) => out.destroy(err))
  src.pause()
  return out
}

/** Delegates to a real FileSource, counting calls (so a test can prove no byte moved) and applying a FaultPlan. */
export class FaultySource implements FileSource {
  readonly opens: OpenCall[] = []
  readonly whos: AccessContext[] = []
  /** Stalled streams (FaultPlan.stall) that reached their hold point, and of those, how many are still open. */
  readonly stalls = {held: 0, open: 0}
  readonly #base: FileSource
  readonly #plan: FaultPlan

  constructor(base: FileSource, plan: FaultPlan = {}) {
    this.#base = base
    this.#plan = plan
  }

  folders(who: AccessContext): Promise<string[]> {
    this.whos.push(who)
    return this.#base.folders(who)
  }

  stat(folder: string, path: string, who: AccessContext): Promise<FileStat> {
    this.whos.push(who)
    return this.#base.stat(folder, path, who)
  }

  list(folder: string, path: string, who: AccessContext): Promise<Array<FileStat & {name: string}>> {
    this.whos.push(who)
    return this.#base.list(folder, path, who)
  }

  async open(folder: string, path: string, who: AccessContext, range?: {start?: number; end?: number}) {
    this.whos.push(who)
    this.opens.push({folder, path, who, ...(range ? {range} : {})})
    if (this.#plan.unreadable?.has(path)) throw new FpeerError('E_ACCESS', `cannot read ${path}: permission denied (injected)`)
    const opened = await this.#base.open(folder, path, who, range)
    const stall = this.#plan.stall?.get(path)
    if (stall !== undefined) {
      const {data: _whole, ...rest} = opened
      this.stalls.open++
      const stream = holdAfter(opened.stream, stall, () => this.stalls.held++)
      stream.once('close', () => this.stalls.open--)
      return {...rest, stream}
    }
    const drop = this.#plan.drop?.get(path)
    if (drop && drop.times > 0) {
      drop.times--
      // Without `data`: a server must read the cut stream, not the bytes read ahead.
      const {data: _whole, ...rest} = opened
      return {...rest, stream: cutAfter(opened.stream, drop.afterBytes)}
    }
    return opened
  }
}
