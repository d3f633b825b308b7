import { mkdirSync } from 'node:fs'
import { Session } from 'chdb'
import { CitysyncError, errorMessage } from '../../lib/errors.ts'
import { type InsertOptions, type QueryParams, type Warehouse } from './warehouse.ts'

/** ClickHouse in process. chDB binds one data directory per process. */
export class ChdbWarehouse implements Warehouse {
  readonly transport = 'chdb'
  private readonly session: Session

  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true })
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

  close(): Promise<void> {
    this.session.close()
    return Promise.resolve()
  }
}
