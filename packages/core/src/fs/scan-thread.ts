// A scan thread (fs/scan-pool.ts): hashes the files of each batch it is sent, in order.
import {isMainThread, parentPort} from 'node:worker_threads'
import {hashFile} from './scan-hash.js'
import type {ScanReply, ScanRequest} from './scan-pool.js'

function serve(port: NonNullable<typeof parentPort>): void {
  // One read buffer for the thread's life: files are read into it one after the other.
  const buf = Buffer.allocUnsafe(1 << 20)
  port.on('message', (req: ScanRequest) => {
    port.postMessage({id: req.id, files: req.paths.map((p) => hashFile(p, buf) ?? null)} satisfies ScanReply)
  })
}

if (!isMainThread && parentPort) serve(parentPort)
