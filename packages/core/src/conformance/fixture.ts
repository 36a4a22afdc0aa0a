// The conformance suite's test data: a served folder full of hostile names, big and empty files, and tree comparison.
import {createHash} from 'node:crypto'
import {mkdir, mkdtemp, open, readdir, rm, symlink, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {scanFolder} from '../fs/scan.js'
import type {FileEntry} from '../wire/types.js'

/** The folder name the suite serves its tree under. */
export const FOLDER = 'share'

/** A name of the hostile set that every transport must carry: the one cases use when the name is not the point. */
export const NAME = 'with space.txt'

/**
 * Names that break naive URL building, shell quoting, FTP command parsing or Unicode
 * handling. The NFC and NFD spellings of "café" are two different files on Linux, and a
 * transport that normalises names would serve one in place of the other.
 */
export const HOSTILE_NAMES: readonly string[] = [
  NAME,
  '  two leading spaces.txt',
  'caf\u00e9.txt',
  'cafe\u0301.txt',
  '#hash.txt',
  '100%.txt',
  '%20literal.txt',
  'what?.txt',
  "it's.txt",
  'say "hi".txt',
  '-leading-dash.txt',
  'a+b&c=d;e.txt',
  'emoji-\u{1F600}.txt',
  `${'n'.repeat(251)}.txt`,
  'sub dir/nested #1/file %41.txt',
  `${Array.from({length: 20}, (_, i) => `d${String(i + 1).padStart(2, '0')}`).join('/')}/deep.txt`,
]

export const EMPTY_FILE = 'empty.bin'
export const LARGE_FILE = 'large.bin'
/** A file whose open the fault-injecting sources fail or cut short. */
export const FLAKY_FILE = 'flaky.bin'
export const SECRET_FILE = 'secret.txt'
export const RESUME_FILE = 'resume.bin'
/** A symlink inside the folder pointing at a file outside it. */
export const ESCAPE_LINK = 'escape.txt'
export const MANY_DIR = 'many'
export const OUTSIDE_CONTENT = 'outside the shared folder: must never be served\n'

/** A file of the fixture: its size and hash are always known. */
export type FixtureEntry = FileEntry & {size: number; sha256: string}

export interface Fixture {
  /** The temp directory holding everything; removed by `dispose()`. */
  base: string
  /** The served folder's directory. */
  root: string
  /** Every regular file in the folder, with sizes and hashes, by path. */
  entries: Map<string, FixtureEntry>
  /** A fresh empty directory to land files in. */
  makeDest(): Promise<string>
  dispose(): Promise<void>
}

/**
 * Deterministic, fast pseudo-random bytes: SHA-256 in counter mode keyed by `seed`.
 * Content differs at every offset, so a resumed or reordered transfer shows up as a wrong hash.
 */
export function pseudoRandom(seed: string, bytes: number): Buffer {
  const out = Buffer.allocUnsafe(bytes)
  for (let off = 0, i = 0; off < bytes; off += 32, i++) {
    createHash('sha256')
      .update(`${seed}:${i}`)
      .digest()
      .copy(out, off, 0, Math.min(32, bytes - off))
  }
  return out
}

async function writeLarge(file: string, bytes: number): Promise<void> {
  const block = pseudoRandom('large', 1 << 20)
  const fh = await open(file, 'w')
  try {
    // Repeating one random block is fast; stamping each block's index keeps every MiB distinct.
    for (let off = 0, n = 0; off < bytes; off += block.length, n++) {
      block.writeUInt32BE(n, 0)
      await fh.write(block, 0, Math.min(block.length, bytes - off))
    }
  } finally {
    await fh.close()
  }
}

async function put(root: string, rel: string, data: string | Buffer): Promise<void> {
  const abs = path.join(root, ...rel.split('/'))
  await mkdir(path.dirname(abs), {recursive: true})
  await writeFile(abs, data)
}

/** Builds the served tree in a fresh temp directory. */
export async function createFixture(options: {largeBytes: number; manyFiles: number}): Promise<Fixture> {
  const base = await mkdtemp(path.join(tmpdir(), 'fpeer-conformance-'))
  const root = path.join(base, FOLDER)
  await mkdir(root)
  for (const [i, name] of HOSTILE_NAMES.entries()) await put(root, name, `file ${i}: ${name}\n`)
  await put(root, EMPTY_FILE, '')
  await put(root, SECRET_FILE, 'the source refuses to read this\n')
  await put(root, FLAKY_FILE, pseudoRandom('flaky', 3 * (1 << 20) + 11))
  await put(root, RESUME_FILE, pseudoRandom('resume', (1 << 20) + 7))
  await writeLarge(path.join(root, LARGE_FILE), options.largeBytes)
  await mkdir(path.join(root, MANY_DIR))
  for (let i = 0; i < options.manyFiles; i++) {
    await writeFile(path.join(root, MANY_DIR, `f${String(i).padStart(5, '0')}.txt`), `small file ${i}\n`.repeat((i % 7) + 1))
  }
  await mkdir(path.join(base, 'outside'))
  await writeFile(path.join(base, 'outside', 'secret'), OUTSIDE_CONTENT)
  await symlink(path.join(base, 'outside', 'secret'), path.join(root, ESCAPE_LINK))

  const entries = new Map<string, FixtureEntry>()
  for (const f of await scanFolder(root)) entries.set(f.path, {path: f.path, size: f.size, sha256: f.sha256, mtimeMs: f.mtimeMs})
  let dests = 0
  return {
    base,
    root,
    entries,
    async makeDest() {
      const dir = path.join(base, `dest-${++dests}`)
      await mkdir(dir)
      return dir
    },
    async dispose() {
      await rm(base, {recursive: true, force: true})
    },
  }
}

/** Every regular file under `dir`, as `/`-separated relative paths (temp files included, so leftovers show). */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const ent of await readdir(dir, {recursive: true, withFileTypes: true})) {
    if (!ent.isFile()) continue
    out.push(path.relative(dir, path.join(ent.parentPath, ent.name)).split(path.sep).join('/'))
  }
  return out.sort()
}

/** True when both files hold exactly the same bytes; reads in chunks so large files stay cheap. */
export async function sameBytes(a: string, b: string): Promise<boolean> {
  const [fa, fb] = await Promise.all([open(a, 'r'), open(b, 'r')])
  try {
    const [sa, sb] = await Promise.all([fa.stat(), fb.stat()])
    if (sa.size !== sb.size) return false
    const ba = Buffer.allocUnsafe(1 << 20)
    const bb = Buffer.allocUnsafe(1 << 20)
    for (let pos = 0; pos < sa.size; ) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, ba.length, pos), fb.read(bb, 0, bb.length, pos)])
      if (ra.bytesRead !== rb.bytesRead || ra.bytesRead === 0) return false
      if (!ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false
      pos += ra.bytesRead
    }
    return true
  } finally {
    await Promise.all([fa.close(), fb.close()])
  }
}
