// The oclif `fpeer:transport` hook: tells the CLI this plugin provides the HTTP transport.
import type {TransportHook} from '@fpeer/core/plugin'
import {httpTransport} from '../transport.js'

const transportHook: TransportHook = async function () {
  return {transports: [httpTransport]}
}

export default transportHook
