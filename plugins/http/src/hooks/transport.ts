// The oclif `fpeer:transport` hook: tells the CLI this plugin provides the HTTP transport.
import type {TransportHookResult} from '@fpeer/core/plugin'
import {httpTransport} from '../index.js'

export default async function transportHook(): Promise<TransportHookResult> {
  return {transports: [httpTransport]}
}
