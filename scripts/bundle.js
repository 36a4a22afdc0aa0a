#!/usr/bin/env node
// Part of `npm run build`: bundles @fpeer/core's compiled modules (packages/core/bundle.js says why).
import path from 'node:path'
import {writeBundle} from '../packages/core/bundle.js'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const {dir, files} = await writeBundle(path.join(root, 'packages/core'), {prune: true})
process.stderr.write(`bundle: ${path.relative(root, dir)} (${files} files)\n`)
