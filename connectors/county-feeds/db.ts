// County database (`county-db`): the county's own tables or views, pulled
// incrementally on (updated_at, id) through connectors/sdk/db-pull.ts and
// mapped with the same header rules as county files (column names play the
// part of headers, so a view with columns 停车场编号, 剩余车位, ... needs no
// mapping at all).
//
// Cursor: one DbCursor per dataset, by dataset name. Datasets are read in the
// order configured; put lots first so that a new car park exists before its
// first report.

import { CitysyncError, errorMessage } from '../../lib/errors.ts'
import { type CheckResult, type Connector, type Ctx, type JsonSchema } from '../sdk/connector.ts'
import {
  DB_CONNECTION_SCHEMA,
  DB_TABLE_PROPERTIES,
  type DbConnectionConfig,
  type DbCursor,
  type DbRow,
  type DbTableConfig,
  checkTable,
  dbTimeToLocal,
  dbTimeToMs,
  openVendorDb,
  parseDbCursor,
  pullTable,
} from '../sdk/db-pull.ts'
import { ANY_LOT } from '../parking-lots/db-pull.ts'
import { type DatasetConfig, type Field, type Layout, bindLayout, datasetName, datasetSchema, mapCountyRow } from './map.ts'

export interface CountyTableConfig extends DatasetConfig {
  table: string
  updatedAtColumn?: string
  idColumn?: string
  pageSize?: number
}

export interface CountyDbConfig {
  county: string
  connection: DbConnectionConfig
  /** Wall-clock zone of the tables' naive date-times (default: the source's). */
  dbTimezone?: string
  datasets: CountyTableConfig[]
  lots?: string[]
  futureToleranceMs?: number
}

const TIME_FIELDS: ReadonlySet<Field> = new Set(['entryTime', 'exitTime', 'observedAt'])

/** Dataset name -> where its table was read up to. */
export type CountyDbCursor = Record<string, DbCursor>

const configSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['county', 'connection', 'datasets'],
  properties: {
    county: { type: 'string', minLength: 1 },
    connection: DB_CONNECTION_SCHEMA,
    dbTimezone: DB_TABLE_PROPERTIES.dbTimezone,
    datasets: {
      type: 'array',
      minItems: 1,
      items: datasetSchema(
        {
          table: DB_TABLE_PROPERTIES.table,
          updatedAtColumn: DB_TABLE_PROPERTIES.updatedAtColumn,
          idColumn: DB_TABLE_PROPERTIES.idColumn,
          pageSize: DB_TABLE_PROPERTIES.pageSize,
        },
        ['table'],
      ),
    },
    lots: { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true },
    futureToleranceMs: { type: 'integer', minimum: 0, default: 300_000 },
  },
}

function startCursor(cursor: CountyDbCursor | undefined, datasets: readonly CountyTableConfig[]): CountyDbCursor {
  const out: CountyDbCursor = {}
  if (cursor === undefined || cursor === null) return out
  if (typeof cursor !== 'object' || Array.isArray(cursor)) {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`cursor must map dataset names to positions, got ${JSON.stringify(cursor)}`])
  }
  for (const d of datasets) {
    const c = parseDbCursor(cursor[datasetName(d)], `cursor.${datasetName(d)}`)
    if (c !== undefined) out[datasetName(d)] = c
  }
  return out
}

// A dataset's `columns` maps fields to columns; the table read fetches every column.
function tableOf(d: CountyTableConfig, config: CountyDbConfig): DbTableConfig {
  return {
    table: d.table,
    ...(d.updatedAtColumn === undefined ? {} : { updatedAtColumn: d.updatedAtColumn }),
    ...(d.idColumn === undefined ? {} : { idColumn: d.idColumn }),
    ...(d.pageSize === undefined ? {} : { pageSize: d.pageSize }),
    ...(config.dbTimezone === undefined ? {} : { dbTimezone: config.dbTimezone }),
  }
}

function uniqueNames(datasets: readonly CountyTableConfig[]): void {
  const seen = new Set<string>()
  for (const d of datasets) {
    const n = datasetName(d)
    if (seen.has(n)) throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`datasets: two datasets are named ${n}; give each a name`])
    seen.add(n)
  }
}

export const countyDbConnector: Connector<CountyDbConfig, CountyDbCursor> = {
  kind: 'county-db',
  title: 'County database (MySQL, MariaDB or PostgreSQL tables)',
  configSchema,

  async check(config: CountyDbConfig, ctx: Ctx): Promise<CheckResult> {
    const db = openVendorDb(config.connection, config.dbTimezone ?? ctx.timezone, ctx.clock.now())
    try {
      const results: CheckResult[] = []
      for (const d of config.datasets) results.push(await checkTable(db, config.connection, tableOf(d, config), ctx.timezone))
      const failed = results.find((r) => !r.ok)
      return failed ?? { ok: true, message: results.map((r) => r.message).join('; '), details: { tables: results.map((r) => r.details) } }
    } catch (err) {
      return { ok: false, message: errorMessage(err) }
    } finally {
      await db.destroy()
    }
  },

  async *read(config: CountyDbConfig, cursor: CountyDbCursor | undefined, ctx: Ctx) {
    uniqueNames(config.datasets)
    const cur = startCursor(cursor, config.datasets)
    const knownLots = config.lots === undefined ? ANY_LOT : new Set(config.lots)
    const db = openVendorDb(config.connection, config.dbTimezone ?? ctx.timezone, ctx.clock.now())
    try {
      for (const d of config.datasets) {
        const name = datasetName(d)
        let layout: Layout | undefined
        const updatedAtColumn = d.updatedAtColumn ?? 'updated_at'
        const map = (row: DbRow, rc: { timezone: string; where(row: DbRow): string }) => {
          if (layout === undefined) {
            const bound = bindLayout(d, Object.keys(row))
            if ('missing' in bound) {
              throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [
                `dataset ${name}: table ${d.table} has no column for ${bound.missing.join(', ')} (columns: ${Object.keys(row).join(', ')})`,
              ])
            }
            layout = bound.layout
          }
          const l = layout
          const get = (f: Field): unknown => {
            const v = row[l.names[f]!]
            if (v === null) return undefined
            // Date-times arrive as the database renders them (zoned ones with an offset).
            return TIME_FIELDS.has(f) ? (dbTimeToLocal(v, rc.timezone) ?? v) : v
          }
          return mapCountyRow(l, get, row, `dataset ${name} ${rc.where(row)}`, {
            timezone: rc.timezone,
            now: ctx.clock.now(),
            futureToleranceMs: config.futureToleranceMs ?? 300_000,
            knownLots,
            lotTime: dbTimeToMs(row[updatedAtColumn], rc.timezone) ?? ctx.clock.now(),
            county: config.county,
          })
        }
        yield* pullTable(db, config.connection, tableOf(d, config), cur[name], ctx, map, (c) => {
          cur[name] = c
          return { ...cur }
        })
        if (ctx.signal.aborted) return
      }
    } catch (err) {
      if (ctx.signal.aborted) return
      throw err
    } finally {
      await db.destroy()
    }
  },
}
