import { type Logger } from 'pino'
import { type Clock } from '../lib/clock.ts'
import { errorMessage } from '../lib/errors.ts'
import { scrubPlates } from '../lib/plate-redaction.ts'
import { type SchemaCatalogue, WIRE_HEADER_SIZE } from '../schemas/catalogue.ts'
import { type AnyEvent, EVENT_ROUTES, type EventName, type IngestError, type ParkingPassage } from '../schemas/events.ts'
import { type BatchJournal, type Bus, type IncomingBatch, type IncomingMessage, type OutgoingMessage, type SubscribeOptions, type Subscription } from './bus/bus.ts'
import { deadLetterTopic } from './bus/topics.ts'
import { DedupeCache, UNKNOWN_CONTENT } from './dedupe-cache.ts'
import { type SkimmedEvent } from '../schemas/skim.ts'
import { deriveEventId, sameContentForm } from './normalise.ts'
import { HEADER_CONTENT } from './publisher.ts'
import { type Warehouse } from './warehouse/warehouse.ts'

export interface SinkOptions {
  warehouse: Warehouse
  catalogue: SchemaCatalogue
  clock: Clock
  log: Logger
  /** Event times further ahead of their arrival than this are rejected. */
  futureToleranceMs?: number
  dedupe?: DedupeCache
  /**
   * Where records rejected by the sink also go, raw as they arrived, with the
   * reason in their headers: the family's dead-letter topic (Kafka mode).
   */
  deadLetterBus?: Bus
  /** Told about every batch once it is in (metrics). */
  observer?: SinkObserver
}

/** What one landed batch held, for metrics: every message is landed, a duplicate or a dead letter. */
export interface BatchReport {
  topic: string
  messages: number
  /** Rows landed, by source and table. */
  landed: ReadonlyMap<string, ReadonlyMap<string, number>>
  duplicates: number
  deadLetters: readonly Pick<IngestError, 'sourceId' | 'stage' | 'code'>[]
  /** Each insert of the batch (event tables, dead letters, ingest log) and how long it took. */
  inserts: readonly { table: string; rows: number; ms: number }[]
  /** The whole batch, from decoding to the last insert. */
  ms: number
}

export interface SinkObserver {
  batch(report: BatchReport): void
}

/** How far back the duplicate filter looks when it is warmed from the warehouse. */
export const DEDUPE_WARM_WINDOW_MS = 6 * 3600_000

export const HEADER_DLQ_CODE = 'citysync-dlq-code'
export const HEADER_DLQ_REASON = 'citysync-dlq-reason'
export const HEADER_DLQ_ORIGIN = 'citysync-dlq-origin'

export interface SinkStats {
  batches: number
  landed: number
  duplicates: number
  deadLettered: number
  lastInsertMs: number
}

interface IngestAcc {
  rows: number
  backfillRows: number
  minEventTime: number
  maxEventTime: number
  maxLiveEventTime: number | null
  minReceivedAt: number
}

const TABLE_OF = new Map<EventName, string>(Object.entries(EVENT_ROUTES).map(([k, v]) => [k as EventName, v.table]))
export const SINK_TOPICS = Object.values(EVENT_ROUTES).map((r) => r.topic)

/**
 * The stream job that lands events in ClickHouse: decode, check, drop
 * duplicates, insert one block per table, write the ingest log, dead-letter
 * the rest. A batch is all-or-nothing from the bus's point of view: its
 * offsets are committed only after every insert returned, and a retried batch
 * carries the same deduplication tokens, so ClickHouse ignores what it already
 * has.
 */
export class WarehouseSink {
  readonly stats: SinkStats = { batches: 0, landed: 0, duplicates: 0, deadLettered: 0, lastInsertMs: 0 }
  readonly dedupe: DedupeCache
  private readonly o: SinkOptions
  private readonly futureToleranceMs: number

  constructor(o: SinkOptions) {
    this.o = o
    this.dedupe = o.dedupe ?? new DedupeCache()
    this.futureToleranceMs = o.futureToleranceMs ?? 5 * 60_000
  }

  subscribe(
    bus: Bus,
    signal: AbortSignal,
    opts: {
      maxBatchSize?: number
      maxWaitMs?: number
      group?: string
      journal?: BatchJournal
      rewarmOnAssignment?: boolean
      onCommitted?: SubscribeOptions['onCommitted']
    } = {},
  ): Subscription {
    return bus.subscribe(
      {
        ...(opts.onCommitted ? { onCommitted: opts.onCommitted } : {}),
        group: opts.group ?? 'citysync-warehouse-sink',
        ...(opts.journal ? { journal: opts.journal } : {}),
        ...(opts.rewarmOnAssignment
          ? {
              onAssigned: async () => {
                const n = await this.dedupe.warm(this.o.warehouse, DEDUPE_WARM_WINDOW_MS, this.o.clock.now())
                this.o.log.info({ eventIds: n }, 'partitions assigned; duplicate filter re-warmed from the warehouse')
              },
            }
          : {}),
        topics: SINK_TOPICS,
        maxBatchSize: opts.maxBatchSize ?? 10_000,
        maxWaitMs: opts.maxWaitMs ?? 250,
        signal,
        onError: (err, batch, attempt) =>
          this.o.log.warn(
            { err: errorMessage(err), topic: batch.topic, partition: batch.partition, offsets: [batch.firstOffset, batch.lastOffset], attempt },
            'sink batch failed; partition paused, will retry',
          ),
      },
      (batch) => this.handle(batch),
    )
  }

  async handle(batch: IncomingBatch): Promise<void> {
    const started = performance.now()
    const now = this.o.clock.now()
    // Rows go in as the Avro bodies they arrived as, one block per table and writer schema.
    const blocks = new Map<string, { table: string; schemaId: number; datums: Buffer[]; bytes: number }>()
    const ingest = new Map<string, IngestAcc>() // `${sourceId}\x1f${table}`
    const dead: IngestError[] = []
    const fresh = new Map<string, string>() // ids first seen in this batch -> content
    const rejected: { m: IncomingMessage; d: IngestError }[] = []
    const freshDead = new Set<string>() // connector-reported dead letters first seen in this batch
    let duplicates = 0

    for (const m of batch.messages) {
      let name: EventName
      let event: SkimmedEvent
      let schemaId: number
      try {
        // Only the fields checked here are built; the body goes to ClickHouse as it is.
        const skimmed = this.o.catalogue.skim(m.value)
        name = skimmed.name
        event = skimmed.event
        schemaId = skimmed.schemaId
      } catch (err) {
        const d = deadLetter(m.key, now, 'decode', 'undecodable', errorMessage(err), null, m.value.toString('base64'))
        dead.push(d)
        rejected.push({ m, d })
        continue
      }
      if (name === 'IngestError') {
        // A connector that re-reads (restart, cursor reset) reports the same bad item again, under the same id.
        if (freshDead.has(event.eventId) || this.dedupe.get(event.eventId) !== undefined) {
          duplicates++
          continue
        }
        freshDead.add(event.eventId)
        const full = decodeOrNull(this.o.catalogue, m.value)
        if (full === null) {
          const d = deadLetter(m.key, now, 'decode', 'undecodable', 'dead-letter record skims but does not decode', null, m.value.toString('base64'))
          dead.push(d)
          rejected.push({ m, d })
        } else dead.push(full as IngestError)
        continue
      }
      if (event.occurredAt > event.receivedAt + this.futureToleranceMs) {
        const d = deadLetter(
          event.sourceId,
          now,
          'validate',
          'future_timestamp',
          `occurredAt ${new Date(event.occurredAt).toISOString()} is ahead of arrival ${new Date(event.receivedAt).toISOString()} by more than ${this.futureToleranceMs} ms`,
          name,
          rawOf(decodeOrNull(this.o.catalogue, m.value)),
        )
        dead.push(d)
        rejected.push({ m, d })
        continue
      }
      const content = m.headers[HEADER_CONTENT] ?? UNKNOWN_CONTENT
      const seen = fresh.get(event.eventId) ?? this.dedupe.get(event.eventId)
      if (seen !== undefined) {
        if (seen === content || seen === UNKNOWN_CONTENT || content === UNKNOWN_CONTENT || !sameContentForm(seen, content)) {
          duplicates++
        } else {
          const full = decodeOrNull(this.o.catalogue, m.value)
          const d = deadLetter(
            event.sourceId,
            now,
            'dedupe',
            'duplicate_record',
            `record ${full === null ? `eventId=${event.eventId}` : describeKey(name, full)} was already received with different content`,
            name,
            rawOf(full),
          )
          dead.push(d)
          rejected.push({ m, d })
        }
        continue
      }
      fresh.set(event.eventId, content)

      const table = TABLE_OF.get(name)!
      const bk = table + '\x1f' + schemaId
      let block = blocks.get(bk)
      if (!block) blocks.set(bk, (block = { table, schemaId, datums: [], bytes: 0 }))
      const datum = m.value.subarray(WIRE_HEADER_SIZE)
      block.datums.push(datum)
      block.bytes += datum.length

      const k = event.sourceId + '\x1f' + table
      let acc = ingest.get(k)
      if (!acc) {
        acc = { rows: 0, backfillRows: 0, minEventTime: Infinity, maxEventTime: -Infinity, maxLiveEventTime: null, minReceivedAt: Infinity }
        ingest.set(k, acc)
      }
      acc.rows++
      if (event.occurredAt < acc.minEventTime) acc.minEventTime = event.occurredAt
      if (event.occurredAt > acc.maxEventTime) acc.maxEventTime = event.occurredAt
      if (event.receivedAt < acc.minReceivedAt) acc.minReceivedAt = event.receivedAt
      if (event.isBackfill) acc.backfillRows++
      else if (acc.maxLiveEventTime === null || event.occurredAt > acc.maxLiveEventTime) acc.maxLiveEventTime = event.occurredAt
    }

    const token = `${batch.scope ? batch.scope + '-' : ''}${batch.topic}-${batch.partition}-${batch.firstOffset}-${batch.lastOffset}`
    const wh = this.o.warehouse
    const inserts: { table: string; rows: number; ms: number }[] = []
    const insert = async (table: string, rows: readonly string[]): Promise<void> => {
      const t0 = performance.now()
      await wh.insertJsonEachRow(table, Buffer.from(rows.join('\n') + '\n'), { dedupToken: `${token}-${table}` })
      inserts.push({ table, rows: rows.length, ms: performance.now() - t0 })
    }
    const perTable = new Map<string, number>()
    for (const b of blocks.values()) perTable.set(b.table, (perTable.get(b.table) ?? 0) + 1)
    for (const b of blocks.values()) {
      const t0 = performance.now()
      const schema = this.o.catalogue.writerSchema(b.schemaId)!
      // Several writer versions of one table in a batch: each block its own token.
      const suffix = perTable.get(b.table)! > 1 ? `-v${b.schemaId}` : ''
      await wh.insertAvro(b.table, { schema: schema.text, columns: schema.fields, datums: b.datums, bytes: b.bytes }, { dedupToken: `${token}-${b.table}${suffix}` })
      inserts.push({ table: b.table, rows: b.datums.length, ms: performance.now() - t0 })
    }
    if (dead.length > 0) await insert('dead_letter', dead.map((d) => JSON.stringify(d)))
    if (ingest.size > 0) {
      const rows: string[] = []
      for (const [k, a] of ingest) {
        const [sourceId, tableName] = k.split('\x1f')
        rows.push(JSON.stringify({ batchId: token, sourceId, tableName, arrivedAt: now, ...a }))
      }
      await insert('ingest_log', rows)
    }

    if (rejected.length > 0 && this.o.deadLetterBus) {
      const out: OutgoingMessage[] = rejected.map(({ m, d }) => ({
        key: m.key,
        value: m.value,
        headers: {
          ...m.headers,
          [HEADER_DLQ_CODE]: d.code,
          [HEADER_DLQ_REASON]: d.reason,
          [HEADER_DLQ_ORIGIN]: `${batch.topic}/${batch.partition}/${m.offset}`,
        },
      }))
      await this.o.deadLetterBus.publish(deadLetterTopic(batch.topic), out)
    }

    // Only now that everything is in: remember the ids and count.
    for (const [id, content] of fresh) this.dedupe.add(id, content)
    for (const id of freshDead) this.dedupe.add(id, UNKNOWN_CONTENT)
    this.stats.batches++
    this.stats.landed += fresh.size
    this.stats.duplicates += duplicates
    this.stats.deadLettered += dead.length
    this.stats.lastInsertMs = performance.now() - started
    if (this.o.observer !== undefined) {
      const landed = new Map<string, Map<string, number>>()
      for (const [k, a] of ingest) {
        const [sourceId, table] = k.split('\x1f') as [string, string]
        let bySource = landed.get(sourceId)
        if (bySource === undefined) landed.set(sourceId, (bySource = new Map<string, number>()))
        bySource.set(table, a.rows)
      }
      try {
        this.o.observer.batch({ topic: batch.topic, messages: batch.messages.length, landed, duplicates, deadLetters: dead, inserts, ms: this.stats.lastInsertMs })
      } catch (err) {
        // The batch is in: a metrics fault must not make it retry.
        this.o.log.warn({ err: errorMessage(err) }, 'sink observer failed')
      }
    }
  }
}

function deadLetter(
  sourceId: string,
  now: number,
  stage: string,
  code: string,
  reason: string,
  family: EventName | null,
  raw: string,
): IngestError {
  const d: IngestError = { sourceId, eventId: '', occurredAt: now, receivedAt: now, stage, code, reason: scrubPlates(reason), family, raw }
  d.eventId = deriveEventId(sourceId, 'IngestError', d as unknown as Record<string, unknown>)
  return d
}

/** The whole event, for a dead letter's payload; null when the body skimmed but does not decode. */
function decodeOrNull(catalogue: SchemaCatalogue, value: Buffer): AnyEvent | null {
  try {
    return catalogue.decode(value).value
  } catch {
    return null
  }
}

function rawOf(event: AnyEvent | null): string {
  if (event === null) return '(not decodable)'
  const { plateCipher: _c, ...rest } = event as Partial<ParkingPassage>
  return JSON.stringify(rest)
}

function describeKey(name: EventName, event: AnyEvent): string {
  const e = event as unknown as Record<string, unknown>
  return EVENT_ROUTES[name].key.map((k) => `${k}=${String(e[k])}`).join(' ')
}
