// Field readers shared by the GBFS and the trips mappers. Pure: no I/O, no clock.
//
// A reader either returns a typed value or throws a Fault naming the field;
// `mapItem` turns a Fault into a { ok: false } result, so one bad item never
// stops the others.

import { parseLocal } from '../../lib/local-time.ts'

export const ITEM_ERROR_CODES = ['missing_field', 'wrong_type', 'invalid_value', 'future_timestamp'] as const
export type ItemErrorCode = (typeof ITEM_ERROR_CODES)[number]

export interface ItemFault {
  code: ItemErrorCode
  /** The upstream field at fault, null when the item as a whole is. */
  field: string | null
  reason: string
}

export type Mapped<T> = { ok: true; value: T } | { ok: false; fault: ItemFault }

export class Fault extends Error {
  readonly fault: ItemFault
  constructor(code: ItemErrorCode, field: string | null, reason: string) {
    super(reason)
    this.fault = { code, field, reason }
  }
}

export type Obj = Record<string, unknown>

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function kindOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v
}

/** Short, single-line rendering of a value for a reason. */
export function show(v: unknown): string {
  const text = typeof v === 'string' ? JSON.stringify(v) : String(v)
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

export function mapItem<T>(raw: unknown, body: (o: Obj) => T): Mapped<T> {
  if (!isObj(raw)) return { ok: false, fault: { code: 'wrong_type', field: null, reason: `item must be an object, got ${kindOf(raw)}` } }
  try {
    return { ok: true, value: body(raw) }
  } catch (err) {
    if (err instanceof Fault) return { ok: false, fault: err.fault }
    throw err
  }
}

function absent(v: unknown): boolean {
  return v === undefined || v === null
}

/** An id: a non-empty string, or a number some producers use instead. */
export function requireId(o: Obj, field: string): string {
  const v = o[field]
  if (absent(v)) throw new Fault('missing_field', field, `missing field ${field}`)
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v)
  if (typeof v !== 'string') throw new Fault('wrong_type', field, `${field} must be a string, got ${kindOf(v)}`)
  const s = v.trim()
  if (s === '') throw new Fault('missing_field', field, `${field} is empty`)
  return s
}

export function optionalId(o: Obj, field: string): string | null {
  const v = o[field]
  if (absent(v) || v === '') return null
  return requireId(o, field)
}

/**
 * A non-negative whole number. Numeric strings are accepted; anything else
 * that is a string ("unknown", "n/a", "") is an invalid value, not zero.
 */
export function readCount(o: Obj, field: string, required: boolean): number | null {
  const v = o[field]
  if (absent(v)) {
    if (required) throw new Fault('missing_field', field, `missing field ${field}`)
    return null
  }
  let n: number
  if (typeof v === 'number') n = v
  else if (typeof v === 'string') {
    if (!/^\s*-?\d{1,15}\s*$/.test(v)) throw new Fault('invalid_value', field, `${field} is not a number: ${show(v)}`)
    n = Number(v)
  } else throw new Fault('wrong_type', field, `${field} must be a number, got ${kindOf(v)}`)
  if (!Number.isSafeInteger(n)) throw new Fault('invalid_value', field, `${field} is not a whole number: ${show(v)}`)
  if (n < 0) throw new Fault('invalid_value', field, `${field} must not be negative: ${n}`)
  if (n > 2_147_483_647) throw new Fault('invalid_value', field, `${field} is implausibly large: ${n}`)
  return n
}

export function requireCount(o: Obj, field: string): number {
  return readCount(o, field, true)!
}

/** Booleans, also as 0/1 or "true"/"false", which some producers write. */
export function readFlag(o: Obj, field: string, required: boolean): boolean | null {
  const v = o[field]
  if (absent(v)) {
    if (required) throw new Fault('missing_field', field, `missing field ${field}`)
    return null
  }
  if (v === true || v === 1 || v === 'true' || v === '1') return true
  if (v === false || v === 0 || v === 'false' || v === '0') return false
  if (typeof v === 'number' || typeof v === 'string') throw new Fault('invalid_value', field, `${field} must be true or false: ${show(v)}`)
  throw new Fault('wrong_type', field, `${field} must be a boolean, got ${kindOf(v)}`)
}

export function requireFlag(o: Obj, field: string): boolean {
  return readFlag(o, field, true)!
}

/** A coordinate in decimal degrees within ±limit; numeric strings accepted. */
export function readCoordinate(o: Obj, field: string, limit: number, required: boolean): number | null {
  const v = o[field]
  if (absent(v) || v === '') {
    if (required) throw new Fault('missing_field', field, `missing field ${field}`)
    return null
  }
  let n: number
  if (typeof v === 'number') n = v
  else if (typeof v === 'string') {
    if (!/^\s*-?\d{1,3}(\.\d+)?\s*$/.test(v)) throw new Fault('invalid_value', field, `${field} is not a coordinate: ${show(v)}`)
    n = Number(v)
  } else throw new Fault('wrong_type', field, `${field} must be a number, got ${kindOf(v)}`)
  if (!Number.isFinite(n) || Math.abs(n) > limit) throw new Fault('invalid_value', field, `${field} is not a coordinate: ${show(v)}`)
  return n
}

// Nothing a bike-share system publishes predates this; an earlier instant is a
// unit mistake (e.g. a zero, or seconds read as milliseconds).
const EARLIEST = Date.UTC(2000, 0, 1)
// Epoch values at or above this are milliseconds: as seconds they would lie
// after the year 5000, as milliseconds they lie after March 1973.
const MS_THRESHOLD = 1e11

const RFC3339 = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})$/
const NAIVE = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?$/

export type TimeUnit = 'seconds' | 'milliseconds' | 'rfc3339' | 'local'

/**
 * Reads a timestamp as GBFS producers write them: POSIX seconds (GBFS 1.x and
 * 2.x), epoch milliseconds (a common producer mistake), RFC 3339 with any
 * offset and fraction (GBFS 3.0), or a naive local time (read in `zone`).
 * Returns epoch ms UTC and the form it was read in; null when `v` is none of
 * these or lies before 2000.
 */
export function parseTimestamp(v: unknown, zone: string): { ms: number; unit: TimeUnit } | null {
  let n: number | null = null
  if (typeof v === 'number') n = v
  else if (typeof v === 'string') {
    const s = v.trim()
    if (/^\d{9,16}(\.\d+)?$/.test(s)) n = Number(s)
    else {
      const m = RFC3339.exec(s)
      if (m !== null) {
        if (!realDate(m[1]!, m[2]!)) return null
        // Date.parse is exact to the millisecond; keep at most three digits so
        // producers' microseconds (Python isoformat) read the same everywhere.
        const frac = m[3] === undefined ? '' : `.${m[3].slice(0, 3)}`
        const offset = m[4]!.length === 5 ? `${m[4]!.slice(0, 3)}:${m[4]!.slice(3)}` : m[4]!.toUpperCase()
        const ms = Date.parse(`${m[1]}T${m[2]}${frac}${offset}`)
        return Number.isNaN(ms) || ms < EARLIEST ? null : { ms, unit: 'rfc3339' }
      }
      if (NAIVE.test(s)) {
        const ms = parseLocal(s.replace(/[Tt]/, ' '), zone)
        return ms === null || ms < EARLIEST ? null : { ms, unit: 'local' }
      }
      return null
    }
  }
  if (n === null || !Number.isFinite(n) || n <= 0) return null
  const unit: TimeUnit = n >= MS_THRESHOLD ? 'milliseconds' : 'seconds'
  const ms = Math.round(unit === 'milliseconds' ? n : n * 1000)
  if (ms < EARLIEST || !Number.isSafeInteger(ms)) return null
  return { ms, unit }
}

// Date.parse rolls 2025-02-30 over into March; a producer that writes it is wrong.
function realDate(date: string, time: string): boolean {
  const [y, mo, d] = date.split('-').map(Number) as [number, number, number]
  const [h, mi, s] = time.split(':').map(Number) as [number, number, number]
  const days = mo === 2 ? ((y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28) : [4, 6, 9, 11].includes(mo) ? 30 : 31
  return mo >= 1 && mo <= 12 && d >= 1 && d <= days && h <= 23 && mi <= 59 && s <= 60
}

export function readTime(o: Obj, field: string, zone: string, required: boolean): number | null {
  const v = o[field]
  if (absent(v) || v === '') {
    if (required) throw new Fault('missing_field', field, `missing field ${field}`)
    return null
  }
  if (typeof v !== 'number' && typeof v !== 'string') throw new Fault('wrong_type', field, `${field} must be a timestamp, got ${kindOf(v)}`)
  const t = parseTimestamp(v, zone)
  if (t === null) throw new Fault('invalid_value', field, `${field} is not a timestamp: ${show(v)}`)
  return t.ms
}

/** A naive local "YYYY-MM-DD HH:mm:ss" in `zone`, as operator APIs write them. */
export function readLocalTime(o: Obj, field: string, zone: string): number {
  const v = o[field]
  if (absent(v) || v === '') throw new Fault('missing_field', field, `missing field ${field}`)
  if (typeof v !== 'string') throw new Fault('wrong_type', field, `${field} must be a local time string, got ${kindOf(v)}`)
  const t = parseLocal(v.trim(), zone)
  if (t === null) throw new Fault('invalid_value', field, `${field} is not a valid local time: ${show(v)}`)
  return t
}

export function checkNotFuture(t: number, field: string, now: number, toleranceMs: number): void {
  const ahead = t - now
  if (ahead > toleranceMs) {
    throw new Fault(
      'future_timestamp',
      field,
      `${field} ${new Date(t).toISOString()} is ${Math.round(ahead / 1000)} s ahead of now (tolerance ${Math.round(toleranceMs / 1000)} s)`,
    )
  }
}

/** An amount in yuan ("1.50", 1.5) -> fen (150). */
export function readYuan(o: Obj, field: string): number | null {
  const v = o[field]
  if (absent(v) || v === '') return null
  let cents: number
  if (typeof v === 'string') {
    const m = /^\s*(\d{1,8})(?:\.(\d{1,2}))?\s*$/.exec(v)
    if (m === null) throw new Fault('invalid_value', field, `${field} is not an amount in yuan: ${show(v)}`)
    cents = Number(m[1]) * 100 + Number((m[2] ?? '').padEnd(2, '0'))
  } else if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0 || v >= 1e8) throw new Fault('invalid_value', field, `${field} is not an amount in yuan: ${show(v)}`)
    cents = Math.round(v * 100)
    if (Math.abs(cents - v * 100) > 1e-6) throw new Fault('invalid_value', field, `${field} has more than two decimals: ${v}`)
  } else throw new Fault('wrong_type', field, `${field} must be a string or number, got ${kindOf(v)}`)
  return cents
}
