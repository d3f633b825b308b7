-- The Kafka sink's batch journal: the range of every batch, written before the
-- batch is inserted. A partition taken over after a crash or a rebalance
-- starts with the same range, hence the same insert_deduplication_token, so
-- ClickHouse keeps one copy of a batch that was half inserted.
CREATE TABLE IF NOT EXISTS sink_batches (
  consumerGroup LowCardinality(String),
  scope LowCardinality(String),
  topic LowCardinality(String),
  partition UInt32,
  firstOffset UInt64,
  lastOffset UInt64,
  recordedAt DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(recordedAt)
ORDER BY (consumerGroup, scope, topic, partition, firstOffset)
TTL toDateTime(recordedAt) + INTERVAL 30 DAY;
