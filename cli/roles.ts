import { collectDefaultMetrics, Registry } from 'prom-client'
import { DEFAULT_BACKUP_SCHEDULE } from '../lib/backup/schedule.ts'
import { buildApp } from '../api/app.ts'
import { loadConfig } from '../lib/config.ts'
import { migrateWarehouse } from '../pipelines/warehouse/migrate.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { createLogger, loadKeys, openMetadataStore, startEmbedded, VERSION } from './embedded.ts'
import { migrateTopics, openKafkaBus, type Role, startConnect, startPipeline } from './distributed.ts'
import { systemClock } from '../lib/clock.ts'
import { protectPlate } from '../lib/crypto.ts'
import { SchemaCatalogue } from '../schemas/catalogue.ts'

/** Stops cleanly on SIGINT/SIGTERM; a second signal forces the exit. */
function onSignals(close: () => Promise<void>): void {
  let signalled = false
  const handler = (sig: NodeJS.Signals): void => {
    if (signalled) process.exit(130)
    signalled = true
    process.stderr.write(`\ncitysync: ${sig} received, stopping (again to force)\n`)
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`citysync: stop failed: ${String(err)}\n`)
        process.exit(1)
      },
    )
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
}

export async function runStart(opts: { demo: boolean; port?: number; host?: string }): Promise<void> {
  const cfg = loadConfig()
  if (opts.port !== undefined) cfg.port = opts.port
  if (opts.host) cfg.host = opts.host
  if (cfg.kafkaBrokers) {
    throw new Error('KAFKA_BROKERS is set: run the distributed roles (connect, pipeline, api) instead of start')
  }
  const log = createLogger(cfg.logLevel)
  // Embedded: the process that holds chDB backs it up itself, daily unless CITYSYNC_BACKUP_SCHEDULE=off.
  const schedule = process.env.CITYSYNC_BACKUP_SCHEDULE?.trim() || DEFAULT_BACKUP_SCHEDULE
  const keep = process.env.CITYSYNC_BACKUP_KEEP?.trim()
  const backupSchedule = schedule === 'off' ? undefined : { schedule, keep: keep ? Number(keep) : undefined }
  const e = await startEmbedded({ cfg, demo: opts.demo, log, ...(backupSchedule ? { backupSchedule } : {}) })
  onSignals(() => e.close())
}

function processRegistry(): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'citysync_' })
  return registry
}

export async function runApi(opts: { port?: number; host?: string }): Promise<void> {
  const cfg = loadConfig()
  if (opts.port !== undefined) cfg.port = opts.port
  if (opts.host) cfg.host = opts.host
  const log = createLogger(cfg.logLevel)
  const keys = await loadKeys(cfg)
  const metadata = await openMetadataStore(cfg, keys)
  const warehouse = await openWarehouse({ clickhouseUrl: cfg.clickhouseUrl, dataDir: cfg.dataDir })
  // With Kafka, this process also takes signed pushes and publishes them like a connector would.
  const bus = cfg.kafkaBrokers ? openKafkaBus(cfg, log, 'api') : undefined
  const catalogue = SchemaCatalogue.load()
  const app = await buildApp({
    metadata,
    warehouse,
    logger: log,
    version: VERSION,
    plates: { keys },
    auth: { encKey: keys.encKey },
    ...(bus ? { ingest: { bus, catalogue, protectPlate: (plate: string | null | undefined) => protectPlate(plate, keys), clock: systemClock }, kafka: bus } : {}),
    // The process metrics; ingest, freshness and backups are served by the pipeline and quality roles.
    metrics: processRegistry(),
  })
  await app.listen({ port: cfg.port, host: cfg.host })
  onSignals(async () => {
    await app.close()
    await bus?.close()
    await warehouse.close()
    await metadata.close()
  })
}

export async function runMigrate(): Promise<void> {
  const cfg = loadConfig()
  const metadata = await openMetadataStore(cfg, await loadKeys(cfg))
  await metadata.close()
  const warehouse = await openWarehouse({ clickhouseUrl: cfg.clickhouseUrl, dataDir: cfg.dataDir, migrate: false })
  try {
    const applied = await migrateWarehouse(warehouse)
    process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'warehouse schema is up to date\n')
    process.stdout.write(`metadata store (${metadata.dialect}) is up to date\n`)
  } finally {
    await warehouse.close()
  }
  if (cfg.kafkaBrokers) {
    const changes = await migrateTopics(cfg, createLogger(cfg.logLevel))
    for (const c of changes) process.stdout.write(`kafka topic ${c.name}: ${c.action} (${c.partitions} partitions)\n`)
  }
}

async function runRole(start: (cfg: ReturnType<typeof loadConfig>, log: ReturnType<typeof createLogger>) => Promise<Role>): Promise<void> {
  const cfg = loadConfig()
  const log = createLogger(cfg.logLevel)
  const role = await start(cfg, log)
  onSignals(() => role.close())
}

export function runConnect(opts: { source: string }): Promise<void> {
  return runRole((cfg, log) => startConnect(cfg, log, opts.source))
}

export function runPipeline(opts: { metricsPort?: number } = {}): Promise<void> {
  return runRole((cfg, log) => startPipeline(cfg, log, opts.metricsPort !== undefined ? { metricsPort: opts.metricsPort } : {}))
}
