import { describe, expect, it } from 'vitest'
import { bucketLabel, isoLocal, parseInstant, parseIntList, parsePeriod, zoneLiteral } from './time-range.ts'

const TZ = 'Asia/Shanghai'

describe('analytics periods', () => {
  it('reads dates and date-times in the analytics zone, instants with their offset', () => {
    expect(parseInstant('from', '2026-11-02', TZ)).toBe(Date.parse('2026-11-01T16:00:00Z'))
    expect(parseInstant('from', '2026-11-02T09:00', TZ)).toBe(Date.parse('2026-11-02T01:00:00Z'))
    expect(parseInstant('from', '2026-11-02 09:00:30', TZ)).toBe(Date.parse('2026-11-02T01:00:30Z'))
    expect(parseInstant('from', '2026-11-02T01:00:00Z', TZ)).toBe(Date.parse('2026-11-02T01:00:00Z'))
    expect(parseInstant('to', '2026-11-02T09:00:00+09:00', TZ)).toBe(Date.parse('2026-11-02T00:00:00Z'))
    for (const bad of ['2026-13-01', '2026-11-02T25:00', 'yesterday', '1730000000', '']) {
      expect(() => parseInstant('from', bad, TZ), bad).toThrow(/^analytics query refused: from: expected a date/)
    }
  })

  it('aligns the period to the buckets', () => {
    expect(parsePeriod('2026-11-01', '2026-12-01', 'month', TZ)).toEqual({
      fromMs: Date.parse('2026-10-31T16:00:00Z'), toMs: Date.parse('2026-11-30T16:00:00Z'), fromDay: '2026-11-01', toDay: '2026-12-01',
    })
    expect(parsePeriod('2026-11-01T09:00', '2026-11-01T10:00', 'hour', TZ).toMs - parsePeriod('2026-11-01T09:00', '2026-11-01T10:00', 'hour', TZ).fromMs).toBe(3_600_000)
    expect(() => parsePeriod('2026-11-01T09:30', '2026-11-01T10:00', 'hour', TZ)).toThrow('from must be the start of an hour for granularity=hour, got 2026-11-01T09:30')
    expect(() => parsePeriod('2026-11-01', '2026-11-01T10:00', 'day', TZ)).toThrow('to must be a date (local midnight) for granularity=day, got 2026-11-01T10:00')
    expect(() => parsePeriod('2026-11-02', '2026-11-02', 'day', TZ)).toThrow('to (2026-11-02) must be after from (2026-11-02); to is exclusive')
    expect(() => parsePeriod('2020-01-01', '2026-01-01', 'month', TZ)).toThrow('at most 5 years')
  })

  it('labels buckets in local time', () => {
    const t = Date.parse('2026-11-02T01:00:00Z')
    expect(bucketLabel(t, 'hour', TZ)).toBe('2026-11-02T09:00+08:00')
    expect(bucketLabel(t, 'day', TZ)).toBe('2026-11-02')
    expect(bucketLabel(t, 'month', TZ)).toBe('2026-11')
    expect(isoLocal(t, TZ)).toBe('2026-11-02T09:00:00+08:00')
    expect(isoLocal(Date.parse('2026-07-01T12:00:00Z'), 'America/New_York')).toBe('2026-07-01T08:00:00-04:00')
    expect(isoLocal(Date.parse('2026-07-01T12:00:00Z'), 'Asia/Kolkata')).toBe('2026-07-01T17:30:00+05:30')
  })

  it('reads hour and weekday lists', () => {
    expect(parseIntList('hours', '9', 0, 23)).toEqual([9])
    expect(parseIntList('hours', '17-19, 7-9', 0, 23)).toEqual([7, 8, 9, 17, 18, 19])
    expect(parseIntList('weekdays', '1-5,1', 1, 7)).toEqual([1, 2, 3, 4, 5])
    expect(() => parseIntList('hours', '9-7', 0, 23)).toThrow('hours: values from 0 to 23, ranges ascending, got "9-7"')
    expect(() => parseIntList('weekdays', 'Mon', 1, 7)).toThrow('weekdays: expected numbers and ranges like 1-5,7, got "Mon"')
  })

  it('quotes only zone names as SQL literals', () => {
    expect(zoneLiteral('Asia/Shanghai')).toBe("'Asia/Shanghai'")
    expect(zoneLiteral('Etc/GMT+8')).toBe("'Etc/GMT+8'")
    expect(() => zoneLiteral("UTC') OR 1=1 --")).toThrow(RangeError)
  })
})
