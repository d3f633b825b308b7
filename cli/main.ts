import { Command, Option } from 'commander'
import { errorMessage, isCitysyncError } from '../lib/errors.ts'
import { createLogger, VERSION } from './embedded.ts'
import { runQuality } from './quality.ts'
import { registerBackupCommands } from './backup.ts'
import { registerReportCommands } from './report.ts'
import { registerSourceCommands } from './sources.ts'
import { registerUserCommands } from './users.ts'
import { runApi, runConnect, runMigrate, runPipeline, runStart } from './roles.ts'

const program = new Command()
  .name('citysync')
  .description(
    'Data integration and sync health for city parking and traffic data.\n' +
      'Pulls car-park, ferry, bike-share and county feeds, lands them in ClickHouse and watches that they keep flowing.',
  )
  .version(VERSION)
  .showHelpAfterError()
  .addHelpText(
    'after',
    `
Environment:
  CITYSYNC_DATA_DIR   data directory for embedded ClickHouse, SQLite and keys (default ./data)
  CLICKHOUSE_URL      use a ClickHouse server instead of embedded chDB
  DATABASE_URL        use PostgreSQL (postgres://...) instead of SQLite for metadata
  KAFKA_BROKERS       use Apache Kafka instead of the in-process bus
  CITYSYNC_MASTER_KEY key protecting plate numbers and secrets (generated in the data directory if unset)
  CITYSYNC_BOOTSTRAP_TOKEN  admin credential (24+ characters) until an admin user exists (docs/security.md)
  LOG_LEVEL           pino level (default info)

Example:
  $ citysync start                      # API on :3000, demo car parks, events landing in ./data
  $ curl localhost:3000/api/v1/sources  # sources and rows landed`,
  )

program
  .command('start')
  .description('run everything in one process: API, connectors, stream job (embedded mode)')
  .option('--no-demo', 'do not start the demo car-park simulators and their sources')
  .addOption(new Option('--port <port>', 'HTTP port').argParser(Number).default(undefined, '3000 or $PORT'))
  .option('--host <host>', 'HTTP bind address (default 127.0.0.1 or $HOST)')
  .addHelpText(
    'after',
    '\nBacks itself up online into $CITYSYNC_BACKUP_DIR (./backups) on $CITYSYNC_BACKUP_SCHEDULE (cron, default "30 2 * * *"; off to turn off).\n' +
      '\nExample:\n  $ citysync start --port 3000\n  $ citysync start --no-demo\n  $ CITYSYNC_BACKUP_DIR=/mnt/backups CITYSYNC_BACKUP_SCHEDULE="0 */6 * * *" citysync start',
  )
  .action(async (opts: { demo: boolean; port?: number; host?: string }) => {
    await runStart(opts)
  })

program
  .command('migrate')
  .description('create or upgrade the ClickHouse tables, the metadata store and (with KAFKA_BROKERS) the Kafka topics')
  .action(async () => {
    await runMigrate()
  })

program
  .command('api')
  .description('run only the REST API (distributed mode: connectors and stream jobs run elsewhere)')
  .addOption(new Option('--port <port>', 'HTTP port').argParser(Number))
  .option('--host <host>', 'HTTP bind address')
  .action(async (opts: { port?: number; host?: string }) => {
    await runApi(opts)
  })

program
  .command('connect')
  .description('run the connector of one data source against Kafka (distributed mode); follows deploy/pause/resume from the API')
  .requiredOption('--source <id>', 'source id (added with `citysync sources add`)')
  .addHelpText('after', '\nNeeds KAFKA_BROKERS and a shared metadata store (DATABASE_URL).\n\nExample:\n  $ KAFKA_BROKERS=kafka1:9092 DATABASE_URL=postgres://citysync@db/citysync citysync connect --source hengqin-lots')
  .action(async (opts: { source: string }) => {
    await runConnect(opts)
  })

program
  .command('pipeline')
  .description('run the stream job that lands Kafka events in ClickHouse (distributed mode); start several to share the partitions')
  .addOption(new Option('--metrics-port <port>', 'serve Prometheus metrics (rows landed and dead letters per source, batch sizes, insert latency, consumer lag) at http://HOST:PORT/metrics').argParser(Number))
  .addHelpText('after', '\nNeeds KAFKA_BROKERS and CLICKHOUSE_URL.\n\nExample:\n  $ KAFKA_BROKERS=kafka1:9092 CLICKHOUSE_URL=http://ch1:8123 citysync pipeline --metrics-port 9465')
  .action(async (opts: { metricsPort?: number }) => {
    await runPipeline(opts)
  })

program
  .command('quality')
  .description('run the sync-health service: freshness of every source and entity, alerts, incidents, notifications (distributed mode)')
  .option('--alerting <file>', 'receivers and routes (YAML or JSON; default $CITYSYNC_ALERTING_FILE)')
  .option('--interval <duration>', 'evaluation interval', '60s')
  .addOption(new Option('--metrics-port <port>', 'serve Prometheus metrics at http://HOST:PORT/metrics').argParser(Number))
  .option('--metrics-host <host>', 'bind address of the metrics endpoint (default $HOST or 127.0.0.1)')
  .addHelpText(
    'after',
    '\nNeeds the shared metadata store (DATABASE_URL) and warehouse (CLICKHOUSE_URL).\n\nExample:\n  $ DATABASE_URL=postgres://citysync@db/citysync CLICKHOUSE_URL=http://ch1:8123 citysync quality --alerting alerting.yaml --metrics-port 9464',
  )
  .action(async (opts: { alerting?: string; interval: string; metricsPort?: number; metricsHost?: string }) => {
    await runQuality(opts)
  })

registerSourceCommands(program)
registerReportCommands(program)
registerBackupCommands(program)
registerUserCommands(program)

program.parseAsync(process.argv).catch((err: unknown) => {
  const log = createLogger('error')
  if (isCitysyncError(err)) {
    process.stderr.write(`citysync: ${err.code}: ${err.message}\n`)
  } else {
    log.debug({ err }, 'command failed')
    process.stderr.write(`citysync: ${errorMessage(err)}\n`)
  }
  process.exitCode = 1
})
