// Types the `fpeer:transport` oclif hook by merging it into @oclif/core's `Hooks` (as oclif types its own and sf/Shopify theirs).
//
// Type-only: nothing here loads at run time, so @oclif/core is an optional peer of core, needed
// only by whoever compiles against this entry (the CLI and the plugins, which are oclif plugins).
import type {Hook} from '@oclif/core/hooks'
import type {TransportHookResult} from './transport.js'

declare module '@oclif/core/hooks' {
  interface Hooks {
    /**
     * Asked by the CLI for the transports a plugin provides. Takes no options; a hook that
     * returns nothing provides nothing. The result is still shape-checked at run time
     * (registry.ts), since a plugin compiled against another core may return anything.
     */
    'fpeer:transport': {
      options: Record<string, never>
      return: TransportHookResult | undefined
    }
  }
}

/** A plugin's `fpeer:transport` hook module's default export. */
export type TransportHook = Hook<'fpeer:transport'>
