// The transport registry: Line 4's protocol name to the plugin that implements it.
import {FpeerError} from './errors.js'
import {knownPlugin} from './plugins.js'
import type {Transport} from './transport.js'

/** Where a transport came from, for `fpeer protocols`. */
export interface RegisteredTransport {
  transport: Transport
  plugin: string
}

export class TransportRegistry {
  readonly #byProtocol = new Map<string, RegisteredTransport>()

  add(transport: Transport, plugin = 'unknown'): void {
    const key = transport.protocol.toUpperCase()
    if (!this.#byProtocol.has(key)) this.#byProtocol.set(key, {transport, plugin})
  }

  has(protocol: string): boolean {
    return this.#byProtocol.has(protocol.toUpperCase())
  }

  /** The transport for a protocol; an unknown one is E_NO_TRANSPORT naming the plugin that would provide it. */
  get(protocol: string): Transport {
    const found = this.#byProtocol.get(protocol.toUpperCase())
    if (!found) {
      const known = knownPlugin(protocol)
      throw new FpeerError('E_NO_TRANSPORT', `no transfer plugin for protocol ${protocol.toUpperCase()}`, {
        hint: known ? `install it with \`fpeer plugins:install ${known.short}\` (package ${known.package})` : 'no known fpeer plugin provides it; `fpeer protocols` lists what this peer has',
        details: {protocol: protocol.toUpperCase(), ...(known ? {plugin: known.package, install: `fpeer plugins:install ${known.short}`} : {})},
      })
    }
    return found.transport
  }

  list(): RegisteredTransport[] {
    return [...this.#byProtocol.values()].sort((a, b) => (a.transport.protocol < b.transport.protocol ? -1 : 1))
  }

  /** Protocol names, in preference order: HTTP first (the seed's), then the rest alphabetically. */
  protocols(filter?: (t: Transport) => boolean): string[] {
    const names = this.list()
      .filter((r) => !filter || filter(r.transport))
      .map((r) => r.transport.protocol.toUpperCase())
    return names.sort((a, b) => (a === 'HTTP' ? -1 : b === 'HTTP' ? 1 : a < b ? -1 : 1))
  }
}
