// The transport registry: Line 4's protocol name to the plugin that implements it.
import {FpeerError} from './errors.js'
import {knownPlugin} from './plugins.js'
import type {Transport} from './transport.js'

/** Where a transport came from, for `fpeer protocols`. */
export interface RegisteredTransport {
  transport: Transport
  plugin: string
}

/** Line 4's protocol token (wire/fields.ts). */
const PROTOCOL = /^[A-Za-z][A-Za-z0-9._+-]{0,31}$/
const SUPPORTS = ['serve', 'fetch', 'resume', 'peerAuth', 'serverAuth'] as const

/**
 * Loads a part of a transport on first use (its client, its server), as a thin hook's
 * transport does: a part that cannot load (a plugin installed without its dependencies, a
 * damaged file) is E_PLUGIN naming the protocol and the part, with how to repair it, not a
 * raw module error deep in a request or serve.
 */
export async function loadOnUse<T>(protocol: string, part: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load()
  } catch (err) {
    throw new FpeerError('E_PLUGIN', `the ${protocol} plugin cannot load its ${part}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
      hint: 'reinstall the plugin that provides it (`fpeer plugins` lists them)',
    })
  }
}

/**
 * Checks at run time that what a plugin's hook returned is a Transport: a plugin is code
 * this peer was not compiled with, and a malformed one must fail when it registers, naming
 * the plugin, not as a TypeError in the middle of a transfer. E_PLUGIN.
 */
export function checkTransport(value: unknown, plugin: string): Transport {
  const bad = (what: string): never => {
    throw new FpeerError('E_PLUGIN', `plugin ${plugin} returned a malformed transport: ${what}`, {
      details: {plugin},
      hint: 'update or remove that plugin (`fpeer plugins`)',
    })
  }
  if (typeof value !== 'object' || value === null) return bad('not an object')
  const t = value as Record<string, unknown>
  if (typeof t.protocol !== 'string' || !PROTOCOL.test(t.protocol)) return bad(`protocol ${JSON.stringify(t.protocol)} is not a protocol name`)
  if (typeof t.description !== 'string') return bad(`${t.protocol}: no description`)
  const sup = t.supports as Record<string, unknown> | undefined
  if (typeof sup !== 'object' || sup === null) return bad(`${t.protocol}: no supports`)
  for (const k of SUPPORTS) if (typeof sup[k] !== 'boolean') return bad(`${t.protocol}: supports.${k} is not a boolean`)
  // Plugins built before `batch` existed leave it out: they are read as not batching.
  if (sup.batch !== undefined && typeof sup.batch !== 'boolean') return bad(`${t.protocol}: supports.batch is not a boolean`)
  // getMany() is a client's: connectToPeer (transfer/peer-client.ts) checks it on every client of a batching transport.
  if (sup.batch && !sup.fetch) return bad(`${t.protocol}: supports.batch without supports.fetch`)
  for (const k of ['serve', 'connect', 'handOver', 'canName'] as const)
    if (t[k] !== undefined && typeof t[k] !== 'function') return bad(`${t.protocol}: ${k} is not a function`)
  if (sup.serve && typeof t.serve !== 'function') return bad(`${t.protocol}: supports.serve without serve()`)
  if (sup.fetch && typeof t.connect !== 'function') return bad(`${t.protocol}: supports.fetch without connect()`)
  if (!sup.fetch && typeof t.connect === 'function') return bad(`${t.protocol}: connect() without supports.fetch`)
  if (!sup.fetch && !sup.serve && typeof t.handOver !== 'function') return bad(`${t.protocol}: neither serves, fetches nor hands over`)
  return value as Transport
}

export class TransportRegistry {
  readonly #byProtocol = new Map<string, RegisteredTransport>()

  /** Registers a transport (the first of a protocol wins); a malformed one is E_PLUGIN and is not registered. */
  add(value: Transport, plugin = 'unknown'): void {
    const transport = checkTransport(value, plugin)
    const key = transport.protocol.toUpperCase()
    if (!this.#byProtocol.has(key)) this.#byProtocol.set(key, {transport, plugin})
  }

  /**
   * Registers what one plugin's `fpeer:transport` hook returned; returns the E_PLUGIN errors
   * of what was malformed (each skipped), so one broken plugin does not stop the others.
   */
  addHookResult(result: unknown, plugin: string): FpeerError[] {
    const transports = (result as {transports?: unknown} | undefined)?.transports
    if (!Array.isArray(transports))
      return [new FpeerError('E_PLUGIN', `plugin ${plugin}'s fpeer:transport hook returned no transports list`, {details: {plugin}})]
    const failed: FpeerError[] = []
    for (const t of transports) {
      try {
        this.add(t as Transport, plugin)
      } catch (err) {
        if (!(err instanceof FpeerError)) throw err
        failed.push(err)
      }
    }
    return failed
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
        hint: known
          ? `install it with \`fpeer plugins:install ${known.short}\` (package ${known.package})`
          : 'no known fpeer plugin provides it; `fpeer protocols` lists what this peer has',
        details: {protocol: protocol.toUpperCase(), ...(known ? {plugin: known.package, install: `fpeer plugins:install ${known.short}`} : {})},
      })
    }
    return found.transport
  }

  /**
   * Starts loading the client of `protocol` ahead of its first connect (Transport.prepare),
   * in the background: an unknown protocol or a failed load is ignored, connect() decides.
   */
  prepare(protocol: string): void {
    const found = this.#byProtocol.get(protocol.toUpperCase())
    if (!found?.transport.prepare) return
    const t = found.transport
    void Promise.resolve()
      .then(() => t.prepare?.())
      .catch(() => {})
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
