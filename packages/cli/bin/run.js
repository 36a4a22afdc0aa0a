#!/usr/bin/env node
// The fpeer entry point: hands the command line to oclif.
import {execute} from '@oclif/core'

await execute({dir: import.meta.url})
