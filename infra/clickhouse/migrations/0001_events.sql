-- Canonical event tables. One row per event; duplicates that slip past the
-- pipeline's deduplication collapse on the sorting key (which ends in eventId)
-- when parts merge. Deterministic sink batches carry an insert_deduplication_token,
-- hence non_replicated_deduplication_window.

CREATE TABLE IF NOT EXISTS parking_lot (
  sourceId LowCardinality(String),
  eventId String,
  occurredAt DateTime64(3, 'UTC'),
  receivedAt DateTime64(3, 'UTC'),
  lotId String,
  name String,
  capacity UInt32,
  lat Nullable(Float64),
  lon Nullable(Float64),
  coordSystem LowCardinality(Nullable(String)),
  district LowCardinality(Nullable(String)),
  address Nullable(String),
  openingHours Nullable(String)
) ENGINE = ReplacingMergeTree
ORDER BY (sourceId, lotId, occurredAt, eventId)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS parking_occupancy (
  sourceId LowCardinality(String),
  eventId String,
  occurredAt DateTime64(3, 'UTC'),
  receivedAt DateTime64(3, 'UTC'),
  lotId String,
  free Int32,
  capacity Nullable(UInt32),
  status LowCardinality(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurredAt)
ORDER BY (sourceId, lotId, occurredAt, eventId)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS parking_passage (
  sourceId LowCardinality(String),
  eventId String,
  occurredAt DateTime64(3, 'UTC'),
  receivedAt DateTime64(3, 'UTC'),
  lotId String,
  recordNo String,
  direction LowCardinality(String),
  gateId Nullable(String),
  plateKey Nullable(String),
  plateCipher Nullable(String),
  plateMasked Nullable(String),
  plateType LowCardinality(Nullable(String)),
  isBackfill Bool,
  feeCents Nullable(Int32),
  entryAt Nullable(DateTime64(3, 'UTC'))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurredAt)
ORDER BY (sourceId, lotId, occurredAt, eventId)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS ferry_sailing (
  sourceId LowCardinality(String),
  eventId String,
  occurredAt DateTime64(3, 'UTC'),
  receivedAt DateTime64(3, 'UTC'),
  sailingId String,
  terminalId String,
  route String,
  vesselName Nullable(String),
  scheduledDeparture DateTime64(3, 'UTC'),
  actualDeparture Nullable(DateTime64(3, 'UTC')),
  capacity Nullable(UInt32),
  status LowCardinality(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurredAt)
ORDER BY (sourceId, terminalId, occurredAt, eventId)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS ferry_ticket (
  sourceId LowCardinality(String),
  eventId String,
  occurredAt DateTime64(3, 'UTC'),
  receivedAt DateTime64(3, 'UTC'),
  ticketId String,
  sailingId String,
  terminalId String,
  ticketType LowCardinality(String),
  priceCents Nullable(Int32),
  channel LowCardinality(Nullable(String)),
  status LowCardinality(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurredAt)
ORDER BY (sourceId, terminalId, occurredAt, eventId)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS ferry_checkin (
  sourceId LowCardinality(String),
  eventId String,
  occurredAt DateTime64(3, 'UTC'),
  receivedAt DateTime64(3, 'UTC'),
  checkInId String,
  ticketId String,
  sailingId String,
  terminalId String,
  gate Nullable(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurredAt)
ORDER BY (sourceId, terminalId, occurredAt, eventId)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS bike_station_status (
  sourceId LowCardinality(String),
  eventId String,
  occurredAt DateTime64(3, 'UTC'),
  receivedAt DateTime64(3, 'UTC'),
  operatorId LowCardinality(String),
  stationId String,
  vehiclesAvailable UInt32,
  docksAvailable Nullable(UInt32),
  isInstalled Bool,
  isRenting Bool,
  isReturning Bool
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurredAt)
ORDER BY (sourceId, stationId, occurredAt, eventId)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS bike_vehicle_status (
  sourceId LowCardinality(String),
  eventId String,
  occurredAt DateTime64(3, 'UTC'),
  receivedAt DateTime64(3, 'UTC'),
  operatorId LowCardinality(String),
  vehicleId String,
  lat Nullable(Float64),
  lon Nullable(Float64),
  stationId Nullable(String),
  vehicleTypeId LowCardinality(Nullable(String)),
  isReserved Bool,
  isDisabled Bool
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurredAt)
ORDER BY (sourceId, operatorId, occurredAt, eventId)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS bike_operator_status (
  sourceId LowCardinality(String),
  eventId String,
  occurredAt DateTime64(3, 'UTC'),
  receivedAt DateTime64(3, 'UTC'),
  operatorId LowCardinality(String),
  fleetSize UInt32,
  vehiclesReporting UInt32
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurredAt)
ORDER BY (sourceId, operatorId, occurredAt, eventId)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS source_heartbeat (
  sourceId LowCardinality(String),
  eventId String,
  occurredAt DateTime64(3, 'UTC'),
  receivedAt DateTime64(3, 'UTC'),
  status LowCardinality(String),
  itemsRead UInt32,
  latencyMs Nullable(UInt32),
  message Nullable(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurredAt)
ORDER BY (sourceId, occurredAt, eventId)
TTL toDateTime(occurredAt) + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;
