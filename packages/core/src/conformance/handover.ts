// The conformance suite's hand-over cases: what handOver() shows a person (all they need, nothing more), hostile names, waiting and stopping.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Identity, generateKeyPair} from '../identity.js'
import type {HandOverIO, ManualListing, ManualRequest, PlacedState} from '../transport.js'
import type {FileEntry} from '../wire/types.js'
import {HOSTILE_NAMES, listTree} from './fixture.js'
import {at, label, rejectsWith, type Suite} from './context.js'

/** Names a person's shell or a line-based script would split or run: the listing must carry them exactly, URLs escaped. */
const CONTROL_NAMES: readonly string[] = [
  'line\nfeed.txt',
  'carriage\rreturn.txt',
  'tab\there.txt',
  'esc \u001b[31mred.txt',
  'bidi \u202etxt.exe',
  'del \u007f.txt',
  'c1 \u0085.txt',
  'sub dir/$(touch x) `y`.txt',
]
const GRANT = 'S'.repeat(43)
const FOLDER_NAME = 'Docs #1 %41'

const content = (p: string) => Buffer.from(`hand-over file ${p}\n`)
const fileOf = (p: string): FileEntry => ({path: p, size: content(p).length, sha256: createHash('sha256').update(content(p)).digest('hex')})

/** A fake HandOverIO: check() answers from `state` (a function, so a case can change it); show() records. */
function io(state: () => PlacedState | Promise<PlacedState>, waitMs: number, signal?: AbortSignal): HandOverIO & {shown: ManualListing[]} {
  const out = {
    shown: [] as ManualListing[],
    waitMs,
    ...(signal ? {signal} : {}),
    check: async () => state(),
    show: (l: ManualListing) => void out.shown.push(l),
  }
  return out
}

/** Registers the hand-over cases; they run only for a transport with handOver() (MANUAL, where a person moves the bytes). */
export function handOverCases(s: Suite): void {
  const {transport} = s
  const hand = transport.handOver
  if (typeof hand !== 'function') {
    // One skipped line, not one per case: most transports move the bytes themselves.
    it('hands files over to a person', {skip: 'transport has no handOver(): it moves the bytes itself'}, () => {})
    return
  }
  let into = ''
  const request = (files: FileEntry[], extra: Partial<ManualRequest> = {}): ManualRequest => ({
    folder: FOLDER_NAME,
    host: '127.0.0.3',
    port: 7735,
    via: 'HTTP',
    grant: GRANT,
    hostId: new Identity(generateKeyPair()).id.toString(),
    into,
    files,
    ...extra,
  })
  const handOver = (req: ManualRequest, x: HandOverIO) => hand.call(transport, req, x)
  const t = (title: string, fn: () => Promise<void>) => s.test(title, {timeout: 30_000}, fn)

  describe('hand-over', () => {
    // A real, empty target directory: a hand-over shows where files go, it never writes there.
    before(async () => {
      into = await mkdtemp(path.join(tmpdir(), 'fpeer-handover-'))
    })
    after(async () => {
      await rm(into, {recursive: true, force: true})
    })

    t('shows nothing and resolves when check() finds every file in place (a resumed request)', async () => {
      const x = io(() => ({missing: [], wrong: []}), 0)
      await handOver(request(['a.txt', 'b/c.txt'].map(fileOf)), x)
      assert.equal(x.shown.length, 0)
    })

    t('without waiting, lists only what is not in place, with all a person needs and nothing more, then E_PENDING', async () => {
      const files = ['in place.txt', 'missing.txt', 'wrong/one.txt', 'also in place.txt'].map(fileOf)
      const req = request(files)
      const x = io(() => ({missing: ['missing.txt'], wrong: ['wrong/one.txt']}), 0)
      await rejectsWith(handOver(req, x), 'E_PENDING')
      assert.equal(x.shown.length, 1, 'shown once')
      const l = at(x.shown, 0)
      assert.deepEqual([l.folder, l.host, l.hostId, l.into, l.via], [req.folder, req.host, req.hostId, req.into, req.via])
      assert.deepEqual(
        l.files.map((f) => [f.path, f.state]),
        [
          ['missing.txt', 'missing'],
          ['wrong/one.txt', 'wrong'],
        ],
      )
      for (const f of l.files) {
        const want = files.find((e) => e.path === f.path)
        assert.ok(want, `${f.path} was never asked for`)
        assert.deepEqual([f.size, f.sha256], [want.size, want.sha256], `${f.path}: size and sha256 as the host signed them`)
        assert.equal(f.target, path.join(into, ...f.path.split('/')), `${f.path}: target`)
        if (f.url === undefined) continue
        // A URL names the host the control connection came from, and its port: no other.
        const u = new URL(f.url)
        assert.deepEqual([u.hostname, u.port], [req.host, String(req.port)], f.url)
        assert.ok([null, GRANT].includes(u.searchParams.get('grant')), f.url)
      }
      // The grant secret may ride only in a URL (for curl), never in another field of the listing.
      const withoutUrls = JSON.stringify({...l, files: l.files.map(({url: _url, ...f}) => f)})
      assert.ok(!withoutUrls.includes(GRANT), 'the grant secret is in the listing outside a URL')
      assert.deepEqual(await listTree(into), [], 'the hand-over wrote into the target directory')
    })

    t('without a port to fetch from, no file has a URL', async () => {
      const x = io(() => ({missing: ['a.txt'], wrong: []}), 0)
      await rejectsWith(handOver(request([fileOf('a.txt')], {port: 0}), x), 'E_PENDING')
      assert.equal(x.shown[0]?.files[0]?.url, undefined)
    })

    t('without waiting, files present but wrong are left to core to name (E_HASH_MISMATCH): it resolves', async () => {
      const x = io(() => ({missing: [], wrong: ['a.txt']}), 0)
      await handOver(request(['a.txt', 'b.txt'].map(fileOf)), x)
    })

    for (const name of [...HOSTILE_NAMES, ...CONTROL_NAMES]) {
      t(`hostile name ${label(name)}: listed exactly, its URL escaped, or refused`, async () => {
        const x = io(() => ({missing: [name], wrong: []}), 0)
        const err = await rejectsWith(handOver(request([fileOf(name)]), x), ['E_PENDING', 'E_PATH_UNSAFE', 'E_UNSUPPORTED'])
        if (err.code !== 'E_PENDING') {
          assert.equal(x.shown.length, 0, 'refused, but listed anyway')
          return
        }
        const f = at(at(x.shown, 0).files, 0)
        assert.equal(f?.path, name, 'the name was changed')
        assert.equal(f.target, path.join(into, ...name.split('/')), 'the target is not the name inside `into`')
        if (f.url === undefined) return
        // Printable ASCII only: no space, line break, escape or bidi control can reach a shell or a terminal.
        assert.match(f.url, /^[\x21-\x7e]+$/, 'a URL carries a raw character')
        const segments = new URL(f.url).pathname.split('/').slice(1).map(decodeURIComponent)
        assert.deepEqual(segments, [FOLDER_NAME, ...name.split('/')], 'the URL does not name exactly this file')
      })
    }

    t('waiting, it resolves once a person has placed the files, having shown them once', async () => {
      const files = ['one.txt', 'two/three.txt'].map(fileOf)
      const state = async (): Promise<PlacedState> => {
        const missing: string[] = []
        const wrong: string[] = []
        for (const f of files) {
          const got = await readFile(path.join(into, f.path)).catch(() => undefined)
          if (!got) missing.push(f.path)
          else if (!got.equals(content(f.path))) wrong.push(f.path)
        }
        return {missing, wrong}
      }
      const x = io(state, 10 * 60_000)
      // The person: reads the listing, then puts each file at its target (first a wrong one).
      x.show = (l) => {
        x.shown.push(l)
        setImmediate(() => {
          void (async () => {
            for (const f of l.files) {
              await mkdir(path.dirname(f.target), {recursive: true})
              await writeFile(f.target, f.path === 'one.txt' ? 'not yet' : content(f.path))
            }
            await writeFile(path.join(into, 'one.txt'), content('one.txt'))
          })()
        })
      }
      try {
        await handOver(request(files), x)
        assert.equal(x.shown.length, 1)
        assert.deepEqual(await state(), {missing: [], wrong: []})
      } finally {
        for (const p of ['one.txt', 'two']) await rm(path.join(into, p), {recursive: true, force: true})
      }
    })

    t('waiting, an abort (Ctrl-C) stops the wait with E_PENDING', async () => {
      const ac = new AbortController()
      const x = io(() => ({missing: ['a.txt'], wrong: []}), 10 * 60_000, ac.signal)
      const shown = x.show
      x.show = (l) => {
        shown(l)
        setImmediate(() => ac.abort())
      }
      await rejectsWith(handOver(request([fileOf('a.txt')]), x), 'E_PENDING')
    })

    t('waiting, an already-aborted signal stops at once with E_PENDING', async () => {
      const ac = new AbortController()
      ac.abort()
      await rejectsWith(
        handOver(
          request([fileOf('a.txt')]),
          io(() => ({missing: ['a.txt'], wrong: []}), 10 * 60_000, ac.signal),
        ),
        'E_PENDING',
      )
    })

    t('waiting, time running out with files missing is E_PENDING', async () => {
      await rejectsWith(
        handOver(
          request([fileOf('a.txt')]),
          io(() => ({missing: ['a.txt'], wrong: []}), 50),
        ),
        'E_PENDING',
      )
    })
  })
}
