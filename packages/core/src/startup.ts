// What every fpeer command needs before it does its work (errors, logging, home and identity, the transport registry), without the sessions, stores and transfer code, so `fpeer id` and `fpeer --version` start fast.
export * from './errors.js'
export {createLogger, type LogLevel} from './log.js'
export {escapeForTerminal, needsTerminalEscape, tty} from './display.js'
export {TransportRegistry, type RegisteredTransport} from './registry.js'
export {Home, resolveHome, ensureHome, loadIdentity, readIdentity} from './store/home.js'
export {DEFAULT_TIMEOUTS, type HandshakeTimeouts} from './session/context.js'
export {CONTROL_BUFFER_BYTES, DEFAULT_FIRST_LINE_TIMEOUT_MS} from './wire/limits.js'
export type {Logger, TransportHookResult} from './transport.js'
// Brings the typed `fpeer:transport` hook into the CLI's view of @oclif/core's Hooks.
export type {TransportHook} from './oclif-hooks.js'
