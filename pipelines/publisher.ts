import { randomUUID } from 'node:crypto'
import { type Clock } from '../lib/clock.ts'
import { errorMessage } from '../lib/errors.ts'
import { type SchemaCatalogue } from '../schemas/catalogue.ts'
import { type Draft, EVENT_ROUTES, type EventName, type IngestError, type SourceHeartbeat } from '../schemas/events.ts'
import { type Bus, type OutgoingMessage } from './bus/bus.ts'
import { deriveEventId, normalise, type PlateProtector, redactRaw } from './normalise.ts'

export const HEADER_SOURCE = 'citysync-source-id'
export const HEADER_TRACE = 'citysync-trace-id'
export const HEADER_CONTENT = 'citysync-content-hash'

export interface PublisherOptions {
  sourceId: string
  bus: Bus
  catalogue: SchemaCatalogue
  clock: Clock
  protectPlate: PlateProtector
  /** One id per connector run, carried in every message's headers. */
  traceId?: string
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
  private size = 0
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

  /** An upstream item that could not become a record. `raw` is redacted of plates before it leaves. */
  reject(stage: string, code: string, reason: string, family: EventName | null, raw: string): void {
    const receivedAt = this.o.clock.now()
    const redacted = redactRaw(raw.length > 65_536 ? raw.slice(0, 65_536) : raw, this.o.protectPlate)
    const err: IngestError = {
      sourceId: this.o.sourceId,
      eventId: '',
      occurredAt: receivedAt,
      receivedAt,
      stage,
      code,
      reason,
      family,
      raw: redacted,
    }
    err.eventId = deriveEventId(this.o.sourceId, 'IngestError', err as unknown as Record<string, unknown>)
    this.counts.rejected++
    this.push(EVENT_ROUTES.IngestError.topic, this.o.catalogue.encode('IngestError', err), err.eventId)
  }

  heartbeat(hb: Omit<SourceHeartbeat, 'sourceId' | 'eventId' | 'receivedAt'>): void {
    const receivedAt = this.o.clock.now()
    const event = { sourceId: this.o.sourceId, eventId: '', receivedAt, ...hb }
    event.eventId = deriveEventId(this.o.sourceId, 'SourceHeartbeat', event)
    this.push(EVENT_ROUTES.SourceHeartbeat.topic, this.o.catalogue.encode('SourceHeartbeat', event), event.eventId)
  }

  /**
   * Sends everything buffered. The promise resolves when the bus holds it
   * safely (see Bus.publish); the caller may keep producing meanwhile.
   */
  flush(): Promise<void> {
    if (this.size === 0) return Promise.resolve()
    const sends: Promise<void>[] = []
    for (const [topic, messages] of this.buffered) sends.push(this.o.bus.publish(topic, messages))
    this.buffered = new Map()
    this.size = 0
    return Promise.all(sends).then(() => undefined)
  }

  private push(topic: string, value: Buffer, contentHash: string): void {
    let list = this.buffered.get(topic)
    if (!list) {
      list = []
      this.buffered.set(topic, list)
    }
    list.push({
      key: this.o.sourceId,
      value,
      headers: { [HEADER_SOURCE]: this.o.sourceId, [HEADER_TRACE]: this.traceId, [HEADER_CONTENT]: contentHash },
    })
    this.size++
  }
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v)
  } catch {
    return String(v)
  }
}
