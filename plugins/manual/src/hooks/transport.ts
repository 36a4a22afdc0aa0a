// oclif hook `fpeer:transport`: tells core that this plugin provides MANUAL.
import {manualTransport} from '../index.js'

export default async function transportHook() {
  return {transports: [manualTransport]}
}
