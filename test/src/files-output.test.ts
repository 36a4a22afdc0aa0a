// `fpeer files` as text: one line per file however many slices the output is written in, every name escaped for a terminal; --json the same files.
import assert from 'node:assert/strict'
import {mkdirSync, writeFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Peer, tempDir} from './harness.js'

describe('fpeer files, text and --json', () => {
  let work: string
  let peer: Peer
  const HOSTILE = 'evil\u001b]0;owned\u0007\nfake line\u202etxt.exe'
  const COUNT = 1_500

  before(async () => {
    work = await tempDir()
    peer = await Peer.create('127.0.0.1')
    const dir = path.join(work, 'f')
    // Long names: the text output (about 150 KB) is written in several slices.
    for (let i = 0; i < COUNT; i++) {
      const rel = `dir-${String(i % 7).padStart(2, '0')}/${'n'.repeat(40)}-${i}.txt`
      if (i < 7) mkdirSync(path.join(dir, path.dirname(rel)), {recursive: true})
      writeFileSync(path.join(dir, rel), `file ${i}\n`)
    }
    writeFileSync(path.join(dir, HOSTILE), 'x')
    const share = await peer.run(['share', dir, '--name', 'F'])
    assert.equal(share.code, 0, share.stderr)
  })

  after(async () => {
    await peer.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('prints every file once, on its own line, with nothing raw that could drive a terminal', async () => {
    const r = await peer.run(['files', 'F'])
    assert.equal(r.code, 0, r.stderr)
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(r.stdout, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e]/)
    const lines = r.stdout.split('\n')
    assert.equal(lines.pop(), '')
    assert.equal(lines.length, COUNT + 1)
    for (const line of lines) assert.match(line, /^[0-9a-f]{64} {2}\d+\t\S/)
    const evil = lines.find((l) => l.includes('evil'))
    assert.ok(evil?.endsWith('\tevil\\u001b]0;owned\\u0007\\nfake line\\u202etxt.exe'), evil)

    const doc = await peer.json<{files: Array<{path: string; sha256: string; size: number}>}>(['files', 'F'])
    assert.equal(doc.files.length, COUNT + 1)
    const text = new Set(lines.filter((l) => l !== evil))
    for (const f of doc.files) if (f.path !== HOSTILE) assert.ok(text.has(`${f.sha256}  ${f.size}\t${f.path}`), f.path)
    assert.ok(doc.files.some((f) => f.path === HOSTILE))
  })
})
