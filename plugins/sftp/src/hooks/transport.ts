// The oclif `fpeer:transport` hook: tells the CLI this plugin provides the SFTP transport.
import type {TransportHookResult} from '@fpeer/core/plugin'
import {sftpTransport} from '../index.js'

export default async function transportHook(): Promise<TransportHookResult> {
  return {transports: [sftpTransport]}
}
