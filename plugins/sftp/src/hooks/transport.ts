// The oclif `fpeer:transport` hook: tells the CLI this plugin provides the SFTP transport.
import type {TransportHook} from '@fpeer/core/plugin'
import {sftpTransport} from '../transport.js'

const transportHook: TransportHook = async function () {
  return {transports: [sftpTransport]}
}

export default transportHook
