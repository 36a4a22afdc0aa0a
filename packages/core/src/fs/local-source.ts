// The FileSource core hands to transport servers: shared folders on local disk, confined and access-checked.
import {constants, createReadStream} from 'node:fs'
import {access, opendir, realpath, stat} from 'node:fs/promises'
import {Readable} from 'node:stream'
import path from 'node:path'
import {FpeerError} from '../errors.js'
import type {AccessContext, FileSource, FileStat} from '../transport.js'
import {isIgnoredName} from './scan.js'
import {checkRelativePath, resolveForRead} from './safe-path.js'

/** How the source finds a folder and decides who may read it. */
export interface FolderAccess {
  /** The folder's directory, or undefined when no such folder is served. */
  root(folder: string): string | undefined
  /** May `who` read this folder? */
  mayRead(folder: string, who: AccessContext): boolean
}

export class LocalFileSource implements FileSource {
  readonly #access: FolderAccess
  readonly #names: () => string[]
  readonly #realRoots = new Map<string, string>()

  constructor(access: FolderAccess, names: () => string[]) {
    this.#access = access
    this.#names = names
  }

  async folders(who: AccessContext): Promise<string[]> {
    return this.#names().filter((f) => this.#access.mayRead(f, who))
  }

  async #root(folder: string, who: AccessContext): Promise<string> {
    const dir = this.#access.root(folder)
    if (dir === undefined) throw new FpeerError('E_UNKNOWN_FOLDER', `no shared folder named ${JSON.stringify(folder)}`)
    if (!this.#access.mayRead(folder, who)) throw new FpeerError('E_ACCESS', `${who.address} may not read ${folder}`)
    let real = this.#realRoots.get(dir)
    if (!real) {
      real = await realpath(dir)
      this.#realRoots.set(dir, real)
    }
    return real
  }

  async #resolve(folder: string, rel: string, who: AccessContext): Promise<string> {
    const root = await this.#root(folder, who)
    if (rel !== '' && checkRelativePath(rel).some(isIgnoredName)) throw new FpeerError('E_NOT_FOUND', `no such file: ${rel}`)
    return resolveForRead(root, rel)
  }

  async stat(folder: string, rel: string, who: AccessContext): Promise<FileStat> {
    const abs = await this.#resolve(folder, rel, who)
    const st = await stat(abs)
    return {type: st.isDirectory() ? 'directory' : 'file', size: st.isDirectory() ? 0 : st.size, mtimeMs: Math.trunc(st.mtimeMs)}
  }

  async list(folder: string, rel: string, who: AccessContext): Promise<Array<FileStat & {name: string}>> {
    const abs = await this.#resolve(folder, rel, who)
    const root = await this.#root(folder, who)
    const out: Array<FileStat & {name: string}> = []
    let dir
    try {
      dir = await opendir(abs)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw new FpeerError('E_NOT_FOUND', `${rel} is not a directory`)
      throw new FpeerError('E_ACCESS', `cannot list ${rel}: ${(err as Error).message}`)
    }
    for await (const ent of dir) {
      if (isIgnoredName(ent.name)) continue
      const child = path.join(abs, ent.name)
      try {
        const real = await realpath(child)
        if (real !== root && !real.startsWith(root + path.sep)) continue
        const st = await stat(real)
        if (!st.isFile() && !st.isDirectory()) continue
        out.push({name: ent.name, type: st.isDirectory() ? 'directory' : 'file', size: st.isDirectory() ? 0 : st.size, mtimeMs: Math.trunc(st.mtimeMs)})
      } catch {
        // dangling link or vanished entry: not listed
      }
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  async open(folder: string, rel: string, who: AccessContext, range?: {start?: number; end?: number}) {
    const abs = await this.#resolve(folder, rel, who)
    const st = await stat(abs)
    if (!st.isFile()) throw new FpeerError('E_NOT_FOUND', `${rel} is not a file`)
    const start = range?.start ?? 0
    const end = Math.min(range?.end ?? st.size - 1, st.size - 1)
    if (end < start) {
      await access(abs, constants.R_OK).catch((err: Error) => {
        throw new FpeerError('E_ACCESS', `cannot read ${rel}: ${err.message}`)
      })
      return {stream: Readable.from([]), size: st.size, mtimeMs: Math.trunc(st.mtimeMs)}
    }
    // Open before resolving so that an unreadable file fails here, not mid-stream.
    const stream = createReadStream(abs, {start, end, highWaterMark: 1 << 20})
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve())
      stream.once('error', (err) => reject(new FpeerError((err as NodeJS.ErrnoException).code === 'EACCES' ? 'E_ACCESS' : 'E_NOT_FOUND', `cannot read ${rel}: ${err.message}`)))
    })
    return {stream, size: st.size, mtimeMs: Math.trunc(st.mtimeMs)}
  }
}
