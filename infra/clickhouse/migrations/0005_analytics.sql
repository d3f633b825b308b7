-- Analytics: parking sessions, hourly and daily lot figures, and the views
-- analysts query. Definitions and formulas: docs/metrics.md.
--
-- Derived figures need the order of a lot's events (pairing an exit with the
-- entry before it, a running count, the snapshot in force), which a
-- materialized view cannot see: it only sees the block being inserted, and a
-- block that ClickHouse drops as a duplicate (insert_deduplication_token)
-- still reaches the views. So the materialized views below only mark which
-- lots changed and from when, and the analytics refresher
-- (api/analytics/refresh.ts) recomputes those lots' sessions, hours and days
-- in versioned ReplacingMergeTree tables, read with FINAL.

CREATE TABLE IF NOT EXISTS analytics_parking_dirty (
  sourceId LowCardinality(String),
  lotId String,
  kind LowCardinality(String),
  fromTime DateTime64(3, 'UTC'),
  markedAt DateTime64(3, 'UTC')
) ENGINE = MergeTree
ORDER BY (markedAt, sourceId, lotId)
TTL toDateTime(markedAt) + INTERVAL 30 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics_parking_dirty_passage TO analytics_parking_dirty AS
SELECT sourceId, lotId, 'passage' AS kind, min(occurredAt) AS fromTime, now64(3, 'UTC') AS markedAt
FROM parking_passage GROUP BY sourceId, lotId;

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics_parking_dirty_occupancy TO analytics_parking_dirty AS
SELECT sourceId, lotId, 'occupancy' AS kind, min(occurredAt) AS fromTime, now64(3, 'UTC') AS markedAt
FROM parking_occupancy GROUP BY sourceId, lotId;

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics_parking_dirty_lot TO analytics_parking_dirty AS
SELECT sourceId, lotId, 'lot' AS kind, min(occurredAt) AS fromTime, now64(3, 'UTC') AS markedAt
FROM parking_lot GROUP BY sourceId, lotId;

-- One row per finished refresh run. startedAt is the warehouse's clock (dirty
-- marks before it are covered), dataNow the time figures were computed up to.
CREATE TABLE IF NOT EXISTS analytics_refresh_log (
  version UInt64,
  startedAt DateTime64(3, 'UTC'),
  dataNow DateTime64(3, 'UTC'),
  full Bool,
  lots UInt32,
  durationMs UInt32,
  timezone String,
  sessionCapMs UInt64
) ENGINE = MergeTree
ORDER BY version
TTL toDateTime(startedAt) + INTERVAL 400 DAY;

-- The lots one refresh run recomputes, in chunks, and from when.
CREATE TABLE IF NOT EXISTS analytics_refresh_scope (
  version UInt64,
  chunk UInt32,
  sourceId String,
  lotId String,
  sessionFrom Nullable(DateTime64(3, 'UTC')),
  hourFrom DateTime64(3, 'UTC'),
  createdAt DateTime('UTC')
) ENGINE = MergeTree
ORDER BY (version, chunk, sourceId, lotId)
TTL createdAt + INTERVAL 1 DAY;

-- A vehicle's visit: an entry paired with the next passage of the same plate
-- key at the lot when that is an exit within the session cap (matched), an
-- entry without one (open while younger than the cap, capped once older:
-- closed at entry + cap, entry_only when the plate entered again first or has
-- no key), or an exit without an entry before it (exit_only).
CREATE TABLE IF NOT EXISTS parking_session (
  sourceId LowCardinality(String),
  lotId String,
  sessionId String,
  status LowCardinality(String),
  startAt DateTime64(3, 'UTC'),
  entryAt Nullable(DateTime64(3, 'UTC')),
  exitAt Nullable(DateTime64(3, 'UTC')),
  endAt Nullable(DateTime64(3, 'UTC')),
  durationMs Nullable(UInt64),
  feeCents Nullable(Int64),
  version UInt64,
  isDeleted UInt8
) ENGINE = ReplacingMergeTree(version, isDeleted)
PARTITION BY toYYYYMM(startAt)
ORDER BY (sourceId, lotId, startAt, sessionId);

-- One row per lot and hour (hour start, local hours of the analytics time
-- zone), dense from the lot's first passage or snapshot up to the refresh
-- time. *Ms columns are integrals over the hour in milliseconds: coveredMs of
-- time, spaceMs of capacity, vehicleMs of vehicles parked (parking load).
-- countEnd and snapshotEnd carry the running count and the snapshot in force
-- into the next refresh.
CREATE TABLE IF NOT EXISTS parking_lot_hour (
  sourceId LowCardinality(String),
  lotId String,
  hour DateTime('UTC'),
  coveredMs UInt64,
  spaceMs UInt64,
  vehicleMs UInt64,
  snapshotMs UInt64,
  maxOccupied UInt32,
  capacityEnd Int64,
  countEnd Int64,
  snapshotEnd Int64,
  entries UInt32,
  exits UInt32,
  revenueCents Int64,
  sessions UInt32,
  matched UInt32,
  open UInt32,
  capped UInt32,
  entryOnly UInt32,
  exitOnly UInt32,
  durationCount UInt32,
  durationMs UInt64,
  version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (sourceId, lotId, hour)
SETTINGS index_granularity = 256;

-- The same figures per local day of the analytics time zone, with vehicleMs
-- and spaceMs also by local hour of the day (index 0-23), so that the busiest
-- hour of a group of lots comes from day rows. Small granules: a district is
-- every few lots in key order, and a lot-month is a few rows.
CREATE TABLE IF NOT EXISTS parking_lot_day (
  sourceId LowCardinality(String),
  lotId String,
  day Date,
  coveredMs UInt64,
  spaceMs UInt64,
  vehicleMs UInt64,
  snapshotMs UInt64,
  maxOccupied UInt32,
  entries UInt32,
  exits UInt32,
  revenueCents Int64,
  sessions UInt32,
  matched UInt32,
  open UInt32,
  capped UInt32,
  entryOnly UInt32,
  exitOnly UInt32,
  durationCount UInt32,
  durationMs UInt64,
  hourVehicleMs Array(UInt64),
  hourSpaceMs Array(UInt64),
  version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (sourceId, lotId, day)
SETTINGS index_granularity = 256;

-- Views for analysts (read-only SQL). SQL SECURITY DEFINER: a user granted
-- SELECT on these views needs no grant on the tables behind them, so plate
-- keys, plate ciphers and the raw tables stay out of reach.

CREATE VIEW IF NOT EXISTS analytics_parking_lot
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT
  sourceId,
  lotId,
  argMax(name, occurredAt) AS name,
  argMax(capacity, occurredAt) AS capacity,
  argMax(district, occurredAt) AS district,
  argMax(address, occurredAt) AS address,
  argMax(lat, occurredAt) AS lat,
  argMax(lon, occurredAt) AS lon,
  argMax(coordSystem, occurredAt) AS coordSystem,
  max(occurredAt) AS updatedAt
FROM parking_lot FINAL
GROUP BY sourceId, lotId;

CREATE VIEW IF NOT EXISTS analytics_parking_session
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT sourceId, lotId, sessionId, status, startAt, entryAt, exitAt, endAt, durationMs, feeCents
FROM parking_session FINAL;

CREATE VIEW IF NOT EXISTS analytics_parking_lot_hour
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT
  sourceId, lotId, hour, coveredMs, spaceMs, vehicleMs, snapshotMs, maxOccupied, capacityEnd AS capacity,
  entries, exits, revenueCents, sessions, matched, open, capped, entryOnly, exitOnly, durationCount, durationMs,
  vehicleMs / 3600000 AS vehicleHours,
  if(spaceMs = 0, NULL, vehicleMs / spaceMs) AS occupancyRate,
  if(spaceMs = 0, NULL, sessions / (spaceMs / 86400000)) AS turnoverRate
FROM parking_lot_hour FINAL;

CREATE VIEW IF NOT EXISTS analytics_parking_lot_day
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT
  sourceId, lotId, day, coveredMs, spaceMs, vehicleMs, snapshotMs, maxOccupied,
  entries, exits, revenueCents, sessions, matched, open, capped, entryOnly, exitOnly, durationCount, durationMs,
  vehicleMs / 3600000 AS vehicleHours,
  if(spaceMs = 0, NULL, vehicleMs / spaceMs) AS occupancyRate,
  if(spaceMs = 0, NULL, sessions / (spaceMs / 86400000)) AS turnoverRate,
  if(durationCount = 0, NULL, durationMs / durationCount / 60000) AS averageDurationMinutes
FROM parking_lot_day FINAL;

CREATE VIEW IF NOT EXISTS analytics_parking_passage
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT sourceId, eventId, lotId, recordNo, direction, gateId, plateMasked, plateType, occurredAt, receivedAt, isBackfill, feeCents, entryAt
FROM parking_passage FINAL;

CREATE VIEW IF NOT EXISTS analytics_parking_occupancy
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT sourceId, eventId, lotId, occurredAt, receivedAt, free, capacity, status
FROM parking_occupancy FINAL;

CREATE VIEW IF NOT EXISTS analytics_bike_operator_status
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT sourceId, operatorId, occurredAt, fleetSize, vehiclesReporting,
  if(fleetSize = 0, NULL, vehiclesReporting / fleetSize) AS onlineRate
FROM bike_operator_status FINAL;

CREATE VIEW IF NOT EXISTS analytics_bike_station_status
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT sourceId, operatorId, stationId, occurredAt, vehiclesAvailable, docksAvailable, isInstalled, isRenting, isReturning
FROM bike_station_status FINAL;

CREATE VIEW IF NOT EXISTS analytics_bike_station
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT sourceId, operatorId, stationId, occurredAt, name, lat, lon, capacity, coordSystem
FROM bike_station FINAL;

CREATE VIEW IF NOT EXISTS analytics_bike_trip
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT sourceId, operatorId, tripId, startedAt, endedAt, durationS, distanceM, feeCents, isBackfill
FROM bike_trip FINAL;

CREATE VIEW IF NOT EXISTS analytics_ferry_sailing
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT
  sourceId, sailingId,
  argMax(terminalId, occurredAt) AS terminalId,
  argMax(route, occurredAt) AS route,
  argMax(vesselName, occurredAt) AS vesselName,
  argMax(scheduledDeparture, occurredAt) AS scheduledDeparture,
  argMax(actualDeparture, occurredAt) AS actualDeparture,
  argMax(capacity, occurredAt) AS capacity,
  argMax(status, occurredAt) AS status
FROM ferry_sailing FINAL
GROUP BY sourceId, sailingId;

CREATE VIEW IF NOT EXISTS analytics_ferry_ticket
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT sourceId, ticketId, sailingId, terminalId, ticketType, priceCents, channel, status, occurredAt
FROM ferry_ticket FINAL;

CREATE VIEW IF NOT EXISTS analytics_ferry_checkin
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT sourceId, checkInId, ticketId, sailingId, terminalId, gate, occurredAt
FROM ferry_checkin FINAL;
