// Reading one upstream item field by field. A mapper throws a Fault for the
// first field it cannot use; run() turns that into { ok: false, fault }, which
// the connector yields as an itemError (dead-letter store, with the reason).

import { parseLocal } from '../../lib/local-time.ts'

export interface ItemFault<Code extends string = string> {
  code: Code
  reason: string
  /** The upstream field at fault, null when the item as a whole is. */
  field: string | null
}

export type Mapped<T, Code extends string = string> = { ok: true; draft: T } | { ok: false; fault: ItemFault<Code> }

/** Thrown inside a mapper and turned into a { ok: false } result by run(). */
export class Fault extends Error {
  readonly fault: ItemFault
  constructor(code: string, field: string | null, reason: string) {
    super(reason)
    this.fault = { code, field, reason }
  }
}

export type Obj = Record<string, unknown>

export function isObj(raw: unknown): raw is Obj {
  return typeof raw === 'object' && raw !== null && !Array.isArray(raw)
}

export function kindOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v
}

/** Short, single-line rendering of a (non-plate) value for a reason. */
export function show(v: unknown): string {
  const text = typeof v === 'string' ? JSON.stringify(v) : String(v)
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

/** Absent: missing_field; not a string (null included): wrong_type; blank: missing_field. */
export function requireString(o: Obj, field: string): string {
  const v = o[field]
  if (v === undefined) throw new Fault('missing_field', field, `missing field ${field}`)
  if (typeof v !== 'string') throw new Fault('wrong_type', field, `${field} must be a string, got ${kindOf(v)}`)
  const s = v.trim()
  if (s === '') throw new Fault('missing_field', field, `${field} is empty`)
  return s
}

/** A string, or a finite number taken as its text; blank or absent is null. */
export function optionalString(o: Obj, field: string): string | null {
  const v = o[field]
  if (v === undefined || v === null) return null
  if (typeof v === 'number' && Number.isFinite(v)) return String(v)
  if (typeof v !== 'string') throw new Fault('wrong_type', field, `${field} must be a string, got ${kindOf(v)}`)
  const s = v.trim()
  return s === '' ? null : s
}

/** A naive `YYYY-MM-DD HH:mm:ss` time in the source's zone, as epoch ms. */
export function requireTime(o: Obj, field: string, zone: string): number {
  const text = requireString(o, field)
  const t = parseLocal(text, zone)
  if (t === null) throw new Fault('invalid_value', field, `${field} is not a valid local time: ${show(text)}`)
  return t
}

export function optionalTime(o: Obj, field: string, zone: string): number | null {
  if (o[field] === undefined || o[field] === null || o[field] === '') return null
  return requireTime(o, field, zone)
}

/** Refuses an event time further ahead of `now` than the tolerance (a skewed upstream clock). */
export function checkNotFuture(t: number, field: string, ctx: { now: number; futureToleranceMs: number }): void {
  const ahead = t - ctx.now
  if (ahead > ctx.futureToleranceMs) {
    throw new Fault(
      'future_timestamp',
      field,
      `${field} ${new Date(t).toISOString()} is ${formatSpan(ahead)} ahead of now (tolerance ${formatSpan(ctx.futureToleranceMs)})`,
    )
  }
}

export function formatSpan(ms: number): string {
  if (ms >= 86_400_000) return `${(ms / 86_400_000).toFixed(1)} d`
  if (ms >= 3_600_000) return `${(ms / 3_600_000).toFixed(1)} h`
  if (ms >= 60_000) return `${(ms / 60_000).toFixed(1)} min`
  return `${(ms / 1000).toFixed(0)} s`
}

/** Runs a mapper over one item; `noun` names the item in the reason ("item", "row"). */
export function run<T, Code extends string>(raw: unknown, body: (o: Obj) => T, noun = 'item'): Mapped<T, Code> {
  if (!isObj(raw)) return { ok: false, fault: { code: 'wrong_type' as Code, field: null, reason: `${noun} must be an object, got ${kindOf(raw)}` } }
  try {
    return { ok: true, draft: body(raw) }
  } catch (err) {
    if (err instanceof Fault) return { ok: false, fault: err.fault as ItemFault<Code> }
    throw err
  }
}
