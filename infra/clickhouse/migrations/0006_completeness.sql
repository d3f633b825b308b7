-- Completeness (接入数据完整率): which 5-minute buckets of event time received
-- landed data, per source and entity (car park, terminal, station) and UTC
-- day, kept up to date as rows land by one materialised view per event table.
-- The monthly report merges these bitmaps instead of scanning the month's
-- rows. Bucket b covers event times [b * 300 s, (b + 1) * 300 s) since the
-- epoch; coarser report buckets (15 min, 1 h, 1 day) are unions of them.
--   good: any landed row (live or backfilled); live: live rows only (the
--   event clock of sync health); hourRows: rows per UTC hour of the day, so
--   a month in any whole-hour time zone counts exactly its own rows.
-- The event tables' rows landed before this migration are aggregated once at
-- the end. Bitmaps are idempotent; counts assume each row lands once, as the
-- sink guarantees.
CREATE TABLE IF NOT EXISTS entity_activity (
  sourceId LowCardinality(String),
  entityKind LowCardinality(String),
  entity String,
  day Date,
  rows SimpleAggregateFunction(sum, UInt64),
  liveRows SimpleAggregateFunction(sum, UInt64),
  good AggregateFunction(groupBitmap, UInt32),
  live AggregateFunction(groupBitmap, UInt32),
  maxLiveLagMs SimpleAggregateFunction(max, Int64),
  hourRows SimpleAggregateFunction(sumMap, Tuple(Array(UInt8), Array(UInt64)))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (sourceId, entityKind, entity, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS entity_activity_parking_occupancy TO entity_activity AS
SELECT sourceId, 'car-park' AS entityKind, lotId AS entity, toDate(occurredAt, 'UTC') AS day,
  count() AS rows, count() AS liveRows,
  groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))) AS good,
  groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))) AS live,
  max(toUnixTimestamp64Milli(receivedAt) - toUnixTimestamp64Milli(occurredAt)) AS maxLiveLagMs,
  sumMap([toUInt8(toHour(occurredAt, 'UTC'))], [toUInt64(1)]) AS hourRows
FROM parking_occupancy GROUP BY sourceId, entity, day;

CREATE MATERIALIZED VIEW IF NOT EXISTS entity_activity_parking_passage TO entity_activity AS
SELECT sourceId, 'car-park' AS entityKind, lotId AS entity, toDate(occurredAt, 'UTC') AS day,
  count() AS rows, countIf(NOT isBackfill) AS liveRows,
  groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))) AS good,
  groupBitmapStateIf(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300)), NOT isBackfill) AS live,
  maxIf(toUnixTimestamp64Milli(receivedAt) - toUnixTimestamp64Milli(occurredAt), NOT isBackfill) AS maxLiveLagMs,
  sumMap([toUInt8(toHour(occurredAt, 'UTC'))], [toUInt64(1)]) AS hourRows
FROM parking_passage GROUP BY sourceId, entity, day;

CREATE MATERIALIZED VIEW IF NOT EXISTS entity_activity_ferry_sailing TO entity_activity AS
SELECT sourceId, 'terminal' AS entityKind, terminalId AS entity, toDate(occurredAt, 'UTC') AS day,
  count() AS rows, count() AS liveRows,
  groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))) AS good,
  groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))) AS live,
  max(toUnixTimestamp64Milli(receivedAt) - toUnixTimestamp64Milli(occurredAt)) AS maxLiveLagMs,
  sumMap([toUInt8(toHour(occurredAt, 'UTC'))], [toUInt64(1)]) AS hourRows
FROM ferry_sailing GROUP BY sourceId, entity, day;

CREATE MATERIALIZED VIEW IF NOT EXISTS entity_activity_ferry_ticket TO entity_activity AS
SELECT sourceId, 'terminal' AS entityKind, terminalId AS entity, toDate(occurredAt, 'UTC') AS day,
  count() AS rows, count() AS liveRows,
  groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))) AS good,
  groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))) AS live,
  max(toUnixTimestamp64Milli(receivedAt) - toUnixTimestamp64Milli(occurredAt)) AS maxLiveLagMs,
  sumMap([toUInt8(toHour(occurredAt, 'UTC'))], [toUInt64(1)]) AS hourRows
FROM ferry_ticket GROUP BY sourceId, entity, day;

CREATE MATERIALIZED VIEW IF NOT EXISTS entity_activity_ferry_checkin TO entity_activity AS
SELECT sourceId, 'terminal' AS entityKind, terminalId AS entity, toDate(occurredAt, 'UTC') AS day,
  count() AS rows, count() AS liveRows,
  groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))) AS good,
  groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))) AS live,
  max(toUnixTimestamp64Milli(receivedAt) - toUnixTimestamp64Milli(occurredAt)) AS maxLiveLagMs,
  sumMap([toUInt8(toHour(occurredAt, 'UTC'))], [toUInt64(1)]) AS hourRows
FROM ferry_checkin GROUP BY sourceId, entity, day;

CREATE MATERIALIZED VIEW IF NOT EXISTS entity_activity_bike_station_status TO entity_activity AS
SELECT sourceId, 'station' AS entityKind, stationId AS entity, toDate(occurredAt, 'UTC') AS day,
  count() AS rows, count() AS liveRows,
  groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))) AS good,
  groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))) AS live,
  max(toUnixTimestamp64Milli(receivedAt) - toUnixTimestamp64Milli(occurredAt)) AS maxLiveLagMs,
  sumMap([toUInt8(toHour(occurredAt, 'UTC'))], [toUInt64(1)]) AS hourRows
FROM bike_station_status GROUP BY sourceId, entity, day;

-- Rows landed before the views existed; skipped when the table already holds
-- aggregates (a migration interrupted after this point is applied again).
INSERT INTO entity_activity
SELECT sourceId, entityKind, entity, day, sum(rows), sum(liveRows), groupBitmapMergeState(good), groupBitmapMergeState(live), max(maxLiveLagMs), sumMap(hourRows)
FROM (
  SELECT sourceId, 'car-park' AS entityKind, lotId AS entity, toDate(occurredAt, 'UTC') AS day, count() AS rows, count() AS liveRows,
    groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))) AS good, groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))) AS live,
    max(toUnixTimestamp64Milli(receivedAt) - toUnixTimestamp64Milli(occurredAt)) AS maxLiveLagMs, sumMap([toUInt8(toHour(occurredAt, 'UTC'))], [toUInt64(1)]) AS hourRows
  FROM parking_occupancy GROUP BY sourceId, entity, day
  UNION ALL
  SELECT sourceId, 'car-park', lotId, toDate(occurredAt, 'UTC') AS day, count(), countIf(NOT isBackfill),
    groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))), groupBitmapStateIf(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300)), NOT isBackfill),
    maxIf(toUnixTimestamp64Milli(receivedAt) - toUnixTimestamp64Milli(occurredAt), NOT isBackfill), sumMap([toUInt8(toHour(occurredAt, 'UTC'))], [toUInt64(1)])
  FROM parking_passage GROUP BY sourceId, lotId, day
  UNION ALL
  SELECT sourceId, 'terminal', terminalId, toDate(occurredAt, 'UTC') AS day, count(), count(),
    groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))), groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))),
    max(toUnixTimestamp64Milli(receivedAt) - toUnixTimestamp64Milli(occurredAt)), sumMap([toUInt8(toHour(occurredAt, 'UTC'))], [toUInt64(1)])
  FROM (SELECT sourceId, terminalId, occurredAt, receivedAt FROM ferry_sailing UNION ALL SELECT sourceId, terminalId, occurredAt, receivedAt FROM ferry_ticket
        UNION ALL SELECT sourceId, terminalId, occurredAt, receivedAt FROM ferry_checkin)
  GROUP BY sourceId, terminalId, day
  UNION ALL
  SELECT sourceId, 'station', stationId, toDate(occurredAt, 'UTC') AS day, count(), count(),
    groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))), groupBitmapState(toUInt32(intDiv(toUnixTimestamp(occurredAt), 300))),
    max(toUnixTimestamp64Milli(receivedAt) - toUnixTimestamp64Milli(occurredAt)), sumMap([toUInt8(toHour(occurredAt, 'UTC'))], [toUInt64(1)])
  FROM bike_station_status GROUP BY sourceId, stationId, day
)
WHERE (SELECT count() FROM entity_activity) = 0
GROUP BY sourceId, entityKind, entity, day;
