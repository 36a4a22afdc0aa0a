// The transfer conformance suite: every transport plugin runs it against itself to prove it honours the contract.
import assert from 'node:assert/strict'
import {after, before, describe, it} from 'node:test'
import {abortCases} from './abort.js'
import {accessCases} from './access.js'
import {batchCases} from './batch.js'
import {createSuite, type ConformanceOptions} from './context.js'
import {errorsCases} from './errors.js'
import {createFixture, type Fixture} from './fixture.js'
import {handOverCases} from './handover.js'
import {resumeCases} from './resume.js'
import {servingCases} from './serving.js'

export {FaultySource, type FaultPlan, type OpenCall} from './faults.js'
export {HOSTILE_NAMES, createFixture, listTree, pseudoRandom, sameBytes, type Fixture} from './fixture.js'
export type {ConformanceOptions} from './context.js'

/**
 * Registers the conformance suite (node:test `describe`/`it`), one `describe` per concern:
 * serving, errors, access, resume, batch, abort (each serves a temp folder of hostile names,
 * empty, large and many files with `transport.serve`, fetches it back with `transport.connect`
 * and core's `fetchFiles`, and checks bytes, error codes and cleanup), and hand-over.
 * Cases the transport declares unsupported are registered as skipped, with the reason, so they show.
 */
export function runTransportConformance(opts: ConformanceOptions): void {
  const {transport} = opts
  const sup = transport.supports
  let fx: Fixture | undefined
  const s = createSuite(opts, () => {
    assert.ok(fx, 'the fixture is built in before(): read it inside a case')
    return fx
  })

  describe(`transport conformance: ${opts.name}`, {timeout: 600_000}, () => {
    it('declares its protocol, description and what it supports', () => {
      assert.match(transport.protocol, /^[A-Z][A-Z0-9_-]*$/)
      assert.ok(transport.description.trim().length > 0)
      for (const key of ['serve', 'fetch', 'resume', 'peerAuth', 'serverAuth', 'batch'] as const) assert.equal(typeof sup[key], 'boolean', `supports.${key}`)
      if (sup.serve) assert.equal(typeof transport.serve, 'function', 'supports.serve but no serve()')
      if (sup.fetch) assert.equal(typeof transport.connect, 'function', 'supports.fetch but no connect()')
      // A transport that cannot fetch leaves the bytes to a person; it must say how (MANUAL).
      else assert.equal(typeof transport.handOver, 'function', 'supports.fetch false but no handOver()')
    })

    handOverCases(s)

    if (!sup.serve || !sup.fetch) {
      it('serves and fetches files', {skip: 'transport does not both serve and fetch (supports.serve/fetch false)'}, () => {})
      return
    }

    before(async () => {
      fx = await createFixture({largeBytes: s.largeBytes, manyFiles: s.manyFiles})
    })
    after(async () => {
      await fx?.dispose()
    })

    servingCases(s)
    errorsCases(s)
    accessCases(s)
    resumeCases(s)
    batchCases(s)
    abortCases(s)
  })
}
