-- Analytics: the hourly lot figures summed per district, so that a district's
-- hours are read from one row per hour instead of one per lot and hour (a
-- district of 625 car parks over a month: 744 rows instead of 465,000).
-- Definitions: docs/metrics.md. Kept by the analytics refresher
-- (api/analytics/refresh.ts) after it has recomputed the lot hours, for the
-- districts whose lots changed, and read by the query builders
-- (api/analytics/parking.ts) when a query covers a district without a lot.
--
-- A lot belongs to the district its latest description names; a lot whose
-- description names none is kept under '' with its source, and a query for
-- district D reads district D plus '' of the sources whose own district is D,
-- as the lot-level queries do. Lots without a description are in no district.

-- Sums over the lots of (sourceId, district) per hour; columns as in
-- parking_lot_hour. Rows of hours a group no longer has are written again as
-- deleted, so FINAL never shows a stale hour.
CREATE TABLE IF NOT EXISTS parking_district_hour (
  sourceId LowCardinality(String),
  district String,
  hour DateTime('UTC'),
  lots UInt32,
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
  version UInt64,
  isDeleted UInt8
) ENGINE = ReplacingMergeTree(version, isDeleted)
PARTITION BY toYYYYMM(hour)
ORDER BY (district, sourceId, hour);

-- Which district each lot was summed under: a lot whose district changes (or
-- that gains a description) moves, and both its districts are summed again.
CREATE TABLE IF NOT EXISTS parking_lot_district (
  sourceId LowCardinality(String),
  lotId String,
  district String,
  version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (sourceId, lotId);

-- The districts one refresh run sums again and from which hour: one row per
-- member lot, and one with lotId '' per district (so that a district left
-- without lots is still cleared).
CREATE TABLE IF NOT EXISTS analytics_district_scope (
  version UInt64,
  sourceId String,
  district String,
  lotId String,
  hourFrom DateTime('UTC'),
  createdAt DateTime('UTC')
) ENGINE = MergeTree
ORDER BY (version, district, sourceId, lotId)
TTL createdAt + INTERVAL 1 DAY;

CREATE VIEW IF NOT EXISTS analytics_parking_district_hour
DEFINER = CURRENT_USER SQL SECURITY DEFINER AS
SELECT
  sourceId, district, hour, lots, coveredMs, spaceMs, vehicleMs, snapshotMs, maxOccupied,
  entries, exits, revenueCents, sessions, matched, open, capped, entryOnly, exitOnly, durationCount, durationMs,
  vehicleMs / 3600000 AS vehicleHours,
  if(spaceMs = 0, NULL, vehicleMs / spaceMs) AS occupancyRate,
  if(spaceMs = 0, NULL, sessions / (spaceMs / 86400000)) AS turnoverRate
FROM parking_district_hour FINAL;
