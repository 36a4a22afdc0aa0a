// Hashing one file for a scan, the same way on the main thread and in a scan thread (fs/scan-pool.ts).
import {createHash} from 'node:crypto'
import {type Stats, closeSync, constants, fstatSync, openSync, read, readSync} from 'node:fs'

/** What a scan learns of one file: its state as opened, and the SHA-256 of exactly `size` bytes. */
export interface HashedFile {
  size: number
  mtimeMs: number
  ino: number
  /** st_mode, for the kept exec bit. */
  mode: number
  sha256: string
}

const {O_RDONLY, O_NOFOLLOW, O_NONBLOCK} = constants

/**
 * Opens `abs` without following a link at its last step (a file swapped for a link after the
 * walk saw it is not read through it) and without blocking on a FIFO, and hashes what the
 * descriptor holds: the size, times and inode are the opened file's own (fstat), so the
 * record and its hash describe one file. Bytes are read up to the size fstat gave; a file
 * that shrank meanwhile is recorded at the length read (its mtime moved, so the next scan
 * reads it again). Undefined: gone, unreadable, or not a regular file. `buf` is the
 * caller's, reused from file to file.
 */
export function hashFile(abs: string, buf: Buffer): HashedFile | undefined {
  let fd: number
  try {
    fd = openSync(abs, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
  } catch {
    return undefined
  }
  try {
    const st = fstatSync(fd)
    if (!st.isFile()) return undefined
    const hash = createHash('sha256')
    let got = 0
    while (got < st.size) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, st.size - got), null)
      if (n === 0) break
      hash.update(n === buf.length ? buf : buf.subarray(0, n))
      got += n
    }
    return {size: got, mtimeMs: Math.trunc(st.mtimeMs), ino: st.ino, mode: st.mode, sha256: hash.digest('hex')}
  } catch {
    return undefined
  } finally {
    closeSync(fd)
  }
}

/** What hashSteady read: a size and hash that always describe the same bytes, and the file's state before reading. */
export interface SteadyHash {
  /** Bytes hashed: the size a version signed from this must carry. */
  size: number
  sha256: string
  /** The mtime fstat gave before the read (truncated to ms): a change during or after the read moves it, so the next scan reads the file again. */
  mtimeMs: number
  ino: number
  mode: number
  /** The file held still while read: same size and times before and after, and exactly that many bytes. */
  steady: boolean
}

/** Bytes per read of a file hashed in pieces (256 KiB and up). */
const HASH_READ_BYTES = 1 << 20

/** One read into `buf` (at most `most` bytes) at `pos`; the number of bytes read. */
function readAt(fd: number, buf: Buffer, pos: number, most = buf.length): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, 0, Math.min(most, buf.length), pos, (err, n) => (err ? reject(err) : resolve(n))))
}

/** Reads at most `before.size + 1` bytes from the start of `fd`: one more than fstat said shows a file that grew. */
async function hashOpen(fd: number, before: Stats): Promise<{size: number; sha256: string}> {
  const hash = createHash('sha256')
  let size = 0
  if (before.size < 256 * 1024) {
    const buf = Buffer.allocUnsafe(before.size + 1)
    for (let n = -1; size < buf.length && n !== 0; size += n) {
      n = readSync(fd, buf, size, buf.length - size, size)
    }
    hash.update(buf.subarray(0, size))
  } else {
    // Two buffers made once per file and reused: the next read runs in libuv's pool while this
    // one is hashed. A fresh buffer per read (what a read stream makes) is faulted in page by
    // page each time, and where malloc maps large blocks (MALLOC_MMAP_THRESHOLD_) is a map and
    // an unmap per MiB: `fpeer share` of one 512 MiB file took 2-3 times as long that way.
    const limit = before.size + 1
    const bufs = [Buffer.allocUnsafeSlow(Math.min(HASH_READ_BYTES, limit)), Buffer.allocUnsafeSlow(Math.min(HASH_READ_BYTES, limit))] as const
    let k = 0
    let pending = readAt(fd, bufs[0], 0)
    for (;;) {
      const n = await pending
      if (n === 0) break
      const buf = bufs[k]
      size += n
      pending = size < limit ? readAt(fd, bufs[k ^ 1], size, limit - size) : Promise.resolve(0)
      hash.update(n === buf.length ? buf : buf.subarray(0, n))
      k ^= 1
    }
  }
  return {size, sha256: hash.digest('hex')}
}

/**
 * Hashes a file that a writer may be changing, for a version to be signed from it: `open`
 * gives a descriptor (opened without following a link) and its fstat. The size returned is
 * always the number of bytes hashed, never a size seen at another moment: a version whose
 * size and hash describe different contents can be fetched by no peer, and keeps being
 * offered. A file that did not hold still is read again, up to `tries` times; after that
 * what was read last is returned with `steady` false (the caller records it under the mtime
 * seen before that read, so the next scan reads the file again). Undefined when `open` throws
 * (gone, not a regular file, unreadable).
 */
export async function hashSteady(open: () => {fd: number; st: Stats}, tries = 3): Promise<SteadyHash | undefined> {
  for (let attempt = 1; ; attempt++) {
    let opened
    try {
      opened = open()
    } catch {
      return undefined
    }
    const {fd, st} = opened
    try {
      const {size, sha256} = await hashOpen(fd, st)
      const after = fstatSync(fd)
      const steady = size === st.size && after.size === st.size && after.mtimeMs === st.mtimeMs && after.ctimeMs === st.ctimeMs
      if (steady || attempt >= tries) return {size, sha256, mtimeMs: Math.trunc(st.mtimeMs), ino: st.ino, mode: st.mode, steady}
    } catch {
      return undefined
    } finally {
      closeSync(fd)
    }
  }
}

/** hashSteady of a path: opened without following a link at its last step, never blocking on a FIFO. */
export function hashSteadyPath(abs: string, tries = 3): Promise<SteadyHash | undefined> {
  return hashSteady(() => {
    const fd = openSync(abs, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
    try {
      const st = fstatSync(fd)
      if (!st.isFile()) throw new Error('not a regular file')
      return {fd, st}
    } catch (err) {
      closeSync(fd)
      throw err
    }
  }, tries)
}
