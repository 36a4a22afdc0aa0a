// Table tests for mapping basic-ftp failures to fpeer error codes.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {FTPError} from 'basic-ftp'
import {FpeerError} from '@fpeer/core'
import {mapFtpError, type FtpPhase} from './client-errors.js'

const reply = (code: number, text: string) => new FTPError({code, message: `${code} ${text}`})
const sys = (code: string, message = code) => Object.assign(new Error(message), {code})

describe('mapFtpError', () => {
  const cases: Array<[string, unknown, FtpPhase, string]> = [
    ['550 missing', reply(550, 'No such file or directory'), 'start', 'E_NOT_FOUND'],
    ['550 vsftpd', reply(550, 'Failed to open file.'), 'start', 'E_NOT_FOUND'],
    ['550 permission', reply(550, 'Permission denied'), 'start', 'E_ACCESS'],
    ['530 login', reply(530, 'Login incorrect.'), 'connect', 'E_ACCESS'],
    ['421 at connect', reply(421, 'Too many connections'), 'connect', 'E_CONNECT'],
    ['426 aborted', reply(426, 'Data connection closed'), 'start', 'E_CONNECTION_LOST'],
    ['451 before data', reply(451, 'Local error'), 'start', 'E_CONNECTION_LOST'],
    ['451 mid-file', reply(451, 'Local error'), 'transfer', 'E_CONNECTION_LOST'],
    ['refused', sys('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:1'), 'connect', 'E_CONNECT'],
    ['reset at connect', sys('ECONNRESET'), 'connect', 'E_CONNECT'],
    ['reset mid-file', sys('ECONNRESET', 'read ECONNRESET (data socket)'), 'transfer', 'E_CONNECTION_LOST'],
    ['control timeout', new Error('Timeout (control socket)'), 'connect', 'E_TIMEOUT'],
    ['data timeout', new Error('Timeout (data socket)'), 'transfer', 'E_TIMEOUT'],
    ['closed by server', new Error('Server closed connection unexpectedly.'), 'start', 'E_CONNECTION_LOST'],
    [
      'closed client',
      Object.assign(new Error('Client is closed because Server sent FIN packet unexpectedly, closing connection.'), {code: '0'}),
      'start',
      'E_CONNECTION_LOST',
    ],
    ['anything else mid-file', new Error('premature close'), 'transfer', 'E_CONNECTION_LOST'],
    ['anything else before', new Error('odd'), 'start', 'E_TRANSFER'],
  ]
  for (const [title, err, phase, code] of cases) {
    it(`${title} (${phase}) is ${code}`, () => {
      const e = mapFtpError(err, 'ctx', phase)
      assert.ok(e instanceof FpeerError)
      assert.equal(e.code, code)
      assert.equal(e.cause, err)
    })
  }
  it('passes a FpeerError through', () => {
    const e = new FpeerError('E_HASH_MISMATCH', 'x')
    assert.equal(mapFtpError(e, 'ctx', 'transfer'), e)
  })
})
