import { mkdirSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import knexFactory, { type Knex } from 'knex'
import { systemClock, type Clock } from '../clock.ts'
import { CitysyncError, errorMessage } from '../errors.ts'
import { type SecretCodec } from '../source-config.ts'
import { type Dialect } from './columns.ts'
import { ConnectorStateRepo } from './connector-state.ts'
import { OnboardingRepo } from './onboarding.ts'
import { SourceRepo } from './sources.ts'

export { type Dialect } from './columns.ts'

export interface OpenMetadataOptions {
  /** postgres:// or postgresql:// selects PostgreSQL; absent or empty: SQLite under dataDir. */
  databaseUrl?: string | undefined
  dataDir: string
  /** PostgreSQL only: work in this schema (created if missing), e.g. to isolate a test run. */
  schema?: string | undefined
  /** Seals x-secret config values on write and opens them on read; without it they are stored as given. */
  secrets?: SecretCodec | undefined
  clock?: Clock | undefined
  /** Bring the schema up to date on open (default true). */
  migrate?: boolean | undefined
}

export interface Metadata {
  readonly knex: Knex
  readonly dialect: Dialect
  readonly sources: SourceRepo
  readonly connectorState: ConnectorStateRepo
  /** Onboarding status of county car parks. */
  readonly onboarding: OnboardingRepo
  close(): Promise<void>
}

const MIGRATIONS_DIR = fileURLToPath(new URL('../../infra/db/migrations/', import.meta.url))
const SQLITE_BUSY_TIMEOUT_MS = 5_000
const IDENTITY: SecretCodec = { seal: (s) => s, open: (s) => s }

export async function openMetadata(options: OpenMetadataOptions): Promise<Metadata> {
  const url = options.databaseUrl?.trim() ?? ''
  const dialect: Dialect = /^postgres(ql)?:\/\//i.test(url) ? 'pg' : 'sqlite'
  if (dialect === 'sqlite' && url !== '') {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [
      `DATABASE_URL must start with postgres:// or postgresql:// (leave it unset for SQLite under the data directory)`,
    ])
  }
  if (options.schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(options.schema)) {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`metadata schema name ${JSON.stringify(options.schema)}`])
  }

  const knex = dialect === 'pg' ? postgres(url, options.schema) : sqlite(options.dataDir)
  try {
    if (dialect === 'pg' && options.schema !== undefined) {
      await knex.raw('create schema if not exists ??', [options.schema])
    }
    if (options.migrate !== false) {
      await knex.migrate.latest({
        migrationSource: new DirectoryMigrationSource(MIGRATIONS_DIR),
        ...(dialect === 'pg' && options.schema !== undefined ? { schemaName: options.schema } : {}),
      })
    }
  } catch (err) {
    await knex.destroy().catch(() => undefined)
    if (err instanceof CitysyncError) throw err
    throw new CitysyncError('CITYSYNC_ERR_METADATA_UNAVAILABLE', [`${dialect}: ${errorMessage(err)}`], { cause: err })
  }

  const ctx = { knex, dialect, clock: options.clock ?? systemClock, secrets: options.secrets ?? IDENTITY }
  return {
    knex,
    dialect,
    sources: new SourceRepo(ctx),
    connectorState: new ConnectorStateRepo(ctx),
    onboarding: new OnboardingRepo(ctx),
    close: () => knex.destroy(),
  }
}

function postgres(url: string, schema: string | undefined): Knex {
  return knexFactory({
    client: 'pg',
    connection: url,
    ...(schema !== undefined ? { searchPath: [schema] } : {}),
    pool: { min: 0, max: 10 },
    acquireConnectionTimeout: 10_000,
  })
}

function sqlite(dataDir: string): Knex {
  mkdirSync(dataDir, { recursive: true })
  return knexFactory({
    client: 'better-sqlite3',
    connection: { filename: join(dataDir, 'metadata.sqlite') },
    useNullAsDefault: true,
    pool: {
      afterCreate(conn: { pragma(sql: string): unknown }, done: (err: Error | null, conn: unknown) => void) {
        try {
          // WAL lets readers (the API, `citysync sources list`) run beside the writer.
          conn.pragma('journal_mode = WAL')
          // synchronous=NORMAL is crash-safe in WAL mode; a power cut may lose the last
          // checkpoints, which only makes connectors re-read (deduplicated downstream).
          conn.pragma('synchronous = NORMAL')
          conn.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`)
          conn.pragma('foreign_keys = ON')
          done(null, conn)
        } catch (err) {
          done(err as Error, conn)
        }
      },
    },
  })
}

/**
 * Migrations from one folder, in file-name order. Names are recorded without
 * their extension, so the same database works under tsx (.ts sources) and
 * under node after a build (.js in dist/).
 */
export class DirectoryMigrationSource implements Knex.MigrationSource<string> {
  readonly #dir: string

  constructor(dir: string) {
    this.#dir = dir
  }

  getMigrations(): Promise<string[]> {
    const byName = new Map<string, string>()
    for (const file of readdirSync(this.#dir).sort()) {
      if (!/^\d+[-_].*\.(ts|js|mjs)$/.test(file) || /\.(d|test)\.ts$/.test(file)) continue
      const name = migrationName(file)
      if (!byName.has(name) || file.endsWith('.js')) byName.set(name, file)
    }
    return Promise.resolve([...byName.values()].sort((a, b) => migrationName(a).localeCompare(migrationName(b))))
  }

  getMigrationName(file: string): string {
    return migrationName(file)
  }

  async getMigration(file: string): Promise<Knex.Migration> {
    return (await import(pathToFileURL(join(this.#dir, file)).href)) as Knex.Migration
  }
}

function migrationName(file: string): string {
  return file.replace(/\.(ts|js|mjs)$/, '')
}
