// The scan's hashing, on a real disk: on this thread for a few files, in scan threads for many; what it refuses to read; what it reuses.
import assert from 'node:assert/strict'
import {createHash, randomBytes} from 'node:crypto'
import {execFileSync} from 'node:child_process'
import {fstatSync, mkdirSync, openSync, readdirSync, statSync, utimesSync, writeFileSync} from 'node:fs'
import {chmod, mkdir, mkdtemp, realpath, rm, symlink, unlink, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {hashFile, hashSteady, hashSteadyPath} from './scan-hash.js'
import {ScanPool} from './scan-pool.js'
import {RACY_MS, SMALL_FILE_BYTES, scanFolder, sha256File, stampVouches} from './scan.js'

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex')

/** Content that differs from file to file and in length (0 bytes included). */
const contentOf = (i: number) => Buffer.alloc(i % 97, `file ${i};`)

describe('scanFolder', () => {
  let work: string

  before(async () => {
    work = await realpath(await mkdtemp(path.join(os.tmpdir(), 'fpeer-scan-')))
  })

  after(async () => {
    await rm(work, {recursive: true, force: true})
  })

  /** `n` files in directories of 50, one large and one executable among them; returns the expected path → sha256. */
  async function folder(name: string, n: number): Promise<{root: string; expected: Map<string, string>}> {
    const root = path.join(work, name)
    const expected = new Map<string, string>()
    for (let i = 0; i < n; i++) {
      const rel = `d${String(Math.floor(i / 50)).padStart(3, '0')}/f${i}.bin`
      if (i % 50 === 0) mkdirSync(path.join(root, path.dirname(rel)), {recursive: true})
      writeFileSync(path.join(root, rel), contentOf(i))
      expected.set(rel, sha(contentOf(i)))
    }
    const big = Buffer.alloc(SMALL_FILE_BYTES * 3 + 17, 'big')
    await writeFile(path.join(root, 'big.bin'), big)
    expected.set('big.bin', sha(big))
    await writeFile(path.join(root, 'run.sh'), '#!/bin/sh\n')
    await chmod(path.join(root, 'run.sh'), 0o755)
    expected.set('run.sh', sha('#!/bin/sh\n'))
    return {root, expected}
  }

  /** Sets every file under `root` an hour back: written long before any scan. */
  async function age(root: string): Promise<void> {
    const old = new Date(Date.now() - 3_600_000)
    for (const e of readdirSync(root, {recursive: true, withFileTypes: true})) if (e.isFile()) utimesSync(path.join(e.parentPath, e.name), old, old)
  }

  for (const [label, n] of [
    ['a few files, hashed on this thread', 20],
    ['enough files for the scan threads', 1_300],
  ] as const) {
    it(`${label}: every file once, sorted, with its hash, size and exec bit`, async () => {
      const {root, expected} = await folder(`f${n}`, n)
      await symlink('/etc/passwd', path.join(root, 'd000', 'link'))
      execFileSync('mkfifo', [path.join(root, 'd000', 'fifo')])
      const skips = {symlinks: [] as string[]}
      const scan = await scanFolder(root, undefined, 8, skips)
      assert.equal(scan.length, expected.size)
      const paths = scan.map((f) => f.path)
      assert.deepEqual(paths, [...paths].sort())
      for (const f of scan) {
        assert.equal(f.sha256, expected.get(f.path), f.path)
        assert.equal(typeof f.ino, 'number')
      }
      assert.equal(scan.find((f) => f.path === 'big.bin')?.size, SMALL_FILE_BYTES * 3 + 17)
      assert.equal(scan.find((f) => f.path === 'run.sh')?.mode, 0o755)
      assert.equal(scan.find((f) => f.path === 'd000/f1.bin')?.mode, undefined)
      assert.deepEqual(skips.symlinks, ['d000/link'])
    })
  }

  it('scan threads that cannot start, or that fail a batch, leave the files to this thread: the scan is whole', async () => {
    const {root, expected} = await folder('threadless', 700)
    const check = (scan: Awaited<ReturnType<typeof scanFolder>>) => {
      assert.equal(scan.length, expected.size)
      for (const f of scan) assert.equal(f.sha256, expected.get(f.path), f.path)
    }
    check(
      await scanFolder(root, undefined, 8, undefined, undefined, () => {
        throw new Error('no threads here')
      }),
    )
    // The second batch sent fails (a thread that stopped): its files and those after it are hashed here.
    let sent = 0
    class Failing extends ScanPool {
      override async hash(paths: string[]) {
        if (++sent === 2) throw new Error('a scan thread stopped')
        return super.hash(paths)
      }
    }
    check(await scanFolder(root, undefined, 8, undefined, undefined, () => new Failing(1)))
    assert.ok(sent >= 2)
  })

  it('a pool whose thread ends settles what it held (answered, or E_INTERNAL) and fails every later batch', async () => {
    const pool = new ScanPool(1)
    const dir = path.join(work, 'pool')
    await mkdir(dir)
    await writeFile(path.join(dir, 'a'), 'a')
    assert.equal((await pool.hash([path.join(dir, 'a'), path.join(dir, 'none')]))[1], undefined)
    const held = pool.hash([path.join(dir, 'a')])
    await pool.close()
    // Whether the thread answered before it ended is a race; that the batch never hangs is not.
    assert.ok(
      ['answered', 'E_INTERNAL'].includes(
        await held.then(
          () => 'answered',
          (e: {code?: string}) => String(e.code),
        ),
      ),
    )
    await assert.rejects(pool.hash([path.join(dir, 'a')]), {code: 'E_INTERNAL'})
  })

  it('a rescan keeps the records of unchanged files (the same objects) and hashes again only what changed', async () => {
    const {root, expected} = await folder('again', 600)
    // Written long before the scan: none is racy (a file hashed while its mtime is now is read again).
    await age(root)
    const first = await scanFolder(root)
    assert.equal(first.filter((f) => f.racy).length, 0)
    const previous = new Map(first.map((f) => [f.path, f]))
    // Changed content and size; a file removed; a file added.
    await writeFile(path.join(root, 'd001/f60.bin'), 'changed')
    await unlink(path.join(root, 'd002/f100.bin'))
    await writeFile(path.join(root, 'd002/new.bin'), 'new')
    const second = await scanFolder(root, previous)
    const byPath = new Map(second.map((f) => [f.path, f]))
    assert.equal(byPath.get('d001/f60.bin')?.sha256, sha('changed'))
    assert.equal(byPath.get('d002/new.bin')?.sha256, sha('new'))
    assert.equal(byPath.has('d002/f100.bin'), false)
    assert.equal(second.length, expected.size)
    assert.equal(byPath.get('d000/f1.bin'), previous.get('d000/f1.bin'))
  })

  it('a file whose mtime is within RACY_MS of the scan is marked racy and hashed again by the next scan, threads or not', async () => {
    for (const n of [20, 1_300]) {
      const {root} = await folder(`racy${n}`, n)
      await age(root)
      const fresh = path.join(root, 'd000', 'fresh.bin')
      await writeFile(fresh, 'one\n')
      // A whole second, set exactly: a Date's milliseconds do not survive utimes (…564 came back …563.999).
      const tick = Math.floor(Date.now() / 1000)
      utimesSync(fresh, tick, tick)
      const first = await scanFolder(root)
      assert.deepEqual(
        first.filter((f) => f.racy).map((f) => f.path),
        ['d000/fresh.bin'],
      )
      // Rewritten in the same tick: stat says nothing changed; the mark makes the scan look.
      const before = statSync(fresh)
      await writeFile(fresh, 'two\n')
      utimesSync(fresh, tick, tick)
      const after = statSync(fresh)
      assert.deepEqual([after.size, after.mtimeMs, after.ino], [before.size, before.mtimeMs, before.ino], 'the stamp is the same')
      const previous = new Map(first.map((f) => [f.path, f]))
      const second = new Map((await scanFolder(root, previous)).map((f) => [f.path, f]))
      assert.equal(second.get('d000/fresh.bin')?.sha256, sha('two\n'), `${n} files`)
      assert.equal(second.get('d000/f1.bin'), previous.get('d000/f1.bin'), 'an old file is not read again')
    }
  })

  it('a file dated in the future is read once, then vouched for by its stamp until its date comes, threads or not', async () => {
    for (const n of [20, 1_300]) {
      const {root} = await folder(`future${n}`, n)
      await age(root)
      const future = path.join(root, 'd000', 'future.bin')
      await writeFile(future, 'from a clock ahead of ours\n')
      const tick = Math.floor(Date.now() / 1000) + 3600
      utimesSync(future, tick, tick)
      const first = new Map((await scanFolder(root)).map((f) => [f.path, f]))
      const rec = first.get('d000/future.bin')
      assert.equal(rec?.racy, true, 'racy: its date is not behind the read')
      // No write until now can have stamped an hour ahead: the record itself is kept, not read again.
      const second = new Map((await scanFolder(root, first)).map((f) => [f.path, f]))
      assert.equal(second.get('d000/future.bin'), rec, `${n} files: the future-dated file is not read again`)
      assert.equal(second.get('d000/future.bin')?.racy, true, 'and keeps its mark for when its date comes')
    }
    // Once its date is within RACY_MS of now, or past, a racy record no longer vouches; a plain one always does.
    const st = {size: 4, mtimeMs: 1_000_000_000_000, ino: 7}
    const racy = {path: 'f', size: 4, mtimeMs: st.mtimeMs, sha256: sha('x'), ino: 7, racy: true as const}
    assert.equal(stampVouches(racy, st, st.mtimeMs - RACY_MS - 1), true)
    assert.equal(stampVouches(racy, st, st.mtimeMs - RACY_MS), false)
    assert.equal(stampVouches(racy, st, st.mtimeMs + 10_000), false)
    const {racy: _, ...plain} = racy
    assert.equal(stampVouches(plain, st, st.mtimeMs + 10_000), true)
    assert.equal(stampVouches(plain, {...st, size: 5}, st.mtimeMs + 10_000), false)
    assert.equal(stampVouches(racy, {...st, ino: 8}, st.mtimeMs - 60_000), false)
  })

  it('hashFile reads no link, no FIFO and no directory, and records the opened file', async () => {
    const dir = path.join(work, 'single')
    await mkdir(dir)
    const buf = Buffer.alloc(8)
    await writeFile(path.join(dir, 'a'), 'hello, hashing in small slices')
    const got = hashFile(path.join(dir, 'a'), buf)
    assert.equal(got?.sha256, sha('hello, hashing in small slices'))
    assert.equal(got?.size, 30)
    await symlink('a', path.join(dir, 'to-a'))
    assert.equal(hashFile(path.join(dir, 'to-a'), buf), undefined)
    execFileSync('mkfifo', [path.join(dir, 'fifo')])
    assert.equal(hashFile(path.join(dir, 'fifo'), buf), undefined) // and did not block
    assert.equal(hashFile(dir, buf), undefined)
    assert.equal(hashFile(path.join(dir, 'missing'), buf), undefined)
    await assert.rejects(sha256File(path.join(dir, 'to-a')), {code: 'ELOOP'})
  })

  for (const [label, before, afterwards] of [
    ['small', 'x'.repeat(29), 'x'.repeat(29) + 'edit 1371\n'],
    ['large', Buffer.alloc(SMALL_FILE_BYTES + 5, 'a'), Buffer.alloc(SMALL_FILE_BYTES + 99, 'b')],
    ['truncated', 'a longer first content', ''],
    // Several reads of 1 MiB through the two alternating buffers, each MiB different: a piece hashed out of order or twice changes the hash.
    ['several reads', randomBytes(3 * 1024 * 1024 + 17), randomBytes(4 * 1024 * 1024 + 1001)],
  ] as const) {
    it(`hashSteady (${label}): a file written between the fstat and the read gives a size and hash of the same bytes, steady on a second read`, async () => {
      const dir = path.join(work, `steady-${label}`)
      await mkdir(dir)
      const file = path.join(dir, 'f')
      await writeFile(file, before)
      // Each open sees the file, then a writer changes it before the read: once (read again, steady), or every time.
      const openThenWrite = (times: number) => {
        let n = 0
        return () => {
          const fd = openSync(file, 'r')
          const st = fstatSync(fd)
          if (n++ < times) writeFileSync(file, n % 2 ? afterwards : before)
          return {fd, st}
        }
      }
      const once = await hashSteady(openThenWrite(1))
      assert.equal(once?.steady, true)
      assert.equal(once?.size, Buffer.byteLength(afterwards))
      assert.equal(once?.sha256, sha(afterwards))
      // Never still: what was read last, with a size that is that read's length (at most one byte past the fstat's size).
      await writeFile(file, before)
      const never = await hashSteady(openThenWrite(3), 3)
      assert.equal(never?.steady, false)
      const read = Buffer.from(afterwards).subarray(0, Buffer.byteLength(before) + 1)
      assert.equal(never?.size, read.length)
      assert.equal(never?.sha256, sha(read))
      // A quiet file: one read.
      assert.deepEqual(await hashSteadyPath(file).then((h) => [h?.steady, h?.size, h?.sha256]), [true, Buffer.byteLength(afterwards), sha(afterwards)])
    })
  }

  it('hashSteadyPath reads no link, no FIFO and no directory', async () => {
    const dir = path.join(work, 'steady-refuses')
    await mkdir(dir)
    await writeFile(path.join(dir, 'a'), 'a')
    await symlink('a', path.join(dir, 'to-a'))
    execFileSync('mkfifo', [path.join(dir, 'fifo')])
    for (const n of ['to-a', 'fifo', 'missing']) assert.equal(await hashSteadyPath(path.join(dir, n)), undefined, n)
    assert.equal(await hashSteadyPath(dir), undefined)
  })
})
