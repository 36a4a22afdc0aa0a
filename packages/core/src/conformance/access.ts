// The conformance suite's access cases: what a server must never serve, and to whom: unsafe paths, symlinks, folder access, grants, keys.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import path from 'node:path'
import {describe} from 'node:test'
import {Identity, generateKeyPair} from '../identity.js'
import {fetchFiles} from '../transfer/fetch.js'
import {ESCAPE_LINK, FOLDER, NAME, OUTSIDE_CONTENT, listTree} from './fixture.js'
import {connectOptions, serveFixture} from './peer.js'
import {LEAVES_FOLDER, readAll, rejectsWith, type Suite} from './context.js'

/** Registers the access cases. */
export function accessCases(s: Suite): void {
  const {transport, sup} = s
  describe('access', () => {
    s.test('unsafe paths in a file list are E_PATH_UNSAFE before any byte moves', {}, async () => {
      const dest = await s.fx.makeDest()
      await s.peer({}, async ({client, source: served}) => {
        for (const bad of ['../x', '/etc/passwd', 'a/../../x', 'a//b', './x', 'x\0y']) {
          const files = [s.entry(NAME), {path: bad, size: 1, sha256: 'a'.repeat(64)}]
          await rejectsWith(fetchFiles({client, batch: s.sup.batch, folder: FOLDER, files, mode: 'land', root: dest, concurrency: 2}), 'E_PATH_UNSAFE')
        }
        assert.equal(served.opens.length, 0, 'the server opened a file although the list was refused')
      })
      assert.deepEqual(await listTree(dest), [])
    })

    s.test('get() never serves a path that leaves the folder', {}, async () => {
      await s.peer({}, async ({client}) => {
        for (const bad of ['../outside/secret', '../../etc/passwd', '/etc/passwd', 'a/../../outside/secret']) {
          await rejectsWith(async () => {
            const {stream} = await client.get(FOLDER, bad)
            const got = await readAll(stream)
            assert.ok(!got.toString().includes(OUTSIDE_CONTENT.trim()), `served ${bad}`)
          }, LEAVES_FOLDER)
        }
      })
    })

    s.test('a symlink inside the folder pointing outside it is not served', {}, async () => {
      const dest = await s.fx.makeDest()
      assert.ok(!s.fx.entries.has(ESCAPE_LINK), 'core scans symlinks as files')
      const files = [{path: ESCAPE_LINK, size: OUTSIDE_CONTENT.length, sha256: createHash('sha256').update(OUTSIDE_CONTENT).digest('hex')}]
      await s.peer({}, async ({client}) => {
        await rejectsWith(async () => {
          const {stream} = await client.get(FOLDER, ESCAPE_LINK)
          await readAll(stream)
        }, ['E_NOT_FOUND', 'E_PATH_UNSAFE', 'E_ACCESS'])
        await rejectsWith(fetchFiles({client, batch: s.sup.batch, folder: FOLDER, files, mode: 'land', root: dest, concurrency: 1, retries: 1}), [
          'E_NOT_FOUND',
          'E_PATH_UNSAFE',
          'E_ACCESS',
        ])
      })
      assert.deepEqual(await listTree(dest), [])
    })

    s.test('a peer the folder does not allow is refused with E_ACCESS', {}, async () => {
      await s.peer({mayRead: () => false}, async ({client}) => {
        await rejectsWith(async () => {
          const {stream} = await client.get(FOLDER, NAME)
          await readAll(stream)
        }, 'E_ACCESS')
      })
    })

    s.test('the FileSource learns who is asking', {}, async () => {
      await s.peer({}, async ({client, source: served, clientIdentity}) => {
        await readAll((await client.get(FOLDER, NAME)).stream)
        assert.ok(served.whos.length > 0, 'the server never consulted the FileSource')
        for (const who of served.whos) {
          assert.equal(who.address, '127.0.0.1', 'IPv4-mapped addresses must be given as IPv4')
          if (sup.peerAuth) assert.equal(who.peer?.toString(), clientIdentity.id.toString())
        }
      })
    })

    s.test(
      'the grant secret the client was given reaches the FileSource on every request',
      {skip: sup.peerAuth && 'transport authenticates peers by key (supports.peerAuth)'},
      async () => {
        const grant = 'G'.repeat(43)
        await s.peer({grant, mayRead: (_f, who) => who.grant === grant}, async ({client, source: served}) => {
          await readAll((await client.get(FOLDER, NAME)).stream)
          if (s.sup.batch && client.getMany)
            for await (const item of client.getMany(FOLDER, [{path: NAME, size: 1 << 20}]))
              assert.ok(!('error' in item), `batch item refused: ${'error' in item ? item.error.code : ''}`)
          assert.ok(served.whos.length > 0, 'the server never consulted the FileSource')
          for (const who of served.whos) assert.equal(who.grant, grant)
        })
      },
    )

    s.test('a wrong grant secret opens nothing (E_ACCESS)', {skip: sup.peerAuth && 'transport authenticates peers by key (supports.peerAuth)'}, async () => {
      const grant = 'G'.repeat(43)
      await s.peer({grant: 'W'.repeat(43), mayRead: (_f, who) => who.grant === grant}, async ({client}) => {
        await rejectsWith(async () => {
          const {stream} = await client.get(FOLDER, NAME)
          await readAll(stream)
        }, 'E_ACCESS')
      })
    })

    s.test(
      'admit() returning false refuses the peer with E_ACCESS',
      {skip: !sup.peerAuth && 'transport does not authenticate peers (supports.peerAuth false)'},
      async () => {
        const served = await serveFixture(transport, s.fx, {admit: () => false})
        try {
          await rejectsWith(async () => {
            const client = await s.connect(connectOptions(served, new Identity(generateKeyPair()), {}, s.timeoutMs))
            try {
              await readAll((await client.get(FOLDER, NAME)).stream)
            } finally {
              await client.close()
            }
          }, 'E_ACCESS')
        } finally {
          await served.server.close()
        }
      },
    )

    s.test(
      'a server that is not the expected peer is refused with E_HOST_KEY_MISMATCH',
      {skip: !sup.serverAuth && 'transport does not authenticate servers (supports.serverAuth false)'},
      async () => {
        const served = await serveFixture(transport, s.fx)
        try {
          const someoneElse = new Identity(generateKeyPair()).id
          await rejectsWith(async () => {
            const client = await s.connect(connectOptions(served, new Identity(generateKeyPair()), {expectedPeer: someoneElse}, s.timeoutMs))
            try {
              await readAll((await client.get(FOLDER, NAME)).stream)
            } finally {
              await client.close()
            }
          }, 'E_HOST_KEY_MISMATCH')
        } finally {
          await served.server.close()
        }
      },
    )
  })
}
