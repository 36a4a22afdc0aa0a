// The Lander's worker thread (fs/lander.ts): lands checked small files with the same no-follow system calls as fetch's landSmall, off the main thread.
import {randomBytes} from 'node:crypto'
import {closeSync, constants, fstatSync, futimesSync, openSync, renameSync, unlinkSync, writeSync} from 'node:fs'
import {isMainThread, parentPort} from 'node:worker_threads'
import type {LandReply, LandRequest} from './lander.js'

const {O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW} = constants

/** Answers each request in order: every item landed, or why not (its part file removed). */
function serve(port: NonNullable<typeof parentPort>): void {
  // Part-name suffixes cut from one CSPRNG draw, as FolderDirs does.
  let pool = Buffer.alloc(0)
  let at = 0
  const suffix = () => {
    if (at + 8 > pool.length) {
      pool = randomBytes(4096)
      at = 0
    }
    at += 8
    return pool.toString('hex', at - 8, at)
  }
  port.on('message', (req: LandRequest) => {
    const data = Buffer.from(req.buf)
    const failures: LandReply['failures'] = []
    const landed: LandReply['landed'] = []
    req.items.forEach((it, i) => {
      let part: string | undefined
      let stat: LandReply['landed'][number] = null
      try {
        // O_EXCL|O_NOFOLLOW: a name that exists, a symlink included, is never opened.
        let fd: number | undefined
        for (let attempt = 0; fd === undefined; attempt++) {
          part = it.prefix + suffix()
          try {
            fd = openSync(`${it.base}/${part}`, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, it.mode)
          } catch (err) {
            part = undefined
            if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 4) throw err
          }
        }
        try {
          for (let off = 0; off < it.len; ) off += writeSync(fd, data, it.off + off, it.len - off)
          if (it.mtimeMs !== undefined) {
            try {
              futimesSync(fd, new Date(), new Date(it.mtimeMs))
            } catch {
              // keeping the peer's mtime is best effort
            }
          }
          // What landed, as the file itself says (the record takes it, not a later look at the path).
          try {
            const st = fstatSync(fd)
            stat = [st.size, Math.trunc(st.mtimeMs), st.ino]
          } catch {
            stat = null
          }
        } finally {
          closeSync(fd)
        }
        try {
          renameSync(`${it.base}/${part}`, `${it.base}/${it.name}`)
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code
          // A directory at the target: the peer's path is unsafe here (as renameOver says).
          if (code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'EEXIST') throw Object.assign(new Error('is a directory here'), {unsafe: true})
          throw err
        }
        landed[i] = stat
      } catch (err) {
        const e = err as NodeJS.ErrnoException & {unsafe?: boolean}
        failures.push({
          i,
          message: e.message,
          ...(e.unsafe ? {unsafe: true} : {}),
          ...(e.code ? {code: e.code} : {}),
          ...(e.syscall ? {syscall: e.syscall} : {}),
        })
        if (part !== undefined) {
          try {
            unlinkSync(`${it.base}/${part}`)
          } catch {
            // already gone
          }
        }
      }
    })
    // Every write is done: the buffer goes back to be filled again.
    port.postMessage({id: req.id, buf: req.buf, failures, landed} satisfies LandReply, [req.buf])
  })
}

if (!isMainThread && parentPort) serve(parentPort)
