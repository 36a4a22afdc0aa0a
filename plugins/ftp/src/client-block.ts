// Many small files over one data connection: RFC 959 block mode (MODE B), pipelined, for servers that take it (fpeer's own).
//
// Stream mode ends each file by closing its data connection, so every file costs an EPSV, a
// connect, an accept and a close on both sides (client-batch.ts). In block mode the server
// frames each file as blocks (a descriptor byte and a 16-bit count before each) and ends it
// with an EOF block, and the data connection stays open: the batch sends `MODE B`, one
// `EPSV`, a `RETR` per file (up to `window` ahead) and `MODE S` after the last, all
// pipelined, and opens one data connection. Replies come in order; so do the files on the
// data connection, one per RETR the server started (125/150), never one for a RETR it
// refused (550). The n-th file ended by an EOF block is the n-th RETR that was started.
import {Socket} from 'node:net'
import type {Client} from 'basic-ftp'
import {FpeerError, isFpeerError, type BatchItem} from '@fpeer/core/plugin'
import {batchTask, type PipelineOptions, type PipelineOutcome} from './client-batch.js'
import {mapFtpError} from './client-errors.js'

/** Block descriptors (RFC 959 3.4.2): the only ones a file structure transfer from fpeer uses. */
const DESC_DATA = 0x00
const DESC_EOF = 0x40

interface Pending {
  path: string
  size: number
  remote: string
  /** Its RETR was started (125/150): a body comes on the data connection. */
  started: boolean
  /** Its final reply came (2xx, or a refusal). */
  replied: boolean
  body: Body | undefined
  error?: FpeerError
}

/** One file's bytes on the data connection, from its first block to its EOF block. */
interface Body {
  chunks: Buffer[]
  got: number
  eof: boolean
  /** The file it belongs to, once its 125/150 has been read (bodies and replies race). */
  owner: Pending | undefined
}

/** The server answered MODE B with a refusal, before any RETR was sent: use stream mode with it. */
export function blockModeRefused(err: unknown): boolean {
  return isFpeerError(err, 'E_UNSUPPORTED') && err.details?.['ftpMode'] === 'B'
}

type Expect = {kind: 'mode-b'} | {kind: 'epsv'} | {kind: 'retr'; file: Pending} | {kind: 'mode-s'}

/**
 * Fetches `items` in order over block mode, yielding each file's bytes (or its 550 as
 * E_NOT_FOUND / E_ACCESS, and a body larger than announced as E_SIZE_MISMATCH, after which
 * this connection's part ends: fewer items than asked for, no error). A server that refuses
 * `MODE B` is E_UNSUPPORTED before any file; any other failure is thrown. `done` is told how
 * it ended: clean only when the server has answered every command, `MODE S` included.
 */
export async function* blockRetr(client: Client, o: PipelineOptions, done: (outcome: PipelineOutcome) => void): AsyncGenerator<BatchItem> {
  const ftp = client.ftp
  const expects: Expect[] = []
  const files: Pending[] = []
  const ready: BatchItem[] = []
  /** Started files whose body has not begun yet, and bodies that began before their file's 125/150 was read. */
  const waitingForBody: Pending[] = []
  const unclaimed: Body[] = []
  let current: Body | undefined
  let next = 0
  let sentModeS = false
  let failure: FpeerError | undefined
  let stopped = false
  let dirty = false
  let anyReply = false
  let data: Socket | undefined
  let wake: (() => void) | undefined
  let resolveTask: (() => void) | undefined
  const poke = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  const fail = (err: FpeerError) => {
    if (stopped) return
    failure ??= err
    finish()
  }
  const finish = () => {
    if (stopped) return
    stopped = true
    data?.destroy()
    resolveTask?.()
    poke()
  }
  const send = (line: string, expect: Expect) => {
    expects.push(expect)
    ftp.send(line)
  }
  const sendMore = () => {
    // The commands of one call leave in one write(2).
    const control = ftp.socket
    if (control.writableCorked === 0) {
      control.cork()
      process.nextTick(() => control.uncork())
    }
    let item: {path: string; size: number} | undefined
    try {
      while (!stopped && !dirty && files.length < o.window && (item = o.items[next])) {
        next++
        const f: Pending = {path: item.path, size: item.size, remote: `/${o.folder}/${item.path}`, started: false, replied: false, body: undefined}
        files.push(f)
        send(`RETR ${f.remote}`, {kind: 'retr', file: f})
      }
      // Back to stream mode after the last file, in the same pipeline: the connection goes back to the pool as it came.
      if (!stopped && !dirty && next === o.items.length && !sentModeS) {
        sentModeS = true
        send('MODE S', {kind: 'mode-s'})
      }
    } catch (err) {
      fail(mapFtpError(err, `FTP RETR in ${o.folder}`, 'start'))
    }
  }
  /** Hands over, in order, every file whose reply and body are both complete. */
  const settle = () => {
    let head: Pending | undefined
    while ((head = files[0]) && head.replied && (head.error || head.body?.eof)) {
      files.shift()
      const {path, body, error} = head
      ready.push(
        error || !body
          ? {path, error: error ?? new FpeerError('E_TRANSFER', `FTP RETR ${head.remote}: no body`)}
          : {path, data: Buffer.concat(body.chunks, body.got)},
      )
    }
    poke()
    sendMore()
    // Every file handed over and the server back in stream mode (or a body overran): the batch is over.
    if (files.length === 0 && (dirty || (expects.length === 0 && next === o.items.length))) finish()
  }
  /** A body was matched to its file: it must not be larger than the file announced. */
  const claim = (f: Pending, body: Body) => {
    f.body = body
    body.owner = f
    if (body.got > f.size) overrun(f)
  }
  const overrun = (f: Pending) => {
    // Stop reading at the first byte too many. The rest of this connection's replies and bodies
    // can no longer be trusted to match: the batch ends after this file (the ones before it
    // have their bodies whole and still take their replies), and the caller asks for the
    // rest on a fresh connection.
    if (dirty) return
    dirty = true
    f.replied = true
    f.error = new FpeerError('E_SIZE_MISMATCH', `${f.remote}: the peer sent more than the ${f.size} bytes announced`)
    files.splice(files.indexOf(f) + 1)
    data?.destroy()
    settle()
  }
  /** Bytes a body not yet matched to its file may hold: as many as the largest file it can be. */
  const unclaimedLimit = () => files.reduce((m, f) => (f.started || f.replied ? m : Math.max(m, f.size)), 0)

  // The data connection's parser: a 3-byte header, then `count` bytes, block after block.
  /** Bytes read but not taken yet, while a body waits to learn its file: taken again after each reply. */
  let held: Buffer | undefined
  const takeHeld = () => {
    const chunk = held
    if (!chunk || stopped) return
    held = undefined
    data?.resume()
    onData(chunk)
  }
  const header = Buffer.alloc(3)
  let headerGot = 0
  let left = 0
  let eofAfter = false
  const startBody = (): Body => {
    const body: Body = {chunks: [], got: 0, eof: false, owner: undefined}
    const f = waitingForBody.shift()
    if (f) claim(f, body)
    // Not a started file's: then one of a file whose RETR was sent and not answered yet.
    else unclaimed.push(body)
    checkUnclaimed()
    return body
  }
  /** Files whose RETR is not answered yet: at most as many bodies may wait for one. */
  const checkUnclaimed = () => {
    if (unclaimed.length > files.filter((x) => !x.started && !x.replied).length)
      fail(new FpeerError('E_TRANSFER', `FTP block mode in /${o.folder}: a file came that no RETR asked for`))
  }
  const endBlock = () => {
    const body = current
    if (!eofAfter || !body) return
    current = undefined
    body.eof = true
    if (body.owner) settle()
  }
  const onData = (chunk: Buffer) => {
    // After an overrun nothing more on this connection is anyone's.
    if (dirty) return
    let at = 0
    while (at < chunk.length && !stopped) {
      if (left === 0) {
        const take = Math.min(3 - headerGot, chunk.length - at)
        chunk.copy(header, headerGot, at, at + take)
        headerGot += take
        at += take
        if (headerGot < 3) return
        headerGot = 0
        const desc = header.readUInt8(0)
        // A server that took MODE B but frames otherwise: the caller goes on in stream mode with it.
        if (desc !== DESC_DATA && desc !== DESC_EOF)
          return fail(new FpeerError('E_UNSUPPORTED', `FTP block mode: a block with descriptor ${desc}, which fpeer does not take`, {details: {ftpMode: 'B'}}))
        left = header.readUInt16BE(1)
        eofAfter = desc === DESC_EOF
        current ??= startBody()
        if (stopped) return
        if (left === 0) endBlock()
        continue
      }
      const body = (current ??= startBody())
      const n = Math.min(left, chunk.length - at)
      if (!body.owner && body.got + n > unclaimedLimit()) {
        // Larger than any file it can be: which one it is (and so whether it overran) is known
        // once its 125/150 is read. Until then this connection is not read further.
        held = chunk.subarray(at)
        data?.pause()
        return
      }
      const piece = chunk.subarray(at, at + n)
      at += n
      left -= n
      body.got += n
      if (body.owner && body.got > body.owner.size) return overrun(body.owner)
      body.chunks.push(piece)
      if (left === 0) endBlock()
    }
  }
  const openData = (port: number) => {
    const socket = new Socket()
    data = socket
    socket.setNoDelay(true)
    socket.setTimeout(o.timeoutMs, () => {
      if (files.some((f) => f.started && !f.body?.eof)) fail(new FpeerError('E_TIMEOUT', `FTP block mode in /${o.folder}: no data for ${o.timeoutMs} ms`))
    })
    socket.on('data', onData)
    socket.on('error', () => {})
    socket.on('close', () => {
      // The server closes it only at MODE S or after a failed transfer: a body still owed is lost.
      if (!stopped && !dirty && (files.some((f) => f.started && !f.body?.eof) || current))
        fail(new FpeerError('E_CONNECTION_LOST', `FTP block mode in /${o.folder}: the data connection closed mid-file`))
    })
    socket.connect({host: o.host, port, ...(o.localAddress ? {localAddress: o.localAddress} : {})})
  }

  const onReply = (res: unknown) => {
    reply(res)
    // A refusal (550) leaves one file fewer that a waiting body can be.
    if (unclaimed.length) checkUnclaimed()
    takeHeld()
  }
  const reply = (res: unknown) => {
    if (stopped) return
    const code = (res as {code?: unknown})?.code
    if (!(res instanceof Error) || typeof code === 'number') anyReply = true
    const expect = expects[0]
    const what = expect?.kind === 'retr' ? `FTP RETR ${expect.file.remote}` : `FTP block mode in /${o.folder}`
    if (res instanceof Error && typeof code !== 'number') return fail(mapFtpError(res, what, data ? 'transfer' : 'start'))
    const message = (res as {message?: string}).message ?? ''
    if (!expect) {
      if (dirty) return
      return fail(new FpeerError('E_TRANSFER', `FTP: an unexpected reply: ${message.slice(0, 80)}`))
    }
    if (typeof code !== 'number' || code < 200) {
      if ((code === 150 || code === 125) && expect.kind === 'retr' && !expect.file.started) {
        const f = expect.file
        f.started = true
        const body = unclaimed.shift()
        if (body) claim(f, body)
        else waitingForBody.push(f)
      }
      return
    }
    expects.shift()
    switch (expect.kind) {
      case 'mode-b':
        // Refused (504 from vsftpd and most servers): no RETR was sent yet, and the caller goes on in stream mode.
        if (code >= 300) return fail(new FpeerError('E_UNSUPPORTED', `FTP: the server does not take MODE B (${code})`, {details: {ftpMode: 'B'}}))
        return
      case 'epsv': {
        const port = code === 229 ? /\(\|\|\|(\d+)\|\)/.exec(message)?.[1] : undefined
        if (port === undefined || Number(port) < 1 || Number(port) > 65535) return fail(mapFtpError(res, `FTP EPSV in /${o.folder}`, 'start'))
        openData(Number(port))
        return sendMore()
      }
      case 'retr': {
        const f = expect.file
        if (!f.started) {
          const mapped = mapFtpError(res, `FTP RETR ${f.remote}`, 'start')
          if (code >= 400 && (mapped.code === 'E_NOT_FOUND' || mapped.code === 'E_ACCESS')) {
            f.replied = true
            f.error = mapped
            return settle()
          }
          return fail(code < 400 ? new FpeerError('E_TRANSFER', `FTP RETR ${f.remote}: ${message.slice(0, 80)}`) : mapped)
        }
        if (code >= 300) return fail(mapFtpError(res, `FTP RETR ${f.remote}`, 'transfer'))
        f.replied = true
        settle()
        // 226 is "closing data connection": a server that does so after each file in block mode
        // (RFC 959 allows it) cannot carry the next file on it. This file is handed over if
        // its body is whole; the rest goes in stream mode.
        if (code === 226)
          fail(new FpeerError('E_UNSUPPORTED', 'FTP: the server closes the data connection after each file in block mode', {details: {ftpMode: 'B'}}))
        return
      }
      case 'mode-s':
        if (code >= 300) return fail(new FpeerError('E_TRANSFER', `FTP: MODE S refused (${code})`))
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
    else {
      // MODE B and EPSV go together; the RETRs follow once the data port is known.
      const control = ftp.socket
      control.cork()
      process.nextTick(() => control.uncork())
      send('MODE B', {kind: 'mode-b'})
      send('EPSV', {kind: 'epsv'})
    }
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
    const clean = !failure && !dirty && expects.length === 0 && files.length === 0 && ready.length === 0 && yielded === next && next === o.items.length
    finish()
    if (!clean) client.close()
    done({clean: clean && !client.closed, silent: !anyReply})
  }
}
