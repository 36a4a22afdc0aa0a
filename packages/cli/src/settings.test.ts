// The environment parser: defaults, valid values, and every invalid value an E_USAGE naming its variable.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {isFpeerError} from '@fpeer/core'
import {ENVIRONMENT, readSettings} from './settings.js'

describe('readSettings', () => {
  it('an empty environment gives the documented defaults', () => {
    const s = readSettings({})
    assert.deepEqual(s.timeouts, {reply: 120_000, transfer: 3_600_000, stall: 60_000, io: 30_000, message: 30_000})
    assert.equal(s.rescanIntervalMs, 60_000)
    assert.equal(s.syncIntervalMs, 300_000)
    assert.equal(s.idleReclaimMs, 5000)
    assert.equal(s.home, undefined)
    assert.equal(s.logLevel, undefined)
    assert.equal(s.debug, false)
  })

  it('valid values are taken; an empty one is unset', () => {
    const s = readSettings({
      FPEER_HOME: '/x',
      FPEER_LOG_LEVEL: 'warn',
      FPEER_STALL_TIMEOUT_MS: '1500',
      FPEER_SYNC_INTERVAL_MS: '0',
      FPEER_IDLE_RECLAIM_MS: '0',
      FPEER_REPLY_TIMEOUT_MS: '',
      DEBUG: '1',
    })
    assert.equal(s.home, '/x')
    assert.equal(s.logLevel, 'warn')
    assert.equal(s.timeouts.stall, 1500)
    assert.equal(s.timeouts.reply, 120_000)
    assert.equal(s.syncIntervalMs, 0)
    assert.equal(s.idleReclaimMs, 0)
    assert.equal(s.debug, true)
  })

  const bad: Array<[string, string]> = [
    ['FPEER_REPLY_TIMEOUT_MS', 'soon'],
    ['FPEER_REPLY_TIMEOUT_MS', '1.5'],
    ['FPEER_REPLY_TIMEOUT_MS', '0'],
    ['FPEER_STALL_TIMEOUT_MS', '-1'],
    ['FPEER_TRANSFER_TIMEOUT_MS', '99999999999'],
    ['FPEER_IO_TIMEOUT_MS', '1e3'],
    ['FPEER_MESSAGE_TIMEOUT_MS', '0x10'],
    ['FPEER_RESCAN_INTERVAL_MS', '0'],
    ['FPEER_SYNC_INTERVAL_MS', 'off'],
    ['FPEER_IDLE_RECLAIM_MS', '5s'],
    ['FPEER_LOG_LEVEL', 'INFO'],
    ['FPEER_LOG_LEVEL', 'trace'],
  ]
  for (const [name, value] of bad) {
    it(`${name}=${value} is E_USAGE naming ${name}`, () => {
      assert.throws(
        () => readSettings({[name]: value}),
        (e: unknown) => isFpeerError(e, 'E_USAGE') && (e.details as {env: string}).env === name,
      )
    })
  }

  it('every variable it parses is documented in ENVIRONMENT', () => {
    const documented = ENVIRONMENT.flatMap((v) => v.name.split(', '))
    for (const name of ['FPEER_HOME', 'FPEER_LOG_LEVEL', 'DEBUG', ...bad.map(([n]) => n)]) assert.ok(documented.includes(name), name)
  })
})
