// Tests for keys.ts: the SSH encodings of an fpeer identity, checked against literal bytes, ssh2 and ssh-keygen.
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {describe, it} from 'node:test'
import ssh2 from 'ssh2'
import {Identity, keyPairFromSecretKey, verifySignature} from '@fpeer/core'
import {knownHostsLine, parsePublicKeyBlob, privateKeyPem, publicKeyBlob, publicKeyLine} from './keys.js'

// RFC 8032 test vector 1: the seed and the public key it gives.
const SEED = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex')
const PUBLIC = Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex')
const identity = new Identity(keyPairFromSecretKey(Buffer.concat([SEED, PUBLIC])))

describe('keys', () => {
  it('encodes the public key blob as RFC 8709 says', () => {
    assert.equal(publicKeyBlob(PUBLIC).toString('hex'), '0000000b' + Buffer.from('ssh-ed25519').toString('hex') + '00000020' + PUBLIC.toString('hex'))
    assert.equal(publicKeyLine(PUBLIC, 'me'), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea me')
    assert.equal(knownHostsLine('127.0.0.1', 2222, PUBLIC), '[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea')
  })

  it('parses only well-formed ed25519 blobs', () => {
    assert.deepEqual(Buffer.from(parsePublicKeyBlob(publicKeyBlob(PUBLIC))!), PUBLIC)
    const blob = publicKeyBlob(PUBLIC)
    assert.equal(parsePublicKeyBlob(Buffer.concat([blob, Buffer.from([0])])), undefined, 'trailing byte')
    assert.equal(parsePublicKeyBlob(blob.subarray(0, blob.length - 1)), undefined, 'short')
    const rsa = Buffer.from(blob)
    rsa.write('ssh-rsa0000', 4, 'latin1')
    assert.equal(parsePublicKeyBlob(rsa), undefined, 'other algorithm')
    assert.equal(parsePublicKeyBlob(Buffer.alloc(0)), undefined)
  })

  it('writes an openssh-key-v1 PEM that ssh2 reads back as the same key, and signs with it', () => {
    const pem = privateKeyPem(identity)
    assert.match(pem, /^-----BEGIN OPENSSH PRIVATE KEY-----\n([A-Za-z0-9+/=]{1,70}\n)+-----END OPENSSH PRIVATE KEY-----\n$/)
    assert.equal(pem, privateKeyPem(identity), 'deterministic')
    const key = ssh2.utils.parseKey(pem)
    assert.ok(!(key instanceof Error), String(key))
    const parsed = Array.isArray(key) ? key[0]! : key
    assert.equal(parsed.type, 'ssh-ed25519')
    assert.deepEqual(parsed.getPublicSSH(), publicKeyBlob(PUBLIC))
    const data = Buffer.from('signed by the fpeer identity')
    const sig = parsed.sign(data)
    assert.ok(verifySignature(data, sig, PUBLIC), 'ssh2 signature does not verify with the identity key')
    assert.deepEqual(Buffer.from(sig), Buffer.from(identity.sign(data)), 'ed25519 is deterministic: same key, same signature')
  })

  it(
    'writes a private key that ssh-keygen accepts and derives the same public key from',
    {skip: !existsSync('/usr/bin/ssh-keygen') && 'ssh-keygen not installed'},
    async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'fpeer-keys-'))
      try {
        const file = path.join(dir, 'id')
        await writeFile(file, privateKeyPem(identity, 'fpeer test'), {mode: 0o600})
        const out = await new Promise<string>((resolve, reject) =>
          execFile('/usr/bin/ssh-keygen', ['-y', '-f', file], {timeout: 10_000}, (err, stdout) => (err ? reject(err) : resolve(stdout))),
        )
        assert.equal(out.trim().split(' ').slice(0, 2).join(' '), publicKeyLine(PUBLIC))
      } finally {
        await rm(dir, {recursive: true, force: true})
      }
    },
  )
})
