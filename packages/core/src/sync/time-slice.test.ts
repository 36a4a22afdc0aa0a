// TimeSlice: a long loop that ticks lets other callbacks (sockets, timers) run once its slice is over, and not before.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {SLICE_MS, TimeSlice} from './time-slice.js'

describe('TimeSlice', () => {
  it('lets a pending callback run once the slice is over, and only then (a resolved promise alone would not)', async () => {
    // The test's own clock: how busy the machine is decides nothing.
    let now = 1000
    let ran = false
    setImmediate(() => (ran = true))
    const slice = new TimeSlice(() => now)
    for (let i = 0; i < 1000; i++) await slice.tick()
    assert.equal(ran, false, 'a tick within the slice yielded')
    now += SLICE_MS - 1
    await slice.tick()
    assert.equal(ran, false, 'a tick before the slice ended yielded')
    now += 1
    await slice.tick()
    assert.equal(ran, true, 'the tick after the slice ended did not let the callback run')
  })

  it('starts a new slice after it yields', async () => {
    let now = 0
    const slice = new TimeSlice(() => now)
    now = SLICE_MS
    await slice.tick()
    let ran = false
    setImmediate(() => (ran = true))
    for (let i = 0; i < 100; i++) await slice.tick()
    assert.equal(ran, false)
  })
})
