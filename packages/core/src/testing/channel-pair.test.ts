// In-process tests of MessageChannel over the in-memory channel pair: whole messages both ways, typed failures for bad framing, a closed or reset peer.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {isFpeerError} from '../errors.js'
import {ByteBudget} from '../net/limits.js'
import type {Message} from '../wire/types.js'
import {channelPair, socketPair} from './channel-pair.js'
import {MessageChannel} from '../net/channel.js'

const peerError = (code: string, text: string) => ({type: 'PeerError', folder: '*', meta: {}, code, text}) as Message

describe('MessageChannel over the in-memory pair', () => {
  it('carries whole messages both ways, in order, and shows both ends’ addresses', async () => {
    const {client, server} = channelPair()
    try {
      assert.equal(server.remoteAddress, '127.0.0.2')
      assert.equal(client.remoteAddress, '127.0.0.1')
      assert.equal(client.remotePort, 7654)
      await client.send(peerError('E_BUSY', 'one'))
      await client.send(peerError('E_BUSY', 'two'))
      const one = await server.next(5000)
      const two = await server.next(5000)
      assert.deepEqual([one.type, (one as {text: string}).text, (two as {text: string}).text], ['PeerError', 'one', 'two'])
      await server.send(peerError('E_REFUSED', 'back'))
      assert.equal(((await client.next(5000)) as {code: string}).code, 'E_REFUSED')
    } finally {
      await client.close()
      await server.close()
    }
  })

  it('a message split across many writes arrives whole', async () => {
    const {client, server} = channelPair()
    try {
      for (const ch of 'PeerError\n*\nE_BUSY\nslowly\n\n') await client.sendRaw(ch)
      assert.equal(((await server.next(5000)) as {text: string}).text, 'slowly')
    } finally {
      await client.close()
      await server.close()
    }
  })

  it('the tap sees every whole message as it crosses', async () => {
    const seen: string[] = []
    const {client, server} = channelPair({server: {tap: (d, text) => seen.push(`${d}:${text.split('\n')[0]}`)}})
    try {
      await client.send(peerError('E_BUSY', 'x'))
      await server.next(5000)
      await server.send(peerError('E_BUSY', 'y'))
      await client.next(5000)
      assert.deepEqual(seen, ['received:PeerError', 'sent:PeerError'])
    } finally {
      await client.close()
      await server.close()
    }
  })

  it('an unknown message type is E_MSG_UNKNOWN_TYPE', async () => {
    const {client, server} = channelPair()
    try {
      await client.sendRaw('Gimme\n*\n\n')
      await assert.rejects(server.next(5000), {code: 'E_MSG_UNKNOWN_TYPE'})
    } finally {
      await client.close()
      await server.close()
    }
  })

  it('an over-long line is E_MSG_LINE_TOO_LONG before the message ends', async () => {
    const {client, server} = channelPair()
    try {
      await client.sendRaw('x'.repeat(9000))
      await assert.rejects(server.next(5000), {code: 'E_MSG_LINE_TOO_LONG'})
    } finally {
      await client.close()
      await server.close()
    }
  })

  it('a peer that closes before a message is E_CONNECTION_LOST; a peer that half-closes after one still delivers it', async () => {
    const {client, server} = channelPair()
    await client.sendRaw('PeerError\n*\nE_BUSY\nlast words\n\n')
    await client.close()
    assert.equal(((await server.next(5000)) as {text: string}).text, 'last words')
    await assert.rejects(server.next(5000), {code: 'E_CONNECTION_LOST'})
    await server.close()
  })

  it('a reset is E_CONNECTION_LOST, and sending after it is too', async () => {
    const {client, server} = channelPair()
    const waiting = server.next(5000)
    client.socket.destroy(new Error('boom'))
    await assert.rejects(waiting, (e: unknown) => isFpeerError(e, 'E_CONNECTION_LOST'))
    await assert.rejects(client.send(peerError('E_BUSY', 'x')), {code: 'E_CONNECTION_LOST'})
    await server.close()
  })

  it('nothing within the timeout is E_TIMEOUT naming the address', async () => {
    const {client, server} = channelPair()
    try {
      await assert.rejects(server.next(50), (e: unknown) => isFpeerError(e, 'E_TIMEOUT') && (e.details as {address: string}).address === '127.0.0.2:40000')
    } finally {
      await client.close()
      await server.close()
    }
  })

  it('a server whose shared buffer is used up fails the connection with E_BUSY', async () => {
    const {client, server} = socketPair()
    const channel = new MessageChannel(server, {budget: new ByteBudget(16)})
    try {
      client.write('PeerError\n*\nE_BUSY\nmore than sixteen bytes\n')
      await assert.rejects(channel.next(5000), {code: 'E_BUSY'})
    } finally {
      client.destroy()
      await channel.close()
    }
  })
})
