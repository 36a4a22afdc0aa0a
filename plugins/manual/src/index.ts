// @fpeer/plugin-manual: the MANUAL transport; a person (or a script) moves the bytes, fpeer says what to get and checks it.
import type {Transport} from '@fpeer/core/plugin'
import {handOver} from './hand-over.js'

/** Builds the MANUAL transport; `manualTransport` is this one. It neither serves nor connects: a person moves the bytes. */
export function createManualTransport(): Transport {
  return {
    protocol: 'MANUAL',
    description: 'the user places the files by hand (or by script); fpeer lists them and checks every hash',
    supports: {serve: false, fetch: false, resume: false, peerAuth: false, serverAuth: false, batch: false},
    handOver: (request, io) => handOver(request, io),
  }
}

export const manualTransport: Transport = createManualTransport()

export {handOver, listing, POLL_MS} from './hand-over.js'
export {encodeSegment, fileUrl} from './url.js'
