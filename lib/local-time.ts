// Naive local timestamps <-> epoch ms UTC in an IANA time zone.
//
// Accepted input: `YYYY-MM-DD HH:mm:ss`, `YYYY-MM-DDTHH:mm:ss`, `YYYY/MM/DD HH:mm:ss`,
// each with optional `.S`, `.SS` or `.SSS`. Anything else, or a calendar date or
// time of day that does not exist (2026-02-30, 25:00:00), is rejected.
//
// Zone offsets come from Intl.DateTimeFormat, which is slow (~2 µs a call), so
// offsets are cached per zone per UTC hour: a conversion is then a regex, a
// Date.UTC and two or three map look-ups.

const HOUR = 3_600_000
const DAY = 86_400_000

const PATTERN = /^(\d{4})([-/])(\d{2})\2(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?$/

// A bucket whose hour contains an offset change is marked with NaN and never
// answered from the cache.
const TRANSITION = Number.NaN
const MAX_BUCKETS_PER_ZONE = 200_000

interface ZoneCache {
  readonly format: Intl.DateTimeFormat
  readonly buckets: Map<number, number>
}

const zones = new Map<string, ZoneCache>()

function zoneCache(zone: string): ZoneCache {
  let cache = zones.get(zone)
  if (cache === undefined) {
    let format: Intl.DateTimeFormat
    try {
      format = new Intl.DateTimeFormat('en-US', {
        timeZone: zone,
        hourCycle: 'h23',
        year: 'numeric',
        month: '2-digit',
        day: '2-digit',
        hour: '2-digit',
        minute: '2-digit',
        second: '2-digit',
      })
    } catch (err) {
      throw new RangeError(`unknown time zone ${JSON.stringify(zone)}`, { cause: err })
    }
    cache = { format, buckets: new Map() }
    zones.set(zone, cache)
  }
  return cache
}

/** Throws a RangeError naming the zone when it is not a valid IANA zone. */
export function assertTimeZone(zone: string): void {
  zoneCache(zone)
}

export function isTimeZone(zone: string): boolean {
  try {
    zoneCache(zone)
    return true
  } catch {
    return false
  }
}

function exactOffset(format: Intl.DateTimeFormat, ms: number): number {
  const seconds = Math.floor(ms / 1000) * 1000
  let y = 0
  let mo = 0
  let d = 0
  let h = 0
  let mi = 0
  let s = 0
  for (const part of format.formatToParts(seconds)) {
    switch (part.type) {
      case 'year':
        y = Number(part.value)
        break
      case 'month':
        mo = Number(part.value)
        break
      case 'day':
        d = Number(part.value)
        break
      case 'hour':
        h = Number(part.value)
        break
      case 'minute':
        mi = Number(part.value)
        break
      case 'second':
        s = Number(part.value)
        break
    }
  }
  return utc(y, mo, d, h, mi, s, 0) - seconds
}

// Date.UTC maps years 0..99 to 1900..1999; setUTCFullYear does not.
function utc(y: number, mo: number, d: number, h: number, mi: number, s: number, ms: number): number {
  const t = Date.UTC(y, mo - 1, d, h, mi, s, ms)
  if (y >= 100) return t
  const date = new Date(t)
  date.setUTCFullYear(y)
  return date.getTime()
}

/** Offset of `zone` from UTC at instant `ms`, in milliseconds (local = utc + offset). */
export function zoneOffset(ms: number, zone: string): number {
  const cache = zoneCache(zone)
  const bucket = Math.floor(ms / HOUR)
  const cached = cache.buckets.get(bucket)
  if (cached !== undefined && !Number.isNaN(cached)) return cached
  if (cached !== undefined) return exactOffset(cache.format, ms)
  const start = exactOffset(cache.format, bucket * HOUR)
  const end = exactOffset(cache.format, bucket * HOUR + HOUR - 1000)
  if (cache.buckets.size >= MAX_BUCKETS_PER_ZONE) cache.buckets.clear()
  if (start === end) {
    cache.buckets.set(bucket, start)
    return start
  }
  cache.buckets.set(bucket, TRANSITION)
  return exactOffset(cache.format, ms)
}

function daysInMonth(y: number, mo: number): number {
  if (mo === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28
  return mo === 4 || mo === 6 || mo === 9 || mo === 11 ? 30 : 31
}

/**
 * Reads a naive local timestamp in `zone` and returns epoch ms UTC, or null
 * when the text is not a valid timestamp. Throws a RangeError for an unknown
 * zone (a configuration error, not a data error).
 *
 * Wall times that occur twice (DST fall-back) resolve to the earlier instant;
 * wall times skipped by a DST gap move forward by the gap (02:30 in a 02:00 ->
 * 03:00 gap reads as 03:30), like Temporal's "compatible" disambiguation and
 * java.time: a vendor clock that writes a skipped time is off by the gap, and
 * the record is kept rather than lost.
 */
export function parseLocal(text: string, zone: string): number | null {
  if (typeof text !== 'string' || text.length < 19 || text.length > 23) return null
  const m = PATTERN.exec(text)
  if (m === null) return null
  const y = Number(m[1])
  const mo = Number(m[3])
  const d = Number(m[4])
  const h = Number(m[5])
  const mi = Number(m[6])
  const s = Number(m[7])
  const frac = m[8]
  const ms = frac === undefined ? 0 : Number(frac.padEnd(3, '0'))
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo) || h > 23 || mi > 59 || s > 59) return null
  return fromWallClock(utc(y, mo, d, h, mi, s, ms), zone)
}

/** Like parseLocal, but throws a RangeError quoting the text when it is invalid. */
export function parseLocalOrThrow(text: string, zone: string): number {
  const ms = parseLocal(text, zone)
  if (ms === null) throw new RangeError(`invalid local timestamp ${JSON.stringify(text)}`)
  return ms
}

// `wall` is the local wall-clock time written as if it were UTC.
function fromWallClock(wall: number, zone: string): number {
  const before = zoneOffset(wall - DAY, zone)
  const after = zoneOffset(wall + DAY, zone)
  if (before === after) {
    const t = wall - before
    if (zoneOffset(t, zone) === before) return t
  }
  const early = wall - before
  const late = wall - after
  const earlyValid = zoneOffset(early, zone) === before
  const lateValid = zoneOffset(late, zone) === after
  if (earlyValid && lateValid) return Math.min(early, late)
  if (earlyValid) return early
  if (lateValid) return late
  // In a gap: read with the offset in force before it.
  return early
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n)
}

/**
 * Formats epoch ms as a naive local `YYYY-MM-DD HH:mm:ss` (with `.SSS` when
 * `millis` is set) in `zone`.
 */
export function formatLocal(ms: number, zone: string, millis = false): string {
  if (!Number.isFinite(ms)) throw new RangeError(`cannot format ${String(ms)} as a local time`)
  const d = new Date(ms + zoneOffset(ms, zone))
  const y = d.getUTCFullYear()
  if (y < 0 || y > 9999) throw new RangeError(`cannot format year ${y} as a local time`)
  let text = `${String(y).padStart(4, '0')}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`
  if (millis) text += `.${String(d.getUTCMilliseconds()).padStart(3, '0')}`
  return text
}
