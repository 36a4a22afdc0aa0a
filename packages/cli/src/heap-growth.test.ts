// The entry point fixes V8's heap growth at 2× (bin/run.js): seen in V8's own trace of each full collection.
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {mkdtemp, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {fileURLToPath} from 'node:url'

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/run.js')

describe('V8 heap growth of fpeer commands', {timeout: 600_000}, () => {
  let home: string
  before(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), 'fpeer-heap-growth-'))
  })
  after(async () => {
    await rm(home, {recursive: true, force: true})
  })

  /**
   * The growth factor of each full collection of `fpeer protocols --json`, as V8 prints it:
   * `--gc-global` makes every collection a full one, and `--trace-gc-verbose` prints each one's
   * "[HeapController]" lines on stdout.
   */
  function factors(nodeFlags: string[]): Promise<string[]> {
    return new Promise((resolve, reject) => {
      execFile(
        process.execPath,
        ['--trace-gc-verbose', '--gc-global', ...nodeFlags, BIN, 'protocols', '--json'],
        {env: {...process.env, FPEER_HOME: home}, timeout: 60_000, maxBuffer: 64 << 20},
        (err, stdout, stderr) => {
          if (err) return reject(new Error(`${err.message}\n${stderr}`))
          // Node 20's V8 prints the factor applied at the end of the Limit line (its "factor" line
          // shows the one it would pick itself); Node 26's prints the applied one on the "factor" line.
          const out: string[] = []
          let said: string | undefined
          for (const line of stdout.split('\n')) {
            const f = /\[HeapController\] factor (\d+\.\d) based/.exec(line)
            if (f) said = f[1]
            else if (line.includes('[HeapController] Limit:')) out.push(/\((\d+\.\d)\)$/.exec(line)?.[1] ?? said ?? '?')
          }
          resolve(out)
        },
      )
    })
  }

  it('is 2× once the command runs (V8 alone picks up to 4×)', async () => {
    const f = await factors([])
    assert.ok(f.length > 0, 'V8 traced no full collection')
    assert.equal(f.at(-1), '2.0', `factors: ${f.join(' ')}`)
  })

  it('is what node was told when it was given one (`node --heap-growing-percent=30`): fpeer leaves it', async () => {
    const f = await factors(['--heap-growing-percent=30'])
    assert.ok(f.length > 0, 'V8 traced no full collection')
    assert.deepEqual(new Set(f), new Set(['1.3']), `factors: ${f.join(' ')}`)
  })
})
