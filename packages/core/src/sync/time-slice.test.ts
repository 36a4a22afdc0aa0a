// TimeSlice: a long loop that ticks lets other callbacks (sockets, timers) run.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {SLICE_MS, TimeSlice} from './time-slice.js'

describe('TimeSlice', () => {
  it('lets a pending callback run during a loop that only ticks (a resolved promise alone would not)', async () => {
    let ran = false
    setImmediate(() => (ran = true))
    const slice = new TimeSlice()
    // Bounded: without a real yield the loop ends at the bound with `ran` still false.
    const bound = performance.now() + SLICE_MS * 50
    let turns = 0
    while (!ran && performance.now() < bound) {
      await slice.tick()
      turns++
    }
    assert.equal(ran, true)
    assert.ok(turns > 1, 'the first ticks of a slice do not yield')
  })
})
