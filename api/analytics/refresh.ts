import { type Logger } from 'pino'
import { type Clock } from '../../lib/clock.ts'
import { errorMessage } from '../../lib/errors.ts'
import { type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { zoneLiteral } from './time-range.ts'

// The analytics refresher: recomputes parking sessions (parking_session), the
// hourly series (parking_lot_hour) and the daily figures (parking_lot_day) of
// the lots whose data changed, then the district sums (parking_district_hour)
// of their districts, in the warehouse, with SQL only.
//
// Which lots and from when (the scope of a run):
// - a passage at t changes the pairing of sessions that start from t − cap on,
//   so sessions are derived again from t − cap and hours from that hour;
// - a free-space snapshot or a lot description (capacity) at t changes hours from t;
// - an open session older than the cap becomes capped: from its start;
// - every lot's series is extended to `now`: from its last (partial) hour.
// Lots changed since the previous run are found in analytics_parking_dirty,
// which materialized views on the event tables fill on every insert. The first
// run (or `full`) takes every lot from its first event.
//
// Every run writes with a new version; the tables are ReplacingMergeTree, read
// with FINAL, so a run that fails half way leaves the previous figures in
// place and is simply repeated (the watermark moves only when a run completes).
// Sessions that a run no longer derives (a late exit now pairs with another
// entry) are written again as deleted.

export interface RefreshOptions {
  /** Figures are computed up to this instant (epoch ms). */
  now: number
  timezone: string
  sessionCapMs: number
  /** Lot-hours one statement recomputes at most (lots are split into chunks by this); default 2,000,000. */
  chunkHours?: number
  /** Every lot from its first event, whatever changed. */
  full?: boolean
  /**
   * Dirty marks are read this far behind the previous run's start, for inserts
   * that were still committing when it read them (default 2 min).
   */
  watermarkMarginMs?: number
  signal?: AbortSignal
  /** Called after each statement, with how long it took (for benchmarks and debug logs). */
  onStep?: (step: string, chunk: number, ms: number) => void
}

export interface RefreshResult {
  version: number
  full: boolean
  lots: number
  chunks: number
  durationMs: number
}

const WATERMARK_MARGIN_MS = 120_000

const SCOPE = `analytics_refresh_scope`

/** The scope rows of one chunk, as a subquery: sourceId, lotId, fromMs (hours), sessionFromMs. */
const CHUNK = `(SELECT sourceId, lotId, toUnixTimestamp64Milli(hourFrom) AS fromMs, toUnixTimestamp64Milli(sessionFrom) AS sessionFromMs
  FROM ${SCOPE} WHERE version = {v:UInt64} AND chunk = {chunk:UInt32})`

const CHUNK_KEYS = `(SELECT sourceId, lotId FROM ${SCOPE} WHERE version = {v:UInt64} AND chunk = {chunk:UInt32})`

const CHUNK_MIN_FROM = `(SELECT min(hourFrom) FROM ${SCOPE} WHERE version = {v:UInt64} AND chunk = {chunk:UInt32})`

// ---------------------------------------------------------------------------
// Scope

function scopeSql(full: boolean): string {
  const changed = full
    ? `
      SELECT sourceId, lotId, toNullable(min(toUnixTimestamp64Milli(occurredAt))) AS sMs, min(toUnixTimestamp64Milli(occurredAt)) AS hMs
      FROM parking_passage GROUP BY sourceId, lotId
      UNION ALL
      SELECT sourceId, lotId, CAST(NULL AS Nullable(Int64)), min(toUnixTimestamp64Milli(occurredAt)) FROM parking_occupancy GROUP BY sourceId, lotId`
    : `
      SELECT sourceId, lotId,
        if(kind = 'passage', toNullable(toUnixTimestamp64Milli(fromTime) - {capMs:Int64}), CAST(NULL AS Nullable(Int64))) AS sMs,
        toUnixTimestamp64Milli(fromTime) - if(kind = 'passage', {capMs:Int64}, 0) AS hMs
      FROM analytics_parking_dirty
      WHERE markedAt > fromUnixTimestamp64Milli({sinceMs:Int64}, 'UTC')
      UNION ALL
      SELECT sourceId, lotId, toNullable(min(toUnixTimestamp64Milli(startAt))), min(toUnixTimestamp64Milli(startAt))
      FROM parking_session FINAL
      WHERE status = 'open'
        AND startAt > fromUnixTimestamp64Milli({prevNowMs:Int64} - {capMs:Int64} - 1, 'UTC')
        AND startAt <= fromUnixTimestamp64Milli({nowMs:Int64} - {capMs:Int64}, 'UTC')
      GROUP BY sourceId, lotId
      UNION ALL
      SELECT sourceId, lotId, CAST(NULL AS Nullable(Int64)), toInt64(max(toUnixTimestamp(hour))) * 1000
      FROM parking_lot_hour
      WHERE hour >= toStartOfHour(fromUnixTimestamp64Milli({prevNowMs:Int64}, 'UTC'), {tz:String}) - INTERVAL 1 HOUR
      GROUP BY sourceId, lotId`
  return `
    INSERT INTO ${SCOPE} (version, chunk, sourceId, lotId, sessionFrom, hourFrom, createdAt)
    SELECT {v:UInt64},
      toUInt32(intDiv(ifNull(sum(greatest(intDiv({nowMs:Int64} - hourMs, 3600000), 0) + 1)
        OVER (ORDER BY sourceId, lotId ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0), {chunkHours:UInt64})),
      sourceId, lotId,
      if(isNull(sessionMs), NULL, fromUnixTimestamp64Milli(assumeNotNull(sessionMs), 'UTC')),
      toStartOfHour(fromUnixTimestamp64Milli(least(hourMs, {nowMs:Int64}), 'UTC'), {tz:String}),
      now()
    FROM (
      SELECT sourceId, lotId, min(sMs) AS sessionMs, least(min(hMs), ifNull(min(sMs), min(hMs))) AS hourMs
      FROM (${changed})
      GROUP BY sourceId, lotId
    )`
}

// ---------------------------------------------------------------------------
// Sessions
//
// Per lot and plate key, passages in time order (entries before exits at the
// same instant). An entry pairs with the next passage when that is an exit no
// later than the cap; an exit is unmatched unless the passage before it is an
// entry no earlier than the cap. Passages without a plate key pair with
// nothing. Passages from sessionFrom − cap are read, so that every passage
// from sessionFrom on sees its neighbours within the cap.

const SESSIONS_SQL = `
INSERT INTO parking_session (sourceId, lotId, sessionId, status, startAt, entryAt, exitAt, endAt, durationMs, feeCents, version, isDeleted)
SELECT
  sourceId, lotId, eventId, status,
  fromUnixTimestamp64Milli(t, 'UTC'),
  if(direction = 'entry', fromUnixTimestamp64Milli(t, 'UTC'), NULL),
  multiIf(direction = 'exit', fromUnixTimestamp64Milli(t, 'UTC'), status = 'matched', fromUnixTimestamp64Milli(nextT, 'UTC'), NULL),
  multiIf(direction = 'exit', fromUnixTimestamp64Milli(t, 'UTC'), status = 'matched', fromUnixTimestamp64Milli(nextT, 'UTC'),
          status = 'capped', fromUnixTimestamp64Milli(t + {capMs:Int64}, 'UTC'), NULL),
  multiIf(status = 'matched', toNullable(toUInt64(nextT - t)), status = 'capped', toNullable(toUInt64({capMs:Int64})), NULL),
  multiIf(direction = 'exit', fee, status = 'matched', nextFee, NULL),
  {v:UInt64}, 0
FROM (
  SELECT *,
    multiIf(
      direction = 'exit', 'exit_only',
      plate = '', 'entry_only',
      nextDir = 'exit' AND nextT - t <= {capMs:Int64}, 'matched',
      nextDir = 'entry' AND nextT - t <= {capMs:Int64}, 'entry_only',
      {nowMs:Int64} - t >= {capMs:Int64}, 'capped',
      'open') AS status
  FROM (
    SELECT sourceId, lotId, eventId, direction, t, fee, plate, sessionFromMs,
      lagInFrame(direction, 1, '') OVER w AS prevDir,
      lagInFrame(t, 1, toInt64(0)) OVER w AS prevT,
      leadInFrame(direction, 1, '') OVER w AS nextDir,
      leadInFrame(t, 1, toInt64(0)) OVER w AS nextT,
      leadInFrame(fee, 1, CAST(NULL AS Nullable(Int64))) OVER w AS nextFee
    FROM (
      SELECT p.sourceId AS sourceId, p.lotId AS lotId, p.eventId AS eventId, toString(p.direction) AS direction,
        toUnixTimestamp64Milli(p.occurredAt) AS t, CAST(p.feeCents AS Nullable(Int64)) AS fee, ifNull(p.plateKey, '') AS plate,
        s.sessionFromMs AS sessionFromMs
      FROM parking_passage AS p FINAL
      INNER JOIN ${CHUNK} AS s ON p.sourceId = s.sourceId AND p.lotId = s.lotId
      WHERE (p.sourceId, p.lotId) IN ${CHUNK_KEYS}
        AND p.occurredAt >= (SELECT min(sessionFrom) FROM ${SCOPE} WHERE version = {v:UInt64} AND chunk = {chunk:UInt32}) - toIntervalSecond(intDiv({capMs:Int64}, 1000) + 1)
        AND p.occurredAt <= fromUnixTimestamp64Milli({nowMs:Int64}, 'UTC')
        AND s.sessionFromMs IS NOT NULL
        AND toUnixTimestamp64Milli(p.occurredAt) >= assumeNotNull(s.sessionFromMs) - {capMs:Int64}
    )
    WINDOW w AS (PARTITION BY sourceId, lotId, if(plate = '', eventId, plate) ORDER BY t, direction, eventId
                 ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING)
  )
  WHERE t >= assumeNotNull(sessionFromMs)
    AND (direction = 'entry' OR NOT (plate != '' AND prevDir = 'entry' AND t - prevT <= {capMs:Int64}))
)`

/** Sessions of the re-derived range that this run did not write again are written as deleted. */
const TOMBSTONES_SQL = `
INSERT INTO parking_session (sourceId, lotId, sessionId, status, startAt, entryAt, exitAt, endAt, durationMs, feeCents, version, isDeleted)
SELECT x.sourceId, x.lotId, x.sessionId, x.status, x.startAt, x.entryAt, x.exitAt, x.endAt, x.durationMs, x.feeCents, {v:UInt64}, 1
FROM parking_session AS x FINAL
INNER JOIN ${CHUNK} AS s ON x.sourceId = s.sourceId AND x.lotId = s.lotId
WHERE (x.sourceId, x.lotId) IN ${CHUNK_KEYS}
  AND x.startAt >= (SELECT min(sessionFrom) FROM ${SCOPE} WHERE version = {v:UInt64} AND chunk = {chunk:UInt32})
  AND s.sessionFromMs IS NOT NULL
  AND toUnixTimestamp64Milli(x.startAt) >= assumeNotNull(s.sessionFromMs)
  AND x.version < {v:UInt64}`

// ---------------------------------------------------------------------------
// Hours
//
// Per lot, its events from hourFrom to now in order — a start element carrying
// the state at hourFrom (running count, snapshot in force, capacity), capacity
// changes, free-space snapshots, passages — become a step function of vehicles
// parked:
//   capacity(t)  the capacity in force (the lot's latest description at or
//                before t; before the first one, the first one's)
//   N(t)         running entries − exits, never below zero: an exit with nobody
//                counted inside does not lower it (arrayCumSumNonNegative)
//   S(t)         capacity − free of the latest snapshot at or before t (the
//                snapshot's own capacity when it has one), none before the first
//   occupied(t) = clamp(S(t) if there is one, else N(t), 0, capacity(t))
// Each step holds from its event to the next (the last to now) and is cut at
// hour boundaries. A lot's series starts at its first passage or snapshot.

const HOURS_SQL = `
INSERT INTO parking_lot_hour (sourceId, lotId, hour, coveredMs, spaceMs, vehicleMs, snapshotMs, maxOccupied, capacityEnd, countEnd, snapshotEnd,
  entries, exits, revenueCents, sessions, matched, open, capped, entryOnly, exitOnly, durationCount, durationMs, version)
SELECT
  g.sourceId, g.lotId, toDateTime(intDiv(g.hs, 1000), 'UTC'),
  g.coveredMs, g.spaceMs, g.vehicleMs, g.snapshotMs, g.maxOccupied, g.capacityEnd, g.countEnd, g.snapshotEnd,
  g.entries, g.exits, g.revenueCents,
  ss.sessions, ss.matched, ss.open, ss.capped, ss.entryOnly, ss.exitOnly, ss.durationCount, ss.durationMs,
  {v:UInt64}
FROM (
  -- 4. One row per hour.
  SELECT sourceId, lotId, hs, coveredMs, spaceMs, vehicleMs, snapshotMs, maxOccupied,
    capacityEnd, countEnd, snapshotEnd, entries, exits, revenueCents
  FROM (
    -- 3. Steps cut at hour boundaries: one element per step and hour it
    -- overlaps, in order (each step's values repeated, no lambda captures an
    -- array: that would copy it per element), then summed per hour with
    -- arrayReduceInRanges over the runs of equal hours.
    SELECT sourceId, lotId,
      arrayReduceInRanges('any', ranges, hsE) AS hours,
      arrayReduceInRanges('sum', ranges, ovE) AS coveredMsA,
      arrayReduceInRanges('sum', ranges, arrayMap((o, c) -> o * toUInt64(c), ovE, capE)) AS spaceMsA,
      arrayReduceInRanges('sum', ranges, arrayMap((o, c) -> o * toUInt64(c), ovE, occE)) AS vehicleMsA,
      arrayReduceInRanges('sum', ranges, arrayMap((o, x) -> if(x >= 0, o, toUInt64(0)), ovE, snapE)) AS snapshotMsA,
      arrayReduceInRanges('max', ranges, arrayMap((o, c) -> if(o > 0, toUInt32(c), toUInt32(0)), ovE, occE)) AS maxOccupiedA,
      arrayReduceInRanges('anyLast', ranges, capE) AS capacityEndA,
      arrayReduceInRanges('anyLast', ranges, nE) AS countEndA,
      arrayReduceInRanges('anyLast', ranges, snapE) AS snapshotEndA,
      arrayReduceInRanges('sum', ranges, arrayMap((f, k, d) -> toUInt32(f AND k = 3 AND d = 1), firstE, kindE, deltaE)) AS entriesA,
      arrayReduceInRanges('sum', ranges, arrayMap((f, k, d) -> toUInt32(f AND k = 3 AND d = -1), firstE, kindE, deltaE)) AS exitsA,
      arrayReduceInRanges('sum', ranges, arrayMap((f, k, x) -> if(f AND k = 3, x, toInt64(0)), firstE, kindE, feeE)) AS revenueA
    FROM (
      SELECT sourceId, lotId, hsE, capE, occE, snapE, nE, kindE, deltaE, feeE,
        arrayMap((h, x, y) -> toUInt64(greatest(toInt64(0), least(y, h + 3600000) - greatest(x, h))), hsE, tE, bE) AS ovE,
        arrayMap((h, x) -> h = x, hsE, h0E) AS firstE,
        arrayFilter((j, h, p) -> h != p, arrayEnumerate(hsE), hsE, arrayPushFront(arrayPopBack(hsE), toInt64(-1))) AS runStart,
        arrayMap((st, nx) -> (toUInt64(st), toUInt64(nx - st)), runStart, arrayPushBack(arrayPopFront(runStart), length(hsE) + 1)) AS ranges
      FROM (
        SELECT sourceId, lotId,
          arrayMap((x, y) -> toUInt64(intDiv(y - x, 3600000) + 1), h0, h1) AS reps,
          arrayFlatten(arrayMap((x, y) -> arrayMap(k -> x + toInt64(k) * 3600000, range(toUInt64(intDiv(y - x, 3600000) + 1))), h0, h1)) AS hsE,
          arrayFlatten(arrayMap((v, r) -> arrayWithConstant(r, v), ts, reps)) AS tE,
          arrayFlatten(arrayMap((v, r) -> arrayWithConstant(r, v), bs, reps)) AS bE,
          arrayFlatten(arrayMap((v, r) -> arrayWithConstant(r, v), h0, reps)) AS h0E,
          arrayFlatten(arrayMap((v, r) -> arrayWithConstant(r, v), caps, reps)) AS capE,
          arrayFlatten(arrayMap((v, r) -> arrayWithConstant(r, v), occs, reps)) AS occE,
          arrayFlatten(arrayMap((v, r) -> arrayWithConstant(r, v), snaps, reps)) AS snapE,
          arrayFlatten(arrayMap((v, r) -> arrayWithConstant(r, v), ns, reps)) AS nE,
          arrayFlatten(arrayMap((v, r) -> arrayWithConstant(r, v), kinds, reps)) AS kindE,
          arrayFlatten(arrayMap((v, r) -> arrayWithConstant(r, v), deltas, reps)) AS deltaE,
          arrayFlatten(arrayMap((v, r) -> arrayWithConstant(r, v), fees, reps)) AS feeE
        FROM (
          -- 2. The steps of the series, from the lot's first passage or
          -- snapshot (or from hourFrom when the hour before it carries state).
          SELECT sourceId, lotId,
            arrayFirstIndex(x -> x, starts) AS f,
            arraySlice(arrayMap(x -> x.1, ev), f) AS ts,
            arraySlice(bs0, f) AS bs,
            arraySlice(caps0, f) AS caps,
            arraySlice(arrayMap((s, c, k) -> greatest(toInt64(0), least(if(s >= 0, s, c), k)), snaps0, ns0, caps0), f) AS occs,
            arraySlice(snaps0, f) AS snaps,
            arraySlice(ns0, f) AS ns,
            arraySlice(arrayMap(x -> x.2, ev), f) AS kinds,
            arraySlice(arrayMap(x -> x.3, ev), f) AS deltas,
            arraySlice(arrayMap(x -> x.4, ev), f) AS fees,
            arrayMap(t -> toInt64(toUnixTimestamp(toStartOfHour(toDateTime(intDiv(t, 1000), 'UTC'), {tz:String}))) * 1000, ts) AS h0,
            arrayMap((t, e) -> toInt64(toUnixTimestamp(toStartOfHour(toDateTime(intDiv(greatest(e - 1, t), 1000), 'UTC'), {tz:String}))) * 1000, ts, bs) AS h1
          FROM (
            SELECT sourceId, lotId, ev, bs0, caps0, ns0, starts,
              arrayFill(x -> x >= 0, arrayMap((x, k) -> multiIf(x.2 = 2, greatest(toInt64(0), if(x.8 >= 0, x.8, k) - x.7), x.2 = 0, x.10, toInt64(-1)), ev, caps0)) AS snaps0
            FROM (
              SELECT sourceId, lotId, ev,
                arrayPushBack(arrayPopFront(arrayMap(x -> x.1, ev)), {nowMs:Int64}) AS bs0,
                arrayMap(c -> greatest(c, toInt64(0)), arrayFill(x -> x >= 0, arrayMap(x -> x.6, ev))) AS caps0,
                arrayCumSumNonNegative(arrayMap(x -> x.3, ev)) AS ns0,
                arrayMap(x -> x > 0, arrayCumSum(arrayMap(x -> toUInt32(x.9), ev))) AS starts
              FROM (
                -- 1. The lot's events in order: the start element (state
                -- carried from the hour before), capacity changes, snapshots,
                -- passages. Tuple: (t, kind, delta, fee, id, capacity,
                -- free, snapshot capacity, isData, carried snapshot).
                SELECT sourceId, lotId,
                  arraySort(x -> (x.1, x.2, x.5), groupArray((t, kind, delta, fee, id, capv, free, snapCap, isData, carry))) AS ev
                FROM (
                  SELECT s.sourceId AS sourceId, s.lotId AS lotId, s.fromMs AS t, toUInt8(0) AS kind,
                    toInt64(c.countEnd) AS delta, toInt64(0) AS fee, '' AS id,
                    if(k.has = 1, toInt64(k.cap), toInt64(-1)) AS capv, toInt64(0) AS free, toInt64(-1) AS snapCap,
                    toUInt8(c.has) AS isData, if(c.has = 1, toInt64(c.snapshotEnd), toInt64(-1)) AS carry
                  FROM ${CHUNK} AS s
                  LEFT JOIN (
                    SELECT h.sourceId AS sourceId, h.lotId AS lotId, h.countEnd AS countEnd, h.snapshotEnd AS snapshotEnd, toUInt8(1) AS has
                    FROM parking_lot_hour AS h FINAL
                    INNER JOIN ${CHUNK} AS s2 ON h.sourceId = s2.sourceId AND h.lotId = s2.lotId
                    WHERE (h.sourceId, h.lotId) IN ${CHUNK_KEYS}
                      AND h.hour >= ${CHUNK_MIN_FROM} - INTERVAL 1 HOUR
                      AND toInt64(toUnixTimestamp(h.hour)) * 1000 = s2.fromMs - 3600000
                  ) AS c ON s.sourceId = c.sourceId AND s.lotId = c.lotId
                  LEFT JOIN (
                    SELECT l.sourceId AS sourceId, l.lotId AS lotId, toUInt8(1) AS has,
                      if(countIf(toUnixTimestamp64Milli(l.occurredAt) <= s3.fromMs) > 0,
                         argMaxIf(l.capacity, l.occurredAt, toUnixTimestamp64Milli(l.occurredAt) <= s3.fromMs),
                         argMin(l.capacity, l.occurredAt)) AS cap
                    FROM parking_lot AS l FINAL
                    INNER JOIN ${CHUNK} AS s3 ON l.sourceId = s3.sourceId AND l.lotId = s3.lotId
                    WHERE (l.sourceId, l.lotId) IN ${CHUNK_KEYS}
                    GROUP BY l.sourceId, l.lotId
                  ) AS k ON s.sourceId = k.sourceId AND s.lotId = k.lotId

                  UNION ALL

                  SELECT l.sourceId, l.lotId, toUnixTimestamp64Milli(l.occurredAt), toUInt8(1), toInt64(0), toInt64(0), l.eventId,
                    toInt64(l.capacity), toInt64(0), toInt64(-1), toUInt8(0), toInt64(-1)
                  FROM parking_lot AS l FINAL
                  INNER JOIN ${CHUNK} AS s ON l.sourceId = s.sourceId AND l.lotId = s.lotId
                  WHERE (l.sourceId, l.lotId) IN ${CHUNK_KEYS}
                    AND toUnixTimestamp64Milli(l.occurredAt) > s.fromMs
                    AND l.occurredAt <= fromUnixTimestamp64Milli({nowMs:Int64}, 'UTC')

                  UNION ALL

                  SELECT o.sourceId, o.lotId, toUnixTimestamp64Milli(o.occurredAt), toUInt8(2), toInt64(0), toInt64(0), o.eventId,
                    toInt64(-1), toInt64(o.free), if(isNull(o.capacity), toInt64(-1), toInt64(assumeNotNull(o.capacity))), toUInt8(1), toInt64(-1)
                  FROM parking_occupancy AS o FINAL
                  INNER JOIN ${CHUNK} AS s ON o.sourceId = s.sourceId AND o.lotId = s.lotId
                  WHERE (o.sourceId, o.lotId) IN ${CHUNK_KEYS}
                    AND o.occurredAt >= ${CHUNK_MIN_FROM}
                    AND toUnixTimestamp64Milli(o.occurredAt) >= s.fromMs
                    AND o.occurredAt <= fromUnixTimestamp64Milli({nowMs:Int64}, 'UTC')

                  UNION ALL

                  SELECT p.sourceId, p.lotId, toUnixTimestamp64Milli(p.occurredAt), toUInt8(3),
                    if(p.direction = 'entry', toInt64(1), toInt64(-1)),
                    if(p.direction = 'exit', toInt64(ifNull(p.feeCents, 0)), toInt64(0)), p.eventId,
                    toInt64(-1), toInt64(0), toInt64(-1), toUInt8(1), toInt64(-1)
                  FROM parking_passage AS p FINAL
                  INNER JOIN ${CHUNK} AS s ON p.sourceId = s.sourceId AND p.lotId = s.lotId
                  WHERE (p.sourceId, p.lotId) IN ${CHUNK_KEYS}
                    AND p.occurredAt >= ${CHUNK_MIN_FROM}
                    AND toUnixTimestamp64Milli(p.occurredAt) >= s.fromMs
                    AND p.occurredAt <= fromUnixTimestamp64Milli({nowMs:Int64}, 'UTC')
                )
                GROUP BY sourceId, lotId
              )
            )
          )
          WHERE f > 0
        )
      )
    )
  )
  ARRAY JOIN hours AS hs, coveredMsA AS coveredMs, spaceMsA AS spaceMs, vehicleMsA AS vehicleMs, snapshotMsA AS snapshotMs,
    maxOccupiedA AS maxOccupied, capacityEndA AS capacityEnd, countEndA AS countEnd, snapshotEndA AS snapshotEnd,
    entriesA AS entries, exitsA AS exits, revenueA AS revenueCents
) AS g
LEFT JOIN (
  SELECT x.sourceId AS sourceId, x.lotId AS lotId,
    toInt64(toUnixTimestamp(toStartOfHour(x.startAt, {tz:String}))) * 1000 AS hs,
    toUInt32(count()) AS sessions,
    toUInt32(countIf(x.status = 'matched')) AS matched,
    toUInt32(countIf(x.status = 'open')) AS open,
    toUInt32(countIf(x.status = 'capped')) AS capped,
    toUInt32(countIf(x.status = 'entry_only')) AS entryOnly,
    toUInt32(countIf(x.status = 'exit_only')) AS exitOnly,
    toUInt32(countIf(x.durationMs IS NOT NULL)) AS durationCount,
    sum(ifNull(x.durationMs, 0)) AS durationMs
  FROM parking_session AS x FINAL
  INNER JOIN ${CHUNK} AS s ON x.sourceId = s.sourceId AND x.lotId = s.lotId
  WHERE (x.sourceId, x.lotId) IN ${CHUNK_KEYS}
    AND x.startAt >= ${CHUNK_MIN_FROM}
    AND toUnixTimestamp64Milli(x.startAt) >= s.fromMs
    AND x.startAt <= fromUnixTimestamp64Milli({nowMs:Int64}, 'UTC')
  GROUP BY sourceId, lotId, hs
) AS ss ON g.sourceId = ss.sourceId AND g.lotId = ss.lotId AND g.hs = ss.hs`

const DAYS_SQL = `
INSERT INTO parking_lot_day (sourceId, lotId, day, coveredMs, spaceMs, vehicleMs, snapshotMs, maxOccupied, entries, exits, revenueCents,
  sessions, matched, open, capped, entryOnly, exitOnly, durationCount, durationMs, hourVehicleMs, hourSpaceMs, version)
SELECT h.sourceId, h.lotId, toDate(h.hour, {tz:String}) AS day,
  sum(h.coveredMs), sum(h.spaceMs), sum(h.vehicleMs), sum(h.snapshotMs), max(h.maxOccupied),
  sum(h.entries), sum(h.exits), sum(h.revenueCents),
  sum(h.sessions), sum(h.matched), sum(h.open), sum(h.capped), sum(h.entryOnly), sum(h.exitOnly), sum(h.durationCount), sum(h.durationMs),
  groupArrayInsertAt(toUInt64(0), 24)(h.vehicleMs, toHour(h.hour, {tz:String})),
  groupArrayInsertAt(toUInt64(0), 24)(h.spaceMs, toHour(h.hour, {tz:String})),
  {v:UInt64}
FROM parking_lot_hour AS h FINAL
INNER JOIN ${CHUNK} AS s ON h.sourceId = s.sourceId AND h.lotId = s.lotId
WHERE (h.sourceId, h.lotId) IN ${CHUNK_KEYS}
  AND h.hour >= ${CHUNK_MIN_FROM} - INTERVAL 1 DAY
  AND toDate(h.hour, {tz:String}) >= toDate(fromUnixTimestamp64Milli(s.fromMs, 'UTC'), {tz:String})
GROUP BY h.sourceId, h.lotId, day`

// ---------------------------------------------------------------------------
// Districts
//
// After the lots, the district sums (parking_district_hour) of the districts
// whose lots were recomputed, from the earliest hour recomputed among them; a
// lot that moved to another district (or gained a description) has both its
// districts summed again from their first hour. A lot's district is the one
// its latest description names, '' when it names none (the query adds the
// '' rows of the sources whose own district is asked for).

const LOT_DISTRICT = `(SELECT sourceId, lotId, ifNull(district, '') AS district FROM analytics_parking_lot)`

const DISTRICT_SCOPE_SQL = `
INSERT INTO analytics_district_scope (version, sourceId, district, lotId, hourFrom, createdAt)
WITH
  cur AS ${LOT_DISTRICT},
  prev AS (SELECT sourceId, lotId, district FROM parking_lot_district FINAL),
  groups AS (
    SELECT sourceId, district, min(fromS) AS fromS FROM (
      SELECT c.sourceId AS sourceId, c.district AS district, toInt64(toUnixTimestamp(s.hourFrom)) AS fromS
      FROM ${SCOPE} AS s INNER JOIN cur AS c ON s.sourceId = c.sourceId AND s.lotId = c.lotId
      WHERE s.version = {v:UInt64}
      UNION ALL
      -- a lot new to the sums, or moved: its district now...
      SELECT sourceId, district, toInt64(0) FROM cur
      WHERE (sourceId, lotId, district) NOT IN (SELECT sourceId, lotId, district FROM prev)
      UNION ALL
      -- ...and the one it left
      SELECT sourceId, district, toInt64(0) FROM prev
      WHERE (sourceId, lotId, district) NOT IN (SELECT sourceId, lotId, district FROM cur)
    )
    GROUP BY sourceId, district
  )
SELECT {v:UInt64}, sourceId, district, lotId, toDateTime(fromS, 'UTC'), now()
FROM (
  SELECT g.sourceId AS sourceId, g.district AS district, c.lotId AS lotId, g.fromS AS fromS
  FROM groups AS g INNER JOIN cur AS c ON g.sourceId = c.sourceId AND g.district = c.district
  UNION ALL
  SELECT sourceId, district, '', fromS FROM groups
)`

const DISTRICT_MEMBERS = `(SELECT sourceId, district, lotId, hourFrom FROM analytics_district_scope WHERE version = {v:UInt64} AND lotId != '')`

const DISTRICT_GROUPS = `(SELECT sourceId, district, hourFrom FROM analytics_district_scope WHERE version = {v:UInt64} AND lotId = '')`

const DISTRICT_HOURS_SQL = `
INSERT INTO parking_district_hour (sourceId, district, hour, lots, coveredMs, spaceMs, vehicleMs, snapshotMs, maxOccupied,
  entries, exits, revenueCents, sessions, matched, open, capped, entryOnly, exitOnly, durationCount, durationMs, version, isDeleted)
SELECT h.sourceId, m.district, h.hour, toUInt32(count()),
  sum(h.coveredMs), sum(h.spaceMs), sum(h.vehicleMs), sum(h.snapshotMs), max(h.maxOccupied),
  sum(h.entries), sum(h.exits), sum(h.revenueCents), sum(h.sessions), sum(h.matched), sum(h.open), sum(h.capped),
  sum(h.entryOnly), sum(h.exitOnly), sum(h.durationCount), sum(h.durationMs),
  {v:UInt64}, 0
FROM parking_lot_hour AS h FINAL
INNER JOIN ${DISTRICT_MEMBERS} AS m ON h.sourceId = m.sourceId AND h.lotId = m.lotId
WHERE (h.sourceId, h.lotId) IN (SELECT sourceId, lotId FROM ${DISTRICT_MEMBERS})
  AND h.hour >= (SELECT min(hourFrom) FROM ${DISTRICT_GROUPS})
  AND h.hour >= m.hourFrom
GROUP BY h.sourceId, m.district, h.hour`

/** Hours of the summed districts that this run did not write again (no lot has them any more) are written as deleted. */
const DISTRICT_TOMBSTONES_SQL = `
INSERT INTO parking_district_hour (sourceId, district, hour, lots, coveredMs, spaceMs, vehicleMs, snapshotMs, maxOccupied,
  entries, exits, revenueCents, sessions, matched, open, capped, entryOnly, exitOnly, durationCount, durationMs, version, isDeleted)
SELECT x.sourceId, x.district, x.hour, x.lots, x.coveredMs, x.spaceMs, x.vehicleMs, x.snapshotMs, x.maxOccupied,
  x.entries, x.exits, x.revenueCents, x.sessions, x.matched, x.open, x.capped, x.entryOnly, x.exitOnly, x.durationCount, x.durationMs,
  {v:UInt64}, 1
FROM parking_district_hour AS x FINAL
INNER JOIN ${DISTRICT_GROUPS} AS g ON x.sourceId = g.sourceId AND x.district = g.district
WHERE (x.district, x.sourceId) IN (SELECT district, sourceId FROM ${DISTRICT_GROUPS})
  AND x.hour >= (SELECT min(hourFrom) FROM ${DISTRICT_GROUPS})
  AND x.hour >= g.hourFrom
  AND x.version < {v:UInt64}`

const DISTRICT_MEMBERSHIP_SQL = `
INSERT INTO parking_lot_district (sourceId, lotId, district, version)
SELECT sourceId, lotId, district, {v:UInt64} FROM ${DISTRICT_MEMBERS}`

// ---------------------------------------------------------------------------

interface LastRun {
  version: number
  startedMs: number
  dataNowMs: number
  timezone: string
  sessionCapMs: number
}

async function lastRun(wh: Warehouse): Promise<LastRun | undefined> {
  const rows = await wh.query<LastRun>(
    `SELECT version, toUnixTimestamp64Milli(startedAt) AS startedMs, toUnixTimestamp64Milli(dataNow) AS dataNowMs, timezone, sessionCapMs
     FROM analytics_refresh_log ORDER BY version DESC LIMIT 1`,
  )
  return rows[0]
}

/**
 * One refresh run. Without `full`, recomputes what changed since the previous
 * run. The first run is full; a run with another time zone or cap than the
 * previous one empties the derived tables first and is full.
 */
export async function refreshParking(wh: Warehouse, o: RefreshOptions): Promise<RefreshResult> {
  const began = Date.now()
  const [{ startedMs }] = (await wh.query<{ startedMs: number }>(`SELECT toUnixTimestamp64Milli(now64(3)) AS startedMs`)) as [{ startedMs: number }]
  let prev = await lastRun(wh)
  if (prev !== undefined && (prev.timezone !== o.timezone || prev.sessionCapMs !== o.sessionCapMs)) {
    // Other days and sessions: what was derived before must not stay beside them.
    await resetParkingAnalytics(wh)
    prev = undefined
  }
  const full = o.full === true || prev === undefined
  const version = Math.max(o.now, Date.now(), (prev?.version ?? 0) + 1)
  const base = {
    v: version,
    nowMs: o.now,
    capMs: o.sessionCapMs,
    tz: o.timezone,
    chunkHours: o.chunkHours ?? 2_000_000,
    sinceMs: (prev?.startedMs ?? 0) - (o.watermarkMarginMs ?? WATERMARK_MARGIN_MS),
    prevNowMs: prev?.dataNowMs ?? 0,
  }
  await wh.query(scopeSql(full).replaceAll('{tz:String}', zoneLiteral(o.timezone)), base)
  const chunkRows = await wh.query<{ chunk: number; lots: number }>(
    `SELECT chunk, toUInt32(count()) AS lots FROM ${SCOPE} WHERE version = {v:UInt64} GROUP BY chunk ORDER BY chunk`,
    { v: version },
  )
  const lots = chunkRows.reduce((n, c) => n + c.lots, 0)
  const chunks = chunkRows.length
  const zoned = (sql: string): string => sql.replaceAll('{tz:String}', zoneLiteral(o.timezone))
  for (const { chunk } of chunkRows) {
    o.signal?.throwIfAborted()
    const p = { ...base, chunk }
    for (const [step, sql] of [['sessions', SESSIONS_SQL], ['tombstones', TOMBSTONES_SQL], ['hours', HOURS_SQL], ['days', DAYS_SQL]] as const) {
      const t0 = Date.now()
      await wh.query(zoned(sql), p)
      o.onStep?.(step, chunk, Date.now() - t0)
    }
  }
  o.signal?.throwIfAborted()
  // Membership last: a run that stops before it sums the moved lots' districts again on the next run.
  for (const [step, sql] of [['district scope', DISTRICT_SCOPE_SQL], ['district hours', DISTRICT_HOURS_SQL], ['district tombstones', DISTRICT_TOMBSTONES_SQL], ['district members', DISTRICT_MEMBERSHIP_SQL]] as const) {
    const t0 = Date.now()
    await wh.query(sql, { v: version })
    o.onStep?.(step, chunks, Date.now() - t0)
  }
  const durationMs = Date.now() - began
  await wh.insertJsonEachRow(
    'analytics_refresh_log',
    Buffer.from(
      JSON.stringify({ version, startedAt: startedMs, dataNow: o.now, full, lots, durationMs, timezone: o.timezone, sessionCapMs: o.sessionCapMs }) + '\n',
    ),
  )
  return { version, full, lots, chunks, durationMs }
}

/** Empties the derived tables, so that the next run is a full one. */
export async function resetParkingAnalytics(wh: Warehouse): Promise<void> {
  for (const t of ['parking_session', 'parking_lot_hour', 'parking_lot_day', 'parking_district_hour', 'parking_lot_district', 'analytics_refresh_log', SCOPE, 'analytics_district_scope', 'analytics_parking_dirty']) {
    await wh.command(`TRUNCATE TABLE IF EXISTS ${t}`)
  }
}

export interface RefresherOptions {
  warehouse: Warehouse
  clock: Clock
  log: Logger
  intervalMs: number
  timezone: string
  sessionCapMs: number
  chunkHours: number
}

/** Runs refreshParking every interval (the first run shortly after start) until stop(). */
export class AnalyticsRefresher {
  readonly #o: RefresherOptions
  #timer: NodeJS.Timeout | undefined
  #running: Promise<unknown> = Promise.resolve()
  #stop = new AbortController()
  #stopped = true
  lastResult: RefreshResult | undefined

  constructor(o: RefresherOptions) {
    this.#o = o
  }

  start(firstDelayMs = 5_000): void {
    if (this.#o.intervalMs <= 0) return
    this.#stopped = false
    this.#stop = new AbortController()
    this.#schedule(firstDelayMs)
  }

  #schedule(delay: number): void {
    this.#timer = setTimeout(() => {
      this.#running = this.runOnce()
        .catch((err: unknown) => {
          if (!this.#stopped) this.#o.log.error({ err: errorMessage(err) }, 'analytics refresh failed')
        })
        .finally(() => {
          if (!this.#stopped) this.#schedule(this.#o.intervalMs)
        })
    }, delay)
    this.#timer.unref()
  }

  async runOnce(full = false): Promise<RefreshResult> {
    const o = this.#o
    const r = await refreshParking(o.warehouse, {
      now: o.clock.now(),
      timezone: o.timezone,
      sessionCapMs: o.sessionCapMs,
      chunkHours: o.chunkHours,
      full,
      signal: this.#stop.signal,
    })
    this.lastResult = r
    o.log.debug(r, 'analytics refreshed')
    return r
  }

  /** Stops; a run under way stops between chunks. */
  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    this.#stop.abort()
    await this.#running
  }
}
