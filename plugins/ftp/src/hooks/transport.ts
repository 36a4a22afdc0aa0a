// The oclif `fpeer:transport` hook: tells the CLI this plugin provides the FTP transport.
import type {TransportHookResult} from '@fpeer/core/plugin'
import {ftpTransport} from '../index.js'

export default async function transportHook(): Promise<TransportHookResult> {
  return {transports: [ftpTransport]}
}
