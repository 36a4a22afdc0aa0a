// fpeer's FTP server against real clients: curl (downloads, resume, ranges, refusals) and lftp (mirror of hostile names).
import assert from 'node:assert/strict'
import {access, mkdir, readFile, readdir, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import type {TransportServer} from '@fpeer/core'
import {listTree} from '@fpeer/core/conformance'
import {BIG_BYTES, BIG_FILE, FOLDER, OUTSIDE_SECRET, UNSENDABLE_NAMES, localSource, makeTree, run, serve, urlPath, type Tree} from './fixtures.js'

const CURL = '/usr/bin/curl'
const LFTP = '/usr/bin/lftp'

describe('real clients against the fpeer FTP server', {timeout: 300_000}, () => {
  let tree: Tree
  let server: TransportServer
  let base: string
  let big: Buffer
  let work: string
  const url = (rel: string) => `ftp://127.0.0.1:${server.port}/${rel}`
  const curl = (...args: string[]) => run(CURL, ['-sS', '--max-time', '20', ...args])
  const lftp = (commands: string) =>
    run(
      LFTP,
      [
        '-e',
        `set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 10; set net:reconnect-interval-base 1; set cmd:fail-exit yes; ${commands}; quit`,
        '-p',
        String(server.port),
        '-u',
        'anonymous,',
        '127.0.0.1',
      ],
      {timeoutMs: 60_000},
    )

  before(async () => {
    for (const tool of [CURL, LFTP]) await access(tool).catch(() => assert.fail(`${tool} is not installed (apt-get install curl lftp)`))
    tree = await makeTree()
    server = await serve(localSource(tree))
    base = tree.base
    big = await readFile(path.join(tree.root, BIG_FILE))
    work = path.join(base, 'work')
    await mkdir(work)
  })
  after(async () => {
    await server?.close()
    await tree?.dispose()
  })

  describe('curl', () => {
    it('downloads every hostile name through a percent-encoded URL, byte for byte', async () => {
      // curl refuses control characters in an FTP path ("path contains control characters"); lftp covers the tab name.
      // eslint-disable-next-line no-control-regex -- the control characters are what is filtered out
      const names = tree.files.filter((n) => !/[\x00-\x1f]/.test(n))
      assert.ok(names.length >= tree.files.length - 1)
      for (const name of names) {
        const r = await curl(url(`${FOLDER}/${urlPath(name)}`))
        assert.equal(r.code, 0, `${name}: ${r.stderr}`)
        assert.ok(r.stdout.equals(await readFile(path.join(tree.root, ...name.split('/')))), `${name} differs`)
      }
    })

    it('works with PASV (EPSV disabled) and with every CWD method', async () => {
      const name = 'sub dir/nested #1/file %41.txt'
      const want = await readFile(path.join(tree.root, ...name.split('/')))
      for (const extra of [['--disable-epsv'], ['--ftp-method', 'nocwd'], ['--ftp-method', 'singlecwd'], ['--ftp-method', 'multicwd']]) {
        const r = await curl(...extra, url(`${FOLDER}/${urlPath(name)}`))
        assert.equal(r.code, 0, `${extra.join(' ')}: ${r.stderr}`)
        assert.ok(r.stdout.equals(want), extra.join(' '))
      }
    })

    it('lists the root folders and a folder by name', async () => {
      const root = await curl('--list-only', url(''))
      // curl turns the listing's CRLF into LF (ASCII mode).
      assert.equal(root.stdout.toString(), `${FOLDER}\n`)
      const names = (await curl('--list-only', url(`${FOLDER}/`))).stdout.toString().split('\n').filter(Boolean).sort()
      const expected = (await readdir(tree.root)).filter((n) => !UNSENDABLE_NAMES.includes(n) && n !== 'escape.txt').sort()
      assert.deepEqual(names, expected)
      const long = (await curl(url(`${FOLDER}/`))).stdout.toString()
      assert.match(long, new RegExp(`^-r--r--r-- 1 fpeer fpeer +${BIG_BYTES} .* big\\.bin$`, 'm'))
    })

    it('resumes with -C - and fetches a byte range with -r', async () => {
      const part = path.join(work, 'resume.bin')
      await writeFile(part, big.subarray(0, 1_000_003))
      const r = await curl('-C', '-', '-o', part, url(`${FOLDER}/${BIG_FILE}`))
      assert.equal(r.code, 0, r.stderr)
      assert.ok((await readFile(part)).equals(big))

      const range = await curl('-r', '2000000-2000999', url(`${FOLDER}/${BIG_FILE}`))
      assert.equal(range.code, 0, range.stderr)
      assert.ok(range.stdout.equals(big.subarray(2_000_000, 2_001_000)))
    })

    it('a missing file fails with "file not found" and nothing on stdout', async () => {
      const r = await curl(url(`${FOLDER}/no%20such%20file.txt`))
      assert.equal(r.code, 78, r.stderr) // CURLE_REMOTE_FILE_NOT_FOUND
      assert.equal(r.stdout.length, 0)
    })

    it('refuses an upload (curl -T) and writes nothing', async () => {
      const local = path.join(work, 'upload.txt')
      await writeFile(local, 'should never arrive\n')
      const before = await listTree(tree.root)
      const r = await curl('-T', local, url(`${FOLDER}/uploaded.txt`))
      assert.equal(r.code, 25, r.stderr) // CURLE_UPLOAD_FAILED
      const mk = await curl('--ftp-create-dirs', '-T', local, url(`${FOLDER}/newdir/uploaded.txt`))
      assert.notEqual(mk.code, 0)
      assert.deepEqual(await listTree(tree.root), before)
    })

    it('refuses active mode (-P)', async () => {
      const r = await curl('-P', '127.0.0.1', url(`${FOLDER}/empty.bin`))
      assert.notEqual(r.code, 0)
      assert.match(r.stderr, /PORT|EPRT/i)
    })

    it('never serves anything outside the folder, whatever the spelling', async () => {
      for (const u of [
        url(`${FOLDER}/../../../../etc/passwd`),
        url(`${FOLDER}/%2e%2e/%2e%2e/%2e%2e/etc/passwd`),
        url(`%2Fetc/passwd`),
        url(`${FOLDER}/..%2F..%2Foutside%2Fsecret`),
        url(`${FOLDER}/escape.txt`),
        url(`${FOLDER}/../outside/secret`),
      ]) {
        const r = await curl('--path-as-is', u)
        assert.notEqual(r.code, 0, `${u} succeeded`)
        assert.ok(!r.stdout.toString().includes(OUTSIDE_SECRET.trim()) && !r.stdout.toString().includes('root:'), `${u} leaked`)
      }
    })
  })

  describe('lftp', () => {
    it('mirrors the folder, hostile names and all, byte for byte', async () => {
      const dst = path.join(work, 'mirror')
      const r = await lftp(`mirror ${FOLDER} ${dst}`)
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(await listTree(dst), tree.files)
      for (const name of tree.files) {
        assert.ok((await readFile(path.join(dst, ...name.split('/')))).equals(await readFile(path.join(tree.root, ...name.split('/')))), `${name} differs`)
      }
    })

    it('continues a partial download with get -c', async () => {
      const part = path.join(work, 'lftp-resume.bin')
      await writeFile(part, big.subarray(0, 777_777))
      const r = await lftp(`get -c /${FOLDER}/${BIG_FILE} -o ${part}`)
      assert.equal(r.code, 0, r.stderr)
      assert.ok((await readFile(part)).equals(big))
    })

    it('cannot upload, delete or make directories', async () => {
      const local = path.join(work, 'lftp-up.txt')
      await writeFile(local, 'nope\n')
      const before = await listTree(tree.root)
      for (const c of [
        `put ${local} -o /${FOLDER}/up.txt`,
        `rm /${FOLDER}/empty.bin`,
        `mkdir /${FOLDER}/made`,
        `mv /${FOLDER}/empty.bin /${FOLDER}/moved.bin`,
      ]) {
        const r = await lftp(c)
        assert.notEqual(r.code, 0, `${c} succeeded`)
      }
      assert.deepEqual(await listTree(tree.root), before)
    })
  })
})
