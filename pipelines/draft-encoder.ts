import { Worker } from 'node:worker_threads'
import { protectPlate, type DerivedKeys, type ProtectedPlate } from '../lib/crypto.ts'
import { errorMessage } from '../lib/errors.ts'
import { type SchemaCatalogue } from '../schemas/catalogue.ts'
import { type Draft, EVENT_ROUTES, type EventName } from '../schemas/events.ts'
import { normalise, type PlateProtector } from './normalise.ts'

export interface DraftItem {
  event: EventName
  draft: Draft<EventName>
  receivedAt: number
}

/**
 * The publisher's CPU-heavy step for a page of drafts: normalise (event id,
 * protected plate) and encode to the wire format. Item i of the result is
 * either an encoded message (`topics[i]` set, bytes `body[starts[i]..starts[i+1])`)
 * or a rejection (`errors[i]` set).
 */
export interface EncodedPage {
  topics: (string | null)[]
  hashes: (string | null)[]
  errors: (string | null)[]
  body: Uint8Array
  starts: Int32Array
}

export interface DraftEncoder {
  encode(sourceId: string, items: readonly DraftItem[]): Promise<EncodedPage>
  close(): Promise<void>
}

/**
 * Plate protection for one key set, remembering recent plates: a vehicle's
 * exit reuses the key and cipher computed at its entry. Reusing the cipher
 * reveals only that two records share a plate, which the plate key already
 * does. First in, first out, bounded.
 */
export function cachedProtector(keys: DerivedKeys, capacity = 100_000): PlateProtector {
  const seen = new Map<string, ProtectedPlate>()
  return (plate) => {
    if (plate === null) return protectPlate(null, keys)
    let p = seen.get(plate)
    if (p === undefined) {
      p = protectPlate(plate, keys)
      seen.set(plate, p)
      if (seen.size > capacity) {
        let drop = capacity / 10
        for (const k of seen.keys()) {
          seen.delete(k)
          if (--drop <= 0) break
        }
      }
    }
    return p
  }
}

/** Pure apart from the cipher's IV: what both the inline encoder and the worker run. */
export function encodePage(catalogue: SchemaCatalogue, protect: PlateProtector, sourceId: string, items: readonly DraftItem[]): EncodedPage {
  const n = items.length
  const topics: (string | null)[] = new Array<string | null>(n).fill(null)
  const hashes: (string | null)[] = new Array<string | null>(n).fill(null)
  const errors: (string | null)[] = new Array<string | null>(n).fill(null)
  const values: (Buffer | null)[] = new Array<Buffer | null>(n).fill(null)
  let total = 0
  for (let i = 0; i < n; i++) {
    const it = items[i]!
    try {
      const norm = normalise(it.event, it.draft, sourceId, it.receivedAt, protect)
      const value = catalogue.encode(it.event, norm.event)
      values[i] = value
      topics[i] = EVENT_ROUTES[it.event].topic
      hashes[i] = norm.contentHash
      total += value.length
    } catch (err) {
      errors[i] = errorMessage(err)
    }
  }
  const body = new Uint8Array(new ArrayBuffer(total))
  const starts = new Int32Array(n + 1)
  let at = 0
  for (let i = 0; i < n; i++) {
    starts[i] = at
    const v = values[i]
    if (v) {
      body.set(v, at)
      at += v.length
    }
  }
  starts[n] = at
  return { topics, hashes, errors, body, starts }
}

export class InlineEncoder implements DraftEncoder {
  private readonly catalogue: SchemaCatalogue
  private readonly protect: PlateProtector

  constructor(catalogue: SchemaCatalogue, keys: DerivedKeys) {
    this.catalogue = catalogue
    this.protect = cachedProtector(keys)
  }

  encode(sourceId: string, items: readonly DraftItem[]): Promise<EncodedPage> {
    return Promise.resolve(encodePage(this.catalogue, this.protect, sourceId, items))
  }

  close(): Promise<void> {
    return Promise.resolve()
  }
}

interface Pending {
  resolve: (page: EncodedPage) => void
  reject: (err: Error) => void
}

/**
 * Runs encodePage on a worker thread, so that on a multi-core machine the
 * connectors' protecting and encoding does not compete with reading upstream
 * and landing rows. Pages are answered in order; a worker that dies fails the
 * pages it held (their runs retry) and the next page starts a new one.
 */
export class WorkerEncoder implements DraftEncoder {
  private worker: Worker | undefined
  private readonly pending = new Map<number, Pending>()
  private nextId = 0
  private readonly keys: DerivedKeys

  constructor(keys: DerivedKeys) {
    this.keys = keys
  }

  private spawn(): Worker {
    const workerData = { macKey: this.keys.macKey, encKey: this.keys.encKey }
    // Run from sources (tsx), the worker registers tsx's loader before importing its module.
    const w = import.meta.url.endsWith('.ts')
      ? new Worker(
          `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(new URL('./encode-worker.ts', import.meta.url).href)}) })`,
          { eval: true, workerData },
        )
      : new Worker(new URL('./encode-worker.js', import.meta.url), { workerData })
    w.on('message', (m: { id: number; page?: EncodedPage; error?: string }) => {
      const p = this.pending.get(m.id)
      if (!p) return
      this.pending.delete(m.id)
      // An idle encoder does not keep the process alive; one with work does.
      if (this.pending.size === 0) w.unref()
      if (m.page) p.resolve(m.page)
      else p.reject(new Error(m.error ?? 'encoder failed'))
    })
    const fail = (err: Error): void => {
      if (this.worker === w) this.worker = undefined
      for (const p of this.pending.values()) p.reject(err)
      this.pending.clear()
    }
    w.on('error', fail)
    w.on('exit', (code) => fail(new Error(`encoder worker exited with code ${code}`)))
    w.unref()
    return w
  }

  encode(sourceId: string, items: readonly DraftItem[]): Promise<EncodedPage> {
    this.worker ??= this.spawn()
    const id = this.nextId++
    const worker = this.worker
    worker.ref()
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      worker.postMessage({ id, sourceId, items })
    })
  }

  async close(): Promise<void> {
    const w = this.worker
    this.worker = undefined
    if (w) await w.terminate()
  }
}
