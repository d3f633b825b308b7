// The roles of the distributed mode, each its own process, joined by Kafka:
// `citysync connect --source ID`, `citysync pipeline`. They share the metadata
// store (DATABASE_URL) and the warehouse (CLICKHOUSE_URL).

import { type Logger } from 'pino'
import { SourceManager } from '../connectors/sdk/manager.ts'
import { systemClock } from '../lib/clock.ts'
import { type RuntimeConfig } from '../lib/config.ts'
import { CitysyncError } from '../lib/errors.ts'
import { kafkaConnection } from '../pipelines/bus/kafka-config.ts'
import { KafkaBus } from '../pipelines/bus/kafka-bus.ts'
import { ensureTopics, type TopicChange, topicSpecs } from '../pipelines/bus/topics.ts'
import { WorkerEncoder } from '../pipelines/draft-encoder.ts'
import { WarehouseBatchJournal } from '../pipelines/sink-journal.ts'
import { SinkMetrics } from '../pipelines/sink-metrics.ts'
import { WarehouseSink } from '../pipelines/warehouse-sink.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { SchemaCatalogue } from '../schemas/catalogue.ts'
import { loadKeys, openMetadataStore } from './embedded.ts'
import { protectPlate } from '../lib/crypto.ts'

export const SINK_GROUP = 'citysync-warehouse-sink'

export function requireKafka(cfg: RuntimeConfig, role: string): string[] {
  if (!cfg.kafkaBrokers) {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_MISSING', [
      `citysync ${role} runs a role of the distributed mode and needs KAFKA_BROKERS; use \`citysync start\` to run everything in one process`,
    ])
  }
  return cfg.kafkaBrokers
}

export function openKafkaBus(cfg: RuntimeConfig, log: Logger, role: string): KafkaBus {
  return new KafkaBus({ connection: kafkaConnection(requireKafka(cfg, role)), log })
}

export interface Role {
  close(): Promise<void>
}

/**
 * One data source's connector. It follows the source's desired state in the
 * metadata store (deploy, pause, resume, restart from the API or CLI) and
 * publishes to Kafka; its checkpoint moves once Kafka has acknowledged.
 */
export async function startConnect(cfg: RuntimeConfig, log: Logger, sourceId: string): Promise<Role> {
  const bus = openKafkaBus(cfg, log, 'connect')
  const keys = await loadKeys(cfg)
  const metadata = await openMetadataStore(cfg, keys)
  try {
    const source = await metadata.sources.get(sourceId)
    if (!source) throw new CitysyncError('CITYSYNC_ERR_SOURCE_NOT_FOUND', [sourceId])
    const encoder = new WorkerEncoder(keys)
    const manager = new SourceManager({
      metadata,
      bus,
      catalogue: SchemaCatalogue.load(),
      clock: systemClock,
      log,
      protectPlate: (plate) => protectPlate(plate, keys),
      encoder,
      only: [sourceId],
    })
    await manager.start()
    log.info({ source: sourceId, kind: source.kind, brokers: cfg.kafkaBrokers }, 'connector ready')
    return {
      close: async () => {
        await manager.stopAll()
        await encoder.close()
        await bus.close()
        await metadata.close()
      },
    }
  } catch (err) {
    await bus.close()
    await metadata.close()
    throw err
  }
}

/**
 * The stream job: a member of the sink consumer group. Several pipeline
 * processes share the partitions; each batch is inserted with a deterministic
 * deduplication token and its offsets committed only afterwards.
 */
export async function startPipeline(
  cfg: RuntimeConfig,
  log: Logger,
  opts: { maxBatchSize?: number; maxWaitMs?: number; metricsPort?: number } = {},
): Promise<Role & { sink: WarehouseSink; metricsUrl: string | undefined }> {
  const bus = openKafkaBus(cfg, log, 'pipeline')
  if (!cfg.clickhouseUrl) {
    log.warn('CLICKHOUSE_URL is not set: this pipeline lands into embedded chDB in the data directory, which only one process can use')
  }
  const warehouse = await openWarehouse({ clickhouseUrl: cfg.clickhouseUrl, dataDir: cfg.dataDir })
  const metrics = new SinkMetrics()
  const sink = new WarehouseSink({ warehouse, catalogue: SchemaCatalogue.load(), clock: systemClock, log, deadLetterBus: bus, observer: metrics })
  const stop = new AbortController()
  // The duplicate filter is warmed from the warehouse each time this member is given partitions:
  // what another pipeline landed before a partition moved is then known here too.
  const subscription = sink.subscribe(bus, stop.signal, {
    group: SINK_GROUP,
    rewarmOnAssignment: true,
    onCommitted: metrics.onCommitted,
    journal: new WarehouseBatchJournal(warehouse),
    maxBatchSize: opts.maxBatchSize ?? 10_000,
    maxWaitMs: opts.maxWaitMs ?? 250,
  })
  subscription.done.catch((err: unknown) => log.error({ err }, 'pipeline consumer stopped'))
  const served = opts.metricsPort !== undefined ? await metrics.serve(opts.metricsPort, cfg.host) : undefined
  log.info({ brokers: cfg.kafkaBrokers, warehouse: warehouse.transport, metrics: served?.url }, 'pipeline ready')
  return {
    sink,
    metricsUrl: served?.url,
    close: async () => {
      served?.server.close()
      stop.abort()
      await subscription.done.catch(() => undefined)
      await bus.close()
      await warehouse.close()
    },
  }
}

/** Creates or grows the Kafka topics (`citysync migrate` when KAFKA_BROKERS is set). */
export async function migrateTopics(cfg: RuntimeConfig, log: Logger): Promise<TopicChange[]> {
  const bus = openKafkaBus(cfg, log, 'migrate')
  const admin = bus.client.admin()
  await admin.connect()
  try {
    return await ensureTopics(admin, topicSpecs(), Number(process.env.KAFKA_REPLICATION_FACTOR ?? 1), kafkaConnection(requireKafka(cfg, 'migrate')).topicPrefix)
  } finally {
    await admin.disconnect()
    await bus.close()
  }
}
