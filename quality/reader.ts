// The thin ClickHouse side of freshness: what landed, when, and whether the
// connectors ran, read from the ingest log, the heartbeats, the dead-letter
// table and the event tables, never from a connector's memory.
//
// One query per table per cycle. The first read looks back `lookbackMs`
// (sources) and `entityLookbackMs` (entities); later reads only ask for rows
// that arrived since the previous read (less a margin) and merge the maxima,
// which only ever grow. Event tables are partitioned by event month, so the
// event-time bound prunes old partitions; the arrival bound (receivedAt)
// catches live rows that arrive late.

import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { type EntityKind, type EntityReading, type HeartbeatFigures, type SourceReading } from './evaluate.ts'

export interface ReaderOptions {
  /** Source clocks: how far back the first read looks (default 35 days). */
  lookbackMs?: number
  /** Entity clocks: how far back in event time the first read looks (default 3 days). */
  entityLookbackMs?: number
  /** Window for skew checks (default 30 minutes). */
  skewWindowMs?: number
  /** Overlap between incremental reads, for rows committed out of order (default 10 minutes). */
  marginMs?: number
  /** How often car-park opening hours and ferry timetables are read again (default 5 minutes). */
  staticRefreshMs?: number
}

interface EntityTable {
  table: string
  column: string
  kind: EntityKind
  /** Rows flagged as backfill do not move the entity's clocks. */
  backfill: boolean
}

/** Event tables that carry an entity, and which column names it. Static descriptions are left out. */
export const ENTITY_TABLES: readonly EntityTable[] = [
  { table: 'parking_passage', column: 'lotId', kind: 'car-park', backfill: true },
  { table: 'parking_occupancy', column: 'lotId', kind: 'car-park', backfill: false },
  { table: 'ferry_sailing', column: 'terminalId', kind: 'terminal', backfill: false },
  { table: 'ferry_ticket', column: 'terminalId', kind: 'terminal', backfill: false },
  { table: 'ferry_checkin', column: 'terminalId', kind: 'terminal', backfill: false },
  { table: 'bike_station_status', column: 'stationId', kind: 'station', backfill: false },
]

export interface WarehouseView {
  sources: Map<string, SourceReading>
  entities: Map<string, EntityReading[]>
  /** Scheduled departures (not cancelled) per source, and per source and terminal. */
  departures: Map<string, number[]>
  terminalDepartures: Map<string, Map<string, number[]>>
}

interface SourceMaxima {
  lastEventAt: number | null
  lastArrivalAt: number | null
  lastBackfillAt: number | null
  heartbeat: HeartbeatFigures
}

interface EntityMaxima {
  id: string
  kind: EntityKind
  lastEventAt: number | null
  lastArrivalAt: number | null
}

const MIN = 60_000
const DAY = 86_400_000

/** ClickHouse answers 1970-01-01 for max() over no rows of a non-nullable column. */
function ms(value: unknown): number | null {
  if (value === null || value === undefined) return null
  const n = Number(value)
  return Number.isFinite(n) && n > 0 ? n : null
}

function later(a: number | null, b: number | null): number | null {
  if (a === null) return b
  if (b === null) return a
  return a > b ? a : b
}

export class FreshnessReader {
  readonly #wh: Warehouse
  readonly #lookbackMs: number
  readonly #entityLookbackMs: number
  readonly #skewWindowMs: number
  readonly #marginMs: number
  readonly #staticRefreshMs: number
  readonly #sources = new Map<string, SourceMaxima>()
  /** sourceId -> `${kind}\x1f${id}` -> maxima */
  readonly #entities = new Map<string, Map<string, EntityMaxima>>()
  #lastRead: number | null = null
  #lotHours = new Map<string, Map<string, string>>()
  #departures: { all: Map<string, number[]>; byTerminal: Map<string, Map<string, number[]>> } = { all: new Map(), byTerminal: new Map() }
  #staticAt = Number.NEGATIVE_INFINITY

  constructor(wh: Warehouse, options: ReaderOptions = {}) {
    this.#wh = wh
    this.#lookbackMs = options.lookbackMs ?? 35 * DAY
    this.#entityLookbackMs = options.entityLookbackMs ?? 3 * DAY
    this.#skewWindowMs = options.skewWindowMs ?? 30 * MIN
    this.#marginMs = options.marginMs ?? 10 * MIN
    this.#staticRefreshMs = options.staticRefreshMs ?? 5 * MIN
  }

  /** Reads what changed since the previous call and returns the merged view as of `now`. */
  async read(now: number): Promise<WarehouseView> {
    const since = this.#lastRead === null ? now - this.#lookbackMs : Math.min(this.#lastRead, now) - this.#marginMs
    const entitySince = this.#lastRead === null ? 0 : Math.min(this.#lastRead, now) - this.#marginMs
    const eventFrom = now - this.#entityLookbackMs
    const refreshStatic = now - this.#staticAt >= this.#staticRefreshMs || now < this.#staticAt
    const [ingest, windows, heartbeats, future] = await Promise.all([
      this.#wh.query<{ sourceId: string; lastEventAt: number | null; lastArrivalAt: number; lastBackfillAt: number }>(
        `SELECT sourceId,
                toUnixTimestamp64Milli(max(maxLiveEventTime)) AS lastEventAt,
                toUnixTimestamp64Milli(maxIf(arrivedAt, rows > backfillRows)) AS lastArrivalAt,
                toUnixTimestamp64Milli(maxIf(arrivedAt, rows = backfillRows)) AS lastBackfillAt
         FROM ingest_log
         WHERE arrivedAt >= fromUnixTimestamp64Milli({since:Int64}) AND tableName != 'source_heartbeat'
         GROUP BY sourceId`,
        { since },
      ),
      this.#wh.query<{ sourceId: string; liveRows24h: number; firstLiveAt: number; recentLiveRows: number; maxAheadMs: number | null }>(
        `SELECT sourceId,
                sum(rows - backfillRows) AS liveRows24h,
                toUnixTimestamp64Milli(minIf(arrivedAt, rows > backfillRows)) AS firstLiveAt,
                sumIf(rows - backfillRows, arrivedAt >= fromUnixTimestamp64Milli({skewFrom:Int64})) AS recentLiveRows,
                maxIf(toUnixTimestamp64Milli(maxEventTime) - toUnixTimestamp64Milli(arrivedAt), arrivedAt >= fromUnixTimestamp64Milli({skewFrom:Int64})) AS maxAheadMs
         FROM ingest_log
         WHERE arrivedAt >= fromUnixTimestamp64Milli({dayFrom:Int64}) AND arrivedAt <= fromUnixTimestamp64Milli({now:Int64})
           AND tableName != 'source_heartbeat'
         GROUP BY sourceId`,
        { skewFrom: now - this.#skewWindowMs, dayFrom: now - DAY, now },
      ),
      this.#wh.query<{ sourceId: string; lastAt: number; lastOkAt: number; lastErrorAt: number; lastError: string | null }>(
        `SELECT sourceId,
                toUnixTimestamp64Milli(max(occurredAt)) AS lastAt,
                toUnixTimestamp64Milli(maxIf(occurredAt, status != 'error')) AS lastOkAt,
                toUnixTimestamp64Milli(maxIf(occurredAt, status = 'error')) AS lastErrorAt,
                argMaxIf(message, occurredAt, status = 'error') AS lastError
         FROM source_heartbeat
         WHERE occurredAt >= fromUnixTimestamp64Milli({since:Int64})
         GROUP BY sourceId`,
        { since },
      ),
      this.#wh.query<{ sourceId: string; n: number; firstAt: number }>(
        `SELECT sourceId, count() AS n, toUnixTimestamp64Milli(min(receivedAt)) AS firstAt
         FROM dead_letter
         WHERE receivedAt >= fromUnixTimestamp64Milli({skewFrom:Int64}) AND code = 'future_timestamp'
         GROUP BY sourceId`,
        { skewFrom: now - this.#skewWindowMs },
      ),
    ])

    for (const r of ingest) {
      const m = this.#sourceMaxima(r.sourceId)
      m.lastEventAt = later(m.lastEventAt, ms(r.lastEventAt))
      m.lastArrivalAt = later(m.lastArrivalAt, ms(r.lastArrivalAt))
      m.lastBackfillAt = later(m.lastBackfillAt, ms(r.lastBackfillAt))
    }
    for (const r of heartbeats) {
      const hb = this.#sourceMaxima(r.sourceId).heartbeat
      hb.lastAt = later(hb.lastAt, ms(r.lastAt))
      hb.lastOkAt = later(hb.lastOkAt, ms(r.lastOkAt))
      const errAt = ms(r.lastErrorAt)
      if (errAt !== null && (hb.lastErrorAt === null || errAt >= hb.lastErrorAt)) {
        hb.lastErrorAt = errAt
        hb.lastError = r.lastError
      }
    }

    await Promise.all(ENTITY_TABLES.map((t) => this.#readEntities(t, eventFrom, entitySince)))
    if (refreshStatic) {
      await this.#readStatic(now)
      this.#staticAt = now
    }
    this.#lastRead = now

    const win = new Map(windows.map((w) => [w.sourceId, w]))
    const fut = new Map(future.map((f) => [f.sourceId, f]))
    const sources = new Map<string, SourceReading>()
    for (const [id, m] of this.#sources) {
      const w = win.get(id)
      const f = fut.get(id)
      const ahead = w?.maxAheadMs === null || w?.maxAheadMs === undefined ? null : Number(w.maxAheadMs)
      sources.set(id, {
        lastEventAt: m.lastEventAt,
        lastArrivalAt: m.lastArrivalAt,
        lastBackfillAt: m.lastBackfillAt,
        liveRows24h: Number(w?.liveRows24h ?? 0),
        firstLiveAt24h: ms(w?.firstLiveAt),
        recentLiveRows: Number(w?.recentLiveRows ?? 0),
        // maxIf over no matching rows answers 0 (or a huge negative on some versions): only a lead counts.
        maxAheadMs: ahead !== null && ahead > 0 && Number(w?.recentLiveRows ?? 0) > 0 ? ahead : null,
        futureRejected: Number(f?.n ?? 0),
        firstFutureAt: ms(f?.firstAt),
        heartbeat: { ...m.heartbeat },
      })
    }
    for (const id of fut.keys()) if (!sources.has(id)) sources.set(id, { ...emptyReading(), futureRejected: Number(fut.get(id)!.n), firstFutureAt: ms(fut.get(id)!.firstAt) })

    const entities = new Map<string, EntityReading[]>()
    for (const [sourceId, byKey] of this.#entities) {
      const hours = this.#lotHours.get(sourceId)
      const terminals = this.#departures.byTerminal.get(sourceId)
      const list: EntityReading[] = []
      for (const e of byKey.values()) {
        const ahead = e.lastEventAt !== null && e.lastArrivalAt !== null && e.lastEventAt > e.lastArrivalAt ? e.lastEventAt - e.lastArrivalAt : null
        const reading: EntityReading = { id: e.id, kind: e.kind, lastEventAt: e.lastEventAt, lastArrivalAt: e.lastArrivalAt, maxAheadMs: ahead }
        if (e.kind === 'car-park') reading.openingHours = hours?.get(e.id) ?? null
        if (e.kind === 'terminal') reading.departures = terminals?.get(e.id) ?? []
        list.push(reading)
      }
      entities.set(sourceId, list)
    }
    return { sources, entities, departures: this.#departures.all, terminalDepartures: this.#departures.byTerminal }
  }

  #sourceMaxima(id: string): SourceMaxima {
    let m = this.#sources.get(id)
    if (m === undefined) {
      m = { lastEventAt: null, lastArrivalAt: null, lastBackfillAt: null, heartbeat: { lastAt: null, lastOkAt: null, lastErrorAt: null, lastError: null } }
      this.#sources.set(id, m)
    }
    return m
  }

  async #readEntities(t: EntityTable, eventFrom: number, arrivedFrom: number): Promise<void> {
    const live = t.backfill ? 'NOT isBackfill' : '1'
    const rows = await this.#wh.query<{ sourceId: string; id: string; lastEventAt: number; lastArrivalAt: number }>(
      `SELECT sourceId, ${t.column} AS id,
              toUnixTimestamp64Milli(maxIf(occurredAt, ${live})) AS lastEventAt,
              toUnixTimestamp64Milli(maxIf(receivedAt, ${live})) AS lastArrivalAt
       FROM ${t.table}
       WHERE occurredAt >= fromUnixTimestamp64Milli({eventFrom:Int64}) AND receivedAt >= fromUnixTimestamp64Milli({arrivedFrom:Int64})
       GROUP BY sourceId, id`,
      { eventFrom, arrivedFrom },
    )
    for (const r of rows) {
      let byKey = this.#entities.get(r.sourceId)
      if (byKey === undefined) this.#entities.set(r.sourceId, (byKey = new Map<string, EntityMaxima>()))
      const key = `${t.kind}\x1f${r.id}`
      let e = byKey.get(key)
      if (e === undefined) byKey.set(key, (e = { id: r.id, kind: t.kind, lastEventAt: null, lastArrivalAt: null }))
      e.lastEventAt = later(e.lastEventAt, ms(r.lastEventAt))
      e.lastArrivalAt = later(e.lastArrivalAt, ms(r.lastArrivalAt))
    }
  }

  async #readStatic(now: number): Promise<void> {
    const [lots, sailings] = await Promise.all([
      this.#wh.query<{ sourceId: string; lotId: string; hours: string | null }>(
        `SELECT sourceId, lotId, argMax(openingHours, occurredAt) AS hours FROM parking_lot GROUP BY sourceId, lotId`,
      ),
      this.#wh.query<{ sourceId: string; terminalId: string; departure: number; status: string }>(
        `SELECT sourceId, terminalId, toUnixTimestamp64Milli(argMax(scheduledDeparture, occurredAt)) AS departure, argMax(status, occurredAt) AS status
         FROM ferry_sailing
         WHERE scheduledDeparture >= fromUnixTimestamp64Milli({from:Int64}) AND scheduledDeparture < fromUnixTimestamp64Milli({to:Int64})
         GROUP BY sourceId, terminalId, sailingId`,
        { from: now - 3 * DAY, to: now + 2 * DAY },
      ),
    ])
    const hours = new Map<string, Map<string, string>>()
    for (const l of lots) {
      if (l.hours === null || l.hours === '') continue
      let m = hours.get(l.sourceId)
      if (m === undefined) hours.set(l.sourceId, (m = new Map<string, string>()))
      m.set(l.lotId, l.hours)
    }
    this.#lotHours = hours
    const all = new Map<string, number[]>()
    const byTerminal = new Map<string, Map<string, number[]>>()
    for (const s of sailings) {
      if (s.status === 'cancelled') continue
      const t = Number(s.departure)
      let a = all.get(s.sourceId)
      if (a === undefined) all.set(s.sourceId, (a = []))
      a.push(t)
      let bt = byTerminal.get(s.sourceId)
      if (bt === undefined) byTerminal.set(s.sourceId, (bt = new Map<string, number[]>()))
      let list = bt.get(s.terminalId)
      if (list === undefined) bt.set(s.terminalId, (list = []))
      list.push(t)
    }
    this.#departures = { all, byTerminal }
  }
}

export function emptyReading(): SourceReading {
  return {
    lastEventAt: null,
    lastArrivalAt: null,
    lastBackfillAt: null,
    liveRows24h: 0,
    firstLiveAt24h: null,
    recentLiveRows: 0,
    maxAheadMs: null,
    futureRejected: 0,
    firstFutureAt: null,
    heartbeat: { lastAt: null, lastOkAt: null, lastErrorAt: null, lastError: null },
  }
}
