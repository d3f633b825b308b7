import { Readable } from 'node:stream'
import { createClient, type ClickHouseClient } from '@clickhouse/client'
import { CitysyncError, errorMessage } from '../../lib/errors.ts'
import { sqlIdent } from './sql.ts'
import { avroContainer, type AvroBlock } from './avro-container.ts'
import { type InsertOptions, type QueryParams, type Warehouse } from './warehouse.ts'

/** A ClickHouse server (or cluster endpoint) over HTTP. */
export class ServerWarehouse implements Warehouse {
  readonly transport = 'server'
  private readonly client: ClickHouseClient

  constructor(url: string) {
    this.client = createClient({
      url,
      clickhouse_settings: { output_format_json_quote_64bit_integers: 0, date_time_input_format: 'best_effort' },
      request_timeout: 60_000,
    })
  }

  async ping(): Promise<boolean> {
    const r = await this.client.ping()
    return r.success
  }

  async command(sql: string): Promise<void> {
    try {
      await this.client.command({ query: sql })
    } catch (err) {
      throw wrap(err)
    }
  }

  async query<T>(sql: string, params?: QueryParams): Promise<T[]> {
    try {
      const rs = await this.client.query({ query: sql, query_params: params ?? {}, format: 'JSONEachRow' })
      return await rs.json<T>()
    } catch (err) {
      throw wrap(err)
    }
  }

  async insertJsonEachRow(table: string, body: Buffer, options: InsertOptions = {}): Promise<void> {
    if (body.length === 0) return
    try {
      const r = await this.client.exec({
        query: `INSERT INTO ${table} FORMAT JSONEachRow`,
        values: Readable.from([body]),
        clickhouse_settings: options.dedupToken ? { insert_deduplication_token: options.dedupToken } : {},
      })
      r.stream.resume()
    } catch (err) {
      throw wrap(err)
    }
  }

  async insertAvro(table: string, block: AvroBlock, options: InsertOptions = {}): Promise<void> {
    if (block.datums.length === 0) return
    try {
      const r = await this.client.exec({
        query: `INSERT INTO ${sqlIdent(table)} (${block.columns.map(sqlIdent).join(', ')}) FORMAT Avro`,
        values: Readable.from([avroContainer(block)]),
        clickhouse_settings: options.dedupToken ? { insert_deduplication_token: options.dedupToken } : {},
      })
      r.stream.resume()
    } catch (err) {
      throw wrap(err)
    }
  }

  async close(): Promise<void> {
    await this.client.close()
  }
}

function wrap(err: unknown): CitysyncError {
  const msg = errorMessage(err)
  const unavailable = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|socket hang up|Timeout/i.test(msg)
  return new CitysyncError(unavailable ? 'CITYSYNC_ERR_WAREHOUSE_UNAVAILABLE' : 'CITYSYNC_ERR_WAREHOUSE_QUERY', [msg], { cause: err })
}

