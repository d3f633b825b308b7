import { Command, Option } from 'commander'
import { errorMessage, isCitysyncError } from '../lib/errors.ts'
import { loadConfig } from '../lib/config.ts'
import { createLogger, VERSION } from './embedded.ts'
import { registerSourceCommands } from './sources.ts'
import { runApi, runMigrate, runStart } from './roles.ts'

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
  .addHelpText('after', '\nExample:\n  $ citysync start --port 3000\n  $ citysync start --no-demo')
  .action(async (opts: { demo: boolean; port?: number; host?: string }) => {
    await runStart(opts)
  })

program
  .command('migrate')
  .description('create or upgrade the ClickHouse tables and the metadata store')
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

for (const [name, what] of [
  ['connect', 'run the connector of one data source (distributed mode)'],
  ['pipeline', 'run the stream job that lands events in ClickHouse (distributed mode)'],
] as const) {
  const cmd = program.command(name).description(what)
  if (name === 'connect') cmd.requiredOption('--source <id>', 'source id')
  cmd.action(() => {
    const cfg = loadConfig()
    if (!cfg.kafkaBrokers) {
      throw new Error(`citysync ${name} runs a role of the distributed mode and needs KAFKA_BROKERS; use \`citysync start\` to run everything in one process`)
    }
    throw new Error(`citysync ${name} over Kafka is not available in this release`)
  })
}

registerSourceCommands(program)

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
