import { randomUUID } from 'node:crypto'
import { type Clock } from '../lib/clock.ts'
import { errorMessage } from '../lib/errors.ts'
import { scrubPlates } from '../lib/plate-redaction.ts'
import { type SchemaCatalogue } from '../schemas/catalogue.ts'
import { type Draft, EVENT_ROUTES, type EventName, type IngestError, type SourceHeartbeat } from '../schemas/events.ts'
import { type Bus, type OutgoingMessage } from './bus/bus.ts'
import { type DraftEncoder, type DraftItem, type EncodedPage } from './draft-encoder.ts'
import { deriveEventId, normalise, type PlateProtector, redactRaw } from './normalise.ts'

export const HEADER_SOURCE = 'citysync-source-id'
export const HEADER_TRACE = 'citysync-trace-id'
export const HEADER_CONTENT = 'citysync-content-hash'
/** The Avro schema id, as in the value's Confluent wire header: readable without decoding. */
export const HEADER_SCHEMA = 'citysync-schema-id'

export interface PublisherOptions {
  sourceId: string
  bus: Bus
  catalogue: SchemaCatalogue
  clock: Clock
  protectPlate: PlateProtector
  /** One id per connector run, carried in every message's headers. */
  traceId?: string
  /**
   * Normalises and encodes drafts page by page, possibly on another thread.
   * Without one, each record is normalised and encoded as it comes.
   */
  encoder?: DraftEncoder
}

export interface PublishCounts {
  records: number
  rejected: number
}

/**
 * The connector side of the pipeline: completes drafts into canonical events,
 * validates them against their Avro schema, encodes them in the wire format
 * and hands them to the bus. Rejected items become IngestError events that
 * travel the same way, so a checkpoint never passes a record that is neither
 * landed nor dead-lettered.
 */
export class Publisher {
  readonly counts: PublishCounts = { records: 0, rejected: 0 }
  private buffered = new Map<string, OutgoingMessage[]>()
  private drafts: DraftItem[] = []
  private size = 0
  /** Pages go to the bus in the order they were flushed, whatever the encoder's timing. */
  private order: Promise<unknown> = Promise.resolve()
  private readonly traceId: string
  private readonly o: PublisherOptions

  constructor(o: PublisherOptions) {
    this.o = o
    this.traceId = o.traceId ?? randomUUID()
  }

  get bufferedCount(): number {
    return this.size
  }

  record(event: EventName, draft: Draft<EventName>): void {
    const receivedAt = this.o.clock.now()
    if (this.o.encoder) {
      this.drafts.push({ event, draft, receivedAt })
      this.counts.records++
      this.size++
      return
    }
    let value: Buffer
    let contentHash: string
    try {
      const n = normalise(event, draft, this.o.sourceId, receivedAt, this.o.protectPlate)
      value = this.o.catalogue.encode(event, n.event)
      contentHash = n.contentHash
    } catch (err) {
      this.reject('validate', 'schema_invalid', errorMessage(err), event, safeJson(draft))
      return
    }
    this.counts.records++
    this.push(EVENT_ROUTES[event].topic, value, contentHash)
  }

  /** An upstream item that could not become a record. `reason` and `raw` are redacted of plates before they leave. */
  reject(stage: string, code: string, reason: string, family: EventName | null, raw: string): void {
    const { value, eventId } = this.rejection(stage, code, reason, family, raw)
    this.push(EVENT_ROUTES.IngestError.topic, value, eventId)
  }

  private rejection(stage: string, code: string, reason: string, family: EventName | null, raw: string): { value: Buffer; eventId: string } {
    const receivedAt = this.o.clock.now()
    const redacted = redactRaw(raw.length > 65_536 ? raw.slice(0, 65_536) : raw, this.o.protectPlate)
    const err: IngestError = {
      sourceId: this.o.sourceId,
      eventId: '',
      occurredAt: receivedAt,
      receivedAt,
      stage,
      code,
      // Reasons quote upstream text at times (a parser's error shows the bytes it choked on).
      reason: scrubPlates(reason),
      family,
      raw: redacted,
    }
    err.eventId = deriveEventId(this.o.sourceId, 'IngestError', err as unknown as Record<string, unknown>)
    this.counts.rejected++
    return { value: this.o.catalogue.encode('IngestError', err), eventId: err.eventId }
  }

  heartbeat(hb: Omit<SourceHeartbeat, 'sourceId' | 'eventId' | 'receivedAt'>): void {
    const receivedAt = this.o.clock.now()
    const event = { sourceId: this.o.sourceId, eventId: '', receivedAt, ...hb, message: hb.message === null ? null : scrubPlates(hb.message) }
    event.eventId = deriveEventId(this.o.sourceId, 'SourceHeartbeat', event)
    this.push(EVENT_ROUTES.SourceHeartbeat.topic, this.o.catalogue.encode('SourceHeartbeat', event), event.eventId)
  }

  /**
   * Sends everything buffered. The promise resolves when the bus holds it
   * safely (see Bus.publish); the caller may keep producing meanwhile.
   */
  flush(): Promise<void> {
    if (this.size === 0) return this.order.then(() => undefined)
    const buffered = this.buffered
    const drafts = this.drafts
    this.buffered = new Map()
    this.drafts = []
    this.size = 0
    const encoded = drafts.length > 0 && this.o.encoder ? this.o.encoder.encode(this.o.sourceId, drafts) : undefined
    // The next flush waits for this one to be handed to the bus, not for it to land.
    const handed = this.order.then(async () => {
      if (encoded) this.merge(buffered, drafts, await encoded)
      const sends: Promise<void>[] = []
      for (const [topic, messages] of buffered) sends.push(this.o.bus.publish(topic, messages))
      return { safe: Promise.all(sends) }
    })
    this.order = handed.catch(() => undefined)
    return handed.then(async (h) => {
      await h.safe
    })
  }

  private merge(into: Map<string, OutgoingMessage[]>, drafts: readonly DraftItem[], page: EncodedPage): void {
    const body = Buffer.from(page.body.buffer, page.body.byteOffset, page.body.byteLength)
    for (let i = 0; i < drafts.length; i++) {
      const topic = page.topics[i]
      if (topic) {
        this.add(into, topic, body.subarray(page.starts[i], page.starts[i + 1]), page.hashes[i]!)
      } else {
        this.counts.records--
        const d = drafts[i]!
        const err = this.rejection('validate', 'schema_invalid', page.errors[i] ?? 'not encodable', d.event, safeJson(d.draft))
        this.add(into, EVENT_ROUTES.IngestError.topic, err.value, err.eventId)
      }
    }
  }

  private push(topic: string, value: Buffer, contentHash: string): void {
    this.add(this.buffered, topic, value, contentHash)
    this.size++
  }

  private add(into: Map<string, OutgoingMessage[]>, topic: string, value: Buffer, contentHash: string): void {
    let list = into.get(topic)
    if (!list) {
      list = []
      into.set(topic, list)
    }
    list.push({
      key: this.o.sourceId,
      value,
      headers: {
        [HEADER_SOURCE]: this.o.sourceId,
        [HEADER_SCHEMA]: String(value.length >= 5 ? value.readUInt32BE(1) : 0),
        [HEADER_TRACE]: this.traceId,
        [HEADER_CONTENT]: contentHash,
      },
    })
  }
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v)
  } catch {
    return String(v)
  }
}
