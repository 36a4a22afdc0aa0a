// Hashing one file for a scan, the same way on the main thread and in a scan thread (fs/scan-pool.ts).
import {createHash} from 'node:crypto'
import {closeSync, constants, fstatSync, openSync, readSync} from 'node:fs'

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
