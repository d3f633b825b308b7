import { CitysyncError } from '../../lib/errors.ts'
import { type QueryParams, type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { lotConditions, type ResolvedScope } from './scope.ts'
import { bucketLabel, type Granularity, isoLocal, type Period, zoneLiteral } from './time-range.ts'

// Parking figures from the derived tables (parking_lot_hour, parking_lot_day,
// parking_district_hour; see refresh.ts and docs/metrics.md). Sums are
// integers (milliseconds, counts, fen); rates are divided here, once, from the
// sums.
//
// Which table: hour buckets (or an hour-of-day filter) need hourly rows; a
// district without a lot and without per-lot rows is read from its district
// sums, one row per hour, any other hourly query from the lots' hours; day
// and month buckets from the lots' days.

export interface ParkingQuery {
  scope: ResolvedScope
  period: Period
  granularity: Granularity
  /** One row per lot and bucket instead of one per bucket. */
  byLot: boolean
  /** Local hours of the day (0-23) to keep. */
  hours?: number[] | undefined
  /** ISO weekdays (1 Monday .. 7 Sunday) to keep. */
  weekdays?: number[] | undefined
  timezone: string
  /** Most rows the answer may hold. */
  maxRows: number
  /**
   * Which hourly table answers a district: its sums (parking_district_hour,
   * the default where it can) or its lots' rows (parking_lot_hour). Both give
   * the same figures; the tests compare them.
   */
  plan?: 'auto' | 'lots' | undefined
}

const HOUR_MS = 3_600_000
const DAY_MS = 24 * HOUR_MS

const BUCKET_FROM_HOUR: Record<Granularity, string> = {
  hour: 'toInt64(toUnixTimestamp(hour)) * 1000',
  day: 'toInt64(toUnixTimestamp(toStartOfDay(hour, {tz:String}))) * 1000',
  month: 'toInt64(toUnixTimestamp(toDateTime(toStartOfMonth(hour, {tz:String}), {tz:String}))) * 1000',
}

const BUCKET_FROM_DAY: Record<Exclude<Granularity, 'hour'>, string> = {
  day: 'toInt64(toUnixTimestamp(toDateTime(day, {tz:String}))) * 1000',
  month: 'toInt64(toUnixTimestamp(toDateTime(toStartOfMonth(day), {tz:String}))) * 1000',
}

interface Built {
  sql: string
  params: QueryParams
}

/** The period, hours of the day and weekdays, on an `hour` column; and the row limit. */
function timeOfHourConditions(q: ParkingQuery): { conditions: string[]; params: QueryParams } {
  const conditions = [`hour >= toDateTime({fromS:Int64}, 'UTC')`, `hour < toDateTime({toS:Int64}, 'UTC')`]
  const params: QueryParams = { fromS: Math.floor(q.period.fromMs / 1000), toS: Math.ceil(q.period.toMs / 1000), limit: q.maxRows + 1 }
  if (q.hours !== undefined) {
    conditions.push('toHour(hour, {tz:String}) IN {hours:Array(UInt8)}')
    params.hours = q.hours
  }
  if (q.weekdays !== undefined) {
    conditions.push('toDayOfWeek(hour, 0, {tz:String}) IN {weekdays:Array(UInt8)}')
    params.weekdays = q.weekdays
  }
  return { conditions, params }
}

function hourConditions(q: ParkingQuery): Built {
  const { conditions, params } = lotConditions(q.scope)
  const time = timeOfHourConditions(q)
  return { sql: [...conditions, ...time.conditions].join('\n    AND '), params: { ...params, ...time.params } }
}

/** A whole district, summed over its lots: its hours come from parking_district_hour. */
function fromDistrictHours(q: ParkingQuery): boolean {
  return q.plan !== 'lots' && q.scope.district !== undefined && q.scope.lot === undefined && !q.byLot && fromHours(q)
}

function districtHourConditions(q: ParkingQuery): Built {
  const conditions = [`(district = {district:String} OR (district = '' AND sourceId IN {districtSources:Array(String)}))`]
  const params: QueryParams = { district: q.scope.district!, districtSources: q.scope.districtSources ?? [] }
  if (q.scope.sources !== undefined) {
    conditions.push('sourceId IN {sources:Array(String)}')
    params.sources = q.scope.sources
  }
  const time = timeOfHourConditions(q)
  return { sql: [...conditions, ...time.conditions].join('\n    AND '), params: { ...params, ...time.params } }
}

function withLotNames(inner: string): string {
  return `SELECT r.*, l.name AS name, l.district AS district
FROM (${inner}) AS r
LEFT JOIN analytics_parking_lot AS l ON r.sourceId = l.sourceId AND r.lotId = l.lotId
ORDER BY r.sourceId, r.lotId, r.bucketMs`
}

function dayConditions(q: ParkingQuery): Built {
  const { conditions, params } = lotConditions(q.scope)
  conditions.push('day >= {fromDay:Date}', 'day < {toDay:Date}')
  params.fromDay = q.period.fromDay
  params.toDay = q.period.toDay
  if (q.weekdays !== undefined) {
    conditions.push('toDayOfWeek(day) IN {weekdays:Array(UInt8)}')
    params.weekdays = q.weekdays
  }
  params.limit = q.maxRows + 1
  return { sql: conditions.join('\n    AND '), params }
}

/** Hour buckets, or an hour-of-day filter, need the hourly table; otherwise the daily one answers. */
function fromHours(q: ParkingQuery): boolean {
  return q.granularity === 'hour' || q.hours !== undefined
}

/**
 * Occupancy per bucket: time integrals summed over the lots; the peak is the
 * hour of the bucket with the highest occupancy rate of the lots together
 * (the earliest when tied). From day rows, the hours are their 24 local hours.
 */
export function occupancySql(q: ParkingQuery): Built {
  const keys = q.byLot ? 'sourceId, lotId, ' : ''
  let inner: string
  let params: QueryParams
  if (fromHours(q)) {
    const district = fromDistrictHours(q)
    const where = district ? districtHourConditions(q) : hourConditions(q)
    params = where.params
    inner = `
SELECT ${keys}bucketMs,
  sum(c) AS coveredMs, sum(s) AS spaceMs, sum(v) AS vehicleMs, sum(sn) AS snapshotMs, max(mx) AS maxOccupied,
  max(if(s = 0, -1., v / s)) AS peakRate,
  argMax(hourMs, (if(s = 0, -1., v / s), -hourMs)) AS peakHourMs
FROM (
  SELECT ${keys}toInt64(toUnixTimestamp(hour)) * 1000 AS hourMs, ${BUCKET_FROM_HOUR[q.granularity]} AS bucketMs,
    sum(coveredMs) AS c, sum(spaceMs) AS s, sum(vehicleMs) AS v, sum(snapshotMs) AS sn, max(maxOccupied) AS mx
  FROM ${district ? 'parking_district_hour' : 'parking_lot_hour'} FINAL
  WHERE ${where.sql}
  GROUP BY ${keys}hour, bucketMs
)
GROUP BY ${keys}bucketMs
ORDER BY ${keys}bucketMs
LIMIT {limit:UInt32}`
  } else {
    const where = dayConditions(q)
    params = where.params
    const bucket = BUCKET_FROM_DAY[q.granularity as Exclude<Granularity, 'hour'>]
    inner = `
SELECT ${keys}bucketMs,
  sum(c) AS coveredMs, sum(s) AS spaceMs, sum(v) AS vehicleMs, sum(sn) AS snapshotMs, max(mx) AS maxOccupied,
  max(dayPeak) AS peakRate,
  argMax(dayPeakMs, (dayPeak, -dayPeakMs)) AS peakHourMs
FROM (
  SELECT ${keys}bucketMs, dayMs, c, s, v, sn, mx,
    arrayMap((x, y) -> if(y = 0, -1., x / y), hv, hs) AS rates,
    arrayMax(rates) AS dayPeak,
    dayMs + (arrayFirstIndex(r -> r = dayPeak, rates) - 1) * 3600000 AS dayPeakMs
  FROM (
    SELECT ${keys}${bucket} AS bucketMs, toInt64(toUnixTimestamp(toDateTime(day, {tz:String}))) * 1000 AS dayMs,
      sum(coveredMs) AS c, sum(spaceMs) AS s, sum(vehicleMs) AS v, sum(snapshotMs) AS sn, max(maxOccupied) AS mx,
      sumForEach(hourVehicleMs) AS hv, sumForEach(hourSpaceMs) AS hs
    FROM parking_lot_day FINAL
    WHERE ${where.sql}
    GROUP BY ${keys}bucketMs, dayMs
  )
)
GROUP BY ${keys}bucketMs
ORDER BY ${keys}bucketMs
LIMIT {limit:UInt32}`
  }
  const sql = (q.byLot ? withLotNames(inner) : inner).replaceAll('{tz:String}', zoneLiteral(q.timezone))
  return { sql, params }
}

const TURNOVER_SUMS = `sum(coveredMs) AS coveredMs, sum(spaceMs) AS spaceMs, sum(sessions) AS sessions, sum(matched) AS matched, sum(open) AS open,
  sum(capped) AS capped, sum(entryOnly) AS entryOnly, sum(exitOnly) AS exitOnly, sum(entries) AS entries, sum(exits) AS exits,
  sum(revenueCents) AS revenueCents, sum(durationCount) AS durationCount, sum(durationMs) AS durationMs`

/** Sessions, turnover, durations and revenue per bucket: from the daily table, or an hourly one for hour buckets or an hour filter. */
export function turnoverSql(q: ParkingQuery): Built {
  const keys = q.byLot ? 'sourceId, lotId, ' : ''
  const hourly = fromHours(q)
  const district = fromDistrictHours(q)
  const where = district ? districtHourConditions(q) : hourly ? hourConditions(q) : dayConditions(q)
  const bucket = hourly ? BUCKET_FROM_HOUR[q.granularity] : BUCKET_FROM_DAY[q.granularity as Exclude<Granularity, 'hour'>]
  const inner = `
SELECT ${keys}${bucket} AS bucketMs,
  ${TURNOVER_SUMS}
FROM ${district ? 'parking_district_hour' : hourly ? 'parking_lot_hour' : 'parking_lot_day'} FINAL
WHERE ${where.sql}
GROUP BY ${keys}bucketMs
ORDER BY ${keys}bucketMs
LIMIT {limit:UInt32}`
  const sql = (q.byLot ? withLotNames(inner) : inner).replaceAll('{tz:String}', zoneLiteral(q.timezone))
  return { sql, params: where.params }
}

// ---------------------------------------------------------------------------
// Results

interface LotKeys {
  sourceId?: string
  lotId?: string
  name?: string
  district?: string | null
}

interface OccupancySums extends LotKeys {
  bucketMs: number
  coveredMs: number
  spaceMs: number
  vehicleMs: number
  snapshotMs: number
  maxOccupied: number
  peakRate: number
  peakHourMs: number
}

interface TurnoverSums extends LotKeys {
  bucketMs: number
  coveredMs: number
  spaceMs: number
  sessions: number
  matched: number
  open: number
  capped: number
  entryOnly: number
  exitOnly: number
  entries: number
  exits: number
  revenueCents: number
  durationCount: number
  durationMs: number
}

export interface OccupancyItem {
  bucket: string
  sourceId?: string
  lotId?: string
  name?: string | null
  district?: string | null
  /** Hours the series covers, summed over the lots. */
  lotHours: number
  /** ∫ capacity dt, in space-hours. */
  spaceHours: number
  /** Parking load: ∫ vehicles parked dt, in vehicle-hours. */
  vehicleHours: number
  /** vehicleHours ÷ spaceHours. */
  occupancyRate: number | null
  /** Highest occupancy rate of one hour in the bucket, and that hour. */
  peakOccupancyRate: number | null
  peakHour: string | null
  /** Share of lotHours whose occupancy came from free-space snapshots (the rest: running count). */
  snapshotShare: number | null
  /** One lot only: capacity averaged over the covered time, and the most vehicles parked at once. */
  averageCapacity?: number | null
  maxOccupied?: number
}

export interface TurnoverItem {
  bucket: string
  sourceId?: string
  lotId?: string
  name?: string | null
  district?: string | null
  /** ∫ capacity dt, in space-days. */
  spaceDays: number
  /** Sessions starting in the bucket (entries, and exits without an entry). */
  sessions: number
  /** sessions ÷ spaceDays. */
  turnoverRate: number | null
  matched: number
  open: number
  capped: number
  entryOnly: number
  exitOnly: number
  entries: number
  exits: number
  /** Mean duration of the bucket's matched and capped sessions. */
  averageDurationMinutes: number | null
  /** Fees of the exits in the bucket. */
  revenueCents: number
  revenueYuan: number
}

function ratio(a: number, b: number): number | null {
  return b === 0 ? null : a / b
}

function lotFields(r: LotKeys): { sourceId?: string; lotId?: string; name?: string | null; district?: string | null } {
  return r.lotId === undefined ? {} : { sourceId: r.sourceId!, lotId: r.lotId, name: r.name === '' ? null : (r.name ?? null), district: r.district ?? null }
}

function tooLarge(max: number): CitysyncError {
  return new CitysyncError('CITYSYNC_ERR_ANALYTICS_TOO_LARGE', [`more than ${max} rows`, 'a coarser granularity, a shorter period or fewer lots'])
}

export interface OccupancyTotals {
  lotHours: number
  spaceHours: number
  vehicleHours: number
  occupancyRate: number | null
  /** The highest of the buckets' peaks (not given per lot when by=lot). */
  peakOccupancyRate: number | null
  peakHour: string | null
}

export interface TurnoverTotals {
  spaceDays: number
  sessions: number
  turnoverRate: number | null
  averageDurationMinutes: number | null
  revenueCents: number
  revenueYuan: number
}

export async function parkingOccupancy(wh: Warehouse, q: ParkingQuery): Promise<{ items: OccupancyItem[]; totals: OccupancyTotals }> {
  const { sql, params } = occupancySql(q)
  const rows = await wh.query<OccupancySums>(sql, params)
  if (rows.length > q.maxRows) throw tooLarge(q.maxRows)
  const sum = { covered: 0, space: 0, vehicle: 0 }
  let peak: { rate: number; ms: number } | undefined
  const items = rows.map((r) => {
    sum.covered += r.coveredMs
    sum.space += r.spaceMs
    sum.vehicle += r.vehicleMs
    if (r.peakRate >= 0 && (peak === undefined || r.peakRate > peak.rate || (r.peakRate === peak.rate && r.peakHourMs < peak.ms))) peak = { rate: r.peakRate, ms: r.peakHourMs }
    const item: OccupancyItem = {
      bucket: bucketLabel(r.bucketMs, q.granularity, q.timezone),
      ...lotFields(r),
      lotHours: r.coveredMs / HOUR_MS,
      spaceHours: r.spaceMs / HOUR_MS,
      vehicleHours: r.vehicleMs / HOUR_MS,
      occupancyRate: ratio(r.vehicleMs, r.spaceMs),
      peakOccupancyRate: r.peakRate < 0 ? null : r.peakRate,
      peakHour: r.peakRate < 0 ? null : isoLocal(r.peakHourMs, q.timezone),
      snapshotShare: ratio(r.snapshotMs, r.coveredMs),
    }
    if (q.byLot) {
      item.averageCapacity = ratio(r.spaceMs, r.coveredMs)
      item.maxOccupied = r.maxOccupied
    }
    return item
  })
  const totals: OccupancyTotals = {
    lotHours: sum.covered / HOUR_MS,
    spaceHours: sum.space / HOUR_MS,
    vehicleHours: sum.vehicle / HOUR_MS,
    occupancyRate: ratio(sum.vehicle, sum.space),
    peakOccupancyRate: q.byLot || peak === undefined ? null : peak.rate,
    peakHour: q.byLot || peak === undefined ? null : isoLocal(peak.ms, q.timezone),
  }
  return { items, totals }
}

export async function parkingTurnover(wh: Warehouse, q: ParkingQuery): Promise<{ items: TurnoverItem[]; totals: TurnoverTotals }> {
  const { sql, params } = turnoverSql(q)
  const rows = await wh.query<TurnoverSums>(sql, params)
  if (rows.length > q.maxRows) throw tooLarge(q.maxRows)
  const sum = { space: 0, sessions: 0, durationCount: 0, durationMs: 0, revenue: 0 }
  const items = rows.map((r): TurnoverItem => {
    sum.space += r.spaceMs
    sum.sessions += r.sessions
    sum.durationCount += r.durationCount
    sum.durationMs += r.durationMs
    sum.revenue += r.revenueCents
    return {
      bucket: bucketLabel(r.bucketMs, q.granularity, q.timezone),
      ...lotFields(r),
      spaceDays: r.spaceMs / DAY_MS,
      sessions: r.sessions,
      turnoverRate: r.spaceMs === 0 ? null : r.sessions / (r.spaceMs / DAY_MS),
      matched: r.matched,
      open: r.open,
      capped: r.capped,
      entryOnly: r.entryOnly,
      exitOnly: r.exitOnly,
      entries: r.entries,
      exits: r.exits,
      averageDurationMinutes: r.durationCount === 0 ? null : r.durationMs / r.durationCount / 60_000,
      revenueCents: r.revenueCents,
      revenueYuan: r.revenueCents / 100,
    }
  })
  const totals: TurnoverTotals = {
    spaceDays: sum.space / DAY_MS,
    sessions: sum.sessions,
    turnoverRate: sum.space === 0 ? null : sum.sessions / (sum.space / DAY_MS),
    averageDurationMinutes: sum.durationCount === 0 ? null : sum.durationMs / sum.durationCount / 60_000,
    revenueCents: sum.revenue,
    revenueYuan: sum.revenue / 100,
  }
  return { items, totals }
}
