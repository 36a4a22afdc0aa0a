// Small waits and looks the in-process tests share: poll for a condition, list a tree.
import {readdir} from 'node:fs/promises'
import path from 'node:path'

/** Waits until `cond()` holds, polling; bounded, so a broken behaviour fails the test instead of hanging it. */
export async function until(cond: () => boolean, what: string, limitMs = 30_000): Promise<void> {
  const end = Date.now() + limitMs
  while (!cond()) {
    if (Date.now() > end) throw new Error(`never happened: ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** The files below `dir` (not directories), relative and sorted: what a test compares trees by. */
export async function fileTree(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, {withFileTypes: true, recursive: true}))
    if (!e.isDirectory()) out.push(path.relative(dir, path.join(e.parentPath, e.name)))
  return out.sort()
}
