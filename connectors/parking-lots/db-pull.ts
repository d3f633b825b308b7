// Car parks read straight from a vendor's database (停车场管理系统 local DB):
// entry and exit records from one table, pulled incrementally on
// (updated_at, id) through connectors/sdk/db-pull.ts.
//
// Two table layouts, chosen by `layout`:
//   session: one row per stay, the exit columns empty until the car leaves
//            (the vendor then updates the row, which moves its updated_at);
//            a row yields an entry and, once it has an exit time, an exit.
//   event:   one row per passage, with a direction column.
// Each row is rebuilt as the open-API item shape of map.ts (parkCode, inTime,
// outTime, fee in yuan, ...) and mapped by the same rules, so both connectors
// accept and refuse exactly the same values; reasons name the vendor's columns.
//
// A row read again after a late update yields its entry again with the same
// content: the pipeline drops it as a duplicate, and the new exit lands.

import { maskPlate } from '../../lib/crypto.ts'
import { errorMessage } from '../../lib/errors.ts'
import { type Direction } from '../../schemas/events.ts'
import {
  type CheckResult,
  type Connector,
  type Ctx,
  type JsonSchema,
  type SourceMessage,
  itemError,
  record,
} from '../sdk/connector.ts'
import {
  DB_CONNECTION_SCHEMA,
  DB_TABLE_PROPERTIES,
  type DbConnectionConfig,
  type DbCursor,
  type DbRow,
  type DbTableConfig,
  type RowContext,
  checkTable,
  dbTimeToLocal,
  openVendorDb,
  parseDbCursor,
  pullTable,
} from '../sdk/db-pull.ts'
import { type ItemFault, type MapContext, mapPassage } from './map.ts'

export const PASSAGE_LAYOUTS = ['session', 'event'] as const
export type PassageLayout = (typeof PASSAGE_LAYOUTS)[number]

/** Canonical passage fields -> the vendor's column names. */
export interface PassageColumns {
  recordNo: string
  lotId: string
  plate?: string
  plateColor?: string
  /** Entry gate (session layout) or the gate (event layout). */
  gate?: string
  /** Exit gate (session layout; default: `gate`). */
  exitGate?: string
  /** session layout: entry and exit time columns. */
  entryTime?: string
  exitTime?: string
  /** event layout: the passage time and its direction. */
  time?: string
  direction?: string
  /** Fee charged at exit. */
  fee?: string
  /** 补传 flag: 1/0, true/false, 是/否. */
  backfill?: string
}

export interface ParkingDbConfig extends DbTableConfig {
  connection: DbConnectionConfig
  layout?: PassageLayout
  mapping: PassageColumns
  /** Unit of the fee column (default yuan). */
  feeUnit?: 'yuan' | 'fen'
  /** event layout: values of the direction column (defaults: in/out, 1/2, 入/出, 入场/出场, entry/exit). */
  directionValues?: { entry: string[]; exit: string[] }
  /** When given, passages of other lots are refused as unknown_lot. */
  lots?: string[]
  futureToleranceMs?: number
}

const COLUMN = DB_TABLE_PROPERTIES.table!

const DEFAULT_DIRECTIONS = {
  entry: ['in', 'entry', '1', '入', '入场', '进场'],
  exit: ['out', 'exit', '2', '出', '出场', '离场'],
}

const configSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['connection', 'table', 'mapping'],
  properties: {
    connection: DB_CONNECTION_SCHEMA,
    ...DB_TABLE_PROPERTIES,
    layout: { enum: [...PASSAGE_LAYOUTS], default: 'session' },
    mapping: {
      type: 'object',
      additionalProperties: false,
      required: ['recordNo', 'lotId'],
      properties: Object.fromEntries(
        ['recordNo', 'lotId', 'plate', 'plateColor', 'gate', 'exitGate', 'entryTime', 'exitTime', 'time', 'direction', 'fee', 'backfill'].map((k) => [k, COLUMN]),
      ),
    },
    feeUnit: { enum: ['yuan', 'fen'], default: 'yuan' },
    directionValues: {
      type: 'object',
      additionalProperties: false,
      required: ['entry', 'exit'],
      properties: {
        entry: { type: 'array', items: { type: 'string' }, minItems: 1 },
        exit: { type: 'array', items: { type: 'string' }, minItems: 1 },
      },
    },
    lots: { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true },
    futureToleranceMs: { type: 'integer', minimum: 0, default: 300_000 },
  },
  // The layout decides which time columns are needed.
  allOf: [
    {
      if: { properties: { layout: { const: 'event' } }, required: ['layout'] },
      then: { properties: { mapping: { required: ['time', 'direction'] } } },
      else: { properties: { mapping: { required: ['entryTime'] } } },
    },
  ],
}

/** Any lot: used when a source lists no lots to check against. */
class AnyLot extends Set<string> {
  override has(): boolean {
    return true
  }
}
export const ANY_LOT: ReadonlySet<string> = new AnyLot()

/**
 * Rewrites the open-API field names in a map.ts reason into the names the
 * upstream uses ("freeSpace is not a number" -> "剩余车位 is not a number").
 */
export function renameFields(reason: string, names: Readonly<Record<string, string | undefined>>): string {
  const keys = Object.keys(names).filter((k) => names[k] !== undefined)
  if (keys.length === 0) return reason
  const pattern = new RegExp(`\\b(${keys.sort((a, b) => b.length - a.length).join('|')})\\b`, 'g')
  return reason.replace(pattern, (k) => names[k] ?? k)
}

/** A copy of a row fit for the dead-letter store: the plate column masked. */
export function redactRow(row: Record<string, unknown>, plateColumn: string | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(row)) {
    out[k] = k === plateColumn && typeof v === 'string' && v.trim() !== '' ? maskPlate(v) : v
  }
  return out
}

/** Fen (integer) -> yuan text "12.50"; anything else is passed on for map.ts to refuse. */
function fenToYuan(v: unknown): unknown {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : Number.NaN
  if (!Number.isSafeInteger(n) || n < 0) return v
  return `${Math.floor(n / 100)}.${String(n % 100).padStart(2, '0')}`
}

const BACKFILL_TRUE = new Set(['1', 'true', '是', 'y', 'yes'])
const BACKFILL_FALSE = new Set(['0', 'false', '否', 'n', 'no', ''])

function flag(v: unknown): unknown {
  if (v === null || v === undefined) return 0
  if (typeof v === 'boolean') return v ? 1 : 0
  if (typeof v !== 'string' && typeof v !== 'number') return v
  const s = String(v).trim().toLowerCase()
  if (BACKFILL_TRUE.has(s)) return 1
  if (BACKFILL_FALSE.has(s)) return 0
  return v
}

const PLATE_COLOR_ZH: Record<string, string> = { 蓝: 'blue', 黄: 'yellow', 绿: 'green', 渐变绿: 'green', 黄绿: 'yellow-green', 黑: 'black', 白: 'white' }

/** Plate colour as vendors write it (blue, 蓝, 蓝色, 2 as text) -> the English name where one is known. */
export function plateColorName(v: unknown): unknown {
  if (typeof v !== 'string') return text(v)
  const s = v.trim().replace(/色$/, '')
  return PLATE_COLOR_ZH[s] ?? v
}

function text(v: unknown): unknown {
  if (typeof v === 'number' || typeof v === 'bigint') return String(v)
  return v === null ? undefined : v
}

function time(v: unknown, zone: string): unknown {
  if (v === null || v === undefined || v === '') return undefined
  return dbTimeToLocal(v, zone) ?? v
}

interface Resolved {
  layout: PassageLayout
  m: PassageColumns
  feeUnit: 'yuan' | 'fen'
  entryValues: Set<string>
  exitValues: Set<string>
  knownLots: ReadonlySet<string>
  futureToleranceMs: number
}

function resolve(config: ParkingDbConfig): Resolved {
  const dv = config.directionValues ?? DEFAULT_DIRECTIONS
  return {
    layout: config.layout ?? 'session',
    m: config.mapping,
    feeUnit: config.feeUnit ?? 'yuan',
    entryValues: new Set(dv.entry.map((s) => s.trim().toLowerCase())),
    exitValues: new Set(dv.exit.map((s) => s.trim().toLowerCase())),
    knownLots: config.lots === undefined ? ANY_LOT : new Set(config.lots),
    futureToleranceMs: config.futureToleranceMs ?? 300_000,
  }
}

/**
 * One vendor row -> ParkingPassage records, or one item error naming the row.
 * Pure apart from `now` (passed in through mapCtx).
 */
export function mapPassageRow(row: DbRow, rc: RowContext, cfg: Resolved, mapCtx: MapContext): SourceMessage<never>[] {
  const { m } = cfg
  const names: Record<string, string | undefined> = {
    recordNo: m.recordNo,
    parkCode: m.lotId,
    plateNo: m.plate,
    plateColor: m.plateColor,
    gateNo: m.gate,
    isReupload: m.backfill,
    fee: m.fee,
    inTime: cfg.layout === 'session' ? m.entryTime : m.time,
    outTime: cfg.layout === 'session' ? m.exitTime : m.time,
  }
  const fail = (fault: ItemFault | { code: string; reason: string }, label: string): SourceMessage<never> =>
    itemError('ParkingPassage', fault.code, `${rc.where(row)} ${label}: ${renameFields(fault.reason, names)}`, redactRow(row, m.plate))
  const col = (name: string | undefined): unknown => (name === undefined ? undefined : row[name])
  const base = {
    recordNo: text(col(m.recordNo)),
    parkCode: text(col(m.lotId)),
    plateNo: col(m.plate) ?? undefined,
    plateColor: plateColorName(col(m.plateColor)),
    isReupload: m.backfill === undefined ? 0 : flag(col(m.backfill)),
  }
  const fee = m.fee === undefined ? undefined : cfg.feeUnit === 'fen' ? fenToYuan(col(m.fee)) : text(col(m.fee))

  if (cfg.layout === 'event') {
    const value = col(m.direction)
    const raw = typeof value === 'string' || typeof value === 'number' ? String(value).trim().toLowerCase() : ''
    const direction: Direction | null = cfg.entryValues.has(raw) ? 'entry' : cfg.exitValues.has(raw) ? 'exit' : null
    if (direction === null) {
      return [fail({ code: 'invalid_value', reason: `${m.direction} is neither an entry nor an exit value: ${JSON.stringify(raw)}` }, 'passage')]
    }
    const at = time(col(m.time), rc.timezone)
    const item = direction === 'entry'
      ? { ...base, gateNo: text(col(m.gate)), inTime: at }
      : { ...base, gateNo: text(col(m.gate)), outTime: at, fee: fee ?? undefined }
    const mapped = mapPassage(item, direction, mapCtx)
    return [mapped.ok ? record('ParkingPassage', mapped.draft) : fail(mapped.fault, direction)]
  }

  const inTime = time(col(m.entryTime), rc.timezone)
  const outTime = time(col(m.exitTime), rc.timezone)
  const entry = mapPassage({ ...base, gateNo: text(col(m.gate)), inTime }, 'entry', mapCtx)
  if (!entry.ok) return [fail(entry.fault, 'entry')]
  const out: SourceMessage<never>[] = [record('ParkingPassage', entry.draft)]
  if (outTime !== undefined) {
    const gate = text(col(m.exitGate ?? m.gate))
    const exit = mapPassage({ ...base, gateNo: gate, inTime, outTime, fee: fee ?? undefined }, 'exit', mapCtx)
    out.push(exit.ok ? record('ParkingPassage', exit.draft) : fail(exit.fault, 'exit'))
  }
  return out
}

export const parkingDbConnector: Connector<ParkingDbConfig, DbCursor> = {
  kind: 'parking-db',
  title: 'Car parks (vendor database: MySQL, MariaDB or PostgreSQL)',
  configSchema,

  async check(config: ParkingDbConfig, ctx: Ctx): Promise<CheckResult> {
    const db = openVendorDb(config.connection, config.dbTimezone ?? ctx.timezone, ctx.clock.now())
    try {
      return await checkTable(db, config.connection, config, ctx.timezone)
    } catch (err) {
      return { ok: false, message: errorMessage(err) }
    } finally {
      await db.destroy()
    }
  },

  async *read(config: ParkingDbConfig, cursor: DbCursor | undefined, ctx: Ctx) {
    const start = parseDbCursor(cursor)
    const cfg = resolve(config)
    const db = openVendorDb(config.connection, config.dbTimezone ?? ctx.timezone, ctx.clock.now())
    try {
      yield* pullTable(db, config.connection, config, start, ctx, (row, rc) => {
        const mapCtx: MapContext = { timezone: rc.timezone, now: ctx.clock.now(), futureToleranceMs: cfg.futureToleranceMs, knownLots: cfg.knownLots }
        return mapPassageRow(row, rc, cfg, mapCtx)
      }, (c) => c)
    } catch (err) {
      if (ctx.signal.aborted) return
      throw err
    } finally {
      await db.destroy()
    }
  },
}

/** For tests and the county connector: the resolved mapping of a config. */
export function resolveParkingDb(config: ParkingDbConfig): Resolved {
  return resolve(config)
}
