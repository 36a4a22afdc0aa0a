// Access control on a real home: folders and peers as last read, the access decisions, and the refresh timer's lifecycle.
import {Home} from '../store/home.js'
import assert from 'node:assert/strict'
import {mkdir, mkdtemp, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, describe, it} from 'node:test'
import {Identity, generateKeyPair} from '../identity.js'
import {ConfigStore, type FolderConfig} from '../store/config.js'
import {Peerfile} from '../store/peerfile.js'
import {AccessControl} from './control.js'

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const member = new Identity(generateKeyPair()).id
const allowed = new Identity(generateKeyPair()).id
const stranger = new Identity(generateKeyPair()).id

describe('AccessControl', () => {
  const dirs: string[] = []
  after(async () => {
    for (const d of dirs) await rm(d, {recursive: true, force: true})
  })

  async function home(): Promise<{home: string; config: ConfigStore; root: string}> {
    const h = await mkdtemp(path.join(os.tmpdir(), 'fpeer-access-'))
    dirs.push(h)
    const root = path.join(h, 'share')
    await mkdir(path.join(root, 'closed'), {recursive: true})
    await mkdir(path.join(root, 'open'), {recursive: true})
    const config = new ConfigStore(h)
    await config.share({name: 'closed', path: path.join(root, 'closed'), allow: [allowed.toString()]})
    await config.share({name: 'open', path: path.join(root, 'open'), open: true})
    const peer = {
      id: member.toString(),
      address: '127.0.0.2',
      controlPort: 7734,
      protocols: ['HTTP'],
      role: 'member' as const,
      confirmedAt: new Date().toISOString(),
    }
    await new Peerfile(h, 'closed').addPeer(peer)
    await new Peerfile(h, 'closed').addPeer({...peer, id: 'plain:127.0.0.3', controlPort: 7734})
    return {home: h, config, root}
  }

  it('decides on the folders and peers it read: read by grant or key, never by address; join if open, allowed or confirmed', async () => {
    const {home: h, config} = await home()
    const seen: FolderConfig[][] = []
    const access = new AccessControl({home: new Home(h), config, onRefresh: (f) => seen.push(f)})
    await access.start(new AbortController().signal)
    assert.deepEqual(access.names().sort(), ['closed', 'open'])
    assert.equal(seen.length, 1)
    assert.equal(access.timers, 0, 'no refreshMs: no timer')
    const addr = {address: '127.0.0.2'}
    assert.equal(access.mayRead('closed', addr), false, 'an address alone never reads')
    assert.equal(access.mayRead('closed', {...addr, peer: member}), true)
    assert.equal(access.mayRead('closed', {...addr, peer: stranger}), false)
    const g = access.grants.issue('closed', undefined)
    assert.equal(access.mayRead('closed', {...addr, grant: g.token}), true)
    assert.equal(access.mayRead('open', {...addr, grant: g.token}), true)
    g.revoke()
    assert.equal(access.mayRead('closed', {...addr, grant: g.token}), false)
    assert.equal(access.mayRead('nope', {...addr, peer: member}), false)
    assert.equal(access.admits({...addr, peer: stranger}), true, 'the open folder admits anyone')
    assert.equal(access.mayJoin('closed', allowed), true)
    assert.equal(access.mayJoin('closed', member), true)
    assert.equal(access.mayJoin('closed', stranger), false)
    assert.equal(access.mayJoin('closed', undefined), false)
    assert.equal(access.mayJoin('open', undefined), true)
    assert.equal(access.isPeer('closed', member), true)
    assert.deepEqual(access.forwardTargets('closed', []), [member.toString()], 'seed-form peers get no updates')
    assert.deepEqual(access.forwardTargets('closed', [member.toString()]), [])
    await access.stop()
  })

  it('re-reads every refreshMs until stopped; abort and stop leave no timer', async () => {
    const {home: h, config, root} = await home()
    const access = new AccessControl({home: new Home(h), config, refreshMs: 20})
    const ac = new AbortController()
    await access.start(ac.signal)
    assert.equal(access.timers, 1)
    await mkdir(path.join(root, 'later'))
    await config.share({name: 'later', path: path.join(root, 'later')})
    await until('the new folder to be read', () => access.folder('later') !== undefined)
    ac.abort()
    assert.equal(access.timers, 0)
    await access.stop()
    await access.stop()
    assert.equal(access.timers, 0)
  })

  it('stop before start: start reads nothing and starts no timer', async () => {
    const {home: h, config} = await home()
    const access = new AccessControl({home: new Home(h), config, refreshMs: 20})
    await access.stop()
    await access.start(new AbortController().signal)
    assert.equal(access.timers, 0)
    assert.deepEqual(access.names(), [])
  })
})
