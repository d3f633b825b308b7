-- What the quality service reads: one ingest_log row per landed batch and
-- source, written in the same sink step as the rows themselves.
CREATE TABLE IF NOT EXISTS ingest_log (
  batchId String,
  sourceId LowCardinality(String),
  tableName LowCardinality(String),
  rows UInt32,
  backfillRows UInt32,
  minEventTime DateTime64(3, 'UTC'),
  maxEventTime DateTime64(3, 'UTC'),
  -- newest event time among live (not backfilled) rows; null when all were backfill
  maxLiveEventTime Nullable(DateTime64(3, 'UTC')),
  minReceivedAt DateTime64(3, 'UTC'),
  arrivedAt DateTime64(3, 'UTC')
) ENGINE = MergeTree
PARTITION BY toYYYYMM(arrivedAt)
ORDER BY (sourceId, arrivedAt)
SETTINGS non_replicated_deduplication_window = 1000;

-- Every rejected record with its reason and the raw payload as received
-- (personal data already protected).
CREATE TABLE IF NOT EXISTS dead_letter (
  sourceId LowCardinality(String),
  eventId String,
  occurredAt DateTime64(3, 'UTC'),
  receivedAt DateTime64(3, 'UTC'),
  stage LowCardinality(String),
  code LowCardinality(String),
  reason String,
  family LowCardinality(Nullable(String)),
  raw String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(receivedAt)
ORDER BY (sourceId, receivedAt, eventId)
TTL toDateTime(receivedAt) + INTERVAL 180 DAY
SETTINGS non_replicated_deduplication_window = 1000;
