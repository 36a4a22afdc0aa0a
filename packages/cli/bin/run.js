#!/usr/bin/env node
// The fpeer entry point: settles oclif's settings and directories, then hands the command line to oclif.
import path from 'node:path'
import {execute, settings} from '@oclif/core'

// fpeer and its plugins ship compiled JavaScript: never look for TypeScript sources, so a
// linked plugin does not print oclif's "cannot be auto-transpiled" warning on every start.
settings.enableAutoTranspile = false

// Plugins belong to a home: with FPEER_HOME set, oclif's data directory (where `fpeer plugins
// install` puts them) is inside it, unless FPEER_DATA_DIR says otherwise.
if (process.env.FPEER_HOME && !process.env.FPEER_DATA_DIR) process.env.FPEER_DATA_DIR = path.join(path.resolve(process.env.FPEER_HOME), 'plugins')

// `fpeer -V` and `fpeer --version` are the `version` command, so that `--json` works with them.
const argv = process.argv.slice(2)
if (argv[0] === '-V' || argv[0] === '--version') argv[0] = 'version'

await execute({args: argv, dir: import.meta.url})
