// The MANUAL hand-over: the listing (URLs written out literally), waiting, and stopping resumable.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {type HandOverIO, type ManualListing, type ManualRequest, type PlacedState, isFpeerError} from '@fpeer/core'
import {handOver, listing} from './hand-over.js'
import {fileUrl} from './url.js'

const request: ManualRequest = {
  folder: 'Docs #1',
  host: '192.0.2.7',
  port: 7735,
  via: 'HTTP',
  hostId: 'AAAAAAAAAAAAA-BBBBBBBBBBBBB-CCCCCCCCCCCCC-DDDDDDDDDDDDD',
  into: '/tmp/into',
  files: [
    {path: 'readme.txt', size: 12, sha256: 'a'.repeat(64)},
    {path: 'percent/100% done #1.txt', size: 3, sha256: 'b'.repeat(64)},
    {path: 'empty.bin', size: 0, sha256: 'c'.repeat(64)},
  ],
}

/** A check() that answers from a script, one state per call (the last one repeats). */
function io(states: PlacedState[], waitMs: number, signal?: AbortSignal): HandOverIO & {shown: ManualListing[]; checks: number} {
  const out = {
    shown: [] as ManualListing[],
    checks: 0,
    waitMs,
    ...(signal ? {signal} : {}),
    async check() {
      return states[Math.min(out.checks++, states.length - 1)]!
    },
    show(l: ManualListing) {
      out.shown.push(l)
    },
  }
  return out
}

const none: PlacedState = {missing: [], wrong: []}
const all: PlacedState = {missing: request.files.map((f) => f.path), wrong: []}

describe('the MANUAL URL of a file follows the HTTP plugin layout', () => {
  const table: Array<[string, string | undefined, string, number, string, string | undefined]> = [
    ['plain', 'HTTP', '192.0.2.7', 7735, 'a/b.txt', 'http://192.0.2.7:7735/Docs%20%231/a/b.txt'],
    ['percent, hash, space', 'HTTP', '192.0.2.7', 7735, '100% done #1.txt', 'http://192.0.2.7:7735/Docs%20%231/100%25%20done%20%231.txt'],
    ['literal escape', 'HTTP', '192.0.2.7', 7735, '%41%2F x', 'http://192.0.2.7:7735/Docs%20%231/%2541%252F%20x'],
    ['unicode NFC', 'HTTP', '192.0.2.7', 7735, 'caf\u00e9', 'http://192.0.2.7:7735/Docs%20%231/caf%C3%A9'],
    ['unicode NFD', 'HTTP', '192.0.2.7', 7735, 'cafe\u0301', 'http://192.0.2.7:7735/Docs%20%231/cafe%CC%81'],
    ["quotes, !'()*", 'HTTP', '192.0.2.7', 7735, `it's (1)*!"`, 'http://192.0.2.7:7735/Docs%20%231/it%27s%20%281%29%2A%21%22'],
    ['newline', 'HTTP', '192.0.2.7', 7735, 'a\nb', 'http://192.0.2.7:7735/Docs%20%231/a%0Ab'],
    ['IPv6 host', 'http', '::1', 8080, 'x', 'http://[::1]:8080/Docs%20%231/x'],
    ['no port', 'HTTP', '192.0.2.7', 0, 'x', undefined],
    ['no via', undefined, '192.0.2.7', 7735, 'x', undefined],
    ['unknown via', 'GOPHER', '192.0.2.7', 7735, 'x', undefined],
  ]
  for (const [name, via, host, port, p, want] of table) it(name, () => assert.equal(fileUrl(via, host, port, 'Docs #1', p), want))
})

describe('the MANUAL hand-over', () => {
  it('lists only the files not in place, with target, URL and state', () => {
    const l = listing(request, {missing: ['percent/100% done #1.txt'], wrong: ['readme.txt']})
    assert.deepEqual(l, {
      folder: 'Docs #1',
      host: '192.0.2.7',
      hostId: request.hostId,
      into: '/tmp/into',
      via: 'HTTP',
      files: [
        {
          path: 'readme.txt',
          size: 12,
          sha256: 'a'.repeat(64),
          target: '/tmp/into/readme.txt',
          url: 'http://192.0.2.7:7735/Docs%20%231/readme.txt',
          state: 'wrong',
        },
        {
          path: 'percent/100% done #1.txt',
          size: 3,
          sha256: 'b'.repeat(64),
          target: '/tmp/into/percent/100% done #1.txt',
          url: 'http://192.0.2.7:7735/Docs%20%231/percent/100%25%20done%20%231.txt',
          state: 'missing',
        },
      ],
    })
  })

  it('shows nothing and returns when every file is already in place (a resumed request)', async () => {
    const x = io([none], 0)
    await handOver(request, x)
    assert.equal(x.shown.length, 0)
  })

  it('without waiting, shows the listing and stops with E_PENDING naming what is missing', async () => {
    const x = io([all], 0)
    const err = await handOver(request, x).then(
      () => undefined,
      (e: unknown) => e,
    )
    assert.ok(isFpeerError(err, 'E_PENDING'), String(err))
    assert.deepEqual((err.details as {missing: string[]}).missing, all.missing)
    assert.equal(x.shown.length, 1)
    assert.equal(x.shown[0]!.files.length, 3)
  })

  it('without waiting, returns when nothing is missing but a file is wrong, so core reports E_HASH_MISMATCH', async () => {
    const x = io([{missing: [], wrong: ['readme.txt']}], 0)
    await handOver(request, x)
    assert.equal(x.shown.length, 0)
  })

  it('waiting, polls until every file is in place', async () => {
    const x = io([all, {missing: ['empty.bin'], wrong: ['readme.txt']}, {missing: [], wrong: ['readme.txt']}, none], 10_000)
    await handOver(request, x, 5)
    assert.equal(x.checks, 4)
    assert.equal(x.shown.length, 1)
  })

  it('waiting, a file still missing when the time is up is E_PENDING', async () => {
    const x = io([all, {missing: ['empty.bin'], wrong: []}], 60)
    const t0 = Date.now()
    await assert.rejects(handOver(request, x, 5), (e: unknown) => isFpeerError(e, 'E_PENDING'))
    assert.ok(Date.now() - t0 >= 55)
  })

  it('waiting, files present but wrong when the time is up return, for core to name them', async () => {
    const x = io([all, {missing: [], wrong: ['readme.txt']}], 40)
    await handOver(request, x, 5)
  })

  it('an abort (Ctrl-C) stops the wait at once with E_PENDING', async () => {
    const ac = new AbortController()
    const x = io([all], 60_000, ac.signal)
    setTimeout(() => ac.abort(), 20)
    const t0 = Date.now()
    await assert.rejects(handOver(request, x, 1000), (e: unknown) => isFpeerError(e, 'E_PENDING'))
    assert.ok(Date.now() - t0 < 5000)
  })
})
