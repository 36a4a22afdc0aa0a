// The MANUAL transport: a person (or a script) moves the bytes; fpeer only says what to get and checks it.
import type {Transport} from '@fpeer/core'

export const manualTransport: Transport = {
  protocol: 'MANUAL',
  description: 'the user places the files by hand (or by script); fpeer lists them and checks every hash',
  supports: {serve: false, fetch: false, resume: false, peerAuth: false, serverAuth: false},
}
