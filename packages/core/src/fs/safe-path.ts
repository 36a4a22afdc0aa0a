// Path safety: every relative path from the wire is checked here before it touches the disk.
import {realpathSync} from 'node:fs'
import {lstat, mkdir, realpath} from 'node:fs/promises'
import path from 'node:path'
import {FpeerError} from '../errors.js'

export const MAX_PATH_BYTES = 4096
export const MAX_SEGMENT_BYTES = 255
/** Most segments in one path: checked before any directory is made, so a list cannot make 1,000 levels. */
export const MAX_PATH_DEPTH = 64
/** Temp files fpeer writes while a download is in flight; never listed, never served. */
export const PART_PREFIX = '.fpeer-part-'
/** fpeer's own names: `.fpeer` and everything beginning `.fpeer-` (part files, staging folders). */
const RESERVED = '.fpeer'

/** Code points that render as nothing (U+00AD, U+200B-U+200F, U+2060, U+FEFF, variation selectors…). */
const INVISIBLE = /\p{Default_Ignorable_Code_Point}/gu

/**
 * The form of a name that reserved-name checks compare: invisible code points removed,
 * NFKC (so full-width `．ｆｐｅｅｒ` is `.fpeer`), lower case, twice so that folding one
 * cannot produce another foldable form.
 */
export function foldName(name: string): string {
  let s = name
  for (let i = 0; i < 2; i++) s = s.replace(INVISIBLE, '').normalize('NFKC').toLowerCase()
  return s
}

/** Is this one segment fpeer's own (in any case or Unicode spelling)? Never offered, never accepted. */
export function isReservedName(segment: string): boolean {
  // A name that begins with an ASCII character other than `.` keeps it first through every
  // fold (none of them removes, composes or lowers one into a `.`): not reserved. Most names.
  const first = segment.charCodeAt(0)
  if (first < 0x80 && first !== 0x2e) return false
  // Printable ASCII folds by lower case alone; the full fold only for the rest.
  const folded = /^[\x20-\x7E]*$/.test(segment) ? segment.toLowerCase() : foldName(segment)
  return folded === RESERVED || folded.startsWith(`${RESERVED}-`)
}

/**
 * Checks a relative path from a message and returns its segments. Refuses empty paths,
 * absolute paths, NUL, empty, `.` and `..` segments, over-long names, paths deeper than
 * MAX_PATH_DEPTH, and fpeer's own names in any spelling (isReservedName).
 */
export function checkRelativePath(rel: string): string[] {
  const bad = (why: string): never => {
    throw new FpeerError('E_PATH_UNSAFE', `unsafe path ${JSON.stringify(rel.slice(0, 120))}: ${why}`)
  }
  if (rel === '') bad('empty')
  if (rel.includes('\0')) bad('contains NUL')
  if (rel.startsWith('/')) bad('absolute')
  // A UTF-16 unit is at most 3 UTF-8 bytes: a short string needs no count.
  if (rel.length * 3 > MAX_PATH_BYTES && Buffer.byteLength(rel) > MAX_PATH_BYTES) bad(`longer than ${MAX_PATH_BYTES} bytes`)
  const segments = rel.split('/')
  if (segments.length > MAX_PATH_DEPTH) bad(`deeper than ${MAX_PATH_DEPTH} levels`)
  for (const seg of segments) {
    if (seg === '' || seg === '.' || seg === '..') bad(`segment ${JSON.stringify(seg)} not allowed`)
    if (seg.length * 3 > MAX_SEGMENT_BYTES && Buffer.byteLength(seg) > MAX_SEGMENT_BYTES) bad(`a name is longer than ${MAX_SEGMENT_BYTES} bytes`)
    if (isReservedName(seg)) bad(`${JSON.stringify(seg)} is reserved for fpeer`)
  }
  return segments
}

function isInside(root: string, target: string): boolean {
  return target === root || target.startsWith(root.endsWith(path.sep) ? root : root + path.sep)
}

/**
 * Resolves `rel` inside `rootReal` (already a realpath) for reading: the real path of the
 * target must stay inside the root, so a symlink that points out is refused.
 */
export async function resolveForRead(rootReal: string, rel: string): Promise<string> {
  const joined = joinInside(rootReal, rel)
  let real: string
  try {
    real = await realpath(joined)
  } catch (err) {
    return notReadable(rel, err)
  }
  return confined(rootReal, rel, real)
}

/**
 * resolveForRead without the thread pool: one realpath(3) call, for servers that resolve a
 * path per request (a few microseconds on a local disk). Same checks, same errors.
 */
export function resolveForReadSync(rootReal: string, rel: string): string {
  const joined = joinInside(rootReal, rel)
  let real: string
  try {
    real = realpathSync.native(joined)
  } catch (err) {
    return notReadable(rel, err)
  }
  return confined(rootReal, rel, real)
}

function joinInside(rootReal: string, rel: string): string {
  return rel === '' ? rootReal : path.join(rootReal, ...checkRelativePath(rel))
}

function notReadable(rel: string, err: unknown): never {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOENT' || code === 'ENOTDIR') throw new FpeerError('E_NOT_FOUND', `no such file: ${rel}`)
  throw new FpeerError('E_ACCESS', `cannot read ${rel}: ${(err as Error).message}`)
}

/** The real path must stay inside the root, so a symlink that points out is refused. */
function confined(rootReal: string, rel: string, real: string): string {
  if (!isInside(rootReal, real)) throw new FpeerError('E_PATH_UNSAFE', `${rel} leads outside the shared folder`)
  return real
}

/**
 * Prepares the parent directory of `rel` inside `rootReal` for writing: creates missing
 * directories and refuses any existing component that is not a real directory (a symlink,
 * a file). Returns the absolute target path. The caller writes a temp file beside it and renames.
 */
export async function prepareForWrite(rootReal: string, rel: string): Promise<string> {
  const segments = checkRelativePath(rel)
  let dir = rootReal
  for (const seg of segments.slice(0, -1)) {
    dir = path.join(dir, seg)
    let st
    try {
      st = await lstat(dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      try {
        await mkdir(dir)
        continue
      } catch (mkErr) {
        // Another worker created it between our lstat and mkdir: check what is there now.
        if ((mkErr as NodeJS.ErrnoException).code !== 'EEXIST') throw mkErr
        st = await lstat(dir)
      }
    }
    if (st.isSymbolicLink()) throw new FpeerError('E_PATH_UNSAFE', `${rel} goes through a symlink (${path.relative(rootReal, dir)})`)
    if (!st.isDirectory()) throw new FpeerError('E_PATH_UNSAFE', `${rel}: ${path.relative(rootReal, dir)} is not a directory`)
  }
  const target = path.join(dir, segments[segments.length - 1]!)
  try {
    const st = await lstat(target)
    if (st.isDirectory()) throw new FpeerError('E_PATH_UNSAFE', `${rel} is a directory here`)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  return target
}
