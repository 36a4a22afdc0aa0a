// Native signatures match tweetnacl's bytes and verify with the native check, and nothing else does; a peer ID's printed form is small to keep.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {setFlagsFromString} from 'node:v8'
import {runInNewContext} from 'node:vm'
import nacl from 'tweetnacl'
import {Identity, PeerId, generateKeyPair, verifySignature} from './identity.js'

describe('PeerId', () => {
  it('keeps its compact form as one flat string, asked for once or many times', () => {
    const key = generateKeyPair().publicKey
    const id = PeerId.fromPublicKey(key)
    assert.equal(id.compact.length, 52)
    assert.equal(PeerId.parse(id.toString()).compact, id.compact)
    // Kept by the thousand (the replay guard's keys, maps by peer): measured after a full GC.
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const N = 4000
    const make = () => Array.from({length: N}, () => PeerId.fromPublicKey(key)).map((p) => [p, p.compact, p.compact] as const)
    let kept = make()
    gc()
    const before = process.memoryUsage().heapUsed
    kept = kept.concat(make())
    gc()
    const perId = (process.memoryUsage().heapUsed - before) / N
    assert.equal(kept.length, 2 * N)
    // Before: a chain of some 40 cons cells per `compact` asked for (about 1.3 KB each time).
    assert.ok(perId < 1000, `${Math.round(perId)} bytes per peer ID`)
  })
})

describe('generateKeyPair', () => {
  it('makes tweetnacl’s form of a pair: the seed, then the public key tweetnacl derives from it; a new seed each time', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 20; i++) {
      const keys = generateKeyPair()
      assert.equal(keys.secretKey.length, 64)
      const fromSeed = nacl.sign.keyPair.fromSeed(keys.secretKey.slice(0, 32))
      assert.deepEqual(Buffer.from(keys.publicKey), Buffer.from(fromSeed.publicKey))
      assert.deepEqual(Buffer.from(keys.secretKey), Buffer.from(fromSeed.secretKey))
      seen.add(Buffer.from(keys.secretKey).toString('hex'))
    }
    assert.equal(seen.size, 20)
  })
})

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

  it('keeps every key its own through the parsed-key cache: 300 keys (past its bound), a key whose buffer is reused, each checked twice', () => {
    const ids = Array.from({length: 300}, () => new Identity(generateKeyPair()))
    for (let round = 0; round < 2; round++)
      for (const [i, id] of ids.entries()) {
        const signed = id.sign(data)
        assert.equal(verifySignature(data, signed, id.publicKey), true, `key ${i}`)
        assert.equal(verifySignature(data, signed, ids[(i + 1) % ids.length]!.publicKey), false, `key ${i + 1} for ${i}`)
      }
    // The same bytes at another offset of a larger buffer, then that buffer rewritten with another key.
    const slab = Buffer.alloc(40)
    Buffer.from(me.publicKey).copy(slab, 8)
    const view = slab.subarray(8, 40)
    assert.equal(verifySignature(data, sig, view), true)
    Buffer.from(other.publicKey).copy(slab, 8)
    assert.equal(verifySignature(data, sig, view), false)
    assert.equal(verifySignature(data, other.sign(data), view), true)
  })
})
