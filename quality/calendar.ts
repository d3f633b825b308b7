// Expected-activity calendars: when a source (or one car park, station or
// terminal) is expected to send data. The delay clock of freshness only runs
// while data is expected, so a car park closed at night, a ferry terminal
// after its last sailing, quiet hours, public holidays and maintenance windows
// never count towards lateness.
//
// Opening hours use a subset of the OpenStreetMap opening_hours grammar, the
// same text the car-park connector lands in parking_lot.openingHours:
//
//   hours  := '24/7' | rule (';' rule)*
//   rule   := [days ' '] (spans | '24/7' | 'off' | 'closed')
//   days   := day ['-' day] (',' day ['-' day])*        day := Mo|Tu|We|Th|Fr|Sa|Su|PH
//   spans  := HH:MM '-' HH:MM (',' HH:MM '-' HH:MM)*     an end at or before its start runs past midnight
//
// A later rule replaces earlier ones for the days it names; days no rule names
// are closed. PH applies on the calendar's holiday dates (without a PH rule a
// holiday follows its weekday). Departure timetables use the same day
// selector followed by departure times: 'Mo-Fr 07:30,09:00,18:30; Sa,Su 08:00,17:00'.

import { parseDuration } from '../lib/duration.ts'
import { isTimeZone, parseLocal, zoneOffset } from '../lib/local-time.ts'

const MINUTE = 60_000
const DAY = 86_400_000
const DAY_MIN = 1440
const DAY_NAMES = ['Mo', 'Tu', 'We', 'Th', 'Fr', 'Sa', 'Su', 'PH'] as const
const PH = 7
/** How far back expected time is integrated; older silence is late anyway. */
const HORIZON_DAYS = 400

/** Minute spans per day kind (0 = Monday … 6 = Sunday, 7 = public holiday); null: no rule names that day. */
type WeekRules = (readonly (readonly [number, number])[] | null)[]

/** The calendar as written in a source's `freshness.calendar` (YAML or JSON). */
export interface CalendarSpec {
  /** IANA zone of every local time below; default the source's timezone. */
  timezone?: string
  /** OSM opening_hours subset; default '24/7'. */
  openingHours?: string
  /** Windows in which silence is expected even while open (same grammar), e.g. 'Mo-Su 00:30-05:30'. */
  quietHours?: string
  /** Public holidays 'YYYY-MM-DD': the PH rules apply. */
  holidays?: string[]
  /** Make-up working days (调休) 'YYYY-MM-DD': the Monday rules apply. */
  workdays?: string[]
  /** Data is expected from `lead` before a day's first departure until `grace` after its last. */
  timetable?: TimetableSpec
  maintenance?: MaintenanceSpec[]
}

export interface TimetableSpec {
  /** 'Mo-Su 07:30,09:00,21:30'; or 'sailings': the scheduled sailings the ferry source lands (ferry_sailing). */
  departures: string
  /** Default 2h. */
  lead?: string
  /** Default 90m. */
  grace?: string
}

/** One-off window in local time ('2026-11-22 01:00' to '2026-11-22 05:00') or a recurring one ('Tu 02:00-03:00'). */
export type MaintenanceSpec = { from: string; to: string; reason?: string } | { hours: string; reason?: string }

interface Window {
  from: number
  to: number
  reason: string
}

interface CompiledTimetable {
  /** Static departures in minutes per day kind; null when departures come from the warehouse. */
  rules: WeekRules | null
  leadMs: number
  graceMs: number
}

/** Parse failures name the text and the part that failed. */
export class CalendarError extends Error {
  override readonly name = 'CalendarError'
}

// ---------------------------------------------------------------------------
// Grammar

const TIME = /^([01]\d|2[0-4]):([0-5]\d)$/

function minutesOf(text: string, what: string): number {
  const m = TIME.exec(text.trim())
  if (m === null) throw new CalendarError(`${what}: ${JSON.stringify(text)} is not a time HH:MM`)
  const v = Number(m[1]) * 60 + Number(m[2])
  if (v > DAY_MIN) throw new CalendarError(`${what}: ${JSON.stringify(text)} is past 24:00`)
  return v
}

function parseDays(text: string, source: string): number[] {
  const out = new Set<number>()
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map((s) => s.trim())
    const from = DAY_NAMES.indexOf(a as (typeof DAY_NAMES)[number])
    if (from < 0) throw new CalendarError(`${JSON.stringify(source)}: unknown day ${JSON.stringify(a)} (use Mo Tu We Th Fr Sa Su PH)`)
    if (b === undefined) {
      out.add(from)
      continue
    }
    const to = DAY_NAMES.indexOf(b as (typeof DAY_NAMES)[number])
    if (to < 0 || to === PH || from === PH) throw new CalendarError(`${JSON.stringify(source)}: bad day range ${JSON.stringify(part)}`)
    // Fr-Mo wraps around the week.
    for (let d = from; ; d = (d + 1) % 7) {
      out.add(d)
      if (d === to) break
    }
  }
  return [...out]
}

function splitRule(rule: string, source: string): { days: number[]; body: string } {
  const text = rule.trim()
  const m = /^((?:Mo|Tu|We|Th|Fr|Sa|Su|PH)(?:\s*[-,]\s*(?:Mo|Tu|We|Th|Fr|Sa|Su|PH))*)\s+(.+)$/.exec(text)
  if (m === null) {
    // A leading word that is not a day list: name it rather than fail on the times.
    const word = /^([A-Za-z][A-Za-z,-]*)\s+\S/.exec(text)
    if (word !== null) parseDays(word[1]!, source)
    return { days: [0, 1, 2, 3, 4, 5, 6], body: text }
  }
  return { days: parseDays(m[1]!.replace(/\s+/g, ''), source), body: m[2]!.trim() }
}

/** Parses opening hours into minute spans per day kind. Throws CalendarError. */
export function parseHours(text: string): WeekRules {
  const rules: WeekRules = [null, null, null, null, null, null, null, null]
  if (typeof text !== 'string' || text.trim() === '') throw new CalendarError('opening hours are empty')
  for (const rule of text.split(';')) {
    if (rule.trim() === '') continue
    const { days, body } = splitRule(rule, text)
    let spans: [number, number][]
    if (body === 'off' || body === 'closed') spans = []
    else if (body === '24/7') spans = [[0, DAY_MIN]]
    else {
      spans = body.split(',').map((span) => {
        const [a, b, extra] = span.split('-')
        if (a === undefined || b === undefined || extra !== undefined) throw new CalendarError(`${JSON.stringify(text)}: ${JSON.stringify(span.trim())} is not HH:MM-HH:MM`)
        const start = minutesOf(a, JSON.stringify(text))
        let end = minutesOf(b, JSON.stringify(text))
        if (start === DAY_MIN) throw new CalendarError(`${JSON.stringify(text)}: a span cannot start at 24:00`)
        if (end <= start) end += DAY_MIN
        return [start, end]
      })
    }
    for (const d of days) rules[d] = spans
  }
  return rules
}

/** Parses a departure timetable into minutes per day kind. Throws CalendarError. */
export function parseDepartures(text: string): WeekRules {
  const rules: WeekRules = [null, null, null, null, null, null, null, null]
  if (typeof text !== 'string' || text.trim() === '') throw new CalendarError('departures are empty')
  for (const rule of text.split(';')) {
    if (rule.trim() === '') continue
    const { days, body } = splitRule(rule, text)
    const times: [number, number][] =
      body === 'off' ? [] : body.split(',').map((t) => {
        const m = minutesOf(t, JSON.stringify(text))
        return [m, m]
      })
    for (const d of days) rules[d] = times
  }
  return rules
}

export function isOpeningHours(text: string): boolean {
  try {
    parseHours(text)
    return true
  } catch {
    return false
  }
}

export function isDepartures(text: string): boolean {
  if (text === 'sailings') return true
  try {
    parseDepartures(text)
    return true
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------
// Local days

/** Days since 1970-01-01 of the local calendar date at `t`. */
export function localDay(t: number, zone: string): number {
  return Math.floor((t + zoneOffset(t, zone)) / DAY)
}

/** UTC instant of a local wall time given as ms since the local epoch. */
function wallToUtc(wall: number, zone: string): number {
  const guess = wall - zoneOffset(wall, zone)
  return wall - zoneOffset(guess, zone)
}

function dateText(day: number): string {
  return new Date(day * DAY).toISOString().slice(0, 10)
}

/** 0 = Monday … 6 = Sunday (1970-01-01 was a Thursday). */
function weekday(day: number): number {
  return (((day + 3) % 7) + 7) % 7
}

function localTimeToUtc(text: string, zone: string, what: string): number {
  const t = text.trim()
  if (/[zZ]$|[+-]\d\d:\d\d$/.test(t) && !Number.isNaN(Date.parse(t))) return Date.parse(t)
  const withSeconds = /^\d{4}-\d\d-\d\d[ T]\d\d:\d\d$/.test(t) ? `${t}:00` : t
  const ms = parseLocal(withSeconds, zone)
  if (ms === null) throw new CalendarError(`${what}: ${JSON.stringify(text)} is not a local time YYYY-MM-DD HH:MM`)
  return ms
}

function isDate(text: string): boolean {
  return /^\d{4}-\d\d-\d\d$/.test(text) && new Date(`${text}T00:00:00Z`).toISOString().slice(0, 10) === text
}

// Interval arithmetic over sorted, disjoint [from, to) pairs.
type Intervals = number[] // flat: from0, to0, from1, to1, …

function normalise(pairs: [number, number][]): Intervals {
  pairs.sort((a, b) => a[0] - b[0])
  const out: Intervals = []
  for (const [a, b] of pairs) {
    if (b <= a) continue
    const n = out.length
    if (n > 0 && a <= out[n - 1]!) out[n - 1] = Math.max(out[n - 1]!, b)
    else out.push(a, b)
  }
  return out
}

function subtract(base: Intervals, cut: Intervals): Intervals {
  if (cut.length === 0) return base
  const out: Intervals = []
  for (let i = 0; i < base.length; i += 2) {
    let a = base[i]!
    const b = base[i + 1]!
    for (let j = 0; j < cut.length && a < b; j += 2) {
      const c = cut[j]!
      const d = cut[j + 1]!
      if (d <= a || c >= b) continue
      if (c > a) out.push(a, c)
      a = Math.max(a, d)
    }
    if (a < b) out.push(a, b)
  }
  return out
}

function intersect(x: Intervals, y: Intervals): Intervals {
  const out: Intervals = []
  let i = 0
  let j = 0
  while (i < x.length && j < y.length) {
    const a = Math.max(x[i]!, y[j]!)
    const b = Math.min(x[i + 1]!, y[j + 1]!)
    if (a < b) out.push(a, b)
    if (x[i + 1]! < y[j + 1]!) i += 2
    else j += 2
  }
  return out
}

// ---------------------------------------------------------------------------
// The compiled calendar

export interface CalendarOptions {
  /** Scheduled departures (UTC ms), for timetables read from the warehouse ('sailings'). */
  departures?: readonly number[]
}

/**
 * A compiled calendar. Answers: is data expected at t, how much expected
 * time lies between two instants, when a given amount of expected time will
 * have passed, and which maintenance window (if any) holds at t. Day results
 * are cached, so evaluating many entities that share a calendar is cheap.
 */
export class Calendar {
  readonly zone: string
  readonly spec: CalendarSpec
  readonly #hours: WeekRules | null
  readonly #quiet: WeekRules | null
  readonly #holidays: ReadonlySet<string>
  readonly #workdays: ReadonlySet<string>
  readonly #timetable: CompiledTimetable | null
  readonly #departures: readonly number[] | null
  readonly #windows: readonly Window[]
  readonly #weekly: readonly { rules: WeekRules; reason: string }[]
  readonly #days = new Map<number, Intervals>()
  #lastAt = Number.NaN
  #lastExpected = false

  constructor(spec: CalendarSpec, defaultZone: string, options: CalendarOptions = {}) {
    this.spec = spec
    this.zone = spec.timezone ?? defaultZone
    if (!isTimeZone(this.zone)) throw new CalendarError(`timezone ${JSON.stringify(this.zone)} is not an IANA time zone`)
    this.#hours = spec.openingHours === undefined || spec.openingHours.trim() === '24/7' ? null : parseHours(spec.openingHours)
    this.#quiet = spec.quietHours === undefined ? null : parseHours(spec.quietHours)
    for (const d of [...(spec.holidays ?? []), ...(spec.workdays ?? [])]) {
      if (!isDate(d)) throw new CalendarError(`${JSON.stringify(d)} is not a date YYYY-MM-DD`)
    }
    this.#holidays = new Set(spec.holidays ?? [])
    this.#workdays = new Set(spec.workdays ?? [])
    if (spec.timetable !== undefined) {
      const tt = spec.timetable
      this.#timetable = {
        rules: tt.departures === 'sailings' ? null : parseDepartures(tt.departures),
        leadMs: parseDuration(tt.lead ?? '2h'),
        graceMs: parseDuration(tt.grace ?? '90m'),
      }
    } else this.#timetable = null
    this.#departures = options.departures ? [...options.departures].sort((a, b) => a - b) : null
    const windows: Window[] = []
    const weekly: { rules: WeekRules; reason: string }[] = []
    for (const m of spec.maintenance ?? []) {
      const reason = m.reason ?? 'maintenance'
      if ('hours' in m) weekly.push({ rules: parseHours(m.hours), reason })
      else {
        const from = localTimeToUtc(m.from, this.zone, 'maintenance.from')
        const to = localTimeToUtc(m.to, this.zone, 'maintenance.to')
        if (to <= from) throw new CalendarError(`maintenance window ${m.from} – ${m.to} ends before it starts`)
        windows.push({ from, to, reason })
      }
    }
    this.#windows = windows
    this.#weekly = weekly
  }

  /** The same rules with another set of scheduled departures (timetables read from the warehouse). */
  withDepartures(departures: readonly number[]): Calendar {
    return new Calendar(this.spec, this.zone, { departures })
  }

  /** Whether the timetable comes from the ferry source's landed sailings. */
  get needsDepartures(): boolean {
    return this.#timetable !== null && this.#timetable.rules === null
  }

  /** True when the calendar is always expecting data (no rules at all). */
  get always(): boolean {
    return this.#hours === null && this.#quiet === null && this.#timetable === null && this.#windows.length === 0 && this.#weekly.length === 0
  }

  isExpected(t: number): boolean {
    if (this.always) return true
    if (t === this.#lastAt) return this.#lastExpected
    const iv = this.#day(localDay(t, this.zone))
    let inside = false
    for (let i = 0; i < iv.length; i += 2) {
      if (t >= iv[i]! && t < iv[i + 1]!) {
        inside = true
        break
      }
    }
    this.#lastAt = t
    this.#lastExpected = inside
    return inside
  }

  /** The maintenance window holding at t, if any. */
  maintenanceAt(t: number): { from: number; to: number; reason: string } | null {
    for (const w of this.#windows) if (t >= w.from && t < w.to) return w
    if (this.#weekly.length === 0) return null
    const day = localDay(t, this.zone)
    for (const w of this.#weekly) {
      for (const d of [day - 1, day]) {
        const iv = this.#spans(w.rules, d, false)
        for (let i = 0; i < iv.length; i += 2) if (t >= iv[i]! && t < iv[i + 1]!) return { from: iv[i]!, to: iv[i + 1]!, reason: w.reason }
      }
    }
    return null
  }

  /** Expected time (ms) within [from, to). */
  expectedBetween(from: number, to: number): number {
    if (to <= from) return 0
    if (this.always) return to - from
    const start = Math.max(from, to - HORIZON_DAYS * DAY)
    let total = 0
    const last = localDay(to, this.zone)
    for (let d = localDay(start, this.zone); d <= last; d++) {
      const iv = this.#day(d)
      for (let i = 0; i < iv.length; i += 2) {
        const a = Math.max(iv[i]!, start)
        const b = Math.min(iv[i + 1]!, to)
        if (b > a) total += b - a
      }
    }
    return total
  }

  /** The instant at which `amount` ms of expected time will have passed since `from`; null beyond the horizon. */
  advanceExpected(from: number, amount: number): number | null {
    if (this.always) return from + amount
    let left = amount
    const first = localDay(from, this.zone)
    for (let d = first; d < first + HORIZON_DAYS; d++) {
      const iv = this.#day(d)
      for (let i = 0; i < iv.length; i += 2) {
        const b = iv[i + 1]!
        if (b <= from) continue
        const a = Math.max(iv[i]!, from)
        if (b - a >= left) return a + left
        left -= b - a
      }
    }
    return null
  }

  /** The expected intervals of local day `day` as UTC ms [from, to) pairs. */
  #day(day: number): Intervals {
    let iv = this.#days.get(day)
    if (iv !== undefined) return iv
    const start = wallToUtc(day * DAY, this.zone)
    const end = wallToUtc((day + 1) * DAY, this.zone)
    iv = this.#hours === null ? [start, end] : this.#spans(this.#hours, day, true)
    if (this.#timetable !== null) iv = intersect(iv, this.#timetableWindows(day, start, end))
    if (this.#quiet !== null) iv = subtract(iv, this.#spans(this.#quiet, day, true))
    const cut: [number, number][] = []
    for (const w of this.#windows) if (w.to > start && w.from < end) cut.push([w.from, w.to])
    for (const w of this.#weekly) {
      const spans = this.#spans(w.rules, day, true)
      for (let i = 0; i < spans.length; i += 2) cut.push([spans[i]!, spans[i + 1]!])
    }
    if (cut.length > 0) iv = subtract(iv, normalise(cut))
    if (this.#days.size > 4096) this.#days.clear()
    this.#days.set(day, iv)
    return iv
  }

  #kind(day: number, rules: WeekRules): number {
    const date = dateText(day)
    if (this.#holidays.has(date) && rules[PH] !== null) return PH
    if (this.#workdays.has(date)) return 0
    return weekday(day)
  }

  /**
   * Spans of `rules` that fall on local day `day`: its own (clipped at the end
   * of the day when `clip`) and the part of the previous day's that ran past
   * midnight.
   */
  #spans(rules: WeekRules, day: number, clip: boolean): Intervals {
    const pairs: [number, number][] = []
    const base = day * DAY
    const own = rules[this.#kind(day, rules)] ?? []
    for (const [a, b] of own) pairs.push([a, clip ? Math.min(b, DAY_MIN) : b])
    if (clip) {
      const before = rules[this.#kind(day - 1, rules)] ?? []
      for (const [, b] of before) if (b > DAY_MIN) pairs.push([0, b - DAY_MIN])
    }
    const flat = normalise(pairs)
    for (let i = 0; i < flat.length; i++) flat[i] = wallToUtc(base + flat[i]! * MINUTE, this.zone)
    return flat
  }

  /** Windows [first departure - lead, last departure + grace] of the service days around `day`. */
  #timetableWindows(day: number, start: number, end: number): Intervals {
    const tt = this.#timetable!
    const pairs: [number, number][] = []
    for (const d of [day - 1, day, day + 1]) {
      let first: number | null = null
      let last: number | null = null
      if (tt.rules !== null) {
        const times = tt.rules[this.#kind(d, tt.rules)] ?? []
        for (const [m] of times) {
          const t = wallToUtc(d * DAY + m * MINUTE, this.zone)
          if (first === null || t < first) first = t
          if (last === null || t > last) last = t
        }
      } else {
        const from = wallToUtc(d * DAY, this.zone)
        const to = wallToUtc((d + 1) * DAY, this.zone)
        for (const t of this.#departures ?? []) {
          if (t < from) continue
          if (t >= to) break
          if (first === null) first = t
          last = t
        }
      }
      if (first !== null && last !== null) pairs.push([Math.max(first - tt.leadMs, start), Math.min(last + tt.graceMs, end)])
    }
    return normalise(pairs)
  }
}

/** A calendar that always expects data. */
export function alwaysCalendar(zone: string): Calendar {
  return new Calendar({}, zone)
}
