#!/usr/bin/env node
// Part of `npm run build`: bundles @fpeer/core's compiled modules, then the CLI's with @oclif/core (packages/core/bundle.js and packages/cli/bundle.js say why).
import path from 'node:path'
import {writeCliBundle} from '../packages/cli/bundle.js'
import {writeBundle} from '../packages/core/bundle.js'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
for (const [pkg, write] of [
  ['packages/core', writeBundle],
  ['packages/cli', writeCliBundle],
]) {
  const {dir, files} = await write(path.join(root, pkg), {prune: true})
  process.stderr.write(`bundle: ${path.relative(root, dir)} (${files} files)\n`)
}
