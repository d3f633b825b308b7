import { describe, expect, it } from 'vitest'
import { parseLocal } from '../../lib/local-time.ts'
import { Calendar } from '../calendar.ts'
import { bucketCounts, findDelays, HeatStripBuilder, longestGap, makeGrid, maskOf, runsOf, SLOT_MS, slotRunsToGrid, subtractRuns, unionRuns } from './completeness.ts'
import { monthsBetween, parseMonth, parseQuarter, previousMonth } from './period.ts'

const TZ = 'Asia/Shanghai'
const at = (local: string): number => parseLocal(`${local}:00`, TZ)!
const M = 60_000
const H = 3_600_000

describe('periods', () => {
  it('reads months and quarters in the bureau’s zone', () => {
    expect(parseMonth('2026-11', TZ)).toMatchObject({ id: '2026-11', from: Date.parse('2026-10-31T16:00:00Z'), to: Date.parse('2026-11-30T16:00:00Z') })
    expect(parseMonth('2026-12', TZ).to).toBe(Date.parse('2026-12-31T16:00:00Z'))
    expect(previousMonth(parseMonth('2026-01', TZ)).id).toBe('2025-12')
    expect(parseQuarter('2026Q4', TZ)).toMatchObject({ id: '2026Q4', from: Date.parse('2026-09-30T16:00:00Z'), to: Date.parse('2026-12-31T16:00:00Z') })
    expect(parseQuarter('2026-q1', TZ).id).toBe('2026Q1')
    expect(monthsBetween(at('2026-10-31 12:00'), at('2026-12-01 00:00'), TZ).map((p) => p.id)).toEqual(['2026-10', '2026-11'])
    for (const bad of ['2026-13', '2026-1', '26-11', '', '2026-11-01']) expect(() => parseMonth(bad, TZ)).toThrow(/CITYSYNC_ERR|period/)
    expect(() => parseQuarter('2026Q5', TZ)).toThrow(/YYYYQn/)
    expect(() => parseMonth('2026-11', 'Mars/Base')).toThrow(/time zone/)
  })
})

describe('buckets and runs', () => {
  const from = at('2026-11-01 00:00')
  const to = at('2026-11-03 00:00')

  it('grids a period, partial when it is under way', () => {
    const g = makeGrid(from, to, at('2026-11-02 00:07'), 5 * M, TZ)
    expect([g.count, g.until, g.days]).toEqual([289, at('2026-11-02 00:05'), 2])
    expect([g.dayOf[287], g.dayOf[288], g.cellOf[12], g.cellOf[288]]).toEqual([0, 1, 1, 24])
    expect(() => makeGrid(from, to, to, 7 * M, TZ)).toThrow(/multiple of 5 minutes/)
  })

  it('maps 5-minute slots onto coarser buckets and does run arithmetic', () => {
    const g = makeGrid(from, to, to, H, TZ)
    const s0 = from / SLOT_MS
    // Slots 0-2 (00:00-00:15) and 24-25 (02:00-02:10) and 36 (03:00): hours 0, 2, 3.
    expect(slotRunsToGrid([s0, s0 + 24, s0 + 36], [s0 + 2, s0 + 25, s0 + 36], g)).toEqual([0, 0, 2, 3])
    expect(runsOf([1, 2, 3, 7, 9, 10])).toEqual([1, 3, 7, 7, 9, 10])
    expect(subtractRuns([0, 10], [2, 3, 8, 20])).toEqual([0, 1, 4, 7])
    expect(unionRuns([0, 2, 10, 12], [3, 5, 20, 20])).toEqual([0, 5, 10, 12, 20, 20])
  })

  it('counts expected, good, bad and missing buckets against the calendar, maintenance and quiet apart', () => {
    const g = makeGrid(from, to, to, H, TZ)
    const cal = new Calendar({ openingHours: 'Mo-Su 07:00-22:00', maintenance: [{ from: '2026-11-02 08:00', to: '2026-11-02 10:00' }] }, TZ)
    const mask = maskOf(cal, g)
    expect([mask.expected, mask.maintenance, mask.quiet]).toEqual([28, 2, 18])
    // Good 07:00-12:00 on day 1 (5 expected) and 23:00 (quiet); bad 12:00-13:00 (1) and 09:00 (already good).
    const c = bucketCounts(mask, [7, 11, 23, 23], [9, 9, 12, 12])
    expect(c).toEqual({ expected: 28, good: 5, bad: 1, missing: 22, maintenance: 2, quiet: 18, goodOutside: 1, rate: 5 / 28 })
    // A source added at 09:00 on day 1: nothing before is expected of it.
    expect(bucketCounts(mask, [7, 11, 23, 23], [9, 9, 12, 12], 9)).toEqual({ expected: 28 - 2, good: 3, bad: 1, missing: 22, maintenance: 2, quiet: 48 - 9 - 26 - 2, goodOutside: 1, rate: 3 / 26 })
    const heat = new HeatStripBuilder(g)
    heat.add(mask, [7, 11])
    heat.add(mask, [7, 7])
    const strip = heat.build()
    expect([strip.expected[7], strip.good[7], strip.good[8], strip.expected[3], strip.maintenance[24 + 8]]).toEqual([2, 2, 1, 0, 2])
  })
})

describe('delays and gaps on the event clock', () => {
  const always = new Calendar({}, TZ)
  const hours = new Calendar({ openingHours: 'Mo-Su 07:00-22:00' }, TZ)
  const from = at('2026-11-01 00:00')
  const until = at('2026-12-01 00:00')

  it('starts a delay once maxDelay of expected time has passed and ends it when data arrives', () => {
    const d = findDelays([{ basis: at('2026-11-05 08:00'), start: at('2026-11-05 08:00'), end: at('2026-11-05 14:00') }], always, 2 * H, from, until)
    expect(d).toEqual([{ lastDataAt: at('2026-11-05 08:00'), lateFrom: at('2026-11-05 10:00'), dataBackAt: at('2026-11-05 14:00'), lateMs: 4 * H }])
    // Closed at 22:00: silence from 21:00 is late only at 08:00 the next morning.
    const night = findDelays([{ basis: at('2026-11-05 21:00'), start: at('2026-11-05 21:00'), end: at('2026-11-06 08:30') }], hours, 2 * H, from, until)
    expect(night).toEqual([{ lastDataAt: at('2026-11-05 21:00'), lateFrom: at('2026-11-06 08:00'), dataBackAt: at('2026-11-06 08:30'), lateMs: 30 * M }])
    expect(findDelays([{ basis: at('2026-11-05 21:00'), start: at('2026-11-05 21:00'), end: at('2026-11-06 07:59') }], hours, 2 * H, from, until)).toEqual([])
  })

  it('merges arrivals of old data into one delay and clips to the period', () => {
    const d = findDelays(
      [
        { basis: at('2026-11-05 08:00'), start: at('2026-11-05 08:00'), end: at('2026-11-05 11:00') },
        // at 11:00 data of 08:30 arrives: still late (2h30m), until fresh data at 12:00
        { basis: at('2026-11-05 08:30'), start: at('2026-11-05 11:00'), end: at('2026-11-05 12:00') },
      ],
      always,
      2 * H,
      from,
      until,
    )
    expect(d).toEqual([{ lastDataAt: at('2026-11-05 08:00'), lateFrom: at('2026-11-05 10:00'), dataBackAt: at('2026-11-05 12:00'), lateMs: 2 * H }])
    const open = findDelays([{ basis: at('2026-10-31 23:00'), start: at('2026-10-31 23:00'), end: null }], always, 2 * H, from, at('2026-11-01 03:00'))
    expect(open).toEqual([{ lastDataAt: at('2026-10-31 23:00'), lateFrom: at('2026-11-01 01:00'), dataBackAt: null, lateMs: 2 * H }])
  })

  it('measures the longest gap in expected time within the period', () => {
    expect(longestGap([{ from: at('2026-11-05 21:00'), to: at('2026-11-06 08:00') }, { from: at('2026-11-07 10:00'), to: at('2026-11-07 10:45') }], hours, from, until)).toBe(2 * H)
    expect(longestGap([{ from: at('2026-10-31 20:00'), to: at('2026-11-01 01:00') }], always, from, until)).toBe(H)
    expect(longestGap([{ from: at('2026-11-30 21:00'), to: null }], always, from, until)).toBe(3 * H)
  })
})
