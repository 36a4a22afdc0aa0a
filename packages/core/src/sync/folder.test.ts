// FolderSync on real files: what a rescan turns into versions, and what apply may touch.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, utimes, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {describe, it} from 'node:test'
import {FpeerError, isFpeerError} from '../errors.js'
import {Identity, generateKeyPair} from '../identity.js'
import {Home} from '../store/home.js'
import {type ContentFetcher, FolderSync} from './folder.js'
import {conflictPath, signVersion} from './version.js'

/** A fresh folder `docs` and a home in a temp dir, the folder's FolderSync, and the temp dir removed after `fn`. */
async function inFolder(fn: (dir: string, sync: FolderSync, identity: Identity) => Promise<void>): Promise<void> {
  const base = await mkdtemp(path.join(os.tmpdir(), 'fpeer-sync-'))
  try {
    const dir = path.join(base, 'docs')
    await mkdir(dir)
    const identity = new Identity(generateKeyPair())
    await fn(dir, new FolderSync(new Home(path.join(base, 'home')), {name: 'docs', path: dir, open: false, allow: [], createdAt: ''}, identity), identity)
  } finally {
    await rm(base, {recursive: true, force: true})
  }
}

describe('FolderSync.rescan', () => {
  it('turns each deleted file into one deletion, also beside an old tombstone, and a quiet rescan into none', async () => {
    await inFolder(async (dir, sync) => {
      await mkdir(path.join(dir, 'd'))
      for (const n of ['a.txt', 'b.txt', 'd/c.txt']) await writeFile(path.join(dir, n), n)
      await sync.rescan()
      await rm(path.join(dir, 'b.txt'))
      assert.deepEqual(
        (await sync.rescan()).versions.map((v) => [v.path, v.deleted]),
        [['b.txt', true]],
      )
      assert.deepEqual((await sync.rescan()).versions, [], 'the tombstone is not deleted again')
      await rm(path.join(dir, 'd', 'c.txt'))
      await writeFile(path.join(dir, 'e.txt'), 'e')
      assert.deepEqual((await sync.rescan()).versions.map((v) => [v.path, v.deleted]).sort(), [
        ['d/c.txt', true],
        ['e.txt', false],
      ])
    })
  })

  it('records a folder’s first content as the original and later changes as signed versions', async () => {
    await inFolder(async (dir, sync) => {
      await writeFile(path.join(dir, 'a.txt'), 'one')
      assert.deepEqual((await sync.rescan()).versions, [])
      await writeFile(path.join(dir, 'a.txt'), 'two')
      const {versions} = await sync.rescan()
      assert.deepEqual(
        versions.map((v) => [v.path, v.deleted, v.lamport]),
        [['a.txt', false, 1]],
      )
    })
  })

  it('a same-size edit in the clock tick the rescan read the file is the next rescan’s version, in another process too; an old mtime is trusted', async () => {
    await inFolder(async (dir, sync, identity) => {
      const file = path.join(dir, 'a.txt')
      await writeFile(file, 'one\n')
      // A whole second, set exactly (a Date's milliseconds do not survive utimes).
      const tick = Math.floor(Date.now() / 1000)
      await utimes(file, tick, tick)
      assert.deepEqual((await sync.rescan()).versions, [])
      assert.equal((await sync.records()).get('a.txt')?.racy, true, 'read while its mtime was now')
      // A write in the same tick: same inode, same size, same mtime (set back here, as a coarse clock leaves it).
      const before = await stat(file)
      await writeFile(file, 'two\n')
      await utimes(file, tick, tick)
      const after = await stat(file)
      assert.deepEqual([after.size, after.mtimeMs, after.ino], [before.size, before.mtimeMs, before.ino], 'the stamp is the same')
      // Another process (`fpeer push`): the mark is in the journal.
      const again = new FolderSync(new Home(path.join(path.dirname(dir), 'home')), sync.folder, identity)
      const {versions} = await again.rescan()
      assert.deepEqual(
        versions.map((v) => [v.path, v.sha256]),
        [['a.txt', createHash('sha256').update('two\n').digest('hex')]],
      )
      // Aged: read again, the same content, and the mark is gone from the record.
      const old = new Date(Date.now() - 3_600_000)
      await utimes(file, old, old)
      assert.deepEqual((await again.rescan()).versions, [])
      assert.equal((await again.records()).get('a.txt')?.racy, undefined)
      // From now on size, mtime and inode vouch for it (no read): what rsync’s quick check and git trust too.
      await writeFile(file, 'six\n')
      await utimes(file, old, old)
      assert.deepEqual((await again.rescan()).versions, [])
    })
  })

  it('a version of ours whose size is not its content’s (signed from a stat and a read of different moments) is replaced at the next rescan', async () => {
    await inFolder(async (dir, sync, identity) => {
      await writeFile(path.join(dir, 'a.txt'), 'one')
      await sync.rescan()
      const content = 'peer 18 file 645\nedit 1371\n'
      await writeFile(path.join(dir, 'a.txt'), content)
      const sha256 = createHash('sha256').update(content).digest('hex')
      // What a writer's truncate-then-write between an lstat and a hash used to leave: size 0, the hash of the whole content.
      const broken = signVersion('docs', {path: 'a.txt', deleted: false, sha256, size: 0, mtimeMs: 1, lamport: 5, vv: {[identity.id.compact]: 5}}, identity)
      await sync.adopt([{entry: {path: 'a.txt', sha256, size: 0, mtimeMs: 1}, version: broken}])
      assert.equal((await sync.records()).get('a.txt')?.version?.size, 0)
      const {versions} = await sync.rescan()
      assert.deepEqual(
        versions.map((v) => [v.path, v.size, v.sha256, v.lamport > 5]),
        [['a.txt', content.length, sha256, true]],
      )
      assert.deepEqual((await sync.rescan()).versions, [], 'once mended, the next rescan has nothing to do')
    })
  })

  it('files added to a folder that was shared empty become versions too', async () => {
    await inFolder(async (dir, sync) => {
      assert.deepEqual((await sync.rescan()).versions, [])
      await writeFile(path.join(dir, 'new.txt'), 'hello')
      assert.deepEqual(
        (await sync.rescan()).versions.map((v) => v.path),
        ['new.txt'],
      )
    })
  })
})

describe('FolderSync.rescan of the paths the watcher named', () => {
  /** A small seeded generator: a failing round can be run again as it was. */
  function rng(seed: number): (n: number) => number {
    let x = seed >>> 0 || 1
    return (n) => {
      x ^= x << 13
      x >>>= 0
      x ^= x >>> 17
      x ^= x << 5
      x >>>= 0
      return x % n
    }
  }
  const sorted = (a: readonly string[] | undefined) => [...(a ?? [])].sort()

  it('finds what a walk of the whole folder finds: 40 rounds of edits, deletions, new and emptied directories, links and renames', async () => {
    const seed = Number(process.env.FPEER_PARTIAL_SEED ?? 20261130)
    const pick = rng(seed)
    await inFolder(async (dir, sync) => {
      const abs = (p: string) => path.join(dir, p)
      for (const d of ['a/b', 'c', 'e/f/g']) await mkdir(abs(d), {recursive: true})
      for (const f of ['x.txt', 'a/1.txt', 'a/b/2.txt', 'c/3.txt', 'e/f/g/4.txt']) await writeFile(abs(f), f)
      await sync.rescan()
      let files = ['x.txt', 'a/1.txt', 'a/b/2.txt', 'c/3.txt', 'e/f/g/4.txt']
      let n = 0
      for (let round = 0; round < 40; round++) {
        // What a watcher would name: the entry in the directory where each change happened.
        const named = new Set<string>()
        for (let k = 0; k < 1 + pick(3); k++) {
          n++
          const op = pick(7)
          const some = files.length ? files[pick(files.length)]! : undefined
          if (op === 0 || !some) {
            const d = ['', 'a', 'a/b', 'c', `new${n}`, `new${n}/deep`][pick(6)]!
            const f = d ? `${d}/n${n}.txt` : `n${n}.txt`
            const top = d.startsWith('new') ? `new${n}` : f
            await mkdir(path.dirname(abs(f)), {recursive: true})
            await writeFile(abs(f), `${n}`)
            files.push(f)
            named.add(top)
          } else if (op === 1) {
            await writeFile(abs(some), `edit ${n}`)
            named.add(some)
          } else if (op === 2) {
            await rm(abs(some))
            files = files.filter((f) => f !== some)
            named.add(some)
          } else if (op === 3) {
            const to = `${path.posix.dirname(some) === '.' ? '' : `${path.posix.dirname(some)}/`}r${n}.txt`
            await rename(abs(some), abs(to))
            files = files.map((f) => (f === some ? to : f))
            named.add(some).add(to)
          } else if (op === 4) {
            const d = `${['a', 'c', 'e'][pick(3)]}/empty${n}`
            await mkdir(abs(d), {recursive: true})
            named.add(d)
          } else if (op === 5) {
            const top = some.split('/')[0]!
            if (top === some) continue
            await rm(abs(top), {recursive: true, force: true})
            files = files.filter((f) => !f.startsWith(`${top}/`))
            named.add(top)
          } else {
            const l = `link${n}`
            await symlink(abs(some), abs(l))
            named.add(l)
          }
        }
        const partial = sync.partialScans
        sync.dirty = () => [...named]
        const seen = await sync.rescan()
        assert.equal(sync.partialScans, partial + 1, `round ${round} (seed ${seed}) looked at the named paths only`)
        const skips = sync.lastSkips
        // A walk of everything right after: nothing left to find, and the same links and empty directories.
        sync.dirty = () => undefined
        const again = await sync.rescan()
        assert.deepEqual(
          again.versions.map((v) => [v.path, v.deleted]),
          [],
          `round ${round} (seed ${seed}): the partial rescan missed what a whole one found`,
        )
        assert.equal(sync.partialScans, partial + 1)
        assert.deepEqual(sorted(skips.emptyDirs), sorted(sync.lastSkips.emptyDirs), `round ${round} (seed ${seed}): empty directories`)
        assert.deepEqual(sorted(skips.symlinks), sorted(sync.lastSkips.symlinks), `round ${round} (seed ${seed}): links`)
        const live = [...seen.records.values()].filter((r) => r.sha256 !== '').map((r) => r.path)
        assert.deepEqual(live.sort(), [...files].sort(), `round ${round} (seed ${seed}): the records are the folder's files`)
      }
    })
  })

  it('walks everything when the journal was written by another process and when the ignore file is named', async () => {
    await inFolder(async (dir, sync, identity) => {
      for (const f of ['x.txt', 'y.txt', 'z.txt']) await writeFile(path.join(dir, f), f)
      await sync.rescan()
      // Another process (`fpeer push`) on the same home records an edit; ours is told of another path only.
      const other = new FolderSync(new Home(path.join(path.dirname(dir), 'home')), sync.folder, identity)
      await writeFile(path.join(dir, 'x.txt'), 'x by another process')
      assert.deepEqual(
        (await other.rescan()).versions.map((v) => v.path),
        ['x.txt'],
      )
      await writeFile(path.join(dir, 'z.txt'), 'z, never named')
      await writeFile(path.join(dir, 'y.txt'), 'y, named')
      sync.dirty = () => ['y.txt']
      assert.deepEqual((await sync.rescan()).versions.map((v) => v.path).sort(), ['y.txt', 'z.txt'])
      assert.equal(sync.partialScans, 0, 'the journal moved under it: the whole folder was walked')
      // From a rescan of its own, the named paths are enough again.
      await writeFile(path.join(dir, 'y.txt'), 'y again')
      assert.deepEqual(
        (await sync.rescan()).versions.map((v) => v.path),
        ['y.txt'],
      )
      assert.equal(sync.partialScans, 1)
      // A new ignore file can leave out what was shared: only a whole walk knows.
      await writeFile(path.join(dir, '.fpeerignore'), 'z.txt\n')
      sync.dirty = () => ['.fpeerignore']
      await sync.rescan()
      assert.equal(sync.partialScans, 1)
      assert.equal((await sync.records()).has('z.txt'), false, 'the newly ignored file left the structure')
    })
  })

  it('after an apply of its own, the landed paths are looked at alone and are no new version', async () => {
    await inFolder(async (dir, sync) => {
      await writeFile(path.join(dir, 'a.txt'), 'a')
      await sync.rescan()
      const origin = new Identity(generateKeyPair())
      const text = 'from a peer\n'
      const v = signVersion(
        'docs',
        {
          path: 'sub/b.txt',
          deleted: false,
          sha256: createHash('sha256').update(text).digest('hex'),
          size: text.length,
          mtimeMs: 1_700_000_000_000,
          lamport: 3,
          vv: {[origin.id.compact]: 3},
        },
        origin,
      )
      const result = await sync.apply([v], async (items, staging) => {
        for (const {entry} of items) {
          await mkdir(path.dirname(path.join(staging, entry.path)), {recursive: true})
          await writeFile(path.join(staging, entry.path), text)
        }
      })
      assert.deepEqual(result.fetched, ['sub/b.txt'])
      // What the watcher saw of the landing: the new directory.
      sync.dirty = () => ['sub']
      assert.deepEqual((await sync.rescan()).versions, [])
      assert.equal(sync.partialScans, 1)
      assert.equal(sync.scans, 2)
    })
  })
})

describe('FolderSync.adopt (the requester records what it fetched)', () => {
  const sha = (t: string) => createHash('sha256').update(t).digest('hex')

  it('keeps what landed, not what the path holds when it records: an edit in between is the next rescan’s version', async () => {
    await inFolder(async (dir, sync) => {
      const landedAt = new Date(1_600_000_000_000)
      for (const n of ['a.txt', 'b.txt']) {
        await writeFile(path.join(dir, n), 'host')
        await utimes(path.join(dir, n), landedAt, landedAt)
      }
      const st = await stat(path.join(dir, 'a.txt'))
      const landed = {size: st.size, mtimeMs: Math.trunc(st.mtimeMs), ino: st.ino}
      // A local program rewrites a.txt (same size) after it landed and before it is recorded.
      await writeFile(path.join(dir, 'a.txt'), 'edit')
      await utimes(path.join(dir, 'a.txt'), new Date(), new Date(1_600_000_005_000))
      const entry = (p: string) => ({path: p, sha256: sha('host'), size: 4, mtimeMs: landedAt.getTime()})
      // b.txt comes with no stat (found in place, or a large file): the path is looked at.
      await sync.adopt([{entry: entry('a.txt'), landed}, {entry: entry('b.txt')}])
      const records = await sync.records()
      assert.equal(records.get('a.txt')?.mtimeMs, landedAt.getTime())
      assert.equal(records.get('b.txt')?.ino, (await stat(path.join(dir, 'b.txt'))).ino)
      const {versions} = await sync.rescan()
      assert.deepEqual(
        versions.map((v) => [v.path, v.sha256]),
        [['a.txt', sha('edit')]],
      )
    })
  })

  it('a file deleted between its landing and the record is recorded as landed, and the next rescan makes the deletion a version', async () => {
    await inFolder(async (dir, sync) => {
      await writeFile(path.join(dir, 'gone.txt'), 'host')
      const st = await stat(path.join(dir, 'gone.txt'))
      await rm(path.join(dir, 'gone.txt'))
      const entry = {path: 'gone.txt', sha256: sha('host'), size: 4, mtimeMs: Math.trunc(st.mtimeMs)}
      await sync.adopt([{entry, landed: {size: st.size, mtimeMs: Math.trunc(st.mtimeMs), ino: st.ino}}])
      assert.equal((await sync.records()).get('gone.txt')?.sha256, sha('host'))
      assert.deepEqual(
        (await sync.rescan()).versions.map((v) => [v.path, v.deleted]),
        [['gone.txt', true]],
      )
    })
  })
})

describe('FolderSync.apply on a folder with links and names of its own', () => {
  const sha = (t: string) => createHash('sha256').update(t).digest('hex')
  const origin = new Identity(generateKeyPair())
  let lamport = 10
  const version = (p: string, text?: string) => {
    lamport++
    const content = text === undefined ? {deleted: true, sha256: '', size: 0} : {deleted: false, sha256: sha(text), size: Buffer.byteLength(text)}
    return signVersion('docs', {path: p, ...content, mtimeMs: 1_700_000_000_000, lamport, vv: {[origin.id.compact]: lamport}}, origin)
  }
  /** A fetcher that lands the given contents in the staging folder, as a transport would. */
  const fetcher =
    (contents: Record<string, string>): ContentFetcher =>
    async (items, staging) => {
      for (const {entry} of items) {
        await mkdir(path.dirname(path.join(staging, entry.path)), {recursive: true})
        await writeFile(path.join(staging, entry.path), contents[entry.path]!)
      }
    }

  async function setup() {
    const base = await mkdtemp(path.join(os.tmpdir(), 'fpeer-apply-'))
    const dir = path.join(base, 'docs')
    const outside = path.join(base, 'outside')
    await mkdir(dir)
    await mkdir(outside)
    await writeFile(path.join(outside, 'x'), 'outside\n')
    await writeFile(path.join(dir, 'a.txt'), 'local a\n')
    await writeFile(path.join(dir, '.fpeer'), "the user's own file\n")
    await symlink(outside, path.join(dir, 'link'))
    const sync = new FolderSync(
      new Home(path.join(base, 'home')),
      {name: 'docs', path: dir, open: false, allow: [], createdAt: ''},
      new Identity(generateKeyPair()),
    )
    await sync.rescan()
    return {base, dir, outside, sync}
  }

  it('a deletion through a symlinked directory deletes nothing and is recorded', async () => {
    const {base, outside, sync} = await setup()
    try {
      const r = await sync.apply([version('link/x')], fetcher({}))
      assert.deepEqual(
        r.applied.map((v) => v.path),
        ['link/x'],
      )
      assert.equal(await readFile(path.join(outside, 'x'), 'utf8'), 'outside\n')
      assert.equal((await sync.records()).get('link/x')?.version?.deleted, true)
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })

  it('content copied locally or fetched never lands through a symlinked directory (E_PATH_UNSAFE), and nothing moves', async () => {
    const {base, dir, outside, sync} = await setup()
    try {
      for (const v of [version('link/copy.txt', 'local a\n'), version('link/fetched.txt', 'new\n')]) {
        await assert.rejects(sync.apply([v], fetcher({'link/fetched.txt': 'new\n'})), (e) => isFpeerError(e, 'E_PATH_UNSAFE'))
      }
      assert.deepEqual((await readdir(outside)).sort(), ['x'])
      assert.deepEqual((await readdir(dir)).sort(), ['.fpeer', 'a.txt', 'link'])
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })

  it('a user file named .fpeer does not stop updates that carry content, and no staging is left', async () => {
    const {base, dir, sync} = await setup()
    try {
      const r = await sync.apply([version('sub/b.txt', 'bee\n'), version('c.txt', 'local a\n')], fetcher({'sub/b.txt': 'bee\n'}))
      assert.deepEqual(r.fetched, ['sub/b.txt'])
      assert.deepEqual(r.copied, ['c.txt'])
      assert.equal(await readFile(path.join(dir, 'sub', 'b.txt'), 'utf8'), 'bee\n')
      assert.equal(await readFile(path.join(dir, '.fpeer'), 'utf8'), "the user's own file\n")
      assert.deepEqual((await readdir(dir)).sort(), ['.fpeer', 'a.txt', 'c.txt', 'link', 'sub'])
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })

  it('a conflict copy that arrives as a version beside the edit it comes from is landed once, whichever side wins', async () => {
    for (const localWins of [true, false]) {
      const {base, dir, sync} = await setup()
      try {
        // Our clock well past the sender's when the local edit should win, below it otherwise.
        if (localWins) {
          lamport += 60
          await sync.apply([version('clock.txt', 'c\n')], fetcher({'clock.txt': 'c\n'}))
        }
        await writeFile(path.join(dir, 'a.txt'), 'edited here\n')
        const ours = (await sync.rescan()).versions.find((v) => v.path === 'a.txt')!
        const theirsLamport = localWins ? 1 : ours.lamport + 5
        const theirs = signVersion(
          'docs',
          {
            path: 'a.txt',
            deleted: false,
            sha256: sha('edited there\n'),
            size: 13,
            mtimeMs: 1_700_000_000_000,
            lamport: theirsLamport,
            vv: {[origin.id.compact]: theirsLamport},
          },
          origin,
        )
        // The copy the sender made of the loser, sent as its own version (as a peer that met the same conflict does).
        const loser = localWins ? theirs : ours
        const cp = conflictPath({path: 'a.txt', origin: loser.origin, sha256: loser.sha256})
        const text = localWins ? 'edited there\n' : 'edited here\n'
        const copy = signVersion(
          'docs',
          {
            path: cp,
            deleted: false,
            sha256: sha(text),
            size: Buffer.byteLength(text),
            mtimeMs: 1_700_000_000_000,
            lamport: theirsLamport + 1,
            vv: {[origin.id.compact]: theirsLamport + 1},
          },
          origin,
        )
        await sync.apply([theirs, copy], fetcher({'a.txt': 'edited there\n', [cp]: text}))
        assert.equal(await readFile(path.join(dir, 'a.txt'), 'utf8'), localWins ? 'edited here\n' : 'edited there\n')
        assert.equal(await readFile(path.join(dir, cp), 'utf8'), text)
        assert.deepEqual((await sync.records()).get(cp)?.version, copy, 'the copy is the sender’s version, not a new one of ours')
      } finally {
        await rm(base, {recursive: true, force: true})
      }
    }
  })

  it('a concurrent edit keeps the local content as a conflict copy (linked, then renamed into place)', async () => {
    const {base, dir, sync} = await setup()
    try {
      await writeFile(path.join(dir, 'a.txt'), 'edited here\n')
      await sync.rescan()
      const r = await sync.apply([version('a.txt', 'edited there\n')], fetcher({'a.txt': 'edited there\n'}))
      assert.equal(r.conflicts.length, 1)
      assert.equal(await readFile(path.join(dir, 'a.txt'), 'utf8'), 'edited there\n')
      assert.equal(await readFile(path.join(dir, r.conflicts[0]!), 'utf8'), 'edited here\n')
      assert.deepEqual(
        (await readdir(dir)).filter((n) => n.startsWith('.fpeer-')),
        [],
      )
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })

  it('a same-size local edit in the tick the rescan read the file is kept as a conflict copy, not overwritten by a version that follows ours', async () => {
    const {base, dir, sync} = await setup()
    try {
      const file = path.join(dir, 'a.txt')
      await writeFile(file, 'edit one\n')
      const tick = Math.floor(Date.now() / 1000)
      await utimes(file, tick, tick)
      const [ours] = (await sync.rescan()).versions
      // Rewritten in the same clock tick: size, mtime and inode as recorded; only the content differs.
      await writeFile(file, 'edit two\n')
      await utimes(file, tick, tick)
      // Their edit of our version: it replaces ours, so only the catch-up of the unscanned edit keeps it.
      lamport += 100
      const theirs = signVersion(
        'docs',
        {
          path: 'a.txt',
          deleted: false,
          sha256: sha('from there\n'),
          size: 11,
          mtimeMs: 1_700_000_000_000,
          lamport,
          vv: {...ours!.vv, [origin.id.compact]: lamport},
        },
        origin,
      )
      const r = await sync.apply([theirs], fetcher({'a.txt': 'from there\n'}))
      assert.equal(await readFile(file, 'utf8'), 'from there\n')
      assert.equal(r.conflicts.length, 1, 'the unscanned edit was caught up as our version first')
      assert.equal(await readFile(path.join(dir, r.conflicts[0]!), 'utf8'), 'edit two\n')
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })

  it('versions it holds already are skipped before their paths are looked at: an unscanned edit of one is left to the rescan, an edit of a path that changes is kept', async () => {
    const {base, dir, sync} = await setup()
    try {
      const held = version('b.txt', 'b from there\n')
      await sync.apply([held], fetcher({'b.txt': 'b from there\n'}))
      // Local edits the journal has not seen: of a path the next update skips, and of one it changes.
      await writeFile(path.join(dir, 'b.txt'), 'b edited here\n')
      await writeFile(path.join(dir, 'a.txt'), 'a edited here\n')
      // Theirs clearly newer (lamport, not the identities' order, picks the winner): it wins, and our edit is the conflict copy.
      lamport += 100
      const r = await sync.apply([held, version('a.txt', 'a from there\n')], fetcher({'a.txt': 'a from there\n'}))
      // a.txt was caught up (our version, then theirs wins with our edit as a conflict copy); b.txt not looked at.
      assert.deepEqual(
        r.created.map((v) => v.path).filter((p) => !p.includes('conflict')),
        ['a.txt'],
      )
      assert.equal(r.conflicts.length, 1)
      assert.equal(await readFile(path.join(dir, r.conflicts[0]!), 'utf8'), 'a edited here\n')
      assert.equal(await readFile(path.join(dir, 'b.txt'), 'utf8'), 'b edited here\n')
      // The rescan makes the b.txt edit our version, a successor of the one held.
      const {versions} = await sync.rescan()
      assert.deepEqual(
        versions.map((v) => [v.path, v.sha256, (v.vv[held.origin] ?? 0) >= held.lamport]),
        [['b.txt', sha('b edited here\n'), true]],
      )
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })
})

describe('FolderSync after an apply cut short (kill -9 between landing and recording)', () => {
  const sha = (t: string) => createHash('sha256').update(t).digest('hex')
  const origin = new Identity(generateKeyPair())
  let lamport = 100
  const version = (p: string, text?: string, vv?: Record<string, number>) => {
    lamport++
    const content = text === undefined ? {deleted: true, sha256: '', size: 0} : {deleted: false, sha256: sha(text), size: Buffer.byteLength(text)}
    return signVersion('docs', {path: p, ...content, mtimeMs: 1_700_000_000_000, lamport, vv: {...vv, [origin.id.compact]: lamport}}, origin)
  }
  const fetcher =
    (contents: Record<string, string>): ContentFetcher =>
    async (items, staging) => {
      for (const {entry} of items) {
        await mkdir(path.dirname(path.join(staging, entry.path)), {recursive: true})
        await writeFile(path.join(staging, entry.path), contents[entry.path]!)
      }
    }
  const folder = (dir: string) => ({name: 'docs', path: dir, open: false, allow: [], createdAt: ''})

  /**
   * A peer whose apply lands the incoming files (renamed to their final names, a deletion
   * done) and then dies before the journal records them: the journal's write throws, as a
   * kill -9 would cut it, and the process's FolderSync is dropped for a fresh one.
   */
  async function crashedApply(contents: Record<string, string | undefined>, local: Record<string, string> = {a: 'a0\n', c: 'c0\n'}) {
    const base = await mkdtemp(path.join(os.tmpdir(), 'fpeer-intent-'))
    const dir = path.join(base, 'docs')
    await mkdir(dir)
    for (const [p, t] of Object.entries(local)) await writeFile(path.join(dir, p), t)
    const home = path.join(base, 'home')
    const me = new Identity(generateKeyPair())
    const first = new FolderSync(new Home(home), folder(dir), me)
    await first.rescan()
    const incoming = Object.entries(contents).map(([p, t]) => version(p, t))
    const put = first.peerfile.put.bind(first.peerfile)
    first.peerfile.put = async (records, all) => {
      if (records.some((r) => incoming.some((v) => v.path === r.path))) throw new Error('killed')
      return put(records, all)
    }
    const fetched = Object.fromEntries(Object.entries(contents).filter((e): e is [string, string] => e[1] !== undefined))
    await assert.rejects(first.apply(incoming, fetcher(fetched)), /killed/)
    return {base, dir, home, me, incoming, restarted: new FolderSync(new Home(home), folder(dir), me)}
  }

  it('the rescan after a restart records the landed files as the incoming versions, not as its own', async () => {
    const {base, dir, home, incoming, restarted} = await crashedApply({a: 'a1 from there\n', b: 'b1 from there\n', c: undefined})
    try {
      // The crash did land everything: the journal alone is behind.
      assert.equal(await readFile(path.join(dir, 'a'), 'utf8'), 'a1 from there\n')
      assert.deepEqual((await readdir(dir)).sort(), ['a', 'b'])
      assert.deepEqual(await restarted.preview(), [], 'push --dry-run lists nothing to push either')
      const {versions, records, recovered} = await restarted.rescan()
      assert.deepEqual(versions, [], 'nothing is claimed as this peer’s new version')
      for (const v of incoming) assert.deepEqual(records.get(v.path)?.version, v, v.path)
      // Handed back to be passed on: the failed apply owed them to no peer.
      assert.deepEqual(recovered, incoming, 'the recovered versions are passed on')
      assert.deepEqual((await restarted.rescan()).recovered, [], 'once')
      assert.deepEqual(await readdir(path.join(home, 'folders', 'docs')).then((n) => n.filter((x) => x.startsWith('intent'))), [])
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })

  it('the sender’s retry after a restart is taken as held: no local version, no conflict copy, nothing fetched', async () => {
    const {base, dir, incoming, restarted} = await crashedApply({a: 'a1 from there\n', b: 'b1 from there\n'})
    try {
      const r = await restarted.apply(incoming, fetcher({}))
      assert.deepEqual([r.applied, r.created, r.conflicts, r.fetched], [[], [], [], []])
      // Taken by the failed apply, recorded now: passed on by whoever applied, as `applied` would be.
      assert.deepEqual(r.recovered, incoming)
      // The owner's next edit is a plain successor: taken without a conflict copy.
      const next = version('a', 'a2 from there\n', incoming[0]!.vv)
      const r2 = await restarted.apply([next], fetcher({a: 'a2 from there\n'}))
      assert.deepEqual([r2.applied.length, r2.conflicts], [1, []])
      assert.deepEqual((await readdir(dir)).sort(), ['a', 'b', 'c'])
      assert.deepEqual((await restarted.rescan()).versions, [])
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })

  it('an apply that recovers what an earlier one landed and then fails its own fetch keeps the recovered versions for the caller to pass on', async () => {
    const {base, restarted, incoming} = await crashedApply({a: 'a1 from there\n', b: 'b1 from there\n'})
    try {
      const other = version('d', 'd1 from there\n')
      const failing: ContentFetcher = async () => {
        throw new FpeerError('E_NOT_FOUND', 'd: gone at the sender')
      }
      await assert.rejects(restarted.apply([other], failing), (e) => isFpeerError(e, 'E_NOT_FOUND'))
      // Recorded by the failed apply (its result never reached a caller): handed out once, here.
      assert.deepEqual(restarted.takeRecovered(), incoming)
      assert.deepEqual(restarted.takeRecovered(), [])
      assert.deepEqual((await restarted.rescan()).recovered, [])
      // Had nobody taken them, the next result would have carried them.
      const again = await crashedApply({a: 'a2 from there\n'})
      try {
        await assert.rejects(again.restarted.apply([other], failing), (e) => isFpeerError(e, 'E_NOT_FOUND'))
        assert.deepEqual((await again.restarted.rescan()).recovered, again.incoming)
      } finally {
        await rm(again.base, {recursive: true, force: true})
      }
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })

  it('an intent that never landed claims nothing: a later local edit of the path is this peer’s own version', async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'fpeer-intent-'))
    try {
      const dir = path.join(base, 'docs')
      await mkdir(dir)
      await writeFile(path.join(dir, 'a'), 'a0\n')
      await writeFile(path.join(dir, 'same'), 'shared\n')
      const me = new Identity(generateKeyPair())
      const sync = new FolderSync(new Home(path.join(base, 'home')), folder(dir), me)
      await sync.rescan()
      // A local copy lands (`b`, content found here), then the fetch of `a` fails.
      const failing: ContentFetcher = async () => {
        throw new Error('peer gone')
      }
      await assert.rejects(sync.apply([version('b', 'shared\n'), version('a', 'a1 from there\n')], failing), /peer gone/)
      await writeFile(path.join(dir, 'a'), 'a1 edited here\n')
      const {versions, records} = await new FolderSync(new Home(path.join(base, 'home')), folder(dir), me).rescan()
      assert.deepEqual(
        versions.map((v) => [v.path, v.origin]),
        [['a', me.id.compact]],
      )
      assert.equal(records.get('b')?.version?.origin, origin.id.compact, 'the copy that landed is the incoming version')
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })

  it('a rebuilt (damaged) journal takes an unknown file as found, and the peer’s version of it is adopted, not fought', async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'fpeer-intent-'))
    try {
      const dir = path.join(base, 'docs')
      await mkdir(dir)
      await writeFile(path.join(dir, 'a'), 'a0\n')
      const home = path.join(base, 'home')
      const me = new Identity(generateKeyPair())
      const sync = new FolderSync(new Home(home), folder(dir), me)
      await sync.rescan()
      const v = version('b', 'b1 from there\n')
      await sync.apply([v], fetcher({b: 'b1 from there\n'}))
      // The line that recorded `b` is garbled (a hand-damaged or half-written journal).
      const journal = path.join(home, 'folders', 'docs', 'files.jsonl')
      const lines = (await readFile(journal, 'utf8')).split('\n')
      await writeFile(journal, lines.map((l) => (l.includes('"p":"b"') ? l.slice(0, 20) + '#garbled' : l)).join('\n'))
      const restarted = new FolderSync(new Home(home), folder(dir), me)
      const {versions, records} = await restarted.rescan()
      assert.deepEqual(versions, [], 'the unknown file is not signed as this peer’s')
      assert.equal(records.get('b')?.version, undefined)
      // The peers' state, taken at the exchange at start: the same content is adopted as their version.
      const r = await restarted.apply([v], fetcher({}))
      assert.deepEqual([r.applied, r.created, r.conflicts, r.fetched], [[v], [], [], []])
      assert.deepEqual((await restarted.records()).get('b')?.version, v)
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })
})
