// Small waits and looks the in-process tests share: poll for a condition, list a tree, read a transfer as core does.
import assert from 'node:assert/strict'
import {readdir} from 'node:fs/promises'
import path from 'node:path'
import type {Readable} from 'node:stream'

/** Waits until `cond()` holds, polling; bounded, so a broken behaviour fails the test instead of hanging it. */
export async function until(cond: () => boolean, what: string, limitMs = 30_000): Promise<void> {
  const end = Date.now() + limitMs
  while (!cond()) {
    if (Date.now() > end) throw new Error(`never happened: ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** The files below `dir` (not directories), relative and sorted: what a test compares trees by. */
export async function fileTree(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, {withFileTypes: true, recursive: true}))
    if (!e.isDirectory()) out.push(path.relative(dir, path.join(e.parentPath, e.name)))
  return out.sort()
}

/**
 * Reads a transfer as core does with `release` (TransferClient.get): checks each chunk
 * against `expected` as it comes (a buffer reused too early shows there), keeps the first
 * chunk and releases every other one twice, with a buffer that was never a chunk. Without
 * `releasing`, releases nothing. Returns how many distinct buffers the chunks viewed, and
 * whether the kept chunk still holds its bytes at the end.
 */
export async function readReleasing(
  got: {stream: Readable; release?(chunk: Buffer): void},
  expected: Buffer,
  releasing = true,
): Promise<{buffers: number; keptIntact: boolean}> {
  const buffers = new Set<ArrayBufferLike>()
  let kept: Buffer | undefined
  let at = 0
  for await (const chunk of got.stream) {
    const c = chunk as Buffer
    assert.ok(c.equals(expected.subarray(at, at + c.length)), `bytes at ${at}`)
    at += c.length
    buffers.add(c.buffer)
    if (!releasing) continue
    if (!kept) kept = c
    else {
      got.release?.(c)
      got.release?.(c)
      got.release?.(Buffer.alloc(16))
    }
  }
  assert.equal(at, expected.length)
  return {buffers: buffers.size, keptIntact: !kept || kept.equals(expected.subarray(0, kept.length))}
}
