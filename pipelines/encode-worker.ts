import { parentPort, workerData } from 'node:worker_threads'
import { errorMessage } from '../lib/errors.ts'
import { SchemaCatalogue } from '../schemas/catalogue.ts'
import { cachedProtector, type DraftItem, encodePage } from './draft-encoder.ts'

// Worker side of WorkerEncoder: one page in, one page out, bytes transferred.
const data = workerData as { macKey: Uint8Array; encKey: Uint8Array }
const keys = { macKey: Buffer.from(data.macKey), encKey: Buffer.from(data.encKey) }
const catalogue = SchemaCatalogue.load()
const protect = cachedProtector(keys)

parentPort!.on('message', (m: { id: number; sourceId: string; items: DraftItem[] }) => {
  try {
    const page = encodePage(catalogue, protect, m.sourceId, m.items)
    parentPort!.postMessage({ id: m.id, page }, [page.body.buffer as ArrayBuffer])
  } catch (err) {
    parentPort!.postMessage({ id: m.id, error: errorMessage(err) })
  }
})
