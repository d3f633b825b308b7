import { describe, expect, it } from 'vitest'
import { formatDuration, isDuration, parseDuration } from './duration.ts'
import { isCitysyncError } from './errors.ts'

describe('parseDuration', () => {
  it.each([
    ['2h', 7_200_000],
    ['90m', 5_400_000],
    ['30s', 30_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['1d', 86_400_000],
    ['1d2h3m4s5ms', 93_784_005],
    ['1.5h', 5_400_000],
    [' 2H ', 7_200_000],
    ['0s', 0],
    [1234, 1234],
    [0, 0],
  ] as const)('%s -> %d', (input, ms) => {
    expect(parseDuration(input)).toBe(ms)
  })

  it.each(['', 'abc', '10', '1x', 'h', '1h 30m', '-5s', '5 s', '1h-', 'ms'])('rejects %j', (input) => {
    let caught: unknown
    try {
      parseDuration(input)
    } catch (err) {
      caught = err
    }
    expect(isCitysyncError(caught, 'CITYSYNC_ERR_CONFIG_INVALID')).toBe(true)
    expect((caught as Error).message).toContain('not a duration')
  })

  it('rejects negative and non-finite numbers', () => {
    expect(() => parseDuration(-1)).toThrow(/not a duration/)
    expect(() => parseDuration(Number.NaN)).toThrow(/not a duration/)
    expect(() => parseDuration(Number.POSITIVE_INFINITY)).toThrow(/not a duration/)
  })

  it('isDuration answers without throwing', () => {
    expect(isDuration('5m')).toBe(true)
    expect(isDuration('five minutes')).toBe(false)
    expect(isDuration({})).toBe(false)
  })
})

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [500, '500ms'],
    [30_000, '30s'],
    [5_400_000, '1h30m'],
    [86_400_000, '1d'],
    [93_784_005, '1d2h3m4s5ms'],
    [-60_000, '-1m'],
  ])('%d -> %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text)
  })

  it('round-trips through parseDuration', () => {
    for (const ms of [1, 999, 1000, 61_000, 3_599_999, 7_200_000, 90_061_001]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms)
    }
  })
})
