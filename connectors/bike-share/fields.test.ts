import { describe, expect, it } from 'vitest'
import { mapItem, parseTimestamp, readCount, readFlag, readYuan, requireId } from './fields.ts'

const SH = 'Asia/Shanghai'
const T = Date.UTC(2021, 8, 10, 7, 23, 51) // 1631258631 s

describe('parseTimestamp: seconds, milliseconds, RFC 3339, local', () => {
  it.each([
    ['POSIX seconds (GBFS 2.x)', 1631258631, T, 'seconds'],
    ['epoch milliseconds', 1631258631000, T, 'milliseconds'],
    ['seconds with a fraction', 1631258631.25, T + 250, 'seconds'],
    ['seconds as a string', '1631258631', T, 'seconds'],
    ['milliseconds as a string', '1631258631000', T, 'milliseconds'],
    ['RFC 3339 in UTC', '2021-09-10T07:23:51Z', T, 'rfc3339'],
    ['RFC 3339 with an offset (Ecovelo)', '2021-09-10T09:23:51+02:00', T, 'rfc3339'],
    ['RFC 3339 with microseconds (Almere)', '2021-09-10T07:23:51.124370+00:00', T + 124, 'rfc3339'],
    ['RFC 3339 with a compact offset', '2021-09-10T15:23:51+0800', T, 'rfc3339'],
    ['RFC 3339 with a space and lower-case z', '2021-09-10 07:23:51z', T, 'rfc3339'],
    ['a naive time, read in the source zone', '2021-09-10 15:23:51', T, 'local'],
    ['a naive ISO time with milliseconds', '2021-09-10T15:23:51.500', T + 500, 'local'],
  ] as const)('%s', (_what, input, ms, unit) => {
    expect(parseTimestamp(input, SH)).toEqual({ ms, unit })
  })

  it('tells seconds from milliseconds at 1e11', () => {
    // 99 999 999 999 s would be the year 5138; 1e11 ms is March 1973: neither is real, the rule only has to split them.
    expect(parseTimestamp(99_999_999_999, SH)?.unit).toBe('seconds')
    expect(parseTimestamp(100_000_000_000, SH)).toBeNull() // 1973 as milliseconds: before 2000
    expect(parseTimestamp(1_000_000_000_000, SH)).toEqual({ ms: 1_000_000_000_000, unit: 'milliseconds' }) // 2001
  })

  it.each([
    ['zero', 0],
    ['negative', -5],
    ['before 2000 (seconds)', 946_684_799],
    ['not finite', Number.POSITIVE_INFINITY],
    ['"unknown"', 'unknown'],
    ['empty', ''],
    ['a day that does not exist', '2025-02-30T00:00:00Z'],
    ['an hour that does not exist', '2025-01-01T24:00:00Z'],
    ['a date without time', '2025-05-21'],
    ['a naive time that does not exist', '2025-02-29 08:00:00'],
    ['an object', { seconds: 1 }],
  ])('refuses %s', (_what, input) => {
    expect(parseTimestamp(input, SH)).toBeNull()
  })
})

describe('field readers', () => {
  const read = <T>(o: unknown, f: (x: Record<string, unknown>) => T) => mapItem(o, f)

  it('counts: numbers and numeric strings; "unknown" is an invalid value, not zero', () => {
    expect(read({ n: 5 }, (o) => readCount(o, 'n', true))).toEqual({ ok: true, value: 5 })
    expect(read({ n: ' 7 ' }, (o) => readCount(o, 'n', true))).toEqual({ ok: true, value: 7 })
    expect(read({}, (o) => readCount(o, 'n', false))).toEqual({ ok: true, value: null })
    expect(read({ n: 'unknown' }, (o) => readCount(o, 'n', true))).toEqual({
      ok: false,
      fault: { code: 'invalid_value', field: 'n', reason: 'n is not a number: "unknown"' },
    })
    expect(read({ n: -1 }, (o) => readCount(o, 'n', true))).toMatchObject({ ok: false, fault: { code: 'invalid_value', reason: 'n must not be negative: -1' } })
    expect(read({ n: 1.5 }, (o) => readCount(o, 'n', true))).toMatchObject({ ok: false, fault: { code: 'invalid_value' } })
    expect(read({ n: true }, (o) => readCount(o, 'n', true))).toMatchObject({ ok: false, fault: { code: 'wrong_type', reason: 'n must be a number, got boolean' } })
    expect(read({}, (o) => readCount(o, 'n', true))).toMatchObject({ ok: false, fault: { code: 'missing_field', reason: 'missing field n' } })
  })

  it('flags: booleans, 0/1 and "true"/"false"', () => {
    for (const v of [true, 1, '1', 'true']) expect(read({ f: v }, (o) => readFlag(o, 'f', true))).toEqual({ ok: true, value: true })
    for (const v of [false, 0, '0', 'false']) expect(read({ f: v }, (o) => readFlag(o, 'f', true))).toEqual({ ok: true, value: false })
    expect(read({ f: 'yes' }, (o) => readFlag(o, 'f', true))).toMatchObject({ ok: false, fault: { code: 'invalid_value' } })
    expect(read({ f: [] }, (o) => readFlag(o, 'f', true))).toMatchObject({ ok: false, fault: { code: 'wrong_type' } })
  })

  it('ids: strings, or the numbers some producers use', () => {
    expect(read({ id: ' S1 ' }, (o) => requireId(o, 'id'))).toEqual({ ok: true, value: 'S1' })
    expect(read({ id: 42 }, (o) => requireId(o, 'id'))).toEqual({ ok: true, value: '42' })
    expect(read({ id: '' }, (o) => requireId(o, 'id'))).toMatchObject({ ok: false, fault: { code: 'missing_field', reason: 'id is empty' } })
  })

  it('yuan to fen', () => {
    expect(read({ fee: '1.50' }, (o) => readYuan(o, 'fee'))).toEqual({ ok: true, value: 150 })
    expect(read({ fee: '3' }, (o) => readYuan(o, 'fee'))).toEqual({ ok: true, value: 300 })
    expect(read({ fee: 0.1 }, (o) => readYuan(o, 'fee'))).toEqual({ ok: true, value: 10 })
    expect(read({ fee: 1.005 }, (o) => readYuan(o, 'fee'))).toMatchObject({ ok: false, fault: { code: 'invalid_value' } })
    expect(read({ fee: 'unknown' }, (o) => readYuan(o, 'fee'))).toMatchObject({ ok: false, fault: { reason: 'fee is not an amount in yuan: "unknown"' } })
    expect(read({ fee: '-1.00' }, (o) => readYuan(o, 'fee'))).toMatchObject({ ok: false, fault: { code: 'invalid_value' } })
  })

  it('refuses an item that is not an object', () => {
    expect(mapItem([1], () => 1)).toEqual({ ok: false, fault: { code: 'wrong_type', field: null, reason: 'item must be an object, got array' } })
  })
})
