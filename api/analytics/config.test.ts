import { describe, expect, it } from 'vitest'
import { ANALYTICS_DEFAULTS, analyticsConfigFromEnv } from './config.ts'

describe('analytics configuration', () => {
  it('defaults without the variables', () => {
    expect(analyticsConfigFromEnv({})).toEqual(ANALYTICS_DEFAULTS)
  })

  it('reads the variables', () => {
    const c = analyticsConfigFromEnv({
      CITYSYNC_ANALYTICS_TIMEZONE: 'Asia/Urumqi', CITYSYNC_ANALYTICS_SESSION_CAP: '72h', CITYSYNC_ANALYTICS_REFRESH: 'off',
      CITYSYNC_ANALYST_SQL: 'on', CITYSYNC_ANALYST_SQL_MAX_ROWS: '500',
      CITYSYNC_BIKE_ACCUMULATION_AT: '50', CITYSYNC_BIKE_WINDOW: '5m', CITYSYNC_BIKE_ALERTS: 'off', CITYSYNC_BIKE_ALERT_OPEN_AFTER: '30m',
    })
    expect(c).toMatchObject({ timezone: 'Asia/Urumqi', sessionCapMs: 72 * 3_600_000, refreshIntervalMs: 0, sql: { enabled: true, maxResultRows: 500 }, bike: { accumulationAt: 50, windowMs: 300_000 } })
    expect(c.bikeAlerts).toEqual({ enabled: false, openAfterMs: 1_800_000, closeAfterMs: 900_000 })
  })

  it('refuses what it cannot use, naming the variable', () => {
    expect(() => analyticsConfigFromEnv({ CITYSYNC_ANALYTICS_TIMEZONE: 'Mars/Olympus' })).toThrow('CITYSYNC_ANALYTICS_TIMEZONE: unknown time zone "Mars/Olympus"')
    expect(() => analyticsConfigFromEnv({ CITYSYNC_ANALYTICS_SESSION_CAP: '10m' })).toThrow('CITYSYNC_ANALYTICS_SESSION_CAP: at least 1h')
    expect(() => analyticsConfigFromEnv({ CITYSYNC_ANALYST_SQL: 'yes please' })).toThrow('CITYSYNC_ANALYST_SQL: expected on or off, got "yes please"')
    expect(() => analyticsConfigFromEnv({ CITYSYNC_ANALYST_SQL_MAX_ROWS: '0' })).toThrow('CITYSYNC_ANALYST_SQL_MAX_ROWS: must be an integer from 1 to 10000000, got "0"')
  })
})
