// The warehouse seam: the few operations citysync needs from ClickHouse. Two
// transports implement it, chDB in process and a ClickHouse server over HTTP;
// both run the same SQL.

import { type AvroBlock } from './avro-container.ts'

export type QueryParams = Record<string, string | number | boolean | readonly (string | number)[] | null>

export interface InsertOptions {
  /**
   * Same token, same block: ClickHouse drops a repeated insert carrying a token
   * it has already seen (tables keep `non_replicated_deduplication_window`).
   */
  dedupToken?: string
}

export interface Warehouse {
  readonly transport: 'chdb' | 'server'
  ping(): Promise<boolean>
  /** DDL or any statement without a result. */
  command(sql: string): Promise<void>
  /**
   * Rows as objects. Parameters use ClickHouse's server-side binding:
   * `{name:Type}` in the SQL, values in `params`. 64-bit integers come back as
   * numbers; select timestamps as `toUnixTimestamp64Milli(col)`.
   */
  query<T = Record<string, unknown>>(sql: string, params?: QueryParams): Promise<T[]>
  /** Inserts rows already serialised as JSONEachRow (one JSON object per line). */
  insertJsonEachRow(table: string, body: Buffer, options?: InsertOptions): Promise<void>
  /**
   * Inserts Avro datums as one block, columns matched by field name. The
   * sink's path: ClickHouse parses the bodies of wire messages itself, three
   * to four times cheaper than JSON rows built and parsed (docs/benchmarks.md).
   */
  insertAvro(table: string, block: AvroBlock, options?: InsertOptions): Promise<void>
  close(): Promise<void>
}

export function toJsonEachRow(rows: readonly object[]): Buffer {
  let text = ''
  for (const row of rows) text += JSON.stringify(row) + '\n'
  return Buffer.from(text)
}
