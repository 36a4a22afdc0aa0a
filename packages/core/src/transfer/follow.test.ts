// Following a part file as it is written (protocol 4.10): readers get what is on disk, wait for more, and let the descriptor go.
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {closeSync, constants, fstatSync, openSync, read as readCb, writeSync} from 'node:fs'
import {mkdtemp, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type {Readable} from 'node:stream'
import {after, before, describe, it} from 'node:test'
import {isFpeerError} from '../errors.js'
import {positionalReader} from '../fs/local-source.js'
import type {AccessContext, FileSource} from '../transport.js'
import {FollowedFiles, PartFollow, followingSource} from './follow.js'

const SIZE = 64 << 10

/** A part file of SIZE bytes' worth of room: a writer's descriptor and a reader's own, as fetch.ts opens them. */
function part(dir: string, name: string): {write: (from: number, to: number) => void; readFd: number; closeWriter: () => void} {
  const file = path.join(dir, name)
  const w = openSync(file, 'wx')
  const readFd = openSync(file, 'r')
  return {
    write: (from, to) => {
      const buf = Buffer.alloc(to - from)
      for (let i = 0; i < buf.length; i++) buf[i] = (from + i) & 0xff
      writeSync(w, buf, 0, buf.length, from)
    },
    readFd,
    closeWriter: () => closeSync(w),
  }
}

/** Collects a stream; resolves with its bytes or rejects with its error. */
async function drain(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

const expected = (from: number, to: number) => {
  const b = Buffer.alloc(to - from)
  for (let i = 0; i < b.length; i++) b[i] = (from + i) & 0xff
  return b
}

/** Whether `fd` is still open in this process. */
const isOpen = (fd: number) => {
  try {
    fstatSync(fd)
    return true
  } catch {
    return false
  }
}

/** Resolves on the next turn of the event loop after pending I/O callbacks. */
const turn = () => new Promise((r) => setImmediate(r))

describe('PartFollow: one attempt’s part, read as it is written', {timeout: 30_000}, () => {
  let dir: string
  let n = 0
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fpeer-follow-'))
  })
  after(async () => {
    await rm(dir, {recursive: true, force: true})
  })

  it('yields only what was written, waits for more, and ends at the size once it landed; the descriptor is closed after', async () => {
    const p = part(dir, `p${++n}`)
    const follow = new PartFollow(p.readFd, SIZE, 0)
    const stream = follow.open()
    const got: Buffer[] = []
    let total = 0
    stream.on('data', (c: Buffer) => {
      got.push(c)
      total += c.length
    })
    const ended = new Promise((r) => stream.once('end', r))
    // Bytes beyond `written` are on disk but not reported yet: nothing of them is read.
    p.write(0, 20_000)
    await turn()
    await turn()
    assert.equal(total, 0)
    follow.progress(10_000)
    while (total < 10_000) await turn()
    await turn()
    await turn()
    assert.equal(total, 10_000, 'no byte past `written`')
    p.write(20_000, SIZE)
    follow.progress(SIZE)
    follow.landed()
    await ended
    assert.deepEqual(Buffer.concat(got), expected(0, SIZE))
    p.closeWriter()
    while (isOpen(p.readFd)) await turn()
  })

  it('a range reads from its start to its end, and a resumed part starts with its prefix readable', async () => {
    const p = part(dir, `p${++n}`)
    p.write(0, 30_000)
    const follow = new PartFollow(p.readFd, SIZE, 30_000)
    const first = drain(follow.open(1000, 29_999))
    assert.deepEqual(await first, expected(1000, 30_000))
    const rest = drain(follow.open(30_000))
    p.write(30_000, SIZE)
    follow.progress(SIZE)
    assert.deepEqual(await rest, expected(30_000, SIZE))
    follow.landed()
    p.closeWriter()
    while (isOpen(p.readFd)) await turn()
  })

  it('a failed attempt fails its readers with E_CONNECTION_LOST, and nobody can open it after', async () => {
    const p = part(dir, `p${++n}`)
    const follow = new PartFollow(p.readFd, SIZE, 0)
    const reading = drain(follow.open())
    p.write(0, 4096)
    follow.progress(4096)
    follow.failed(new Error('disk gone'))
    await assert.rejects(reading, (e: unknown) => isFpeerError(e, 'E_CONNECTION_LOST'))
    assert.throws(
      () => follow.open(),
      (e: unknown) => isFpeerError(e, 'E_CONNECTION_LOST'),
    )
    p.closeWriter()
    while (isOpen(p.readFd)) await turn()
  })

  it('a reader that goes away lets the descriptor go once the attempt is over; its positional reader reads into the caller’s buffer', async () => {
    const p = part(dir, `p${++n}`)
    const follow = new PartFollow(p.readFd, SIZE, 0)
    const stream = follow.open()
    const read = positionalReader(stream)
    assert.ok(read, 'a followed stream has a positional reader')
    p.write(0, 8192)
    follow.progress(8192)
    const buf = Buffer.alloc(SIZE)
    const got = await read(buf)
    assert.ok(got > 0 && got <= 8192)
    assert.deepEqual(buf.subarray(0, got), expected(0, got))
    // Waiting for bytes that never come, then destroyed: the wait ends.
    const waiting = read(Buffer.alloc(SIZE)).catch((e: unknown) => e)
    stream.destroy()
    assert.ok(isFpeerError(await waiting, 'E_INTERRUPTED'))
    assert.equal(isOpen(p.readFd), true, 'still writing: the descriptor stays for other readers')
    follow.landed()
    assert.equal(isOpen(p.readFd), false)
    p.closeWriter()
  })

  it('serves what was written while every thread of the pool is blocked: its reads do not queue behind the landing’s writes', async () => {
    // Each pool thread blocks in a read of an empty FIFO until a byte is written to it.
    const fifo = path.join(dir, `fifo${++n}`)
    execFileSync('mkfifo', [fifo])
    const pipeFd = openSync(fifo, constants.O_RDWR)
    const threads = Number(process.env.UV_THREADPOOL_SIZE) || 4
    let blocked = threads
    for (let i = 0; i < threads; i++) readCb(pipeFd, Buffer.alloc(1), 0, 1, null, () => void blocked--)
    const p = part(dir, `p${++n}`)
    const follow = new PartFollow(p.readFd, SIZE, 0)
    const stream = follow.open()
    try {
      p.write(0, SIZE)
      follow.progress(SIZE)
      // Through the pool, this read would wait for a thread until the finally below frees one.
      const read = positionalReader(stream)!
      const buf = Buffer.alloc(SIZE)
      let got = 0
      while (got < SIZE) got += await read(buf.subarray(got))
      assert.deepEqual(buf, expected(0, SIZE))
      assert.equal(blocked, threads, 'the pool was still blocked while the part was read')
    } finally {
      while (blocked > 0) {
        writeSync(pipeFd, 'x')
        await turn()
      }
      closeSync(pipeFd)
      stream.destroy()
      follow.landed()
      p.closeWriter()
    }
    while (isOpen(p.readFd)) await turn()
  })
})

describe('FollowedFiles: what the requester’s server reads while files are fetched', {timeout: 30_000}, () => {
  let dir: string
  let n = 0
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fpeer-followed-'))
  })
  after(async () => {
    await rm(dir, {recursive: true, force: true})
  })
  const entry = {path: 'big.bin', size: SIZE, sha256: 'a'.repeat(64), mtimeMs: 1_700_000_000_000}

  it('announces a path once, serves each attempt’s part, waits between attempts, and hands over to the folder once landed', async () => {
    const announced: string[] = []
    const files = new FollowedFiles((f) => announced.push(f.path))
    assert.equal(await files.open('big.bin'), undefined, 'not followed: read from the folder')
    const p1 = part(dir, `a${++n}`)
    const f1 = new PartFollow(p1.readFd, SIZE, 0)
    files.started(entry, f1)
    assert.deepEqual(files.stat('big.bin'), {size: SIZE, mtimeMs: entry.mtimeMs})
    const first = await files.open('big.bin')
    assert.ok(first)
    const firstRead = drain(first.stream)
    f1.failed()
    files.attemptFailed('big.bin')
    await assert.rejects(firstRead, (e: unknown) => isFpeerError(e, 'E_CONNECTION_LOST'))
    // Between attempts a read waits for the next one.
    let settled = false
    const second = files.open('big.bin').then((o) => {
      settled = true
      return o
    })
    await turn()
    assert.equal(settled, false)
    const p2 = part(dir, `a${++n}`)
    const f2 = new PartFollow(p2.readFd, SIZE, 0)
    files.started(entry, f2)
    const opened = await second
    assert.ok(opened)
    const secondRead = drain(opened.stream)
    p2.write(0, SIZE)
    f2.progress(SIZE)
    f2.landed()
    files.landed('big.bin')
    assert.deepEqual(await secondRead, expected(0, SIZE))
    assert.deepEqual(announced, ['big.bin'], 'announced once, at the first attempt')
    assert.equal(await files.open('big.bin'), undefined, 'landed: read from the folder')
    assert.equal(files.offered('big.bin'), true)
    files.end()
    p1.closeWriter()
    p2.closeWriter()
  })

  it('a read waiting when the fetch ends without the file is E_NOT_FOUND; a part started after the end is failed at once', async () => {
    const files = new FollowedFiles(() => {})
    const p1 = part(dir, `b${++n}`)
    const f1 = new PartFollow(p1.readFd, SIZE, 0)
    files.started(entry, f1)
    f1.failed()
    files.attemptFailed('big.bin')
    const waiting = files.open('big.bin')
    files.end()
    await assert.rejects(waiting, (e: unknown) => isFpeerError(e, 'E_NOT_FOUND'))
    const p2 = part(dir, `b${++n}`)
    const f2 = new PartFollow(p2.readFd, SIZE, 0)
    files.started(entry, f2)
    assert.throws(
      () => f2.open(),
      (e: unknown) => isFpeerError(e, 'E_CONNECTION_LOST'),
    )
    assert.equal(isOpen(p2.readFd), false)
    p1.closeWriter()
    p2.closeWriter()
  })

  it('followingSource serves a followed file to the host alone, and everything else from the folder', async () => {
    const calls: string[] = []
    const local: FileSource = {
      folders: async () => ['share'],
      list: async () => [],
      stat: async (_f, rel) => {
        calls.push(`stat ${rel}`)
        return {type: 'file', size: 1, mtimeMs: 1}
      },
      open: async (_f, rel) => {
        calls.push(`open ${rel}`)
        throw Object.assign(new Error('not here'), {code: 'E_NOT_FOUND'})
      },
    }
    const files = new FollowedFiles(() => {})
    const host: AccessContext = {address: '127.0.0.1', grant: 'host'}
    const other: AccessContext = {address: '127.0.0.9', grant: 'other'}
    const source = followingSource(
      local,
      'share',
      (who) => who.grant === 'host',
      () => files,
    )
    const p = part(dir, `c${++n}`)
    const f = new PartFollow(p.readFd, SIZE, 0)
    files.started(entry, f)
    assert.deepEqual(await source.stat('share', 'big.bin', host), {type: 'file', size: SIZE, mtimeMs: entry.mtimeMs})
    const opened = await source.open('share', 'big.bin', host)
    assert.equal(opened.size, SIZE)
    opened.stream.destroy()
    // Anyone else, another folder, another path: the folder's own source decides.
    await source.stat('share', 'big.bin', other)
    await assert.rejects(source.open('share', 'big.bin', other))
    await assert.rejects(source.open('elsewhere', 'big.bin', host))
    await assert.rejects(source.open('share', 'small.txt', host))
    assert.deepEqual(calls, ['stat big.bin', 'open big.bin', 'open big.bin', 'open small.txt'])
    f.failed()
    files.end()
    p.closeWriter()
    while (isOpen(p.readFd)) await turn()
  })
})
