#!/usr/bin/env node
// Part of `npm run build`: writes oclif.manifest.json for the CLI and every plugin, so `fpeer` starts without importing every command.
import path from 'node:path'
import {writeManifest} from '../packages/cli/bin/manifest.js'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
for (const pkg of ['packages/cli', 'plugins/http', 'plugins/manual', 'plugins/ftp', 'plugins/sftp']) {
  const {file, commands} = await writeManifest(path.join(root, pkg))
  process.stderr.write(`manifest: ${path.relative(root, file)} (${commands} commands)\n`)
}
