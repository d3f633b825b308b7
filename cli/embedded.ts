import { readFileSync } from 'node:fs'
import { type FastifyInstance } from 'fastify'
import { pino, type Logger } from 'pino'
import { Registry } from 'prom-client'
import { buildApp } from '../api/app.ts'
import { SourceManager } from '../connectors/sdk/manager.ts'
import { systemClock, type Clock } from '../lib/clock.ts'
import { type RuntimeConfig } from '../lib/config.ts'
import { type DerivedKeys, deriveKeys, loadMasterKey, previousMasterKeys, protectPlate } from '../lib/crypto.ts'
import { createSecretCodec } from '../lib/source-config.ts'
import { configSchemaFor } from '../connectors/registry.ts'
import { embeddedBootstrapToken } from '../lib/auth/bootstrap.ts'
import { AuthStore } from '../lib/auth/store.ts'
import { BackupMetrics } from '../lib/backup/metrics.ts'
import { errorMessage } from '../lib/errors.ts'
import { openMetadata, type Metadata } from '../lib/metadata/db.ts'
import { PLATE_SAFE_LOGGING } from '../lib/plate-redaction.ts'
import { MemoryBus } from '../pipelines/bus/memory-bus.ts'
import { WorkerEncoder } from '../pipelines/draft-encoder.ts'
import { type PlateProtector } from '../pipelines/normalise.ts'
import { SinkMetrics } from '../pipelines/sink-metrics.ts'
import { WarehouseSink } from '../pipelines/warehouse-sink.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { SchemaCatalogue } from '../schemas/catalogue.ts'
import { alertingFromEnv } from '../quality/alerting-config.ts'
import { bikeAlertingFromEnv } from '../quality/bike-balance.ts'
import { QualityMetrics } from '../quality/metrics.ts'
import { QualityService } from '../quality/service.ts'
import { BackupSchedule } from '../lib/backup/schedule.ts'
import { startDemo, type Demo } from './demo.ts'

/** From package.json, one level up from the sources or two from the compiled `dist/cli`. */
export const VERSION = ((): string => {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version
    } catch {
      // not here; try one level up
    }
  }
  return 'unknown'
})()

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'citysync' }, ...PLATE_SAFE_LOGGING })
}

export interface Stores {
  keys: DerivedKeys
  metadata: Metadata
  warehouse: Warehouse
  catalogue: SchemaCatalogue
  protect: PlateProtector
}

/**
 * The master key protects plates and sealed config secrets. One process on its
 * own data directory may generate it there; processes that share stores must
 * share the key through CITYSYNC_MASTER_KEY.
 */
export async function loadKeys(cfg: RuntimeConfig): Promise<DerivedKeys> {
  const shared = cfg.databaseUrl !== undefined || cfg.kafkaBrokers !== undefined || cfg.clickhouseUrl !== undefined
  // Earlier keys (CITYSYNC_MASTER_KEY_PREVIOUS) only open what was sealed before a rotation.
  return deriveKeys(await loadMasterKey({ dataDir: cfg.dataDir, env: process.env, generate: !shared }), previousMasterKeys(process.env))
}

export function openMetadataStore(cfg: RuntimeConfig, keys: DerivedKeys): Promise<Metadata> {
  return openMetadata({ databaseUrl: cfg.databaseUrl, dataDir: cfg.dataDir, secrets: createSecretCodec(configSchemaFor, keys.encKey) })
}

export async function openStores(cfg: RuntimeConfig): Promise<Stores> {
  const keys = await loadKeys(cfg)
  const metadata = await openMetadataStore(cfg, keys)
  try {
    const warehouse = await openWarehouse({ clickhouseUrl: cfg.clickhouseUrl, dataDir: cfg.dataDir })
    return { keys, metadata, warehouse, catalogue: SchemaCatalogue.load(), protect: (plate) => protectPlate(plate, keys) }
  } catch (err) {
    await metadata.close()
    throw err
  }
}

export interface EmbeddedOptions {
  cfg: RuntimeConfig
  demo: boolean
  log: Logger
  clock?: Clock
  /** Sink batching (tests and benchmarks tune these). */
  maxBatchSize?: number
  maxWaitMs?: number
  /** Backup target whose newest manifest /metrics reports; default $CITYSYNC_BACKUP_DIR or ./backups. */
  backupDir?: string
  /** Back up on this cron schedule from inside the process (`citysync start`: CITYSYNC_BACKUP_SCHEDULE). */
  backupSchedule?: { schedule: string; keep?: number | undefined }
}

export interface Embedded {
  app: FastifyInstance
  url: string
  stores: Stores
  manager: SourceManager
  sink: WarehouseSink
  bus: MemoryBus
  demo: Demo | undefined
  /** Freshness, alerts and incidents (quality/service.ts). */
  quality: QualityService
  /** The admin credential while no user exists (CITYSYNC_BOOTSTRAP_TOKEN, or made in <dataDir>/bootstrap-token). */
  bootstrapToken: string | undefined
  /** Online backups of this process's stores, when scheduled. */
  backups: BackupSchedule | undefined
  close(): Promise<void>
}

/**
 * Everything in one process: API, connectors, the in-process bus, the
 * warehouse sink. Shutdown order matters: connectors stop first and wait
 * until what they read has landed, then the sink, then the stores.
 */
export async function startEmbedded(o: EmbeddedOptions): Promise<Embedded> {
  const clock = o.clock ?? systemClock
  const { cfg, log } = o
  // Read before anything starts: a broken alerting file stops the start, not a running process.
  const alerting = alertingFromEnv()
  const bikeBalance = bikeAlertingFromEnv()
  const stores = await openStores(cfg)
  const bus = new MemoryBus()
  // One registry for GET /metrics: sink and bus lag, freshness and alerts, backups, the process.
  const metrics = new Registry()
  const sinkMetrics = new SinkMetrics({ registry: metrics })
  const backupDir = o.backupDir ?? process.env.CITYSYNC_BACKUP_DIR ?? './backups'
  new BackupMetrics({ registry: metrics, dir: backupDir })
  const sink = new WarehouseSink({ warehouse: stores.warehouse, catalogue: stores.catalogue, clock, log, observer: sinkMetrics })
  const warmed = await sink.dedupe.warm(stores.warehouse, 6 * 3600_000, clock.now())
  log.info({ eventIds: warmed }, 'dedupe cache warmed from the warehouse')
  const sinkStop = new AbortController()
  // Blocks of up to 25k rows: ClickHouse spends about 40 % less CPU per row on
  // them than on 10k blocks, in the insert and in the merges after it
  // (docs/benchmarks.md); the connectors' in-flight budget keeps two in the pipe.
  const subscription = sink.subscribe(bus, sinkStop.signal, {
    maxBatchSize: o.maxBatchSize ?? 25_000,
    maxWaitMs: o.maxWaitMs ?? 400,
    onCommitted: sinkMetrics.onCommitted,
  })

  const demo = o.demo ? await startDemo(stores.metadata, log, cfg.dataDir, clock.now()) : undefined
  // Protecting and encoding runs on its own thread, so reading upstream and
  // landing rows keep the main one (see docs/benchmarks.md).
  const encoder = new WorkerEncoder(stores.keys)
  const manager = new SourceManager({ metadata: stores.metadata, bus, catalogue: stores.catalogue, clock, log, protectPlate: stores.protect, encoder })
  await manager.start()

  const quality = new QualityService({
    metadata: stores.metadata, warehouse: stores.warehouse, clock, log: log.child({ role: 'quality' }), alerting,
    metrics: new QualityMetrics({ registry: metrics, processMetrics: true }),
    ...(bikeBalance ? { bikeBalance } : {}),
  })
  quality.start()

  const bootstrapToken = await embeddedBootstrapToken({
    dataDir: cfg.dataDir,
    env: process.env,
    store: new AuthStore({ knex: stores.metadata.knex, dialect: stores.metadata.dialect }),
    log,
  })
  const app = await buildApp({
    metadata: stores.metadata,
    warehouse: stores.warehouse,
    manager,
    logger: log,
    version: VERSION,
    quality,
    metrics,
    ingest: { bus, catalogue: stores.catalogue, protectPlate: stores.protect, clock },
    plates: { keys: stores.keys },
    auth: { encKey: stores.keys.encKey, bootstrapToken, clock },
  })
  const url = await app.listen({ port: cfg.port, host: cfg.host })
  log.info({ url, dataDir: cfg.dataDir, warehouse: stores.warehouse.transport, metadata: stores.metadata.dialect }, 'citysync started')
  const backups =
    o.backupSchedule === undefined
      ? undefined
      : new BackupSchedule({
          stores: { dataDir: cfg.dataDir, clickhouseUrl: cfg.clickhouseUrl, databaseUrl: cfg.databaseUrl },
          to: backupDir,
          keep: o.backupSchedule.keep,
          schedule: o.backupSchedule.schedule,
          keys: stores.keys,
          version: VERSION,
          engine: stores.warehouse,
          clock,
          log: log.child({ role: 'backup' }),
        })
  backups?.start()

  let closing: Promise<void> | undefined
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      await app.close().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'api close'))
      await backups?.stop()
      await quality.stop()
      await manager.stopAll()
      await encoder.close()
      await demo?.stop()
      sinkStop.abort()
      await subscription.done
      await bus.close()
      await stores.warehouse.close()
      await stores.metadata.close()
      log.info('citysync stopped')
    })())
  return { app, url, stores, manager, sink, bus, demo, quality, bootstrapToken, backups, close }
}
