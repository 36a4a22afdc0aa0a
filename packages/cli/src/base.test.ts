// How an error is shown at a terminal: a peer's text in it is escaped, a line break cannot pass for a line of fpeer's own.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {FpeerError} from '@fpeer/core'
import {errorText} from './base.js'

describe('errorText', () => {
  it('escapes controls and bidi overrides in the message and the hint, and indents a line break', () => {
    const e = new FpeerError('E_REFUSED', 'the peer refused: E_NOT_ALLOWED: \x1b]0;pwned\x07\x1b[2J\nError [E_OK]: fake\u009b', {hint: 'see \u202etxt.exe'})
    assert.equal(
      errorText(e),
      'Error [E_REFUSED]: the peer refused: E_NOT_ALLOWED: \\u001b]0;pwned\\u0007\\u001b[2J\n    Error [E_OK]: fake\\u009b\n  Hint: see \\u202etxt.exe\n',
    )
  })
  it('leaves plain text as it is', () => {
    assert.equal(errorText(new FpeerError('E_USAGE', 'no "folder" given')), 'Error [E_USAGE]: no "folder" given\n')
  })
})
