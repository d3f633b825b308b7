// Incremental reads of a vendor's table over SQL (MySQL/MariaDB through
// mysql2, PostgreSQL through pg), shared by every connector that pulls from a
// vendor database. I/O and paging only: turning a row into drafts is the
// caller's `map`.
//
// Cursor contract: the position is the (updatedAt, id) pair of the last row
// read, kept exactly as the database rendered it (text), and the next page is
//   WHERE updated_at > :u OR (updated_at = :u AND id > :id)
//   ORDER BY updated_at, id LIMIT :pageSize
// i.e. a strictly-greater tuple comparison on a total order, so rows sharing
// one updated_at across a page boundary are neither skipped nor repeated, and
// a row whose updated_at moves (a late update) is read again at its new place.
// Date-time values are fetched as text (no driver conversion), so the cursor
// round-trips with the column's full precision. Rows whose updated_at is NULL
// are never read: they have no place in the order. A row written later with
// an updated_at at or before the cursor (a long transaction that commits after
// a later one, a vendor clock set back) is not seen by the incremental read;
// re-reading from an older cursor picks it up, and lands no duplicates (the
// pipeline drops records that had landed).
//
// Time zones: naive values (MySQL/MariaDB DATETIME, PostgreSQL timestamp
// without time zone) are the vendor's wall-clock time in `dbTimezone`. MySQL
// TIMESTAMP values are rendered by the server in the session zone, which is set
// to dbTimezone's UTC offset on connect, so they read the same way.
// PostgreSQL sessions run in UTC, so timestamptz values arrive with "+00".

import knexFactory, { type Knex } from 'knex'
import pg from 'pg'
import { formatLocal, isTimeZone, parseLocal, zoneOffset } from '../../lib/local-time.ts'
import { CitysyncError, errorMessage, isCitysyncError } from '../../lib/errors.ts'
import { type CheckResult, type Ctx, type JsonSchema, type SourceMessage, checkpoint } from './connector.ts'

export const DB_DIALECTS = ['mysql', 'postgres'] as const
export type DbDialect = (typeof DB_DIALECTS)[number]

export interface DbConnectionConfig {
  dialect: DbDialect
  host: string
  /** Default 3306 (mysql) or 5432 (postgres). */
  port?: number
  database: string
  user: string
  /** Marked x-secret: sealed at rest by lib/source-config.ts, opened before the connector sees it. */
  password?: string
  /** TLS to the vendor database (default false). */
  ssl?: boolean
  /** Per-query timeout (default 30 s). */
  queryTimeoutMs?: number
}

export interface DbTableConfig {
  /** `table` or `schema.table`; identifiers are quoted, so any name the database accepts works. */
  table: string
  /** Column that moves forward whenever a row is written (default updated_at). */
  updatedAtColumn?: string
  /** Unique column that orders rows sharing one updatedAt (default id). */
  idColumn?: string
  /** Columns to fetch (default all). */
  columns?: string[]
  /** Rows per query, 1..10000 (default 1000). */
  pageSize?: number
  /** Wall-clock zone of naive date-time columns (default: the source's time zone). */
  dbTimezone?: string
  /** Naive local time in dbTimezone; the first read starts after it (default: the whole table). */
  startAfter?: string
}

/** The last row read: updated_at as the database renders it, and its id. */
export interface DbCursor {
  updatedAt: string
  id: string | number
}

export type DbRow = Record<string, unknown>

export const DB_DEFAULTS = {
  updatedAtColumn: 'updated_at',
  idColumn: 'id',
  pageSize: 1000,
  queryTimeoutMs: 30_000,
} as const

// Quoting makes any identifier safe for knex; these characters are refused
// anyway, since no vendor column needs them and they only ever mean trouble.
const IDENTIFIER = { type: 'string', minLength: 1, maxLength: 128, pattern: '^[^`"\\\\\\u0000;]+$' } as const

export const DB_CONNECTION_SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['dialect', 'host', 'database', 'user'],
  properties: {
    dialect: { enum: [...DB_DIALECTS], description: 'mysql (MySQL, MariaDB) or postgres' },
    host: { type: 'string', minLength: 1 },
    port: { type: 'integer', minimum: 1, maximum: 65535 },
    database: { type: 'string', minLength: 1 },
    user: { type: 'string', minLength: 1 },
    password: { type: 'string', 'x-secret': true, description: 'Encrypted at rest (SM4)' },
    ssl: { type: 'boolean', default: false },
    queryTimeoutMs: { type: 'integer', minimum: 1000, maximum: 600_000, default: DB_DEFAULTS.queryTimeoutMs },
  },
}

/** Properties of DbTableConfig as JSON Schema, for connectors to embed. */
export const DB_TABLE_PROPERTIES: Record<string, JsonSchema> = {
  table: IDENTIFIER,
  updatedAtColumn: { ...IDENTIFIER, default: DB_DEFAULTS.updatedAtColumn },
  idColumn: { ...IDENTIFIER, default: DB_DEFAULTS.idColumn },
  columns: { type: 'array', items: IDENTIFIER, minItems: 1, uniqueItems: true },
  pageSize: { type: 'integer', minimum: 1, maximum: 10_000, default: DB_DEFAULTS.pageSize },
  dbTimezone: { type: 'string', format: 'timezone' },
  startAfter: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}[ T]\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,6})?$' },
}

const TEXT_TIME_OIDS = new Set([1082 /* date */, 1114 /* timestamp */, 1184 /* timestamptz */])

// Per-connection type parsing: date-times stay text; everything else as pg does it.
const PG_TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (TEXT_TIME_OIDS.has(oid)) return (value: string) => value
    return pg.types.getTypeParser(oid, format) as (value: string) => unknown
  },
}

function offsetText(zone: string, at: number): string {
  const minutes = Math.round(zoneOffset(at, zone) / 60_000)
  const sign = minutes < 0 ? '-' : '+'
  const abs = Math.abs(minutes)
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`
}

/**
 * A knex pool on the vendor database, configured as this module's contract
 * says (date-times as text, session zones). The caller destroys it.
 */
export function openVendorDb(conn: DbConnectionConfig, dbTimezone: string, now = Date.now()): Knex {
  if (conn.dialect === 'mysql') {
    const sessionZone = offsetText(dbTimezone, now)
    return knexFactory({
      client: 'mysql2',
      connection: {
        host: conn.host,
        port: conn.port ?? 3306,
        user: conn.user,
        password: conn.password ?? '',
        database: conn.database,
        dateStrings: true,
        supportBigNumbers: true,
        bigNumberStrings: true,
        charset: 'utf8mb4',
        connectTimeout: 10_000,
        ...(conn.ssl === true ? { ssl: {} } : {}),
      },
      pool: {
        min: 0,
        max: 2,
        afterCreate(raw: { query(sql: string, values: unknown[], cb: (err: Error | null) => void): void }, done: (err: Error | null, c: unknown) => void) {
          raw.query('SET time_zone = ?', [sessionZone], (err) => done(err, raw))
        },
      },
      acquireConnectionTimeout: 15_000,
    })
  }
  return knexFactory({
    client: 'pg',
    connection: {
      host: conn.host,
      port: conn.port ?? 5432,
      user: conn.user,
      password: conn.password ?? '',
      database: conn.database,
      ssl: conn.ssl === true,
      types: PG_TYPES,
      connectionTimeoutMillis: 10_000,
      application_name: 'citysync',
    } as Knex.PgConnectionConfig,
    pool: {
      min: 0,
      max: 2,
      afterCreate(raw: { query(sql: string, cb: (err: Error | null) => void): void }, done: (err: Error | null, c: unknown) => void) {
        raw.query("SET TIME ZONE 'UTC'", (err) => done(err, raw))
      },
    },
    acquireConnectionTimeout: 15_000,
  })
}

const DB_TIME = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:\s*(Z|[+-]\d{2}(?::?\d{2})?))?$/

/**
 * A date-time value as a database driver returns it (text, or a Date) ->
 * epoch ms UTC. Text without an offset is wall-clock time in `zone`.
 * Fractions beyond milliseconds are truncated. Null when it is not a date-time.
 */
export function dbTimeToMs(value: unknown, zone: string): number | null {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.getTime()
  if (typeof value !== 'string') return null
  const m = DB_TIME.exec(value.trim())
  if (m === null) return null
  const frac = m[7] === undefined ? '' : `.${m[7].slice(0, 3)}`
  const naive = `${m[1]}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]}${frac}`
  const off = m[8]
  if (off === undefined) return parseLocal(naive, zone)
  const asUtc = parseLocal(naive, 'UTC')
  if (asUtc === null) return null
  if (off === 'Z') return asUtc
  const om = /^([+-])(\d{2}):?(\d{2})?$/.exec(off)!
  const minutes = Number(om[2]) * 60 + Number(om[3] ?? '0')
  return asUtc - (om[1] === '-' ? -1 : 1) * minutes * 60_000
}

/** A database date-time value as naive local `YYYY-MM-DD HH:mm:ss[.SSS]` in `zone`, or null. */
export function dbTimeToLocal(value: unknown, zone: string): string | null {
  const ms = dbTimeToMs(value, zone)
  if (ms === null) return null
  return formatLocal(ms, zone, ms % 1000 !== 0)
}

/** The start cursor, checked: a saved cursor must be what this module wrote. */
export function parseDbCursor(cursor: unknown, what = 'cursor'): DbCursor | undefined {
  if (cursor === undefined || cursor === null) return undefined
  const c = cursor as Partial<DbCursor>
  if (typeof c !== 'object' || typeof c.updatedAt !== 'string' || c.updatedAt === '' || (typeof c.id !== 'string' && typeof c.id !== 'number')) {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${what} must be {updatedAt: text, id: text or number}, got ${JSON.stringify(cursor)}`])
  }
  return { updatedAt: c.updatedAt, id: c.id }
}

interface ResolvedTable {
  table: string
  updatedAt: string
  id: string
  columns: string[] | null
  pageSize: number
  zone: string
  startAfter: string | undefined
}

function resolveTable(cfg: DbTableConfig, sourceZone: string): ResolvedTable {
  const zone = cfg.dbTimezone ?? sourceZone
  if (!isTimeZone(zone)) throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`dbTimezone ${JSON.stringify(zone)} is not an IANA time zone`])
  const updatedAt = cfg.updatedAtColumn ?? DB_DEFAULTS.updatedAtColumn
  const id = cfg.idColumn ?? DB_DEFAULTS.idColumn
  let columns: string[] | null = null
  if (cfg.columns !== undefined) {
    // The cursor columns are always fetched: the next page starts from them.
    columns = [...new Set([...cfg.columns, updatedAt, id])]
  }
  return { table: cfg.table, updatedAt, id, columns, pageSize: cfg.pageSize ?? DB_DEFAULTS.pageSize, zone, startAfter: cfg.startAfter }
}

/** The page query after `cursor` (exported so its SQL can be checked without a database). */
export function pageQuery(db: Knex, cfg: DbTableConfig, cursor: DbCursor | undefined, sourceZone: string): Knex.QueryBuilder {
  const t = resolveTable(cfg, sourceZone)
  const q = db(t.table).select(t.columns ?? '*')
  q.whereNotNull(t.updatedAt)
  if (cursor !== undefined) {
    q.where((w) => {
      void w
        .where(t.updatedAt, '>', cursor.updatedAt)
        .orWhere((eq) => void eq.where(t.updatedAt, '=', cursor.updatedAt).andWhere(t.id, '>', cursor.id))
    })
  } else if (t.startAfter !== undefined) {
    q.where(t.updatedAt, '>', t.startAfter)
  }
  return q.orderBy([t.updatedAt, t.id]).limit(t.pageSize)
}

function rawText(v: unknown): string {
  if (typeof v === 'string') return v
  if (typeof v === 'number' || typeof v === 'bigint') return String(v)
  if (v instanceof Date) return v.toISOString()
  return JSON.stringify(v) ?? 'null'
}

export interface RowContext {
  /** Wall-clock zone of the table's naive date-times. */
  readonly timezone: string
  readonly table: string
  /** The row's position, for reasons: "table parking_record id 42". */
  where(row: DbRow): string
}

/** Turns one row into records and item errors (no checkpoints: pullTable places those). */
export type RowMapper = (row: DbRow, rc: RowContext) => Iterable<SourceMessage<never>>

function wrapDbError(conn: DbConnectionConfig, cfgTable: string, err: unknown): CitysyncError {
  if (isCitysyncError(err)) return err
  const where = `${conn.dialect}://${conn.host}:${conn.port ?? (conn.dialect === 'mysql' ? 3306 : 5432)}/${conn.database} table ${cfgTable}`
  return new CitysyncError('CITYSYNC_ERR_CONNECTOR_DB', [where, errorMessage(err)], { cause: err })
}

/**
 * Reads `table` after `cursor`, page by page, mapping each row with `map` and
 * yielding a checkpoint (the last row's updatedAt and id) after every page.
 * Returns when a page comes back short. `wrap` turns a DbCursor into the
 * connector's own cursor (e.g. one entry of a per-table map).
 */
export async function* pullTable<C>(
  db: Knex,
  conn: DbConnectionConfig,
  cfg: DbTableConfig,
  cursor: DbCursor | undefined,
  ctx: Ctx,
  map: RowMapper,
  wrap: (c: DbCursor) => C,
): AsyncGenerator<SourceMessage<C>, DbCursor | undefined> {
  const t = resolveTable(cfg, ctx.timezone)
  const rc: RowContext = {
    timezone: t.zone,
    table: t.table,
    where: (row) => `table ${t.table} ${t.id} ${rawText(row[t.id])}`,
  }
  const timeoutMs = conn.queryTimeoutMs ?? DB_DEFAULTS.queryTimeoutMs
  let at = cursor
  for (;;) {
    if (ctx.signal.aborted) return at
    let rows: DbRow[]
    try {
      rows = (await pageQuery(db, cfg, at, ctx.timezone).timeout(timeoutMs, { cancel: true })) as DbRow[]
    } catch (err) {
      throw wrapDbError(conn, t.table, err)
    }
    for (const row of rows) yield* map(row, rc)
    const last = rows.at(-1)
    if (last !== undefined) {
      const updatedAt = last[t.updatedAt]
      const id = last[t.id]
      if (typeof updatedAt !== 'string' || (typeof id !== 'string' && typeof id !== 'number')) {
        throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [
          `table ${t.table}: cursor columns ${t.updatedAt}, ${t.id} must be a date-time and a number or text, got ${rawText(updatedAt)}, ${rawText(id)}`,
        ])
      }
      at = { updatedAt, id }
      yield checkpoint(wrap(at))
      ctx.log.debug({ table: t.table, rows: rows.length, cursor: at }, 'vendor table page read')
    }
    if (rows.length < t.pageSize) return at
  }
}

/** check(): can we connect, does the table have the cursor columns, how many rows. */
export async function checkTable(db: Knex, conn: DbConnectionConfig, cfg: DbTableConfig, sourceZone: string): Promise<CheckResult> {
  const t = resolveTable(cfg, sourceZone)
  try {
    await db(t.table).select(t.columns ?? [t.updatedAt, t.id]).whereRaw('1 = 0')
    const [row] = await db(t.table).count<{ n: number | string }[]>({ n: '*' })
    const rows = Number(row?.n ?? 0)
    return { ok: true, message: `table ${t.table}: ${rows} row${rows === 1 ? '' : 's'}`, details: { table: t.table, rows } }
  } catch (err) {
    return { ok: false, message: wrapDbError(conn, t.table, err).message }
  }
}
