import { describe, expect, it } from 'vitest'
import { assertTimeZone, formatLocal, isTimeZone, parseLocal, parseLocalOrThrow, zoneOffset } from './local-time.ts'

const SH = 'Asia/Shanghai'
const BERLIN = 'Europe/Berlin'

describe('parseLocal', () => {
  it('reads Asia/Shanghai as fixed +08:00', () => {
    expect(parseLocal('2026-11-21 08:30:15', SH)).toBe(Date.parse('2026-11-21T00:30:15Z'))
    expect(parseLocal('2026-07-01 00:00:00', SH)).toBe(Date.parse('2026-06-30T16:00:00Z'))
  })

  it('accepts the T and slash forms and fractional seconds', () => {
    const expected = Date.parse('2026-11-21T00:30:15Z')
    expect(parseLocal('2026-11-21T08:30:15', SH)).toBe(expected)
    expect(parseLocal('2026/11/21 08:30:15', SH)).toBe(expected)
    expect(parseLocal('2026-11-21 08:30:15.123', SH)).toBe(expected + 123)
    expect(parseLocal('2026-11-21 08:30:15.5', SH)).toBe(expected + 500)
    expect(parseLocal('2026-11-21 08:30:15.05', SH)).toBe(expected + 50)
  })

  it('rejects dates and times that do not exist', () => {
    for (const text of [
      '2026-02-30 10:00:00',
      '2026-02-29 10:00:00',
      '2026-13-01 10:00:00',
      '2026-00-10 10:00:00',
      '2026-04-31 10:00:00',
      '2026-11-21 25:00:00',
      '2026-11-21 24:00:00',
      '2026-11-21 10:60:00',
      '2026-11-21 10:00:60',
    ]) {
      expect(parseLocal(text, SH), text).toBeNull()
    }
    expect(parseLocal('2028-02-29 10:00:00', SH)).toBe(Date.parse('2028-02-29T02:00:00Z'))
    expect(parseLocal('2000-02-29 10:00:00', SH)).not.toBeNull()
    expect(parseLocal('2100-02-29 10:00:00', SH)).toBeNull()
  })

  it('rejects garbage and mixed formats', () => {
    for (const text of [
      '',
      'unknown',
      '12345',
      '2026-11-21',
      '2026-11-21 8:30:15',
      '2026-11-21 08:30',
      '2026-11/21 08:30:15',
      '2026-11-21  08:30:15',
      '2026-11-21 08:30:15Z',
      '2026-11-21 08:30:15+08:00',
      '2026-11-21 08:30:15.1234',
      ' 2026-11-21 08:30:15',
      '２０２６-11-21 08:30:15',
    ]) {
      expect(parseLocal(text, SH), text).toBeNull()
    }
    expect(parseLocal(12345 as unknown as string, SH)).toBeNull()
    expect(parseLocal(null as unknown as string, SH)).toBeNull()
  })

  it('throws a clear error for an unknown zone, and parseLocalOrThrow for bad text', () => {
    expect(() => parseLocal('2026-11-21 08:30:15', 'Mars/Olympus')).toThrow(/unknown time zone "Mars\/Olympus"/)
    expect(() => parseLocalOrThrow('2026-02-30 00:00:00', SH)).toThrow(/invalid local timestamp "2026-02-30 00:00:00"/)
    expect(isTimeZone('Asia/Shanghai')).toBe(true)
    expect(isTimeZone('Asia/Nowhere')).toBe(false)
    expect(() => assertTimeZone('Asia/Nowhere')).toThrow(RangeError)
  })

  it('handles the Europe/Berlin spring-forward gap', () => {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00Z).
    expect(parseLocal('2026-03-29 01:59:59', BERLIN)).toBe(Date.parse('2026-03-29T00:59:59Z'))
    expect(parseLocal('2026-03-29 03:00:00', BERLIN)).toBe(Date.parse('2026-03-29T01:00:00Z'))
    // Skipped wall times move forward by the gap.
    expect(parseLocal('2026-03-29 02:00:00', BERLIN)).toBe(Date.parse('2026-03-29T01:00:00Z'))
    expect(parseLocal('2026-03-29 02:30:00', BERLIN)).toBe(Date.parse('2026-03-29T01:30:00Z'))
    expect(formatLocal(parseLocal('2026-03-29 02:30:00', BERLIN)!, BERLIN)).toBe('2026-03-29 03:30:00')
  })

  it('handles the Europe/Berlin fall-back overlap by taking the earlier instant', () => {
    // 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00Z).
    expect(parseLocal('2026-10-25 01:59:59', BERLIN)).toBe(Date.parse('2026-10-24T23:59:59Z'))
    expect(parseLocal('2026-10-25 02:30:00', BERLIN)).toBe(Date.parse('2026-10-25T00:30:00Z'))
    expect(parseLocal('2026-10-25 03:00:00', BERLIN)).toBe(Date.parse('2026-10-25T02:00:00Z'))
    // Both instants of the repeated hour format back to the same wall time.
    expect(formatLocal(Date.parse('2026-10-25T00:30:00Z'), BERLIN)).toBe('2026-10-25 02:30:00')
    expect(formatLocal(Date.parse('2026-10-25T01:30:00Z'), BERLIN)).toBe('2026-10-25 02:30:00')
  })

  it('reads summer and winter times in Berlin with their offsets', () => {
    expect(parseLocal('2026-07-01 12:00:00', BERLIN)).toBe(Date.parse('2026-07-01T10:00:00Z'))
    expect(parseLocal('2026-01-15 12:00:00', BERLIN)).toBe(Date.parse('2026-01-15T11:00:00Z'))
  })

  it('handles zones with half-hour offsets and non-hour transitions', () => {
    expect(parseLocal('2026-11-21 12:00:00', 'Asia/Kolkata')).toBe(Date.parse('2026-11-21T06:30:00Z'))
    // Lord Howe moves by 30 minutes at 02:00 local (15:00Z) on the first Sunday of April.
    const z = 'Australia/Lord_Howe'
    expect(zoneOffset(Date.parse('2026-04-04T14:59:59Z'), z)).toBe(11 * 3_600_000)
    expect(zoneOffset(Date.parse('2026-04-04T15:00:00Z'), z)).toBe(10.5 * 3_600_000)
    expect(zoneOffset(Date.parse('2026-04-04T14:59:59Z'), z)).toBe(11 * 3_600_000)
  })
})

describe('formatLocal', () => {
  it('formats in the zone, with optional millis', () => {
    const t = Date.parse('2026-11-20T16:05:09.042Z')
    expect(formatLocal(t, SH)).toBe('2026-11-21 00:05:09')
    expect(formatLocal(t, SH, true)).toBe('2026-11-21 00:05:09.042')
    expect(formatLocal(t, 'UTC')).toBe('2026-11-20 16:05:09')
    expect(formatLocal(t, BERLIN)).toBe('2026-11-20 17:05:09')
  })

  it('round-trips every 17 minutes over a year in Berlin, outside the overlap', () => {
    const start = Date.parse('2026-01-01T00:00:00Z')
    for (let t = start; t < start + 366 * 86_400_000; t += 17 * 60_000 + 1234) {
      const text = formatLocal(t, BERLIN, true)
      const back = parseLocal(text, BERLIN)
      const inOverlap = text.startsWith('2026-10-25 02:')
      if (!inOverlap) expect(back).toBe(t)
      else expect(back! <= t).toBe(true)
    }
  })

  it('rejects non-finite input', () => {
    expect(() => formatLocal(Number.NaN, SH)).toThrow(RangeError)
  })
})

describe('throughput', () => {
  it('parses well over 100k timestamps per second once warm', () => {
    const texts: string[] = []
    const base = Date.parse('2026-11-01T00:00:00Z')
    for (let i = 0; i < 200_000; i++) texts.push(formatLocal(base + i * 13_000, SH))
    let sum = 0
    const t0 = performance.now()
    for (const text of texts) sum += parseLocal(text, SH)!
    const elapsed = performance.now() - t0
    expect(sum).toBeGreaterThan(0)
    // 200k in under 1 s, with a wide margin for slow CI machines.
    expect(elapsed).toBeLessThan(1000)
  })
})
