// The base of every fpeer command: home, transport registry, logging, and errors mapped to stable exit codes.
import {Command, Flags, type Interfaces} from '@oclif/core'
import {
  EXIT_CODES,
  FpeerError,
  Home,
  type Logger,
  type LogLevel,
  TransportRegistry,
  createLogger,
  escapeForTerminal,
  fromSystemError,
  isFpeerError,
  isLocalWriteError,
} from '@fpeer/core/startup'
import {streamJson} from './json-out.js'
import {type Settings, readSettings} from './settings.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>
export type BaseArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    debug: Flags.boolean({description: 'Show stack traces and debug logs on stderr.', helpGroup: 'GLOBAL'}),
    quiet: Flags.boolean({char: 'q', description: 'Log only warnings and errors on stderr.', helpGroup: 'GLOBAL', exclusive: ['verbose']}),
    verbose: Flags.boolean({char: 'v', description: 'Log debug lines too on stderr (without stack traces).', helpGroup: 'GLOBAL'}),
  }

  protected flags!: BaseFlags<T>
  protected args!: BaseArgs<T>
  /** The fpeer home: every store a command reads or writes comes from it. */
  protected home!: Home
  protected log_!: Logger
  /** The environment, parsed once (settings.ts): commands hand these to core. */
  protected settings!: Settings

  public override async init(): Promise<void> {
    await super.init()
    const {flags, args} = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (this.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    this.flags = flags as BaseFlags<T>
    this.args = args as BaseArgs<T>
    this.settings = readSettings()
    // Created by what writes there (loadIdentity, the stores), so a read-only command leaves no home behind.
    this.home = new Home(this.settings.home ?? this.config.configDir)
    // Long-running commands take --progress: `json` makes every stderr line (events and log lines) a JSON object.
    const progress = (this.flags as {progress?: string}).progress
    this.log_ = createLogger({level: this.logLevel(progress), json: progress === 'json'})
  }

  /** True with -v, --debug or DEBUG: the user asked for more than the usual lines. */
  protected get verbose(): boolean {
    return Boolean(this.flags.verbose || this.flags.debug || this.settings.debug)
  }

  /** A flag the user typed wins over FPEER_LOG_LEVEL, which wins over the command's own default (quieter under --json or --progress=none). */
  private logLevel(progress: string | undefined): LogLevel {
    if (this.verbose) return 'debug'
    if (this.flags.quiet) return 'warn'
    if (this.settings.logLevel) return this.settings.logLevel
    return progress === 'none' || (this.jsonEnabled() && progress !== 'json') ? 'warn' : 'info'
  }

  /** Every transport the installed plugins provide, through their `fpeer:transport` hooks. */
  protected async registry(): Promise<TransportRegistry> {
    const registry = new TransportRegistry()
    const res = await this.config.runHook('fpeer:transport', {})
    for (const s of res.successes) {
      // A hook that returns nothing registers nothing; a malformed transport is skipped with a warning, as a failed hook is.
      if (s.result === undefined) continue
      for (const e of registry.addHookResult(s.result, s.plugin.name))
        this.log_.warn('a transfer plugin returned a malformed transport', {plugin: s.plugin.name, code: e.code, reason: e.message})
    }
    for (const f of res.failures) this.log_.warn('a transfer plugin failed to load', {plugin: f.plugin.name, reason: f.error.message})
    return registry
  }

  /**
   * Writes a human line to stderr (never stdout, which carries results). Like `out`, it is a
   * terminal's only way in: only the TABs and LFs of the caller's layout stay raw (build the
   * line with `tty` so that values have theirs escaped too).
   */
  protected note(text: string): void {
    if (!this.jsonEnabled()) process.stderr.write(escapeForTerminal(text, {keep: '\t\n'}) + '\n')
  }

  #json: boolean | undefined

  /** oclif's answer, asked once: it reads the environment each time, and `out` asks for every line. */
  override jsonEnabled(): boolean {
    return (this.#json ??= super.jsonEnabled())
  }

  /** Writes a human result to stdout, unless --json is on (then the returned object is the output); escaped as `note` is. */
  protected out(text: string): void {
    if (!this.jsonEnabled()) process.stdout.write(escapeForTerminal(text, {keep: '\t\n'}) + '\n')
  }

  /**
   * The --json document. oclif's own tokenizes the text to colour it, an object per token:
   * for `fpeer files --json` of 100,000 files, seconds and hundreds of MB. Colours are for a
   * terminal only; a pipe gets the same pretty-printed text, written in slices as it is made
   * and as the reader takes them (json-out.ts), so the document is never held whole beside
   * the objects it describes.
   */
  protected override logJson(json: unknown): void {
    if (process.stdout.isTTY) return super.logJson(json)
    // bin/run.js waits for it (jsonWritten) before the process may end.
    void streamJson(json, process.stdout)
  }

  protected override async catch(err: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    // `this.exit(n)` (EEXIT) keeps oclif's behaviour; parse errors (missing args, bad flags) become E_USAGE.
    if (err.oclif?.exit !== undefined && !isFpeerError(err) && (err as {code?: string}).code === 'EEXIT') {
      if (err.oclif.exit === 0) return
      throw err
    }
    const e: FpeerError = isFpeerError(err)
      ? err
      : err.oclif
        ? new FpeerError('E_USAGE', err.message.replace(/\n?See more help with --help$/, ''), {
            hint: `see \`${[this.config.bin, this.id?.replaceAll(':', ' ')].filter(Boolean).join(' ')} --help\``,
          })
        : isLocalSystemError(err)
          ? fromSystemError(err, 'local file', {path: err.path})
          : new FpeerError('E_INTERNAL', err.message || String(err), {
              cause: err,
              hint: 'this is a bug in fpeer; run again with --debug and report the stack trace',
            })
    process.exitCode = EXIT_CODES[e.kind]
    if (this.jsonEnabled()) {
      process.stdout.write(JSON.stringify({error: e.toJSON()}) + '\n')
    } else {
      process.stderr.write(errorText(e))
      if (this.flags?.debug || this.argv.includes('--debug') || process.env.DEBUG)
        process.stderr.write(escapeForTerminal(`${(e.cause as Error)?.stack ?? e.stack}`, {keep: '\n'}) + '\n')
    }
    return undefined
  }
}

/** A local disk's failure (ENOSPC, EROFS… on a named path) that no service typed: E_DISK_FULL/E_IO, not a bug. */
function isLocalSystemError(err: unknown): err is NodeJS.ErrnoException & {path: string} {
  return isLocalWriteError(err) && typeof (err as NodeJS.ErrnoException).path === 'string'
}

/**
 * An error for a terminal: `Error [CODE]: message` and its hint. Both may quote a peer (a
 * PeerError reason, a file name), so nothing in them reaches the terminal raw; a line break
 * in them (a usage message has some) is kept but indented, so it cannot pass for a line of
 * fpeer's own. The exact text is in `--json`'s `error`.
 */
export function errorText(e: FpeerError): string {
  const show = (text: string) => escapeForTerminal(text, {keep: '\n'}).replaceAll('\n', '\n    ')
  return `Error [${e.code}]: ${show(e.message)}\n${e.hint ? `  Hint: ${show(e.hint)}\n` : ''}`
}
