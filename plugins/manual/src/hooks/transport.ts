// The oclif `fpeer:transport` hook: tells the CLI this plugin provides the MANUAL transport.
import type {TransportHookResult} from '@fpeer/core/plugin'
import {manualTransport} from '../index.js'

export default async function transportHook(): Promise<TransportHookResult> {
  return {transports: [manualTransport]}
}
