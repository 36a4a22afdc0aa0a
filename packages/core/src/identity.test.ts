// Native signatures match tweetnacl's bytes and verify with the native check, and nothing else does.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import nacl from 'tweetnacl'
import {Identity, generateKeyPair, verifySignature} from './identity.js'

describe('verifySignature', () => {
  const me = new Identity(generateKeyPair())
  const other = new Identity(generateKeyPair())
  const data = Buffer.from('fpeer-sig-v1\nabc')
  const sig = me.sign(data)

  it('signs natively with exactly the bytes tweetnacl makes (ed25519 is deterministic)', () => {
    const keys = generateKeyPair()
    const id = new Identity(keys)
    for (const msg of [Buffer.alloc(0), data, Buffer.alloc(100_000, 7)])
      assert.deepEqual(Buffer.from(id.sign(msg)), Buffer.from(nacl.sign.detached(msg, keys.secretKey)))
  })

  it('accepts a tweetnacl signature, as tweetnacl does', () => {
    assert.equal(verifySignature(data, sig, me.publicKey), true)
    assert.equal(nacl.sign.detached.verify(data, sig, me.publicKey), true)
  })

  it('refuses another key, changed data, a flipped bit in the signature, and malformed keys and signatures', () => {
    assert.equal(verifySignature(data, sig, other.publicKey), false)
    assert.equal(verifySignature(Buffer.from('fpeer-sig-v1\nabd'), sig, me.publicKey), false)
    for (const i of [0, 31, 32, 63]) {
      const bad = Buffer.from(sig)
      bad[i]! ^= 1
      assert.equal(verifySignature(data, bad, me.publicKey), false, `bit flipped in byte ${i}`)
    }
    assert.equal(verifySignature(data, sig.subarray(0, 63), me.publicKey), false)
    assert.equal(verifySignature(data, sig, me.publicKey.subarray(0, 31)), false)
    // 0xff…ff is not a valid curve point encoding.
    assert.equal(verifySignature(data, sig, Buffer.alloc(32, 0xff)), false)
    assert.equal(verifySignature(data, Buffer.alloc(64), Buffer.alloc(32)), false)
  })
})
