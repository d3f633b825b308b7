// The warehouse half of a backup: one ClickHouse Native file per table, written
// and read by the ClickHouse engine itself through the `file()` table function
// (so on the engine's host: chDB in this process, or a ClickHouse HTTP
// endpoint on the same host, or a server that sees the backup folder at the
// same path). Why Native files rather than BACKUP or FREEZE: docs/decisions.md.
//
// Each file is one SELECT, i.e. one consistent snapshot of its table. Row
// counts and content hashes are computed from the written file, so they
// describe exactly what the backup holds, however fast rows keep landing.

import { join } from 'node:path'
import { createClient, type ClickHouseClient } from '@clickhouse/client'
import { CitysyncError, errorMessage } from '../errors.ts'
import { ChdbWarehouse } from '../../pipelines/warehouse/chdb-warehouse.ts'
import { type WarehouseColumn, type WarehouseTable } from './manifest.ts'
import { nativeSource, rowHashExpr, sqlIdent, sqlString } from './sql.ts'

/** The SQL a backup or restore needs from the warehouse engine. */
export interface WarehouseEngine {
  readonly transport: 'chdb' | 'server'
  command(sql: string): Promise<void>
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>
  close(): Promise<void>
}

/** Not backed up: recreated by `migrate` (schema_migrations is recorded in the manifest instead). */
const SKIPPED_TABLES = new Set(['schema_migrations'])
const BIG_TIMEOUT_MS = 12 * 3600_000

/** A ClickHouse server with the timeouts of bulk work (a table's export can take minutes). */
class ServerEngine implements WarehouseEngine {
  readonly transport = 'server'
  private readonly client: ClickHouseClient

  constructor(url: string) {
    this.client = createClient({
      url,
      request_timeout: BIG_TIMEOUT_MS,
      // Progress headers keep proxies and load balancers from closing a long, silent request.
      clickhouse_settings: { output_format_json_quote_64bit_integers: 0, send_progress_in_http_headers: 1, http_headers_progress_interval_ms: '10000' },
    })
  }

  async command(sql: string): Promise<void> {
    try {
      await this.client.command({ query: sql })
    } catch (err) {
      throw new CitysyncError('CITYSYNC_ERR_WAREHOUSE_QUERY', [errorMessage(err)], { cause: err })
    }
  }

  async query<T>(sql: string): Promise<T[]> {
    try {
      const rs = await this.client.query({ query: sql, format: 'JSONEachRow' })
      return await rs.json<T>()
    } catch (err) {
      throw new CitysyncError('CITYSYNC_ERR_WAREHOUSE_QUERY', [errorMessage(err)], { cause: err })
    }
  }

  close(): Promise<void> {
    return this.client.close()
  }
}

/**
 * The warehouse of this configuration for bulk work: chDB under
 * `<dataDir>/clickhouse` (only while no other process has it open), or the
 * ClickHouse server at CLICKHOUSE_URL.
 */
export function openWarehouseEngine(o: { clickhouseUrl: string | undefined; dataDir: string }): WarehouseEngine {
  if (o.clickhouseUrl) return new ServerEngine(o.clickhouseUrl)
  const dir = join(o.dataDir, 'clickhouse')
  try {
    return new ChdbWarehouse(dir)
  } catch (err) {
    throw new CitysyncError(
      'CITYSYNC_ERR_BACKUP_BUSY',
      [`the embedded warehouse ${dir}`, `${errorMessage(err)}; a running citysync start backs itself up on CITYSYNC_BACKUP_SCHEDULE (docs/operations.md), or stop it first`],
      { cause: err },
    )
  }
}

export async function engineVersion(engine: WarehouseEngine): Promise<string> {
  const [row] = await engine.query<{ v: string }>('SELECT version() AS v')
  return row?.v ?? 'unknown'
}

export async function appliedWarehouseMigrations(engine: WarehouseEngine): Promise<number[]> {
  const exists = await engine.query<{ n: number }>(`SELECT count() AS n FROM system.tables WHERE database = currentDatabase() AND name = 'schema_migrations'`)
  if ((exists[0]?.n ?? 0) === 0) return []
  const rows = await engine.query<{ version: number }>('SELECT DISTINCT version FROM schema_migrations ORDER BY version')
  return rows.map((r) => Number(r.version))
}

export interface TableInfo {
  name: string
  engine: string
}

/** Tables of the current database, by engine. */
export async function listTables(engine: WarehouseEngine): Promise<TableInfo[]> {
  return engine.query<TableInfo>(`SELECT name, engine FROM system.tables WHERE database = currentDatabase() ORDER BY name`)
}

/** The tables whose rows a backup holds: every MergeTree table but the migration log. */
export async function dataTables(engine: WarehouseEngine): Promise<string[]> {
  const tables = await listTables(engine)
  const inner = tables.filter((t) => t.name.startsWith('.inner'))
  if (inner.length > 0) {
    // Their names change on every CREATE, so their rows cannot be put back where they belong.
    throw new CitysyncError('CITYSYNC_ERR_BACKUP_FAILED', [
      `materialized views without a TO table (${inner.map((t) => t.name).join(', ')}) cannot be backed up; give each view a TO table`,
    ])
  }
  return tables.filter((t) => t.engine.endsWith('MergeTree') && !SKIPPED_TABLES.has(t.name)).map((t) => t.name)
}

/** Insertable columns in table order (MATERIALIZED and ALIAS columns are computed, not stored from inserts). */
export async function insertableColumns(engine: WarehouseEngine, table: string): Promise<WarehouseColumn[]> {
  return engine.query<WarehouseColumn>(
    `SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ${sqlString(table)}
     AND default_kind NOT IN ('MATERIALIZED', 'ALIAS', 'EPHEMERAL') ORDER BY position`,
  )
}

export interface SnapshotStats {
  rows: number
  contentHash: string
}

export async function statsOfFile(engine: WarehouseEngine, file: string, columns: readonly WarehouseColumn[]): Promise<SnapshotStats> {
  const [row] = await engine.query<{ citysync_rows: number; citysync_hash: string }>(`SELECT count() AS citysync_rows, ${rowHashExpr(columns)} AS citysync_hash FROM ${nativeSource(file, columns)}`)
  return { rows: Number(row?.citysync_rows ?? 0), contentHash: row?.citysync_hash ?? '0' }
}

export async function statsOfTable(engine: WarehouseEngine, table: string, columns: readonly WarehouseColumn[]): Promise<SnapshotStats> {
  const [row] = await engine.query<{ citysync_rows: number; citysync_hash: string }>(`SELECT count() AS citysync_rows, ${rowHashExpr(columns)} AS citysync_hash FROM ${sqlIdent(table)}`)
  return { rows: Number(row?.citysync_rows ?? 0), contentHash: row?.citysync_hash ?? '0' }
}

/** Writes one table to `file` (absolute path on the engine's host) and returns what the file holds. */
export async function exportTable(engine: WarehouseEngine, table: string, file: string): Promise<{ columns: WarehouseColumn[]; stats: SnapshotStats }> {
  const columns = await insertableColumns(engine, table)
  const list = columns.map((c) => sqlIdent(c.name)).join(', ')
  await engine.command(
    `INSERT INTO FUNCTION file(${sqlString(file)}, 'Native') SELECT ${list} FROM ${sqlIdent(table)} SETTINGS engine_file_truncate_on_insert = 1`,
  )
  return { columns, stats: await statsOfFile(engine, file, columns) }
}

/**
 * Loads one backed-up table into its (empty) table and returns what the table
 * then holds. A restore keeps every row it was given: no block deduplication
 * (two identical blocks stay two) and no collapsing on insert (rows that
 * ReplacingMergeTree had not merged away yet are restored as they were).
 */
export async function importTable(engine: WarehouseEngine, t: WarehouseTable, file: string): Promise<SnapshotStats> {
  if (t.rows > 0) {
    const list = t.columns.map((c) => sqlIdent(c.name)).join(', ')
    await engine.command(
      `INSERT INTO ${sqlIdent(t.name)} (${list}) SELECT ${list} FROM ${nativeSource(file, t.columns)}
       SETTINGS insert_deduplicate = 0, optimize_on_insert = 0, max_partitions_per_insert_block = 0`,
    )
  }
  return statsOfTable(engine, t.name, t.columns)
}

export async function materializedViews(engine: WarehouseEngine): Promise<string[]> {
  return (await listTables(engine)).filter((t) => t.engine === 'MaterializedView').map((t) => t.name)
}
