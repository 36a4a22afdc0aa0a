// Many small files on one logged-in FTP connection, pipelined: EPSV and RETR of the next files sent before the current one has ended.
//
// basic-ftp runs one command at a time and costs a SIZE, an EPSV, a RETR, a stream
// pipeline and a few Error stacks per file. Here the whole batch is one basic-ftp task
// (it keeps timing out the control connection and parsing replies) that sends `EPSV` and
// `RETR` for up to `window` files ahead. Replies come in order (RFC 959 answers commands
// one after the other), so each belongs to the oldest file not yet done: 229 opens its
// data connection, 150 starts it, 226 ends it. A server answers the next file's EPSV
// only after the last one's 226, so files never share a data connection.
import {Socket} from 'node:net'
import type {Client} from 'basic-ftp'
import {FpeerError, type BatchItem} from '@fpeer/core/plugin'
import {mapFtpError} from './client-errors.js'

/**
 * Starts one basic-ftp task for a whole batch: it routes every reply to `onReply` and times
 * out a silent server, and what it fails with goes to `fail`. Returns what ends the task, to
 * call when the batch is over, so basic-ftp stops timing out the control connection and
 * routing replies there.
 */
export function batchTask(client: Client, folder: string, onReply: (res: unknown) => void, fail: (err: FpeerError) => void): () => void {
  const task = client.ftp.handle(undefined, (res) => onReply(res))
  task.catch((err: unknown) => fail(mapFtpError(err, `FTP RETR in ${folder}`, 'transfer')))
  // handle() sets up its task synchronously: its resolver is there now.
  const resolve = (client.ftp as unknown as {_task?: {resolver: {resolve(v: unknown): void}}})._task?.resolver.resolve
  return resolve ? () => resolve(undefined) : () => client.close()
}

/** Replies to EPSV that mean "not supported here": core then fetches one by one with get(). */
const EPSV_UNSUPPORTED = new Set([500, 501, 502, 504, 522])

/** What pipelineRetr needs besides the connection. */
export interface PipelineOptions {
  /** The server's address: data connections go there, whatever a reply might name. */
  host: string
  localAddress?: string | undefined
  folder: string
  items: Array<{path: string; size: number}>
  /** Files whose commands are sent ahead at most. */
  window: number
  timeoutMs: number
  signal?: AbortSignal | undefined
}

/** How a pipelined batch ended, for the pool: whether the connection owes nothing and may be lent again. */
export interface PipelineOutcome {
  clean: boolean
  /** No reply at all came (a parked connection the server had closed): the caller may retry on a fresh one. */
  silent: boolean
}

interface Pending {
  path: string
  size: number
  remote: string
  stage: 'epsv' | 'retr' | 'transfer'
  data: Socket | undefined
  chunks: Buffer[]
  got: number
  /** Its last reply came (226, or a refusal): later replies belong to the next file. */
  replied: boolean
  dataClosed: boolean
  /** The file's own error (550, or a body larger than announced): the item, instead of bytes. */
  error?: FpeerError
}

/**
 * Fetches `items` in order on `client`'s control connection, yielding each file's bytes (or
 * its 550 as E_NOT_FOUND / E_ACCESS, and a body larger than announced as E_SIZE_MISMATCH,
 * after which this connection's part of the batch ends: fewer items than asked for, no error). Any other failure is thrown. `done` is told how it ended.
 */
export async function* pipelineRetr(client: Client, o: PipelineOptions, done: (outcome: PipelineOutcome) => void): AsyncGenerator<BatchItem> {
  const ftp = client.ftp
  const queue: Pending[] = []
  const ready: BatchItem[] = []
  let next = 0
  let failure: FpeerError | undefined
  let stopped = false
  /** The server may still owe replies (a body cut off as too large): the connection cannot be lent again. */
  let dirty = false
  let anyReply = false
  let wake: (() => void) | undefined
  const poke = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  let resolveTask: (() => void) | undefined

  const fail = (err: FpeerError) => {
    if (stopped) return
    failure ??= err
    finish()
  }
  const finish = () => {
    if (stopped) return
    stopped = true
    for (const f of queue) f.data?.destroy()
    resolveTask?.()
    poke()
  }
  const sendMore = () => {
    let item: {path: string; size: number} | undefined
    // The commands of one call leave in one write(2), not one per EPSV and RETR.
    const control = ftp.socket
    if (control.writableCorked === 0) {
      control.cork()
      process.nextTick(() => control.uncork())
    }
    while (!stopped && !dirty && queue.length < o.window && (item = o.items[next])) {
      next++
      const {path, size} = item
      const f: Pending = {path, size, remote: `/${o.folder}/${path}`, stage: 'epsv', data: undefined, chunks: [], got: 0, replied: false, dataClosed: false}
      queue.push(f)
      try {
        ftp.send('EPSV')
        ftp.send(`RETR ${f.remote}`)
      } catch (err) {
        return fail(mapFtpError(err, `FTP RETR ${f.remote}`, 'start'))
      }
    }
    if (queue.length === 0) finish()
  }
  /** Hands over, in order, every file whose reply and data connection are both over; sends more commands for those gone. */
  const settle = () => {
    let head: Pending | undefined
    while ((head = queue[0]) && head.replied && (head.dataClosed || head.error)) {
      queue.shift()
      head.data?.destroy()
      ready.push(head.error ? {path: head.path, error: head.error} : {path: head.path, data: Buffer.concat(head.chunks, head.got)})
    }
    poke()
    sendMore()
  }
  const openData = (f: Pending, port: number) => {
    const socket = new Socket()
    f.data = socket
    socket.setNoDelay(true)
    socket.setTimeout(o.timeoutMs, () => fail(new FpeerError('E_TIMEOUT', `FTP RETR ${f.remote}: no data for ${o.timeoutMs} ms`)))
    socket.on('data', (chunk: Buffer) => {
      f.got += chunk.length
      if (f.got > f.size) {
        // Stop reading at the first byte too many; the server's reply to it is not waited for,
        // and nothing more is asked on this connection.
        dirty = true
        f.replied = true
        f.error = new FpeerError('E_SIZE_MISMATCH', `${f.remote}: the peer sent more than the ${f.size} bytes announced`)
        socket.destroy()
        // The files asked for after it are not waited for here: this connection's replies can no
        // longer be matched to them. The batch ends after this item; the caller asks for the rest
        // on a fresh connection.
        for (const later of queue.splice(queue.indexOf(f) + 1)) later.data?.destroy()
        return settle()
      }
      f.chunks.push(chunk)
    })
    // A reset after all bytes is no loss, and a cut one shows as a short body, which core
    // (knowing the size and hash) retries: either way the file is done when both sides are.
    socket.on('error', () => {})
    socket.on('close', () => {
      f.dataClosed = true
      settle()
    })
    socket.connect({host: o.host, port, ...(o.localAddress ? {localAddress: o.localAddress} : {})})
  }

  const onReply = (res: unknown) => {
    if (stopped) return
    const code = (res as {code?: unknown})?.code
    if (!(res instanceof Error) || typeof code === 'number') anyReply = true
    const f = queue.find((x) => !x.replied)
    if (res instanceof Error && typeof code !== 'number') {
      return fail(mapFtpError(res, `FTP RETR ${f?.remote ?? o.folder}`, f?.stage === 'transfer' ? 'transfer' : 'start'))
    }
    const message = (res as {message?: string}).message ?? ''
    if (!f) {
      // Once a body overran, the server still answers for it and for the files dropped after it.
      if (dirty) return
      return fail(new FpeerError('E_TRANSFER', `FTP: an unexpected reply: ${message.slice(0, 80)}`))
    }
    if (typeof code !== 'number' || code < 200) {
      if ((code === 150 || code === 125) && f.stage === 'retr') f.stage = 'transfer'
      return
    }
    switch (f.stage) {
      case 'epsv': {
        const port = code === 229 ? /\(\|\|\|(\d+)\|\)/.exec(message)?.[1] : undefined
        if (port === undefined || Number(port) < 1 || Number(port) > 65535) {
          if (EPSV_UNSUPPORTED.has(code)) return fail(new FpeerError('E_UNSUPPORTED', `FTP: the server does not take EPSV (${code})`))
          return fail(mapFtpError(res, `FTP EPSV for ${f.remote}`, 'start'))
        }
        f.stage = 'retr'
        return openData(f, Number(port))
      }
      case 'retr': {
        // No 150: the server refused this file before opening it (550), or the transfer.
        const mapped = mapFtpError(res, `FTP RETR ${f.remote}`, 'start')
        if (code >= 400 && (mapped.code === 'E_NOT_FOUND' || mapped.code === 'E_ACCESS')) {
          f.replied = true
          f.error = mapped
          return settle()
        }
        return fail(code < 400 ? new FpeerError('E_TRANSFER', `FTP RETR ${f.remote}: ${message.slice(0, 80)}`) : mapped)
      }
      case 'transfer':
        if (code >= 300) return fail(mapFtpError(res, `FTP RETR ${f.remote}`, 'transfer'))
        f.replied = true
        return settle()
    }
  }

  if (o.items.length === 0) return done({clean: true, silent: false})
  const onAbort = () => fail(new FpeerError('E_TRANSFER', 'FTP transfer aborted', {cause: o.signal?.reason}))
  o.signal?.addEventListener('abort', onAbort, {once: true})
  resolveTask = batchTask(client, o.folder, onReply, fail)
  let yielded = 0
  try {
    if (o.signal?.aborted) onAbort()
    else sendMore()
    for (;;) {
      let item: BatchItem | undefined
      while ((item = ready.shift())) {
        yielded++
        yield item
      }
      if (stopped) break
      await new Promise<void>((r) => (wake = r))
    }
    if (failure) throw failure
  } finally {
    o.signal?.removeEventListener('abort', onAbort)
    const clean = !failure && !dirty && queue.length === 0 && yielded === next && ready.length === 0 && next === o.items.length
    finish()
    // The task must end before the connection is lent again: a task still open would take the next borrower's replies.
    if (!clean) client.close()
    done({clean: clean && !client.closed, silent: !anyReply})
  }
}
