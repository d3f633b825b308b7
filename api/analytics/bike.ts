import { createHash } from 'node:crypto'
import { CitysyncError } from '../../lib/errors.ts'
import { type QueryParams, type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { type BikeBalanceDefaults } from './config.ts'
import { bucketLabel, type Granularity, isoLocal, type Period, zoneLiteral } from './time-range.ts'

// Bike share: the online rate per operator, and where vehicles pile up or run
// out (areas against thresholds). Definitions: docs/metrics.md.

/** Which sources: operator (its id in the feed, or the operator named on sources), source, district of the source, a list. */
export interface BikeScope {
  operator?: string | undefined
  operatorSources?: string[] | undefined
  source?: string | undefined
  districtSources?: string[] | undefined
  /** These sources only (the quality service's balance alerts: every bike-share source). */
  sources?: string[] | undefined
}

function scopeConditions(s: BikeScope): { conditions: string[]; params: QueryParams } {
  const conditions: string[] = []
  const params: QueryParams = {}
  if (s.operator !== undefined) {
    conditions.push('(operatorId = {operator:String} OR sourceId IN {operatorSources:Array(String)})')
    params.operator = s.operator
    params.operatorSources = s.operatorSources ?? []
  }
  if (s.source !== undefined) {
    conditions.push('sourceId = {source:String}')
    params.source = s.source
  }
  if (s.districtSources !== undefined) {
    conditions.push('sourceId IN {districtSources:Array(String)}')
    params.districtSources = s.districtSources
  }
  if (s.sources !== undefined) {
    conditions.push('sourceId IN {sources:Array(String)}')
    params.sources = s.sources
  }
  return { conditions, params }
}

// ---------------------------------------------------------------------------
// Online rate

export interface OnlineRateQuery {
  scope: BikeScope
  period: Period
  granularity: Granularity
  timezone: string
  maxRows: number
}

const BUCKET: Record<Granularity, string> = {
  hour: 'toInt64(toUnixTimestamp(toStartOfHour(occurredAt, {tz:String}))) * 1000',
  day: 'toInt64(toUnixTimestamp(toStartOfDay(occurredAt, {tz:String}))) * 1000',
  month: 'toInt64(toUnixTimestamp(toDateTime(toStartOfMonth(occurredAt, {tz:String}), {tz:String}))) * 1000',
}

export function onlineRateSql(q: OnlineRateQuery): { sql: string; params: QueryParams } {
  const { conditions, params } = scopeConditions(q.scope)
  conditions.push(`occurredAt >= fromUnixTimestamp64Milli({fromMs:Int64}, 'UTC')`, `occurredAt < fromUnixTimestamp64Milli({toMs:Int64}, 'UTC')`)
  params.fromMs = q.period.fromMs
  params.toMs = q.period.toMs
  params.limit = q.maxRows + 1
  const sql = `
SELECT sourceId, operatorId, ${BUCKET[q.granularity]} AS bucketMs,
  count() AS snapshots,
  sum(vehiclesReporting) AS reporting,
  sum(fleetSize) AS fleet,
  minIf(vehiclesReporting / fleetSize, fleetSize > 0) AS minRate,
  maxIf(vehiclesReporting / fleetSize, fleetSize > 0) AS maxRate,
  argMax(vehiclesReporting, occurredAt) AS lastReporting,
  argMax(fleetSize, occurredAt) AS lastFleet,
  toUnixTimestamp64Milli(max(occurredAt)) AS lastAtMs
FROM bike_operator_status FINAL
WHERE ${conditions.join('\n  AND ')}
GROUP BY sourceId, operatorId, bucketMs
ORDER BY sourceId, operatorId, bucketMs
LIMIT {limit:UInt32}`
  return { sql: sql.replaceAll('{tz:String}', zoneLiteral(q.timezone)), params }
}

export interface OnlineRateItem {
  bucket: string
  sourceId: string
  operatorId: string
  /** Operator status snapshots in the bucket. */
  snapshots: number
  /** Σ vehicles reporting ÷ Σ fleet over the snapshots. */
  onlineRate: number | null
  minOnlineRate: number | null
  maxOnlineRate: number | null
  /** The bucket's last snapshot. */
  vehiclesReporting: number
  fleetSize: number
  lastSnapshotAt: string
}

interface OnlineRateRow {
  sourceId: string
  operatorId: string
  bucketMs: number
  snapshots: number
  reporting: number
  fleet: number
  minRate: number
  maxRate: number
  lastReporting: number
  lastFleet: number
  lastAtMs: number
}

export async function bikeOnlineRate(wh: Warehouse, q: OnlineRateQuery): Promise<OnlineRateItem[]> {
  const { sql, params } = onlineRateSql(q)
  const rows = await wh.query<OnlineRateRow>(sql, params)
  if (rows.length > q.maxRows) throw new CitysyncError('CITYSYNC_ERR_ANALYTICS_TOO_LARGE', [`more than ${q.maxRows} rows`, 'a coarser granularity, a shorter period or one operator'])
  return rows.map((r) => ({
    bucket: bucketLabel(r.bucketMs, q.granularity, q.timezone),
    sourceId: r.sourceId,
    operatorId: r.operatorId,
    snapshots: r.snapshots,
    onlineRate: r.fleet === 0 ? null : r.reporting / r.fleet,
    minOnlineRate: r.fleet === 0 ? null : r.minRate,
    maxOnlineRate: r.fleet === 0 ? null : r.maxRate,
    vehiclesReporting: r.lastReporting,
    fleetSize: r.lastFleet,
    lastSnapshotAt: isoLocal(r.lastAtMs, q.timezone),
  }))
}

// ---------------------------------------------------------------------------
// Accumulation and shortage by area
//
// Areas are squares of `cellMeters` on a grid of latitude rows (a row is
// cellMeters of latitude; within a row, cellMeters of longitude at the row's
// middle latitude). An area's vehicles at `at`: the vehicles available at its
// stations (each station's latest status within the window) plus the
// free-floating vehicles in it (not at a station, not disabled, not reserved,
// reported within the window, each vehicle id once). Coordinates are taken as
// stored: a source in GCJ-02 and one in WGS-84 land up to ~600 m apart in China.

export interface BalanceQuery {
  scope: BikeScope
  at: number
  thresholds: BikeBalanceDefaults
}

export const AREA_STATES = ['accumulation', 'shortage', 'normal'] as const
export type AreaState = (typeof AREA_STATES)[number]

export interface AreaCount {
  sourceId: string
  operatorId: string
  area: string
  lat: number
  lon: number
  stationVehicles: number
  freeVehicles: number
  stations: number
  stationsReporting: number
  docks: number | null
}

export interface Area extends AreaCount {
  vehicles: number
  state: AreaState
}

const METERS_PER_DEGREE = 111_320

export function balanceSql(q: BalanceQuery): { sql: string; params: QueryParams } {
  const { conditions, params } = scopeConditions(q.scope)
  const scope = conditions.length === 0 ? '1' : conditions.join(' AND ')
  params.atMs = q.at
  params.windowMs = q.thresholds.windowMs
  params.cell = q.thresholds.cellMeters
  params.mpd = METERS_PER_DEGREE
  const window = `occurredAt > fromUnixTimestamp64Milli({atMs:Int64} - {windowMs:Int64}, 'UTC') AND occurredAt <= fromUnixTimestamp64Milli({atMs:Int64}, 'UTC')`
  const row = 'toInt64(floor(lat * {mpd:Float64} / {cell:Float64}))'
  const col = `toInt64(floor(lon * {mpd:Float64} * cos(radians((${row} + 0.5) * {cell:Float64} / {mpd:Float64})) / {cell:Float64}))`
  const sql = `
SELECT sourceId, operatorId, concat(toString(y), ':', toString(x)) AS area,
  (y + 0.5) * {cell:Float64} / {mpd:Float64} AS lat,
  (x + 0.5) * {cell:Float64} / ({mpd:Float64} * cos(radians((y + 0.5) * {cell:Float64} / {mpd:Float64}))) AS lon,
  toUInt64(sum(stationVehicles)) AS stationVehicles, toUInt64(sum(free)) AS freeVehicles,
  toUInt64(sum(station)) AS stations, toUInt64(sum(reporting)) AS stationsReporting,
  if(sum(hasDocks) = 0, NULL, sum(docks)) AS docks
FROM (
  SELECT sourceId, operatorId, ${row} AS y, ${col} AS x, stationVehicles, free, station, reporting, docks, hasDocks
  FROM (
    SELECT st.sourceId AS sourceId, st.operatorId AS operatorId, st.lat AS lat, st.lon AS lon,
      toUInt64(if(ss.has = 1 AND ss.installed, ss.vehicles, 0)) AS stationVehicles, toUInt64(0) AS free, toUInt64(1) AS station,
      toUInt64(ss.has = 1 AND ss.installed) AS reporting, toUInt64(ifNull(st.capacity, 0)) AS docks, toUInt64(st.capacity IS NOT NULL) AS hasDocks
    FROM (
      SELECT sourceId, operatorId, stationId, argMax(lat, occurredAt) AS lat, argMax(lon, occurredAt) AS lon, argMax(capacity, occurredAt) AS capacity
      FROM bike_station FINAL
      WHERE ${scope} AND occurredAt <= fromUnixTimestamp64Milli({atMs:Int64}, 'UTC')
      GROUP BY sourceId, operatorId, stationId
    ) AS st
    LEFT JOIN (
      SELECT sourceId, operatorId, stationId, argMax(vehiclesAvailable, occurredAt) AS vehicles, argMax(isInstalled, occurredAt) AS installed, toUInt8(1) AS has
      FROM bike_station_status FINAL
      WHERE ${scope} AND ${window}
      GROUP BY sourceId, operatorId, stationId
    ) AS ss ON st.sourceId = ss.sourceId AND st.operatorId = ss.operatorId AND st.stationId = ss.stationId
  )

  UNION ALL

  SELECT sourceId, operatorId, ${row} AS y, ${col} AS x,
    toUInt64(0), toUInt64(1), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0)
  FROM (
    SELECT sourceId, operatorId, vehicleId, argMax(lat, occurredAt) AS lat, argMax(lon, occurredAt) AS lon,
      argMax(isDisabled, occurredAt) AS disabled, argMax(isReserved, occurredAt) AS reserved, argMax(stationId, occurredAt) AS atStation
    FROM bike_vehicle_status FINAL
    WHERE ${scope} AND ${window}
    GROUP BY sourceId, operatorId, vehicleId
  )
  WHERE atStation IS NULL AND NOT disabled AND NOT reserved AND lat IS NOT NULL AND lon IS NOT NULL
)
GROUP BY sourceId, operatorId, y, x
ORDER BY sourceId, operatorId, y, x`
  return { sql, params }
}

/** Pure: the state of each area against the thresholds. */
export function classifyAreas(counts: readonly AreaCount[], t: Pick<BikeBalanceDefaults, 'accumulationAt' | 'shortageAt'>): Area[] {
  return counts.map((c) => {
    const vehicles = c.stationVehicles + c.freeVehicles
    const state: AreaState = vehicles >= t.accumulationAt ? 'accumulation' : c.stationsReporting > 0 && vehicles <= t.shortageAt ? 'shortage' : 'normal'
    return { ...c, vehicles, state }
  })
}

export async function bikeBalance(wh: Warehouse, q: BalanceQuery): Promise<Area[]> {
  const { sql, params } = balanceSql(q)
  const rows = await wh.query<AreaCount>(sql, params)
  return classifyAreas(rows, q.thresholds)
}

// ---------------------------------------------------------------------------
// Alerts

/**
 * An alert for the sync-health channels, in the shape of their notifications
 * (Alertmanager labels and annotations): labels alertname, sourceId, operator,
 * area (entityId), state (ACCUMULATION or SHORTAGE), severity, entityKind.
 */
export interface BalanceAlert {
  fingerprint: string
  status: 'firing'
  labels: Record<string, string>
  annotations: Record<string, string>
  startsAt: number
  endsAt: null
}

export interface BalanceAlertContext {
  at: number
  thresholds: Pick<BikeBalanceDefaults, 'accumulationAt' | 'shortageAt' | 'cellMeters'>
  /** Labels every alert gets (e.g. district). */
  extraLabels?: Record<string, string>
}

/**
 * The alerts a balance result raises: one per area in accumulation or
 * shortage. Pure; the caller routes them to the channels (quality/ owns the
 * delivery, silences and incidents). The fingerprint is stable per operator,
 * area and state, so repeated evaluations update one alert.
 */
export function balanceAlerts(areas: readonly Area[], ctx: BalanceAlertContext): BalanceAlert[] {
  const out: BalanceAlert[] = []
  for (const a of areas) {
    if (a.state === 'normal') continue
    const state = a.state === 'accumulation' ? 'ACCUMULATION' : 'SHORTAGE'
    const labels: Record<string, string> = {
      ...ctx.extraLabels,
      alertname: a.state === 'accumulation' ? 'BikeAccumulation' : 'BikeShortage',
      sourceId: a.sourceId,
      operator: a.operatorId,
      entityKind: 'area',
      entityId: a.area,
      state,
      severity: 'warning',
    }
    const threshold = a.state === 'accumulation' ? `≥ ${ctx.thresholds.accumulationAt}` : `≤ ${ctx.thresholds.shortageAt}`
    const summary =
      a.state === 'accumulation'
        ? `${a.vehicles} vehicles in area ${a.area} (${ctx.thresholds.cellMeters} m), threshold ${threshold}`
        : `${a.vehicles} vehicles at ${a.stationsReporting} station(s) in area ${a.area} (${ctx.thresholds.cellMeters} m), threshold ${threshold}`
    out.push({
      fingerprint: createHash('sha256').update(`${a.sourceId}\x1f${a.operatorId}\x1f${a.area}\x1f${state}`).digest('hex').slice(0, 16),
      status: 'firing',
      labels,
      annotations: {
        summary,
        vehicles: String(a.vehicles),
        threshold,
        lat: a.lat.toFixed(6),
        lon: a.lon.toFixed(6),
      },
      startsAt: ctx.at,
      endsAt: null,
    })
  }
  return out
}
