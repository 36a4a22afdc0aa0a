// scripts/layers.js (run by `npm run lint`): passes on core as it is, and fails, naming the import, on an upward import, a cycle, or module-global state.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {appendFile, cp, readFile, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {ROOT, tempDir} from './harness.js'

const SCRIPT = path.join(ROOT, 'scripts/layers.js')

function layers(src?: string): {status: number | null; stderr: string} {
  const r = spawnSync(process.execPath, [SCRIPT, ...(src ? ['--src', src] : [])], {encoding: 'utf8', timeout: 60_000})
  return {status: r.status, stderr: r.stderr}
}

describe('scripts/layers.js', () => {
  let work: string
  let copy: string

  before(async () => {
    work = await tempDir('fpeer-layers-')
    copy = path.join(work, 'src')
    await cp(path.join(ROOT, 'packages/core/src'), copy, {recursive: true})
  })
  after(async () => {
    await rm(work, {recursive: true, force: true})
  })

  it('passes on core as it is', () => {
    const r = layers()
    assert.equal(r.status, 0, r.stderr)
  })

  it('fails on a store module importing sync, naming both', async () => {
    const file = path.join(copy, 'store/peerfile.ts')
    const before = await readFile(file, 'utf8')
    try {
      await writeFile(file, `import type {FolderSync} from '../sync/folder.js'\n${before}`)
      const r = layers(copy)
      assert.equal(r.status, 1)
      assert.match(r.stderr, /store\/peerfile\.ts imports sync\/folder\.ts/)
    } finally {
      await writeFile(file, before)
    }
  })

  it('fails on an import cycle within one layer', async () => {
    const a = path.join(copy, 'net/cycle-a.ts')
    const b = path.join(copy, 'net/cycle-b.ts')
    try {
      await writeFile(a, `export {b} from './cycle-b.js'\nexport const a = 1\n`)
      await writeFile(b, `export {a} from './cycle-a.js'\nexport const b = 2\n`)
      const r = layers(copy)
      assert.equal(r.status, 1)
      assert.match(r.stderr, /import cycle: net\/cycle-(a|b)\.ts -> net\/cycle-(a|b)\.ts/)
    } finally {
      await rm(a, {force: true})
      await rm(b, {force: true})
    }
  })

  it('fails on module-level state, and not on a lookup table', async () => {
    const file = path.join(copy, 'sync/owed.ts')
    const before = await readFile(file, 'utf8')
    try {
      await appendFile(file, `\nconst TABLE = new Set(['a'])\nconst seen = new Map<string, Promise<unknown>>()\nexport const use = () => [TABLE, seen]\n`)
      const r = layers(copy)
      assert.equal(r.status, 1)
      assert.match(r.stderr, /sync\/owed\.ts: module-level mutable state `seen`/)
      assert.doesNotMatch(r.stderr, /TABLE/)
    } finally {
      await writeFile(file, before)
    }
  })
})
