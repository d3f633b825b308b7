import { describe, expect, it } from 'vitest'
import { parseLocal } from '../lib/local-time.ts'
import { Calendar, isOpeningHours, parseDepartures, parseHours } from './calendar.ts'

const TZ = 'Asia/Shanghai'
const at = (local: string): number => parseLocal(local.length === 16 ? `${local}:00` : local, TZ)!
const H = 3_600_000
const M = 60_000

describe('opening hours grammar', () => {
  it('reads rules per day kind, later rules replacing earlier ones', () => {
    const r = parseHours('Mo-Fr 07:00-22:00; Sa,Su 09:00-18:00; PH off')
    expect(r[0]).toEqual([[420, 1320]])
    expect(r[4]).toEqual([[420, 1320]])
    expect(r[5]).toEqual([[540, 1080]])
    expect(r[7]).toEqual([])
    expect(parseHours('Mo-Su 07:00-22:00; We off')[2]).toEqual([])
  })

  it('runs spans past midnight and takes 24/7 and 24:00', () => {
    expect(parseHours('Fr 18:00-02:00')[4]).toEqual([[1080, 1560]])
    expect(parseHours('Mo-Su 00:00-24:00')[6]).toEqual([[0, 1440]])
    expect(parseHours('24/7')[3]).toEqual([[0, 1440]])
    expect(parseHours('Sa-Mo 10:00-12:00')[0]).toEqual([[600, 720]])
    expect(parseHours('Sa-Mo 10:00-12:00')[2]).toBeNull()
  })

  it('refuses what it cannot read, naming the part', () => {
    expect(() => parseHours('Mo-Fr 7-22')).toThrow('"7" is not a time HH:MM')
    expect(() => parseHours('Xx 07:00-22:00')).toThrow('unknown day "Xx"')
    expect(() => parseHours('Mo 24:00-02:00')).toThrow('cannot start at 24:00')
    expect(() => parseHours('Mo 25:00-26:00')).toThrow('is not a time HH:MM')
    expect(isOpeningHours('Mo-Su 07:00-22:00')).toBe(true)
    expect(isOpeningHours('')).toBe(false)
    expect(parseDepartures('Mo-Su 07:30,21:30')[6]).toEqual([
      [450, 450],
      [1290, 1290],
    ])
  })
})

describe('Calendar', () => {
  it('expects data only while a car park is open (07:00-22:00)', () => {
    const cal = new Calendar({ openingHours: 'Mo-Su 07:00-22:00' }, TZ)
    expect(cal.isExpected(at('2026-11-21 08:00'))).toBe(true)
    expect(cal.isExpected(at('2026-11-21 21:59'))).toBe(true)
    expect(cal.isExpected(at('2026-11-21 22:00'))).toBe(false)
    expect(cal.isExpected(at('2026-11-22 03:00'))).toBe(false)
    expect(cal.isExpected(at('2026-11-22 07:00'))).toBe(true)
    // 21:30 to 09:00 next day: 30 minutes before closing, 2 hours after opening.
    expect(cal.expectedBetween(at('2026-11-21 21:30'), at('2026-11-22 09:00'))).toBe(2.5 * H)
    expect(cal.advanceExpected(at('2026-11-21 21:30'), 2 * H)).toBe(at('2026-11-22 08:30'))
    expect(cal.advanceExpected(at('2026-11-21 23:00'), 2 * H)).toBe(at('2026-11-22 09:00'))
  })

  it('uses the PH rules on holidays and the Monday rules on make-up workdays', () => {
    const cal = new Calendar({ openingHours: 'Mo-Fr 08:00-18:00; PH 10:00-16:00', holidays: ['2026-10-01'], workdays: ['2026-10-11'] }, TZ)
    // 2026-10-01 is a Thursday, 2026-10-11 a Sunday.
    expect(cal.expectedBetween(at('2026-10-01 00:00'), at('2026-10-02 00:00'))).toBe(6 * H)
    expect(cal.expectedBetween(at('2026-10-11 00:00'), at('2026-10-12 00:00'))).toBe(10 * H)
    expect(cal.expectedBetween(at('2026-10-10 00:00'), at('2026-10-11 00:00'))).toBe(0)
  })

  it('subtracts quiet hours and maintenance windows', () => {
    const cal = new Calendar(
      {
        quietHours: 'Mo-Su 01:00-05:00',
        maintenance: [
          { from: '2026-11-21 12:00', to: '2026-11-21 13:30', reason: 'vendor upgrade' },
          { hours: 'Tu 02:00-06:00', reason: 'nightly backup' },
        ],
      },
      TZ,
    )
    // Saturday 21st: 24h - 4h quiet - 1.5h maintenance.
    expect(cal.expectedBetween(at('2026-11-21 00:00'), at('2026-11-22 00:00'))).toBe(18.5 * H)
    expect(cal.maintenanceAt(at('2026-11-21 12:30'))).toMatchObject({ reason: 'vendor upgrade' })
    expect(cal.maintenanceAt(at('2026-11-24 05:59'))).toMatchObject({ reason: 'nightly backup' })
    expect(cal.maintenanceAt(at('2026-11-24 06:00'))).toBeNull()
    // Tuesday 24th: quiet 01-05 and backup 02-06 overlap: 5 hours out.
    expect(cal.expectedBetween(at('2026-11-24 00:00'), at('2026-11-25 00:00'))).toBe(19 * H)
  })

  it('expects a ferry terminal from an hour before its first sailing to 30 minutes after its last', () => {
    const cal = new Calendar({ timetable: { departures: 'Mo-Su 07:30,12:00,21:30', lead: '1h', grace: '30m' } }, TZ)
    expect(cal.isExpected(at('2026-11-21 06:29'))).toBe(false)
    expect(cal.isExpected(at('2026-11-21 06:30'))).toBe(true)
    expect(cal.isExpected(at('2026-11-21 21:59'))).toBe(true)
    expect(cal.isExpected(at('2026-11-21 22:00'))).toBe(false)
    expect(cal.expectedBetween(at('2026-11-21 00:00'), at('2026-11-22 00:00'))).toBe(15.5 * H)
  })

  it('takes departures from the landed timetable when told to', () => {
    const base = new Calendar({ timetable: { departures: 'sailings', lead: '30m', grace: '90m' } }, TZ)
    expect(base.needsDepartures).toBe(true)
    const cal = base.withDepartures([at('2026-11-21 09:00'), at('2026-11-21 19:30'), at('2026-11-21 14:00')])
    expect(cal.isExpected(at('2026-11-21 08:29'))).toBe(false)
    expect(cal.isExpected(at('2026-11-21 20:59'))).toBe(true)
    expect(cal.isExpected(at('2026-11-21 21:00'))).toBe(false)
    // No sailing on the 22nd: quiet all day.
    expect(cal.expectedBetween(at('2026-11-22 00:00'), at('2026-11-23 00:00'))).toBe(0)
  })

  it('counts wall-clock hours across a daylight-saving change', () => {
    const cal = new Calendar({ openingHours: 'Mo-Su 00:00-24:00' }, 'Europe/Berlin')
    const day = (s: string): number => parseLocal(`${s} 00:00:00`, 'Europe/Berlin')!
    expect(cal.expectedBetween(day('2026-03-29'), day('2026-03-30'))).toBe(23 * H)
    expect(cal.expectedBetween(day('2026-10-25'), day('2026-10-26'))).toBe(25 * H)
  })

  it('refuses a maintenance window that ends before it starts', () => {
    expect(() => new Calendar({ maintenance: [{ from: '2026-11-21 13:00', to: '2026-11-21 12:00' }] }, TZ)).toThrow('ends before it starts')
    expect(() => new Calendar({ maintenance: [{ from: '2026-11-31 13:00', to: '2026-12-01 12:00' }] }, TZ)).toThrow('is not a local time')
  })

  it('answers 24/7 without walking days', () => {
    const cal = new Calendar({}, TZ)
    expect(cal.always).toBe(true)
    expect(cal.expectedBetween(at('2026-11-01 00:00'), at('2026-11-21 00:00'))).toBe(20 * 24 * H)
    expect(cal.advanceExpected(0, 5 * M)).toBe(5 * M)
  })
})
