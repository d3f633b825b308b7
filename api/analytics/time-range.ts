import { CitysyncError } from '../../lib/errors.ts'
import { formatLocal, parseLocal, zoneOffset } from '../../lib/local-time.ts'

// Query periods. `from` is inclusive, `to` exclusive. A date (2026-11-01) is
// local midnight in the analytics time zone; a date-time without an offset is
// local time there; one with an offset (Z, +08:00) is that instant.

export const GRANULARITIES = ['hour', 'day', 'month'] as const
export type Granularity = (typeof GRANULARITIES)[number]

const HOUR = 3_600_000
const DAY = 24 * HOUR
/** Longest period one query may cover. */
export const MAX_SPAN_MS = 5 * 366 * DAY

const DATE = /^\d{4}-\d{2}-\d{2}$/
const LOCAL = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,3})?)?$/
const WITH_OFFSET = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:\d{2})$/

function bad(message: string): CitysyncError {
  return new CitysyncError('CITYSYNC_ERR_ANALYTICS_QUERY', [message])
}

/** Epoch ms of a `from`/`to` value, or a CITYSYNC_ERR_ANALYTICS_QUERY naming the parameter. */
export function parseInstant(name: string, text: string, zone: string): number {
  const t = text.trim()
  if (DATE.test(t)) {
    const ms = parseLocal(`${t} 00:00:00`, zone)
    if (ms !== null) return ms
  } else if (WITH_OFFSET.test(t)) {
    const ms = Date.parse(t)
    if (Number.isFinite(ms)) return ms
  } else {
    const m = LOCAL.exec(t)
    if (m !== null) {
      const ms = parseLocal(`${m[1]} ${m[2]}:${m[3]}:${m[4] ?? '00'}${m[5] ?? ''}`, zone)
      if (ms !== null) return ms
    }
  }
  throw bad(`${name}: expected a date (2026-11-01) or a date-time (2026-11-01T09:00, 2026-11-01T01:00:00Z), got ${JSON.stringify(text)}`)
}

export interface Period {
  fromMs: number
  toMs: number
  /** Local dates of from and to (to exclusive), for day-level tables. */
  fromDay: string
  toDay: string
}

function localDate(ms: number, zone: string): string {
  return formatLocal(ms, zone).slice(0, 10)
}

function isLocalMidnight(ms: number, zone: string): boolean {
  return formatLocal(ms, zone).endsWith(' 00:00:00')
}

function isLocalHour(ms: number, zone: string): boolean {
  return formatLocal(ms, zone, true).endsWith(':00:00.000')
}

/**
 * Checks the period against the granularity: hour buckets need from and to on
 * local hour boundaries, day and month buckets on local midnights (a month
 * bucket may be cut by the period).
 */
export function parsePeriod(from: string, to: string, granularity: Granularity, zone: string): Period {
  const fromMs = parseInstant('from', from, zone)
  const toMs = parseInstant('to', to, zone)
  if (toMs <= fromMs) throw bad(`to (${to}) must be after from (${from}); to is exclusive`)
  if (toMs - fromMs > MAX_SPAN_MS) throw bad('the period may cover at most 5 years')
  const aligned = granularity === 'hour' ? isLocalHour : isLocalMidnight
  const what = granularity === 'hour' ? 'the start of an hour' : 'a date (local midnight)'
  if (!aligned(fromMs, zone)) throw bad(`from must be ${what} for granularity=${granularity}, got ${from}`)
  if (!aligned(toMs, zone)) throw bad(`to must be ${what} for granularity=${granularity}, got ${to}`)
  return { fromMs, toMs, fromDay: localDate(fromMs, zone), toDay: localDate(toMs, zone) }
}

function offsetText(ms: number, zone: string): string {
  const off = zoneOffset(ms, zone) / 60_000
  const sign = off < 0 ? '-' : '+'
  const abs = Math.abs(off)
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`
}

/** ISO 8601 with the zone's offset: 2026-11-02T09:00:00+08:00. */
export function isoLocal(ms: number, zone: string): string {
  return `${formatLocal(ms, zone).replace(' ', 'T')}${offsetText(ms, zone)}`
}

/** How a bucket starting at `ms` is labelled: 2026-11-02T09:00+08:00, 2026-11-02 or 2026-11. */
export function bucketLabel(ms: number, granularity: Granularity, zone: string): string {
  const local = formatLocal(ms, zone)
  if (granularity === 'month') return local.slice(0, 7)
  if (granularity === 'day') return local.slice(0, 10)
  return `${local.slice(0, 10)}T${local.slice(11, 16)}${offsetText(ms, zone)}`
}

/**
 * A list of small integers: "9", "7-9", "1-5,7". Returns them sorted and
 * unique, or throws naming the parameter.
 */
export function parseIntList(name: string, text: string, min: number, max: number): number[] {
  const out = new Set<number>()
  for (const part of text.split(',')) {
    const m = /^\s*(\d{1,2})\s*(?:-\s*(\d{1,2})\s*)?$/.exec(part)
    if (m === null) throw bad(`${name}: expected numbers and ranges like 1-5,7, got ${JSON.stringify(text)}`)
    const a = Number(m[1])
    const b = m[2] === undefined ? a : Number(m[2])
    if (a < min || b > max || b < a) throw bad(`${name}: values from ${min} to ${max}, ranges ascending, got ${JSON.stringify(text)}`)
    for (let i = a; i <= b; i++) out.add(i)
  }
  return [...out].sort((x, y) => x - y)
}

/**
 * The zone as a SQL string literal. Time zone arguments of ClickHouse's date
 * functions must be constants, and a bound parameter there costs a lookup per
 * row; the zone comes from configuration, checked here, never from a request.
 */
export function zoneLiteral(zone: string): string {
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$/.test(zone)) throw new RangeError(`not a time zone name: ${JSON.stringify(zone)}`)
  return `'${zone}'`
}
