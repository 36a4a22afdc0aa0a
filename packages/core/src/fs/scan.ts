// Walks a shared folder and hashes its files, reusing hashes whose size, mtime and inode have not changed.
import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {lstat, opendir} from 'node:fs/promises'
import path from 'node:path'
import {PART_PREFIX} from './safe-path.js'

/** One file of a folder's file structure. */
export interface IndexedFile {
  path: string
  size: number
  mtimeMs: number
  sha256: string
  ino?: number
}

export async function sha256File(absPath: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(absPath, {highWaterMark: 1 << 20})) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Names fpeer never shares: its temp files and its conflict/bookkeeping folder. */
export function isIgnoredName(name: string): boolean {
  return name.startsWith(PART_PREFIX) || name === '.fpeer'
}

async function* walk(root: string, rel: string): AsyncGenerator<{rel: string; abs: string}> {
  const dir = await opendir(path.join(root, rel), {bufferSize: 256})
  const subdirs: string[] = []
  for await (const ent of dir) {
    if (isIgnoredName(ent.name)) continue
    const r = rel === '' ? ent.name : `${rel}/${ent.name}`
    if (ent.isDirectory()) subdirs.push(r)
    else if (ent.isFile()) yield {rel: r, abs: path.join(root, r)}
    // Symlinks, sockets and devices are not shared: following links could leave the folder.
  }
  for (const d of subdirs.sort()) yield* walk(root, d)
}

/**
 * Scans `root` and returns its files sorted by path. `previous` supplies known hashes:
 * a file whose size, mtime and inode match is not read again. Hashing runs `concurrency` at a time.
 */
export async function scanFolder(root: string, previous?: Map<string, IndexedFile>, concurrency = 8): Promise<IndexedFile[]> {
  const out: IndexedFile[] = []
  const pending = new Set<Promise<void>>()
  for await (const {rel, abs} of walk(root, '')) {
    const task = (async () => {
      let st
      try {
        st = await lstat(abs)
      } catch {
        return // vanished while scanning
      }
      if (!st.isFile()) return
      const old = previous?.get(rel)
      if (old && old.size === st.size && old.mtimeMs === Math.trunc(st.mtimeMs) && (old.ino === undefined || old.ino === st.ino)) {
        out.push({...old, ino: st.ino})
        return
      }
      try {
        out.push({path: rel, size: st.size, mtimeMs: Math.trunc(st.mtimeMs), sha256: await sha256File(abs), ino: st.ino})
      } catch {
        // Unreadable or vanished: not part of the structure until it can be read.
      }
    })()
    pending.add(task)
    void task.finally(() => pending.delete(task))
    if (pending.size >= concurrency) await Promise.race(pending)
  }
  await Promise.all(pending)
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
}
