// Table tests for the one network-error mapping and the one retry decision.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {FpeerError} from '../errors.js'
import {type ExtraCodes, type NetPhase, errorCodeOf, isRetryable, isUnsupported, mapNetworkError} from './errors-map.js'

const sys = (code: string, message = code) => Object.assign(new Error(message), {code})
const wrapped = (code: string) => Object.assign(new TypeError('fetch failed'), {cause: sys(code)})
const abort = () => Object.assign(new Error('This operation was aborted'), {name: 'AbortError', code: 'ABORT_ERR'})
const LIB: ExtraCodes = {LIB_TIMEOUT: 'E_TIMEOUT', LIB_GONE: 'E_CONNECTION_LOST'}

describe('mapNetworkError', () => {
  const cases: Array<[string, unknown, NetPhase | undefined, string]> = [
    ['refused', sys('ECONNREFUSED'), undefined, 'E_CONNECT'],
    ['unresolvable name', sys('ENOTFOUND'), undefined, 'E_CONNECT'],
    ['name server down', sys('EAI_AGAIN'), undefined, 'E_CONNECT'],
    ['unreachable', sys('EHOSTUNREACH'), undefined, 'E_CONNECT'],
    ['reset', sys('ECONNRESET'), undefined, 'E_CONNECTION_LOST'],
    ['broken pipe', sys('EPIPE'), undefined, 'E_CONNECTION_LOST'],
    ['premature close', sys('ERR_STREAM_PREMATURE_CLOSE'), undefined, 'E_CONNECTION_LOST'],
    ['timed out', sys('ETIMEDOUT'), undefined, 'E_TIMEOUT'],
    ['code on the cause', wrapped('ECONNREFUSED'), undefined, 'E_CONNECT'],
    ['a library code', sys('LIB_TIMEOUT'), undefined, 'E_TIMEOUT'],
    ['a library code on the cause', wrapped('LIB_GONE'), undefined, 'E_CONNECTION_LOST'],
    ['disk full is not ours from a socket', sys('ENOSPC'), undefined, 'E_TRANSFER'],
    ['an unknown errno', sys('EWHATEVER'), undefined, 'E_TRANSFER'],
    ['no code at all', new Error('odd'), undefined, 'E_TRANSFER'],
    ['a string thrown', 'odd', undefined, 'E_TRANSFER'],
    ['aborted', abort(), undefined, 'E_TRANSFER'],
    ['aborted mid-transfer', abort(), 'transfer', 'E_TRANSFER'],
    ['reset at connect', sys('ECONNRESET'), 'connect', 'E_CONNECT'],
    ['timeout at connect', sys('ETIMEDOUT'), 'connect', 'E_TIMEOUT'],
    ['anything at connect', new Error('odd'), 'connect', 'E_CONNECT'],
    ['refused mid-transfer', sys('ECONNREFUSED'), 'transfer', 'E_CONNECTION_LOST'],
    ['timeout mid-transfer', sys('ETIMEDOUT'), 'transfer', 'E_TIMEOUT'],
    ['anything mid-transfer', new Error('odd'), 'transfer', 'E_CONNECTION_LOST'],
    ['start is the default', sys('ECONNRESET'), 'start', 'E_CONNECTION_LOST'],
  ]
  for (const [title, err, phase, code] of cases) {
    it(`${title}${phase ? ` (${phase})` : ''} is ${code}`, () => {
      const e = mapNetworkError(err, 'ctx', {extra: LIB, ...(phase ? {phase} : {})})
      assert.ok(e instanceof FpeerError)
      assert.equal(e.code, code)
      assert.equal(e.cause, err)
    })
  }
  it('passes a FpeerError through', () => {
    const e = new FpeerError('E_HASH_MISMATCH', 'x')
    assert.equal(mapNetworkError(e, 'ctx', {phase: 'transfer'}), e)
  })
  it('gives an E_CONNECT without a hint of its own the caller’s hint', () => {
    assert.equal(mapNetworkError(new Error('odd'), 'ctx', {phase: 'connect', connectHint: 'try FTP'}).hint, 'try FTP')
  })
  it('reads the code of the error or of its cause', () => {
    assert.equal(errorCodeOf(sys('EPIPE')), 'EPIPE')
    assert.equal(errorCodeOf(wrapped('EPIPE')), 'EPIPE')
    assert.equal(errorCodeOf(Object.assign(new Error('x'), {code: 421})), undefined)
    assert.equal(errorCodeOf(undefined), undefined)
  })
})

describe('isRetryable', () => {
  for (const code of ['E_CONNECT', 'E_CONNECTION_LOST', 'E_TIMEOUT', 'E_TRANSFER'] as const)
    it(`retries ${code}`, () => assert.equal(isRetryable(new FpeerError(code, 'x')), true))
  for (const code of [
    'E_HASH_MISMATCH',
    'E_SIZE_MISMATCH',
    'E_NOT_FOUND',
    'E_ACCESS',
    'E_DISK_FULL',
    'E_IO',
    'E_UNSUPPORTED',
    'E_HOST_KEY_MISMATCH',
  ] as const) {
    it(`does not retry ${code}`, () => assert.equal(isRetryable(new FpeerError(code, 'x')), false))
  }
  it('does not retry what is not a FpeerError (map it first)', () => assert.equal(isRetryable(sys('ECONNRESET')), false))
})

describe('isUnsupported', () => {
  it('is E_UNSUPPORTED', () => assert.equal(isUnsupported(new FpeerError('E_UNSUPPORTED', 'x')), true))
  it('is the older E_TRANSFER with details.unsupported', () =>
    assert.equal(isUnsupported(new FpeerError('E_TRANSFER', 'x', {details: {unsupported: true}})), true))
  it('is not a plain E_TRANSFER', () => assert.equal(isUnsupported(new FpeerError('E_TRANSFER', 'x')), false))
  it('is not an unrelated error', () => assert.equal(isUnsupported(new Error('unsupported')), false))
})
