-- Bike-share events beyond the realtime status tables of 0001: static station
-- descriptions (GBFS station_information) and the operator's completed trips.
-- Same engine and deduplication settings as the other event tables.

CREATE TABLE IF NOT EXISTS bike_station (
  sourceId LowCardinality(String),
  eventId String,
  occurredAt DateTime64(3, 'UTC'),
  receivedAt DateTime64(3, 'UTC'),
  operatorId LowCardinality(String),
  stationId String,
  name String,
  lat Float64,
  lon Float64,
  capacity Nullable(UInt32),
  coordSystem LowCardinality(String)
) ENGINE = ReplacingMergeTree
ORDER BY (sourceId, stationId, occurredAt, eventId)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS bike_trip (
  sourceId LowCardinality(String),
  eventId String,
  occurredAt DateTime64(3, 'UTC'),
  receivedAt DateTime64(3, 'UTC'),
  operatorId LowCardinality(String),
  tripId String,
  vehicleId String,
  startedAt DateTime64(3, 'UTC'),
  endedAt DateTime64(3, 'UTC'),
  startLat Nullable(Float64),
  startLon Nullable(Float64),
  endLat Nullable(Float64),
  endLon Nullable(Float64),
  coordSystem LowCardinality(Nullable(String)),
  durationS UInt32,
  distanceM Nullable(UInt32),
  feeCents Nullable(Int32),
  isBackfill Bool
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurredAt)
ORDER BY (sourceId, operatorId, occurredAt, eventId)
SETTINGS non_replicated_deduplication_window = 1000;
