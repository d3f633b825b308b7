// Completeness and interruptions, the pure part: given which buckets of event
// time received data (entity_activity in ClickHouse) and when data arrived
// around the gaps, count expected, good, bad and missing buckets against the
// calendar, and find the delays and the longest gap.
//
// Definitions (the clocks of quality/evaluate.ts):
// - A bucket (5 minutes by default) is expected when the calendar expects
//   data for at least half of it; otherwise it is maintenance when a
//   maintenance window holds at its middle, else quiet. Maintenance and quiet
//   buckets are counted apart and never lower completeness.
// - good: an expected bucket with at least one landed row (live or
//   backfilled) whose event time falls in it; bad: an expected bucket that
//   received rejected records (dead letters) and nothing good; missing: the
//   rest. Completeness = good / expected.
// - Delay: the event clock's delay (expected time since the newest live
//   event that had landed) passed maxDelay. It starts once maxDelay of
//   expected time has passed since that event (Calendar.advanceExpected, as
//   LATE does) and ends when live data arrives that brings the delay back
//   under the limit. Its duration is that wall-clock time, clipped to the
//   report's period.
// - Gap: expected time between two consecutive live events, counted when at
//   least one whole bucket between them had no live data (shorter pauses
//   between reports are not gaps); the gaps before the first and after the
//   last live event of the period run from and to the period's edges.

import { zoneOffset } from '../../lib/local-time.ts'
import { type Calendar } from '../calendar.ts'

/** The bucket of entity_activity: event times [b * SLOT_MS, (b + 1) * SLOT_MS). */
export const SLOT_MS = 300_000
const HOUR = 3_600_000
const DAY = 86_400_000

export interface Grid {
  from: number
  /** End of the last whole bucket: the period's end, or the last bucket already over when the period is under way. */
  until: number
  bucketMs: number
  count: number
  zone: string
  /** Local days of the whole period. */
  days: number
  /** Day index (0 = the period's first local day) of each bucket's start. */
  dayOf: Int32Array
  /** day index * 24 + local hour of each bucket's start. */
  cellOf: Int32Array
}

export function localDayNumber(t: number, zone: string): number {
  return Math.floor((t + zoneOffset(t, zone)) / DAY)
}

export function localHour(t: number, zone: string): number {
  const local = t + zoneOffset(t, zone)
  return Math.floor((((local % DAY) + DAY) % DAY) / HOUR)
}

export function makeGrid(from: number, to: number, now: number, bucketMs: number, zone: string): Grid {
  if (!Number.isInteger(bucketMs) || bucketMs < SLOT_MS || bucketMs % SLOT_MS !== 0) throw new RangeError(`bucket must be a whole multiple of 5 minutes, got ${bucketMs} ms`)
  const count = Math.max(0, Math.floor((Math.min(to, now) - from) / bucketMs))
  const first = localDayNumber(from, zone)
  const days = Math.max(1, localDayNumber(to - 1, zone) - first + 1)
  const dayOf = new Int32Array(count)
  const cellOf = new Int32Array(count)
  for (let i = 0; i < count; i++) {
    const t = from + i * bucketMs
    const d = localDayNumber(t, zone) - first
    dayOf[i] = d
    cellOf[i] = d * 24 + localHour(t, zone)
  }
  return { from, until: from + count * bucketMs, bucketMs, count, zone, days, dayOf, cellOf }
}

// ---------------------------------------------------------------------------
// Runs: sorted, disjoint, inclusive [start, end] index pairs, flat.

export type Runs = number[]

/** Runs of 5-minute slots (absolute indices) as runs of grid buckets, merged and clipped to the grid. */
export function slotRunsToGrid(starts: readonly number[], ends: readonly number[], grid: Grid): Runs {
  const out: Runs = []
  const perBucket = grid.bucketMs / SLOT_MS
  const base = grid.from / SLOT_MS
  for (let k = 0; k < starts.length; k++) {
    let s = Math.floor((starts[k]! - base) / perBucket)
    let e = Math.floor((ends[k]! - base) / perBucket)
    if (e < 0 || s >= grid.count) continue
    s = Math.max(0, s)
    e = Math.min(grid.count - 1, e)
    const n = out.length
    if (n > 0 && s <= out[n - 1]! + 1) out[n - 1] = Math.max(out[n - 1]!, e)
    else out.push(s, e)
  }
  return out
}

/** Runs of sorted distinct indices. */
export function runsOf(indices: readonly number[]): Runs {
  const out: Runs = []
  for (const i of indices) {
    const n = out.length
    if (n > 0 && i === out[n - 1]! + 1) out[n - 1] = i
    else out.push(i, i)
  }
  return out
}

export function unionRuns(a: Runs, b: Runs): Runs {
  const pairs: [number, number][] = []
  for (let i = 0; i < a.length; i += 2) pairs.push([a[i]!, a[i + 1]!])
  for (let i = 0; i < b.length; i += 2) pairs.push([b[i]!, b[i + 1]!])
  pairs.sort((x, y) => x[0] - y[0])
  const out: Runs = []
  for (const [s, e] of pairs) {
    const n = out.length
    if (n > 0 && s <= out[n - 1]! + 1) out[n - 1] = Math.max(out[n - 1]!, e)
    else out.push(s, e)
  }
  return out
}

/** Indices in `a` and not in `b`. */
export function subtractRuns(a: Runs, b: Runs): Runs {
  const out: Runs = []
  for (let i = 0; i < a.length; i += 2) {
    let s = a[i]!
    const e = a[i + 1]!
    for (let j = 0; j < b.length && s <= e; j += 2) {
      const bs = b[j]!
      const be = b[j + 1]!
      if (be < s || bs > e) continue
      if (bs > s) out.push(s, bs - 1)
      s = Math.max(s, be + 1)
    }
    if (s <= e) out.push(s, e)
  }
  return out
}

export function runLength(r: Runs): number {
  let n = 0
  for (let i = 0; i < r.length; i += 2) n += r[i + 1]! - r[i]! + 1
  return n
}

// ---------------------------------------------------------------------------
// Calendar masks

export const QUIET = 0
export const EXPECTED = 1
export const MAINTENANCE = 2

export interface Mask {
  /** QUIET, EXPECTED or MAINTENANCE per bucket. */
  state: Uint8Array
  /** expectedPrefix[i] / maintenancePrefix[i] = expected / maintenance buckets before bucket i. */
  expectedPrefix: Int32Array
  maintenancePrefix: Int32Array
  expected: number
  maintenance: number
  quiet: number
}

export function maskOf(calendar: Calendar, grid: Grid): Mask {
  const state = new Uint8Array(grid.count)
  const expectedPrefix = new Int32Array(grid.count + 1)
  const maintenancePrefix = new Int32Array(grid.count + 1)
  let expected = 0
  let maintenance = 0
  const B = grid.bucketMs
  for (let i = 0; i < grid.count; i++) {
    const a = grid.from + i * B
    let s: number
    if (calendar.always) s = EXPECTED
    else if (calendar.expectedBetween(a, a + B) * 2 >= B) s = EXPECTED
    else if (calendar.maintenanceAt(a + B / 2) !== null) s = MAINTENANCE
    else s = QUIET
    state[i] = s
    if (s === EXPECTED) expected++
    else if (s === MAINTENANCE) maintenance++
    expectedPrefix[i + 1] = expected
    maintenancePrefix[i + 1] = maintenance
  }
  return { state, expectedPrefix, maintenancePrefix, expected, maintenance, quiet: grid.count - expected - maintenance }
}

/** Masks are shared by every entity on the same calendar. */
export class MaskCache {
  readonly #grid: Grid
  readonly #masks = new Map<Calendar, Mask>()

  constructor(grid: Grid) {
    this.#grid = grid
  }

  get(calendar: Calendar): Mask {
    let m = this.#masks.get(calendar)
    if (m === undefined) this.#masks.set(calendar, (m = maskOf(calendar, this.#grid)))
    return m
  }
}

export function expectedIn(mask: Mask, runs: Runs): number {
  let n = 0
  for (let i = 0; i < runs.length; i += 2) n += mask.expectedPrefix[runs[i + 1]! + 1]! - mask.expectedPrefix[runs[i]!]!
  return n
}

export interface BucketCounts {
  /** Buckets in which data was expected. */
  expected: number
  good: number
  bad: number
  missing: number
  maintenance: number
  quiet: number
  /** Buckets with data outside expected time (quiet or maintenance). */
  goodOutside: number
  /** good / expected; null when nothing was expected. */
  rate: number | null
}

/** Runs from bucket `start` on. */
export function runsFrom(runs: Runs, start: number): Runs {
  if (start <= 0) return runs
  const out: Runs = []
  for (let i = 0; i < runs.length; i += 2) {
    if (runs[i + 1]! < start) continue
    out.push(Math.max(runs[i]!, start), runs[i + 1]!)
  }
  return out
}

/**
 * The buckets of one entity. Buckets before `start` (its source did not
 * exist yet) are none of expected, maintenance or quiet.
 */
export function bucketCounts(mask: Mask, good: Runs, bad: Runs, start = 0): BucketCounts {
  const n = mask.state.length
  const s = Math.max(0, Math.min(start, n))
  const g0 = runsFrom(good, s)
  const expected = mask.expected - mask.expectedPrefix[s]!
  const maintenance = mask.maintenance - mask.maintenancePrefix[s]!
  const g = expectedIn(mask, g0)
  const b = expectedIn(mask, subtractRuns(runsFrom(bad, s), g0))
  return {
    expected,
    good: g,
    bad: b,
    missing: expected - g - b,
    maintenance,
    quiet: n - s - expected - maintenance,
    goodOutside: runLength(g0) - g,
    rate: expected === 0 ? null : g / expected,
  }
}

export function addCounts(into: BucketCounts, c: BucketCounts): void {
  into.expected += c.expected
  into.good += c.good
  into.bad += c.bad
  into.missing += c.missing
  into.maintenance += c.maintenance
  into.quiet += c.quiet
  into.goodOutside += c.goodOutside
  into.rate = into.expected === 0 ? null : into.good / into.expected
}

export function emptyCounts(): BucketCounts {
  return { expected: 0, good: 0, bad: 0, missing: 0, maintenance: 0, quiet: 0, goodOutside: 0, rate: null }
}

/** Local days (indices) with at least one bucket of data. */
export function activeDays(grid: Grid, runs: Runs): number {
  const seen = new Uint8Array(grid.days)
  let n = 0
  for (let i = 0; i < runs.length; i += 2) {
    const a = grid.dayOf[runs[i]!]!
    const b = grid.dayOf[runs[i + 1]!]!
    for (let d = a; d <= b; d++) {
      if (seen[d] === 0) {
        seen[d] = 1
        n++
      }
    }
  }
  return n
}

// ---------------------------------------------------------------------------
// Heat strip: day × hour completeness of a source, summed over its entities.

export interface HeatStrip {
  days: number
  /** Per cell (day * 24 + hour): expected buckets, good ones, maintenance ones. */
  expected: Int32Array
  good: Int32Array
  maintenance: Int32Array
}

export class HeatStripBuilder {
  readonly #grid: Grid
  /** Per mask and first bucket (entities of sources added during the period start later). */
  readonly #groups = new Map<Mask, Map<number, { size: number; diff: Int32Array }>>()

  constructor(grid: Grid) {
    this.#grid = grid
  }

  add(mask: Mask, good: Runs, start = 0): void {
    let byStart = this.#groups.get(mask)
    if (byStart === undefined) this.#groups.set(mask, (byStart = new Map<number, { size: number; diff: Int32Array }>()))
    let g = byStart.get(start)
    if (g === undefined) byStart.set(start, (g = { size: 0, diff: new Int32Array(this.#grid.count + 1) }))
    g.size++
    good = runsFrom(good, start)
    for (let i = 0; i < good.length; i += 2) {
      g.diff[good[i]!]!++
      g.diff[good[i + 1]! + 1]!--
    }
  }

  build(): HeatStrip {
    const grid = this.#grid
    const cells = grid.days * 24
    const strip: HeatStrip = { days: grid.days, expected: new Int32Array(cells), good: new Int32Array(cells), maintenance: new Int32Array(cells) }
    for (const [mask, byStart] of this.#groups) {
      for (const [start, g] of byStart) this.#fill(strip, mask, start, g)
    }
    return strip
  }

  #fill(strip: HeatStrip, mask: Mask, start: number, g: { size: number; diff: Int32Array }): void {
    const grid = this.#grid
    let cover = 0
    for (let i = 0; i < start && i < grid.count; i++) cover += g.diff[i]!
    for (let i = Math.max(0, start); i < grid.count; i++) {
      cover += g.diff[i]!
      const c = grid.cellOf[i]!
      const s = mask.state[i]
      if (s === EXPECTED) {
        strip.expected[c]! += g.size
        strip.good[c]! += cover
      } else if (s === MAINTENANCE) strip.maintenance[c]! += g.size
    }
  }
}

// ---------------------------------------------------------------------------
// Delays and gaps

/**
 * A stretch of the event clock: from `start` until `end` (the next arrival of
 * live data; null: none before the period's end) the newest landed live event
 * was `basis`.
 */
export interface ClockInterval {
  basis: number
  start: number
  end: number | null
}

export interface Delay {
  /** The newest live event when the delay began. */
  lastDataAt: number
  /** When maxDelay of expected time had passed without new live data. */
  lateFrom: number
  /** When live data that ended the delay arrived; null when it had not by the period's end. */
  dataBackAt: number | null
  /** Wall-clock time late within the period. */
  lateMs: number
}

/** Delays over `maxDelayMs` of expected time, merged where one interval's lateness runs into the next. */
export function findDelays(intervals: readonly ClockInterval[], calendar: Calendar, maxDelayMs: number, from: number, until: number): Delay[] {
  const sorted = [...intervals].sort((a, b) => a.start - b.start)
  const raw: { lastDataAt: number; lateFrom: number; lateTo: number; open: boolean }[] = []
  for (const iv of sorted) {
    const onset = calendar.advanceExpected(iv.basis, maxDelayMs) ?? Number.POSITIVE_INFINITY
    const lateFrom = Math.max(onset, iv.start)
    const lateTo = iv.end ?? until
    if (!(lateFrom < lateTo)) continue
    const last = raw[raw.length - 1]
    if (last !== undefined && last.lateTo === lateFrom) {
      last.lateTo = lateTo
      last.open = iv.end === null
    } else raw.push({ lastDataAt: iv.basis, lateFrom, lateTo, open: iv.end === null })
  }
  const out: Delay[] = []
  for (const d of raw) {
    const lateMs = Math.min(d.lateTo, until) - Math.max(d.lateFrom, from)
    if (lateMs <= 0) continue
    out.push({ lastDataAt: d.lastDataAt, lateFrom: d.lateFrom, dataBackAt: d.open ? null : d.lateTo, lateMs })
  }
  return out
}

export interface Gap {
  /** Newest live event before the gap (or the period's start when none is known). */
  from: number
  /** First live event after it; null when none came before the period's end. */
  to: number | null
}

/** Expected time of the longest gap, clipped to [from, until]; 0 when there is none. */
export function longestGap(gaps: readonly Gap[], calendar: Calendar, from: number, until: number): number {
  let best = 0
  for (const g of gaps) {
    const a = Math.max(g.from, from)
    const b = Math.min(g.to ?? until, until)
    if (b > a) best = Math.max(best, calendar.expectedBetween(a, b))
  }
  return best
}
