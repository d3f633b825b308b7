// `citysync quality`: the sync-health process of the distributed mode. It
// reads the shared warehouse (CLICKHOUSE_URL) and metadata store
// (DATABASE_URL), evaluates freshness every interval, records alerts and
// incidents, sends notifications, and serves its Prometheus gauges.

import { createServer, type Server } from 'node:http'
import { type Logger } from 'pino'
import { systemClock } from '../lib/clock.ts'
import { loadConfig, type RuntimeConfig } from '../lib/config.ts'
import { parseDuration } from '../lib/duration.ts'
import { errorMessage } from '../lib/errors.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { alertingFromEnv } from '../quality/alerting-config.ts'
import { BackupMetrics } from '../lib/backup/metrics.ts'
import { bikeAlertingFromEnv } from '../quality/bike-balance.ts'
import { QualityMetrics } from '../quality/metrics.ts'
import { QualityService } from '../quality/service.ts'
import { createLogger, loadKeys, openMetadataStore } from './embedded.ts'

export interface QualityCliOptions {
  /** Alerting file (receivers, routes); default $CITYSYNC_ALERTING_FILE. */
  alerting?: string
  /** Evaluation interval, e.g. 60s. */
  interval?: string
  /** Serve GET /metrics on this port (0: none). */
  metricsPort?: number
  metricsHost?: string
}

export interface QualityRole {
  service: QualityService
  /** Where /metrics is served, if anywhere. */
  metricsUrl: string | undefined
  close(): Promise<void>
}

export async function startQualityRole(cfg: RuntimeConfig, log: Logger, o: QualityCliOptions = {}): Promise<QualityRole> {
  const alerting = alertingFromEnv(process.env, o.alerting)
  const bikeBalance = bikeAlertingFromEnv()
  if (!cfg.clickhouseUrl) log.warn('CLICKHOUSE_URL is not set: reading embedded chDB in the data directory, which only one process can use')
  const metadata = await openMetadataStore(cfg, await loadKeys(cfg))
  let server: Server | undefined
  try {
    const warehouse = await openWarehouse({ clickhouseUrl: cfg.clickhouseUrl, dataDir: cfg.dataDir })
    const metrics = new QualityMetrics({ processMetrics: true })
    // The backup target's newest manifest (CITYSYNC_BACKUP_DIR, as `citysync backup` uses).
    new BackupMetrics({ registry: metrics.registry, dir: process.env.CITYSYNC_BACKUP_DIR ?? './backups' })
    const service = new QualityService({
      metadata,
      warehouse,
      clock: systemClock,
      log,
      alerting,
      metrics,
      ...(bikeBalance ? { bikeBalance } : {}),
      ...(o.interval !== undefined ? { intervalMs: parseDuration(o.interval) } : {}),
    })
    let metricsUrl: string | undefined
    if (o.metricsPort !== undefined && o.metricsPort > 0) {
      const registry = service.metrics.registry
      server = createServer((req, res) => {
        if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
          return
        }
        registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
          (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${errorMessage(err)}\n`),
        )
      })
      const host = o.metricsHost ?? cfg.host
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject)
        server!.listen(o.metricsPort, host, () => resolve())
      })
      const addr = server.address()
      metricsUrl = typeof addr === 'object' && addr !== null ? `http://${host}:${addr.port}/metrics` : undefined
    }
    service.start()
    log.info({ interval: service.intervalMs, receivers: alerting.receivers.size, routes: alerting.routes.length, metrics: metricsUrl }, 'quality service started')
    return {
      service,
      metricsUrl,
      close: async () => {
        await service.stop()
        await new Promise((r) => (server ? server.close(r) : r(undefined)))
        await warehouse.close()
        await metadata.close()
      },
    }
  } catch (err) {
    server?.close()
    await metadata.close()
    throw err
  }
}

/** The `citysync quality` command: runs until SIGINT or SIGTERM. */
export async function runQuality(o: QualityCliOptions = {}): Promise<void> {
  const cfg = loadConfig()
  const log = createLogger(cfg.logLevel)
  const role = await startQualityRole(cfg, log, o)
  let signalled = false
  const handler = (sig: NodeJS.Signals): void => {
    if (signalled) process.exit(130)
    signalled = true
    process.stderr.write(`\ncitysync: ${sig} received, stopping (again to force)\n`)
    role.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`citysync: stop failed: ${errorMessage(err)}\n`)
        process.exit(1)
      },
    )
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
}
