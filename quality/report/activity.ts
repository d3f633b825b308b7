// The ClickHouse side of completeness: what landed in a period, per source
// and entity, read from entity_activity (5-minute bitmaps kept by
// materialised views, infra/clickhouse/migrations/0006_completeness.sql), the
// dead-letter table, the ingest log and, around gaps only, the event tables.
// The same SQL runs on chDB and on a ClickHouse server; parameters use
// server-side binding ({name:Type}).

import { type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { type EntityKind } from '../evaluate.ts'
import { ENTITY_TABLES } from '../reader.ts'
import { SLOT_MS } from './completeness.ts'

const DAY = 86_400_000
const HOUR = 3_600_000

function utcDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10)
}

function entityKey(sourceId: string, kind: string, entity: string): string {
  return `${sourceId}/${kind}/${entity}`
}

export interface SlotRuns {
  starts: number[]
  ends: number[]
}

export interface EntityActivity {
  sourceId: string
  kind: EntityKind
  entity: string
  /** Rows landed with an event time in the period (whole UTC hours). */
  rows: number
  /** Largest arrival lag of a live row in the period's days (0 when none). */
  maxLagMs: number
  /** 5-minute slots (absolute) with any landed row, and with a live one. */
  good: SlotRuns
  live: SlotRuns
  /** Newest slot with live data in the look-back before the period. */
  lastLiveSlotBefore: number | null
}

interface SummaryRow {
  sourceId: string
  kind: EntityKind
  entity: string
  rows: number
  maxLag: number
  gc: number
  gmin: number
  gmax: number
  lc: number
  lmin: number
  lmax: number
  lbc: number
  lbmax: number
}

/**
 * Every entity with data in [from, until) or in the look-back before it. An
 * entity's slots are one run unless its bitmap has holes; only those are
 * expanded into runs, in ClickHouse. (bitmapToArray is sorted only for large
 * bitmaps: small ones are kept as a set, hence arraySort.)
 */
export async function readActivity(wh: Warehouse, from: number, until: number, lookbackMs: number): Promise<EntityActivity[]> {
  const lookFrom = from - lookbackMs
  const p = {
    f: Math.floor(from / SLOT_MS),
    t: Math.ceil(until / SLOT_MS),
    lf: Math.floor(lookFrom / SLOT_MS),
    d0: utcDate(lookFrom),
    dm: utcDate(from),
    d1: utcDate(Math.max(from, until - 1)),
    fromS: Math.floor(from / 1000),
    untilS: Math.floor(until / 1000),
  }
  const inner = `
    FROM entity_activity
    WHERE day >= toDate({d0:String}) AND day <= toDate({d1:String})`
  // Masks of the period's slots and of the look-back's: UTC days straddle the period's edges.
  const masks = `WITH bitmapBuild(range(toUInt32({f:Int64}), toUInt32({t:Int64}))) AS mask, bitmapBuild(range(toUInt32({lf:Int64}), toUInt32({f:Int64}))) AS lbmask`
  const rows = await wh.query<SummaryRow>(
    `${masks}
     SELECT sourceId, entityKind AS kind, entity, rows, maxLag,
            bitmapAndCardinality(g, mask) AS gc, bitmapMin(bitmapAnd(g, mask)) AS gmin, bitmapMax(bitmapAnd(g, mask)) AS gmax,
            bitmapAndCardinality(l, mask) AS lc, bitmapMin(bitmapAnd(l, mask)) AS lmin, bitmapMax(bitmapAnd(l, mask)) AS lmax,
            bitmapAndCardinality(l, lbmask) AS lbc, bitmapMax(bitmapAnd(l, lbmask)) AS lbmax
     FROM (
       SELECT sourceId, entityKind, entity,
              sum(arraySum((h, c) -> if(toInt64(toUInt32(day)) * 86400 + h * 3600 >= {fromS:Int64} AND toInt64(toUInt32(day)) * 86400 + h * 3600 < {untilS:Int64}, c, 0), hourRows.1, hourRows.2)) AS rows,
              maxIf(maxLiveLagMs, day >= toDate({dm:String})) AS maxLag,
              groupBitmapMergeStateIf(good, day >= toDate({dm:String})) AS g,
              groupBitmapMergeState(live) AS l
       ${inner}
       GROUP BY sourceId, entityKind, entity
     )`,
    p,
  )
  const out: EntityActivity[] = []
  const holes: string[] = []
  const byKey = new Map<string, EntityActivity>()
  for (const r of rows) {
    const gc = Number(r.gc)
    const lc = Number(r.lc)
    const a: EntityActivity = {
      sourceId: r.sourceId,
      kind: r.kind,
      entity: r.entity,
      rows: Number(r.rows),
      maxLagMs: Math.max(0, Number(r.maxLag)),
      good: gc === 0 ? { starts: [], ends: [] } : { starts: [Number(r.gmin)], ends: [Number(r.gmax)] },
      live: lc === 0 ? { starts: [], ends: [] } : { starts: [Number(r.lmin)], ends: [Number(r.lmax)] },
      lastLiveSlotBefore: Number(r.lbc) === 0 ? null : Number(r.lbmax),
    }
    out.push(a)
    const key = entityKey(a.sourceId, a.kind, a.entity)
    byKey.set(key, a)
    if ((gc > 0 && Number(r.gmax) - Number(r.gmin) + 1 !== gc) || (lc > 0 && Number(r.lmax) - Number(r.lmin) + 1 !== lc)) holes.push(key)
  }
  for (let i = 0; i < holes.length; i += 2000) {
    const runs = await wh.query<{ sourceId: string; kind: string; entity: string; gs: number[]; ge: number[]; ls: number[]; le: number[] }>(
      `${masks}
       SELECT sourceId, entityKind AS kind, entity,
              arrayFilter((x, d) -> d != 1, g, arrayDifference(g)) AS gs,
              arrayFilter((x, d) -> d != 1, g, arrayPushBack(arrayPopFront(arrayDifference(g)), 0)) AS ge,
              arrayFilter((x, d) -> d != 1, l, arrayDifference(l)) AS ls,
              arrayFilter((x, d) -> d != 1, l, arrayPushBack(arrayPopFront(arrayDifference(l)), 0)) AS le
       FROM (
         SELECT sourceId, entityKind, entity,
                arraySort(bitmapToArray(bitmapAnd(groupBitmapMergeStateIf(good, day >= toDate({dm:String})), mask))) AS g,
                arraySort(bitmapToArray(bitmapAnd(groupBitmapMergeStateIf(live, day >= toDate({dm:String})), mask))) AS l
         ${inner} AND concat(sourceId, '/', entityKind, '/', entity) IN {keys:Array(String)}
         GROUP BY sourceId, entityKind, entity
       )`,
      { ...p, keys: holes.slice(i, i + 2000) },
    )
    for (const r of runs) {
      const a = byKey.get(entityKey(r.sourceId, r.kind, r.entity))
      if (a === undefined) continue
      a.good = { starts: r.gs.map(Number), ends: r.ge.map(Number) }
      a.live = { starts: r.ls.map(Number), ends: r.le.map(Number) }
    }
  }
  return out
}

// ---------------------------------------------------------------------------
// Rejected records

export interface RejectedActivity {
  sourceId: string
  /** '' when the payload names no entity. */
  entity: string
  count: number
  slots: SlotRuns
}

/**
 * Dead letters whose event time falls in [from, until), by source and the
 * entity their payload names (canonical lotId / terminalId / stationId, or
 * the vendor's parkCode / station_id). The event time is the payload's
 * canonical occurredAt when it has one (records refused by the sink), else
 * the time the record was refused (items the connector could not read).
 */
const DEAD_LETTER_FIELDS = `
  multiIf(JSONExtractString(raw, 'lotId') != '', JSONExtractString(raw, 'lotId'),
          JSONExtractString(raw, 'parkCode') != '', JSONExtractString(raw, 'parkCode'),
          JSONExtractString(raw, 'terminalId') != '', JSONExtractString(raw, 'terminalId'),
          JSONExtractString(raw, 'stationId') != '', JSONExtractString(raw, 'stationId'),
          JSONExtractString(raw, 'station_id') != '', JSONExtractString(raw, 'station_id'), '') AS entity,
  if(JSONExtractInt(raw, 'occurredAt') > 0, JSONExtractInt(raw, 'occurredAt'), toUnixTimestamp64Milli(occurredAt)) AS t`

export async function readRejected(wh: Warehouse, from: number, until: number): Promise<{ byEntity: RejectedActivity[]; byCode: { sourceId: string; code: string; count: number }[]; byHour: { sourceId: string; hour: number; count: number }[] }> {
  // A record is refused when it arrives: its event time may be older or (refused as future) newer.
  const p = { from, until, rf: from - 2 * DAY }
  const base = `SELECT sourceId, code, ${DEAD_LETTER_FIELDS} FROM dead_letter WHERE receivedAt >= fromUnixTimestamp64Milli({rf:Int64})`
  const [byEntity, byCode, byHour] = await Promise.all([
    wh.query<{ sourceId: string; entity: string; n: number; s: number[]; e: number[] }>(
      `SELECT sourceId, entity, n,
              arrayFilter((x, d) -> d != 1, b, arrayDifference(b)) AS s,
              arrayFilter((x, d) -> d != 1, b, arrayPushBack(arrayPopFront(arrayDifference(b)), 0)) AS e
       FROM (SELECT sourceId, entity, count() AS n, arraySort(bitmapToArray(groupBitmapState(toUInt32(intDiv(t, ${SLOT_MS}))))) AS b
             FROM (${base}) WHERE t >= {from:Int64} AND t < {until:Int64} GROUP BY sourceId, entity)`,
      p,
    ),
    wh.query<{ sourceId: string; code: string; n: number }>(`SELECT sourceId, code, count() AS n FROM (${base}) WHERE t >= {from:Int64} AND t < {until:Int64} GROUP BY sourceId, code`, p),
    wh.query<{ sourceId: string; h: number; n: number }>(`SELECT sourceId, intDiv(t, ${HOUR}) AS h, count() AS n FROM (${base}) WHERE t >= {from:Int64} AND t < {until:Int64} GROUP BY sourceId, h`, p),
  ])
  return {
    byEntity: byEntity.map((r) => ({ sourceId: r.sourceId, entity: r.entity, count: Number(r.n), slots: { starts: r.s.map(Number), ends: r.e.map(Number) } })),
    byCode: byCode.map((r) => ({ sourceId: r.sourceId, code: r.code, count: Number(r.n) })),
    byHour: byHour.map((r) => ({ sourceId: r.sourceId, hour: Number(r.h) * HOUR, count: Number(r.n) })),
  }
}

// ---------------------------------------------------------------------------
// Around gaps: exact event and arrival times of live rows

export interface LiveWindow {
  sourceId: string
  /** null: any entity of the source. */
  entity: { kind: EntityKind; id: string } | null
  from: number
  to: number
}

export interface LiveRow {
  sourceId: string
  kind: EntityKind
  entity: string
  occurredAt: number
  receivedAt: number
}

/**
 * Live rows inside the windows. Windows that are the same for many entities
 * (the edges of the period, one outage of many car parks) are read with one
 * query per event table (IN sets on the primary key's leading columns); the
 * others as primary-key ranges OR-ed together. May return rows of other
 * entities of the same sources in the same windows.
 */
export async function readLiveRows(wh: Warehouse, windows: readonly LiveWindow[]): Promise<LiveRow[]> {
  const out: LiveRow[] = []
  const groups = new Map<string, LiveWindow[]>()
  for (const w of windows) {
    const key = `${w.from}/${w.to}/${w.entity === null ? '*' : w.entity.kind}`
    let g = groups.get(key)
    if (g === undefined) groups.set(key, (g = []))
    g.push(w)
  }
  const singles: LiveWindow[] = []
  for (const g of groups.values()) {
    if (g.length < 8) {
      singles.push(...g)
      continue
    }
    const { from, to, entity } = g[0]!
    for (const t of ENTITY_TABLES) {
      if (entity !== null && entity.kind !== t.kind) continue
      const sources = [...new Set(g.map((w) => w.sourceId))]
      const ids = entity === null ? [] : [...new Set(g.map((w) => w.entity!.id))]
      for (let i = 0; i < Math.max(1, ids.length); i += 5000) {
        const rows = await wh.query<{ sourceId: string; entity: string; t: number; r: number }>(
          `SELECT sourceId, ${t.column} AS entity, toUnixTimestamp64Milli(occurredAt) AS t, toUnixTimestamp64Milli(receivedAt) AS r
           FROM ${t.table}
           WHERE ${t.backfill ? 'NOT isBackfill AND ' : ''}sourceId IN {s:Array(String)}${entity === null ? '' : ` AND ${t.column} IN {e:Array(String)}`}
             AND occurredAt >= fromUnixTimestamp64Milli({a:Int64}) AND occurredAt < fromUnixTimestamp64Milli({b:Int64})`,
          { s: sources, e: ids.slice(i, i + 5000), a: from, b: to },
        )
        for (const r of rows) out.push({ sourceId: r.sourceId, kind: t.kind, entity: r.entity, occurredAt: Number(r.t), receivedAt: Number(r.r) })
      }
    }
  }
  for (const t of ENTITY_TABLES) {
    const mine = singles.filter((w) => w.entity === null || w.entity.kind === t.kind)
    for (let i = 0; i < mine.length; i += 100) {
      const batch = mine.slice(i, i + 100)
      const params: Record<string, string | number> = {}
      const conds = batch.map((w, k) => {
        params[`s${k}`] = w.sourceId
        params[`a${k}`] = w.from
        params[`b${k}`] = w.to
        let c = `sourceId = {s${k}:String}`
        if (w.entity !== null) {
          params[`e${k}`] = w.entity.id
          c += ` AND ${t.column} = {e${k}:String}`
        }
        return `(${c} AND occurredAt >= fromUnixTimestamp64Milli({a${k}:Int64}) AND occurredAt < fromUnixTimestamp64Milli({b${k}:Int64}))`
      })
      const rows = await wh.query<{ sourceId: string; entity: string; t: number; r: number }>(
        `SELECT sourceId, ${t.column} AS entity, toUnixTimestamp64Milli(occurredAt) AS t, toUnixTimestamp64Milli(receivedAt) AS r
         FROM ${t.table} WHERE ${t.backfill ? 'NOT isBackfill AND ' : ''}(${conds.join(' OR ')})`,
        params,
      )
      for (const r of rows) out.push({ sourceId: r.sourceId, kind: t.kind, entity: r.entity, occurredAt: Number(r.t), receivedAt: Number(r.r) })
    }
  }
  return out
}

// ---------------------------------------------------------------------------
// The event clock step by step: arrivals that could have ended a delay

export interface ClockStep {
  sourceId: string
  entity: string | null
  kind: EntityKind | null
  /** The previous arrival (0 when none in the look-back) and the newest live event landed by then (0 when none). */
  prevArrival: number
  prevLatest: number
  arrival: number
}

export interface ClockEnd {
  sourceId: string
  entity: string | null
  kind: EntityKind | null
  lastArrival: number
  latest: number
}

function stepQuery(arrivals: string, partition: string, minDelayMs: number): string {
  return `SELECT * FROM (
            SELECT ${partition}, a,
                   lagInFrame(a, 1, toInt64(0)) OVER (PARTITION BY ${partition} ORDER BY a ASC ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS prevA,
                   max(m) OVER (PARTITION BY ${partition} ORDER BY a ASC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prevL
            FROM (${arrivals})
          ) WHERE a >= {from:Int64} AND a - prevL > ${Math.max(0, Math.floor(minDelayMs))}`
}

/**
 * The source clocks (ingest_log: when each batch landed and its newest live
 * event time): the arrivals after which the wall time since the newest live
 * event exceeded `minDelayMs`, the only ones that can end a delay, and each
 * source's last arrival.
 */
export async function readSourceClock(wh: Warehouse, from: number, until: number, lookbackMs: number, minDelayMs: number): Promise<{ steps: ClockStep[]; ends: ClockEnd[] }> {
  // One row per landed batch and table; rows of one batch share their arrival, which is harmless here.
  const where = `arrivedAt >= fromUnixTimestamp64Milli({lf:Int64}) AND arrivedAt < fromUnixTimestamp64Milli({until:Int64})
                 AND rows > backfillRows AND tableName != 'source_heartbeat'`
  const p = { lf: from - lookbackMs, from, until }
  const [steps, ends] = await Promise.all([
    wh.query<{ sourceId: string; a: number; prevA: number; prevL: number }>(
      `SELECT sourceId, a, prevA, prevL FROM (
         SELECT sourceId, toUnixTimestamp64Milli(arrivedAt) AS a,
                lagInFrame(toUnixTimestamp64Milli(arrivedAt), 1, toInt64(0)) OVER (PARTITION BY sourceId ORDER BY arrivedAt ASC ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS prevA,
                max(toUnixTimestamp64Milli(assumeNotNull(maxLiveEventTime))) OVER (PARTITION BY sourceId ORDER BY arrivedAt ASC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prevL
         FROM ingest_log WHERE ${where}
       ) WHERE a >= {from:Int64} AND a - prevL > ${Math.max(0, Math.floor(minDelayMs))}`,
      p,
    ),
    wh.query<{ sourceId: string; a: number; m: number }>(
      `SELECT sourceId, toUnixTimestamp64Milli(max(arrivedAt)) AS a, max(toUnixTimestamp64Milli(assumeNotNull(maxLiveEventTime))) AS m FROM ingest_log WHERE ${where} GROUP BY sourceId`,
      p,
    ),
  ])
  return {
    steps: steps.map((r) => ({ sourceId: r.sourceId, entity: null, kind: null, prevArrival: Number(r.prevA), prevLatest: Number(r.prevL), arrival: Number(r.a) })),
    ends: ends.map((r) => ({ sourceId: r.sourceId, entity: null, kind: null, lastArrival: Number(r.a), latest: Number(r.m) })),
  }
}

/** The same for entities whose rows arrive late (not within one 5-minute bucket of their event time), from their live rows. */
export async function readEntityClock(
  wh: Warehouse,
  entities: readonly { sourceId: string; kind: EntityKind; entity: string }[],
  from: number,
  until: number,
  lookbackMs: number,
  minDelayMs: number,
): Promise<{ steps: ClockStep[]; ends: ClockEnd[] }> {
  const steps: ClockStep[] = []
  const ends: ClockEnd[] = []
  for (const kind of new Set(ENTITY_TABLES.map((t) => t.kind))) {
    const mine = entities.filter((e) => e.kind === kind)
    if (mine.length === 0) continue
    for (let i = 0; i < mine.length; i += 500) {
      const batch = mine.slice(i, i + 500)
      const union = ENTITY_TABLES.filter((x) => x.kind === kind)
        .map(
          (x) => `SELECT sourceId, ${x.column} AS entity, toUnixTimestamp64Milli(receivedAt) AS a, toUnixTimestamp64Milli(occurredAt) AS t FROM ${x.table}
                  WHERE ${x.backfill ? 'NOT isBackfill AND ' : ''}concat(sourceId, '/', ${x.column}) IN {keys:Array(String)}
                    AND occurredAt >= fromUnixTimestamp64Milli({lf:Int64}) AND receivedAt >= fromUnixTimestamp64Milli({lf:Int64}) AND receivedAt < fromUnixTimestamp64Milli({until:Int64})`,
        )
        .join(' UNION ALL ')
      const arrivals = `SELECT sourceId, entity, a, max(t) AS m FROM (${union}) GROUP BY sourceId, entity, a`
      const p = { lf: from - lookbackMs, from, until, keys: batch.map((e) => `${e.sourceId}/${e.entity}`) }
      const [s, e] = await Promise.all([
        wh.query<{ sourceId: string; entity: string; a: number; prevA: number; prevL: number }>(stepQuery(arrivals, 'sourceId, entity', minDelayMs), p),
        wh.query<{ sourceId: string; entity: string; a: number; m: number }>(`SELECT sourceId, entity, max(a) AS a, max(m) AS m FROM (${arrivals}) GROUP BY sourceId, entity`, p),
      ])
      for (const r of s) steps.push({ sourceId: r.sourceId, entity: r.entity, kind, prevArrival: Number(r.prevA), prevLatest: Number(r.prevL), arrival: Number(r.a) })
      for (const r of e) ends.push({ sourceId: r.sourceId, entity: r.entity, kind, lastArrival: Number(r.a), latest: Number(r.m) })
    }
  }
  return { steps, ends }
}

// ---------------------------------------------------------------------------
// Volumes and static descriptions

/** Rows per source and UTC hour in [from, until) (whole hours). */
export async function readHourlyRows(wh: Warehouse, from: number, until: number): Promise<{ sourceId: string; hour: number; count: number }[]> {
  const rows = await wh.query<{ sourceId: string; d: number; h: number; n: number }>(
    `SELECT sourceId, toUInt32(day) AS d, h, sum(c) AS n FROM entity_activity ARRAY JOIN hourRows.1 AS h, hourRows.2 AS c
     WHERE day >= toDate({d0:String}) AND day <= toDate({d1:String}) GROUP BY sourceId, d, h`,
    { d0: utcDate(from), d1: utcDate(Math.max(from, until - 1)) },
  )
  const out: { sourceId: string; hour: number; count: number }[] = []
  for (const r of rows) {
    const hour = Number(r.d) * DAY + Number(r.h) * HOUR
    if (hour >= from && hour < until) out.push({ sourceId: r.sourceId, hour, count: Number(r.n) })
  }
  return out
}

export interface LotDescription {
  sourceId: string
  lotId: string
  name: string | null
  openingHours: string | null
  district: string | null
}

export async function readLots(wh: Warehouse, until: number): Promise<LotDescription[]> {
  const rows = await wh.query<{ sourceId: string; lotId: string; name: string; hours: string | null; district: string | null }>(
    `SELECT sourceId, lotId, argMax(name, occurredAt) AS name, argMax(openingHours, occurredAt) AS hours, argMax(district, occurredAt) AS district
     FROM parking_lot WHERE occurredAt < fromUnixTimestamp64Milli({until:Int64}) GROUP BY sourceId, lotId`,
    { until },
  )
  return rows.map((r) => ({ sourceId: r.sourceId, lotId: r.lotId, name: r.name || null, openingHours: r.hours || null, district: r.district || null }))
}

/** Scheduled departures (not cancelled) around the period, per source and terminal. */
export async function readDepartures(wh: Warehouse, from: number, until: number): Promise<Map<string, Map<string, number[]>>> {
  const rows = await wh.query<{ sourceId: string; terminalId: string; departure: number; status: string }>(
    `SELECT sourceId, terminalId, toUnixTimestamp64Milli(argMax(scheduledDeparture, occurredAt)) AS departure, argMax(status, occurredAt) AS status
     FROM ferry_sailing
     WHERE scheduledDeparture >= fromUnixTimestamp64Milli({from:Int64}) AND scheduledDeparture < fromUnixTimestamp64Milli({to:Int64})
     GROUP BY sourceId, terminalId, sailingId`,
    { from: from - DAY, to: until + DAY },
  )
  const out = new Map<string, Map<string, number[]>>()
  for (const r of rows) {
    if (r.status === 'cancelled') continue
    let bt = out.get(r.sourceId)
    if (bt === undefined) out.set(r.sourceId, (bt = new Map<string, number[]>()))
    let list = bt.get(r.terminalId)
    if (list === undefined) bt.set(r.terminalId, (list = []))
    list.push(Number(r.departure))
  }
  return out
}

/** Backfilled rows that landed after `since` with event times in [from, to): a reason to generate that month's report again. */
export async function backfillSince(wh: Warehouse, since: number, from: number, to: number): Promise<{ rows: number; lastArrival: number | null }> {
  const [r] = await wh.query<{ n: number; last: number }>(
    `SELECT sum(backfillRows) AS n, toUnixTimestamp64Milli(max(arrivedAt)) AS last FROM ingest_log
     WHERE arrivedAt > fromUnixTimestamp64Milli({since:Int64}) AND backfillRows > 0
       AND minEventTime < fromUnixTimestamp64Milli({to:Int64}) AND maxEventTime >= fromUnixTimestamp64Milli({from:Int64})`,
    { since, from, to },
  )
  const n = Number(r?.n ?? 0)
  return { rows: n, lastArrival: n > 0 ? Number(r!.last) : null }
}
