// Writes a package's oclif.manifest.json (its commands and their flags), so oclif starts without importing every command.
import {renameSync, statSync, writeFileSync} from 'node:fs'
import path from 'node:path'

/** The manifest oclif would build for the package at `root`, written atomically (concurrent starts may race here). */
export async function writeManifest(root) {
  const {Plugin} = await import('@oclif/core')
  const plugin = new Plugin({root, isRoot: true, ignoreManifest: true, errorOnManifestCreate: true})
  await plugin.load()
  const file = path.join(root, 'oclif.manifest.json')
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, JSON.stringify(plugin.manifest, null, 2) + '\n')
  renameSync(tmp, file)
  return {file, commands: Object.keys(plugin.manifest.commands).length}
}

function mtimeMs(file) {
  try {
    return statSync(file).mtimeMs
  } catch {
    return undefined
  }
}

/**
 * True when `tsc -b` built the package after its manifest was written (or none was): a
 * manifest must never describe other commands or flags than the code. Only a source tree has
 * a tsbuildinfo; an installed package's manifest came with it and is taken as it is.
 */
export function manifestIsStale(root) {
  const built = mtimeMs(path.join(root, 'tsconfig.tsbuildinfo'))
  if (built === undefined) return false
  const written = mtimeMs(path.join(root, 'oclif.manifest.json'))
  return written === undefined || written < built
}
