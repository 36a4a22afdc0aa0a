// Every fpeer process the suite starts runs with --unhandled-rejections=strict, and a crash fails the test that started it.
import assert from 'node:assert/strict'
import {rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {NODE_ARGS, Peer, runFpeer, tempDir} from './harness.js'

describe('unhandled rejections fail the suite', () => {
  let work: string
  let peer: Peer
  let reject: string

  before(async () => {
    work = await tempDir()
    peer = await Peer.create('127.0.0.1')
    // A module loaded before fpeer that leaves a rejection unhandled, as a fault path might.
    reject = path.join(work, 'reject.mjs')
    await writeFile(reject, "setTimeout(() => void Promise.reject(new Error('nobody handles this')), 0)\n")
  })

  after(async () => {
    await peer.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('fpeer runs strict: a rejection nobody handles ends it, and runFpeer fails on the crash', async () => {
    assert.ok(NODE_ARGS.includes('--unhandled-rejections=strict'))
    await assert.rejects(runFpeer(['id'], {env: {...peer.env, NODE_OPTIONS: `--import=${reject}`}}), /crashed/)
    // The same command without the injected rejection: a clean exit, so the check above is about the crash.
    assert.equal((await runFpeer(['id', '--json'], {env: peer.env})).code, 0)
  })

  it('a serve that crashes fails its stop()', async () => {
    await peer.serve([], {NODE_OPTIONS: `--import=${reject}`}).catch(() => undefined)
    await assert.rejects(peer.stop(), /crashed/)
  })
})
