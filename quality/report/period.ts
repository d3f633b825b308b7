// Report periods: a calendar month 'YYYY-MM' or a quarter 'YYYYQn', read as
// local time in the bureau's zone (Asia/Shanghai unless told otherwise), as
// half-open UTC instants [from, to).

import { CitysyncError } from '../../lib/errors.ts'
import { formatLocal, isTimeZone, parseLocal } from '../../lib/local-time.ts'

export interface Period {
  /** 'YYYY-MM' or 'YYYYQn' */
  id: string
  kind: 'month' | 'quarter'
  zone: string
  from: number
  to: number
}

function startOf(year: number, month: number, zone: string): number {
  const y = year + Math.floor((month - 1) / 12)
  const m = ((month - 1) % 12 + 12) % 12 + 1
  return parseLocal(`${String(y).padStart(4, '0')}-${String(m).padStart(2, '0')}-01 00:00:00`, zone)!
}

function checkZone(zone: string): void {
  if (!isTimeZone(zone)) throw new CitysyncError('CITYSYNC_ERR_REPORT_OPTION', ['tz', `${JSON.stringify(zone)} is not an IANA time zone`])
}

/** 'YYYY-MM'; throws CITYSYNC_ERR_REPORT_PERIOD. */
export function parseMonth(text: string, zone: string): Period {
  checkZone(zone)
  const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(typeof text === 'string' ? text.trim() : '')
  if (m === null) throw new CitysyncError('CITYSYNC_ERR_REPORT_PERIOD', [JSON.stringify(text), 'a month is written YYYY-MM, e.g. 2026-11'])
  const year = Number(m[1])
  const month = Number(m[2])
  return { id: `${m[1]}-${m[2]}`, kind: 'month', zone, from: startOf(year, month, zone), to: startOf(year, month + 1, zone) }
}

/** 'YYYYQn' (also 'YYYY-Qn'); throws CITYSYNC_ERR_REPORT_PERIOD. */
export function parseQuarter(text: string, zone: string): Period {
  checkZone(zone)
  const m = /^(\d{4})-?[Qq]([1-4])$/.exec(typeof text === 'string' ? text.trim() : '')
  if (m === null) throw new CitysyncError('CITYSYNC_ERR_REPORT_PERIOD', [JSON.stringify(text), 'a quarter is written YYYYQn, e.g. 2026Q4'])
  const year = Number(m[1])
  const q = Number(m[2])
  return { id: `${m[1]}Q${q}`, kind: 'quarter', zone, from: startOf(year, 3 * q - 2, zone), to: startOf(year, 3 * q + 1, zone) }
}

/** The month before `p`. */
export function previousMonth(p: Period): Period {
  const [y, m] = p.id.split('-').map(Number) as [number, number]
  const year = m === 1 ? y - 1 : y
  const month = m === 1 ? 12 : m - 1
  return parseMonth(`${year}-${String(month).padStart(2, '0')}`, p.zone)
}

/** The month holding instant `t` in `zone`. */
export function monthOf(t: number, zone: string): Period {
  return parseMonth(formatLocal(t, zone).slice(0, 7), zone)
}

/** Months overlapping [from, to), oldest first. */
export function monthsBetween(from: number, to: number, zone: string): Period[] {
  const out: Period[] = []
  for (let p = monthOf(from, zone); p.from < to; ) {
    out.push(p)
    const [y, m] = p.id.split('-').map(Number) as [number, number]
    p = parseMonth(m === 12 ? `${y + 1}-01` : `${y}-${String(m + 1).padStart(2, '0')}`, zone)
  }
  return out
}

/** Local calendar date 'YYYY-MM-DD' of `t`. */
export function localDate(t: number, zone: string): string {
  return formatLocal(t, zone).slice(0, 10)
}
