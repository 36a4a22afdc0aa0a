// The oclif `fpeer:transport` hook: tells the CLI this plugin provides the FTP transport.
import type {TransportHook} from '@fpeer/core/plugin'
import {ftpTransport} from '../transport.js'

const transportHook: TransportHook = async function () {
  return {transports: [ftpTransport]}
}

export default transportHook
