import { CitysyncError } from '../../lib/errors.ts'
import { type QueryParams, type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { isoLocal, type Period } from './time-range.ts'

// Ferry load per sailing. A ticket counts for the sailing of its latest row
// (sold on a sailing, changed to another, refunded); at one instant the order
// is sold, changed, refunded. Passengers = tickets whose latest row is not
// `refunded`; load factor = passengers ÷ seats; check-in rate = distinct
// tickets checked in for the sailing ÷ passengers. Tickets and
// check-ins are read from 90 days before the period (tickets sell in advance).

export interface FerryScope {
  sources?: string[] | undefined
  terminal?: string | undefined
  route?: string | undefined
  sailing?: string | undefined
}

export interface FerryQuery {
  scope: FerryScope
  /** Scheduled departure within. */
  period: Period
  timezone: string
  maxRows: number
}

const ADVANCE_SALES_MS = 90 * 24 * 3_600_000

export function ferryLoadSql(q: FerryQuery): { sql: string; params: QueryParams } {
  const where: string[] = [`dep >= fromUnixTimestamp64Milli({fromMs:Int64}, 'UTC')`, `dep < fromUnixTimestamp64Milli({toMs:Int64}, 'UTC')`]
  const raw: string[] = []
  const params: QueryParams = { fromMs: q.period.fromMs, toMs: q.period.toMs, salesFromMs: q.period.fromMs - ADVANCE_SALES_MS, limit: q.maxRows + 1 }
  if (q.scope.sources !== undefined) {
    raw.push('sourceId IN {sources:Array(String)}')
    params.sources = q.scope.sources
  }
  if (q.scope.terminal !== undefined) {
    where.push('terminalId = {terminal:String}')
    params.terminal = q.scope.terminal
  }
  if (q.scope.route !== undefined) {
    where.push('route = {route:String}')
    params.route = q.scope.route
  }
  if (q.scope.sailing !== undefined) {
    raw.push('sailingId = {sailing:String}')
    params.sailing = q.scope.sailing
  }
  const rawWhere = raw.length === 0 ? '' : `WHERE ${raw.join(' AND ')}`
  const sql = `
WITH sailings AS (
  SELECT sourceId, sailingId,
    argMax(terminalId, occurredAt) AS terminalId, argMax(route, occurredAt) AS route, argMax(vesselName, occurredAt) AS vesselName,
    argMax(scheduledDeparture, occurredAt) AS dep, argMax(actualDeparture, occurredAt) AS actual,
    argMax(capacity, occurredAt) AS seats, argMax(status, occurredAt) AS status
  FROM ferry_sailing FINAL
  ${rawWhere}
  GROUP BY sourceId, sailingId
  HAVING ${where.join(' AND ')}
)
SELECT s.sourceId AS sourceId, s.sailingId AS sailingId, s.terminalId AS terminalId, s.route AS route, s.vesselName AS vesselName,
  toUnixTimestamp64Milli(s.dep) AS depMs, toUnixTimestamp64Milli(s.actual) AS actualMs, s.seats AS seats, s.status AS status,
  toUInt64(t.passengers) AS passengers, toUInt64(t.refunded) AS refunded, toUInt64(c.checkedIn) AS checkedIn
FROM sailings AS s
LEFT JOIN (
  SELECT sourceId, lastSailing AS sailingId,
    countIf(lastStatus != 'refunded') AS passengers,
    countIf(lastStatus = 'refunded') AS refunded
  FROM (
    SELECT sourceId, ticketId,
      argMax(sailingId, (occurredAt, multiIf(status = 'sold', 0, status = 'changed', 1, 2))) AS lastSailing,
      argMax(status, (occurredAt, multiIf(status = 'sold', 0, status = 'changed', 1, 2))) AS lastStatus
    FROM ferry_ticket FINAL
    WHERE occurredAt >= fromUnixTimestamp64Milli({salesFromMs:Int64}, 'UTC')
      AND (sourceId, ticketId) IN (
        SELECT sourceId, ticketId FROM ferry_ticket
        WHERE occurredAt >= fromUnixTimestamp64Milli({salesFromMs:Int64}, 'UTC') AND (sourceId, sailingId) IN (SELECT sourceId, sailingId FROM sailings))
    GROUP BY sourceId, ticketId
  )
  GROUP BY sourceId, sailingId
) AS t ON s.sourceId = t.sourceId AND s.sailingId = t.sailingId
LEFT JOIN (
  SELECT ci.sourceId AS sourceId, ci.sailingId AS sailingId, uniqExact(ci.ticketId) AS checkedIn
  FROM ferry_checkin AS ci FINAL
  WHERE ci.occurredAt >= fromUnixTimestamp64Milli({salesFromMs:Int64}, 'UTC')
    AND (ci.sourceId, ci.sailingId) IN (SELECT sourceId, sailingId FROM sailings)
  GROUP BY ci.sourceId, ci.sailingId
) AS c ON s.sourceId = c.sourceId AND s.sailingId = c.sailingId
ORDER BY s.dep, s.sourceId, s.sailingId
LIMIT {limit:UInt32}`
  return { sql, params }
}

interface FerryRow {
  sourceId: string
  sailingId: string
  terminalId: string
  route: string
  vesselName: string | null
  depMs: number
  actualMs: number | null
  seats: number | null
  status: string
  passengers: number
  refunded: number
  checkedIn: number
}

export interface SailingLoad {
  sourceId: string
  sailingId: string
  terminalId: string
  route: string
  vesselName: string | null
  scheduledDeparture: string
  actualDeparture: string | null
  status: string
  seats: number | null
  /** Tickets whose latest state is sold or changed onto this sailing. */
  passengers: number
  /** Tickets of this sailing whose latest state is refunded. */
  refunded: number
  checkedIn: number
  /** passengers ÷ seats. */
  loadFactor: number | null
  /** checkedIn ÷ passengers. */
  checkInRate: number | null
}

export interface FerryTotals {
  sailings: number
  seats: number
  passengers: number
  checkedIn: number
  /** Σ passengers ÷ Σ seats over sailings with a known seat count. */
  loadFactor: number | null
  checkInRate: number | null
}

export async function ferryLoad(wh: Warehouse, q: FerryQuery): Promise<{ items: SailingLoad[]; totals: FerryTotals }> {
  const { sql, params } = ferryLoadSql(q)
  const rows = await wh.query<FerryRow>(sql, params)
  if (rows.length > q.maxRows) throw new CitysyncError('CITYSYNC_ERR_ANALYTICS_TOO_LARGE', [`more than ${q.maxRows} sailings`, 'a shorter period or one terminal'])
  const items = rows.map(
    (r): SailingLoad => ({
      sourceId: r.sourceId,
      sailingId: r.sailingId,
      terminalId: r.terminalId,
      route: r.route,
      vesselName: r.vesselName,
      scheduledDeparture: isoLocal(r.depMs, q.timezone),
      actualDeparture: r.actualMs === null ? null : isoLocal(r.actualMs, q.timezone),
      status: r.status,
      seats: r.seats,
      passengers: r.passengers,
      refunded: r.refunded,
      checkedIn: r.checkedIn,
      loadFactor: r.seats === null || r.seats === 0 ? null : r.passengers / r.seats,
      checkInRate: r.passengers === 0 ? null : r.checkedIn / r.passengers,
    }),
  )
  let seats = 0
  let seatedPassengers = 0
  let passengers = 0
  let checkedIn = 0
  for (const i of items) {
    passengers += i.passengers
    checkedIn += i.checkedIn
    if (i.seats !== null && i.seats > 0) {
      seats += i.seats
      seatedPassengers += i.passengers
    }
  }
  return {
    items,
    totals: {
      sailings: items.length,
      seats,
      passengers,
      checkedIn,
      loadFactor: seats === 0 ? null : seatedPassengers / seats,
      checkInRate: passengers === 0 ? null : checkedIn / passengers,
    },
  }
}
