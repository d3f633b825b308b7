import { mkdirSync, rmSync } from 'node:fs'
import { unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Session } from 'chdb'
import { CitysyncError, errorMessage } from '../../lib/errors.ts'
import { sqlIdent, sqlString } from './sql.ts'
import { avroContainer, type AvroBlock } from './avro-container.ts'
import { type InsertOptions, type QueryParams, type Warehouse } from './warehouse.ts'

let spooled = 0

/** The folder where Avro containers wait for the engine to read them: emptied at start, since what a dead process left there was never acknowledged. */
export function openSpool(dataDir: string): string {
  const spool = join(dataDir, 'citysync-inserts')
  rmSync(spool, { recursive: true, force: true })
  mkdirSync(spool, { recursive: true })
  return spool
}

/**
 * INSERT of an Avro object container. chDB takes raw payloads only in text
 * formats, so the container goes through a file that the statement reads
 * with file(): one write, and the engine's Avro reader does the rest.
 * Columns are matched by name; without a list, by position.
 */
export async function insertAvroContainer(
  session: Session,
  spool: string,
  table: string,
  columns: readonly string[] | undefined,
  container: Buffer,
  settings: Readonly<Record<string, string>>,
): Promise<void> {
  const file = join(spool, `${process.pid}-${spooled++}.avro`)
  const cols = columns && columns.length > 0 ? columns.map(sqlIdent).join(', ') : undefined
  const set = Object.entries(settings)
  for (const [k] of set) if (!/^\w+$/.test(k)) throw new Error(`not a setting name: ${k}`)
  const settingsSql = set.length > 0 ? ` SETTINGS ${set.map(([k, v]) => `${k} = ${sqlString(v)}`).join(', ')}` : ''
  try {
    await writeFile(file, container)
    await session.queryAsync(`INSERT INTO ${sqlIdent(table)}${cols ? ` (${cols})` : ''}${settingsSql} SELECT ${cols ?? '*'} FROM file(${sqlString(file)}, 'Avro')`, { format: 'TSV' })
  } finally {
    await unlink(file).catch(() => undefined)
  }
}

/** ClickHouse in process. chDB binds one data directory per process. */
export class ChdbWarehouse implements Warehouse {
  readonly transport = 'chdb'
  private readonly session: Session
  /** Where Avro blocks wait, as files, for the engine to read them; never more than the inserts under way. */
  private readonly spool: string

  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true })
    this.spool = openSpool(dataDir)
    this.session = new Session(dataDir, {
      connectionArgs: ['--async_load_databases=0', '--output_format_json_quote_64bit_integers=0'],
    })
  }

  ping(): Promise<boolean> {
    return Promise.resolve(this.session.open)
  }

  async command(sql: string): Promise<void> {
    try {
      await this.session.queryAsync(sql, { format: 'TSV' })
    } catch (err) {
      throw new CitysyncError('CITYSYNC_ERR_WAREHOUSE_QUERY', [errorMessage(err)], { cause: err })
    }
  }

  async query<T>(sql: string, params?: QueryParams): Promise<T[]> {
    try {
      const result = params
        ? await this.session.queryBindAsync(sql, params, { format: 'JSONEachRow' })
        : await this.session.queryAsync(sql, { format: 'JSONEachRow' })
      const text = result.text()
      if (text.length === 0) return []
      const rows: T[] = []
      for (const line of text.split('\n')) if (line.length > 0) rows.push(JSON.parse(line) as T)
      return rows
    } catch (err) {
      throw new CitysyncError('CITYSYNC_ERR_WAREHOUSE_QUERY', [errorMessage(err)], { cause: err })
    }
  }

  async insertJsonEachRow(table: string, body: Buffer, options: InsertOptions = {}): Promise<void> {
    if (body.length === 0) return
    try {
      await this.session.insert({
        table,
        values: body,
        format: 'JSONEachRow',
        settings: options.dedupToken ? { insert_deduplication_token: options.dedupToken } : {},
      })
    } catch (err) {
      throw new CitysyncError('CITYSYNC_ERR_WAREHOUSE_QUERY', [`insert into ${table}: ${errorMessage(err)}`], { cause: err })
    }
  }

  async insertAvro(table: string, block: AvroBlock, options: InsertOptions = {}): Promise<void> {
    if (block.datums.length === 0) return
    try {
      await insertAvroContainer(this.session, this.spool, table, block.columns, avroContainer(block), options.dedupToken ? { insert_deduplication_token: options.dedupToken } : {})
    } catch (err) {
      throw new CitysyncError('CITYSYNC_ERR_WAREHOUSE_QUERY', [`insert into ${table}: ${errorMessage(err)}`], { cause: err })
    }
  }

  close(): Promise<void> {
    this.session.close()
    return Promise.resolve()
  }
}

