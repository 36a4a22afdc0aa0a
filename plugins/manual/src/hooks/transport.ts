// The oclif `fpeer:transport` hook: tells the CLI this plugin provides the MANUAL transport.
import type {TransportHook} from '@fpeer/core/plugin'
import {manualTransport} from '../index.js'

const transportHook: TransportHook = async function () {
  return {transports: [manualTransport]}
}

export default transportHook
