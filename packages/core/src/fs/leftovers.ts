// Removes what a killed fpeer process left in a shared folder: staging folders and part files.
import {lstat, opendir, rm, unlink} from 'node:fs/promises'
import path from 'node:path'
import {PART_PREFIX} from './safe-path.js'

/** When this process started (ms since the epoch): nothing older can be one of its own writes. */
export const PROCESS_START_MS = Date.now() - process.uptime() * 1000

export interface Leftovers {
  /** Relative paths removed. */
  removed: string[]
  bytes: number
}

/**
 * Walks `root` (never following a symlink) and removes every `.fpeer-part-*` file and
 * `.fpeer-part-staging-*` folder last changed before `before`: a kill -9 during an update or
 * a fetch leaves them, and nothing else would ever remove them. Anything newer may belong
 * to a process running now (a `fpeer request`, a push) and is left alone. Best effort: a
 * name that cannot be removed is skipped.
 */
export async function removeLeftovers(root: string, before = PROCESS_START_MS): Promise<Leftovers> {
  const out: Leftovers = {removed: [], bytes: 0}
  // Bounded: a walk visits each directory once; symlinked directories are not entered.
  const todo = ['']
  while (todo.length > 0) {
    const rel = todo.pop()!
    const dir = await opendir(path.join(root, rel)).catch(() => undefined)
    if (!dir) continue
    for await (const ent of dir) {
      const r = rel === '' ? ent.name : `${rel}/${ent.name}`
      const abs = path.join(root, r)
      if (!ent.name.startsWith(PART_PREFIX)) {
        if (ent.isDirectory()) todo.push(r)
        continue
      }
      const st = await lstat(abs).catch(() => undefined)
      if (!st || st.mtimeMs >= before) continue
      if (st.isDirectory()) {
        const size = await treeBytes(abs)
        if (
          await rm(abs, {recursive: true, force: true}).then(
            () => true,
            () => false,
          )
        ) {
          out.removed.push(r)
          out.bytes += size
        }
      } else if (
        st.isFile() &&
        (await unlink(abs).then(
          () => true,
          () => false,
        ))
      ) {
        out.removed.push(r)
        out.bytes += st.size
      }
    }
  }
  return out
}

async function treeBytes(dir: string): Promise<number> {
  let n = 0
  const d = await opendir(dir).catch(() => undefined)
  if (!d) return 0
  for await (const ent of d) {
    const abs = path.join(dir, ent.name)
    if (ent.isDirectory()) n += await treeBytes(abs)
    else if (ent.isFile()) n += (await lstat(abs).catch(() => ({size: 0}))).size
  }
  return n
}
