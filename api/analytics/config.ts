import { parseDuration } from '../../lib/duration.ts'
import { CitysyncError } from '../../lib/errors.ts'
import { isTimeZone } from '../../lib/local-time.ts'

/**
 * Analytics settings, from the environment (README, configuration). One time
 * zone for the whole deployment: a bureau's days and hours are local.
 */
export interface AnalyticsConfig {
  /** IANA zone of days, hours and months in every figure. */
  timezone: string
  /** A stay without an exit within this is closed at entry + cap and flagged `capped`. */
  sessionCapMs: number
  /** How often the refresher recomputes changed lots; 0 turns it off in this process. */
  refreshIntervalMs: number
  /** Lot-hours one refresh statement recomputes at most (bounds the memory one statement needs). */
  refreshChunkHours: number
  /** Most rows one analytics answer may hold; a larger result is refused with a hint to narrow it. */
  maxRows: number
  sql: AnalystSqlConfig
  bike: BikeBalanceDefaults
  bikeAlerts: BikeAlertsConfig
}

/** Balance alerts through the sync-health channels (quality/bike-balance.ts), against the `bike` thresholds. */
export interface BikeAlertsConfig {
  enabled: boolean
  /** An area out of balance this long raises its alert. */
  openAfterMs: number
  /** An area back within its thresholds this long resolves it. */
  closeAfterMs: number
}

export interface AnalystSqlConfig {
  /** POST /api/v1/analytics/sql answers only when enabled. */
  enabled: boolean
  maxExecutionSeconds: number
  maxResultRows: number
  maxMemoryBytes: number
}

export interface BikeBalanceDefaults {
  /** Side of the square areas vehicles are counted in. */
  cellMeters: number
  /** An area with at least this many vehicles is an accumulation. */
  accumulationAt: number
  /** An area with a station and at most this many vehicles is a shortage. */
  shortageAt: number
  /** Vehicle and station reports older than this before the snapshot time are not counted. */
  windowMs: number
}

export const ANALYTICS_DEFAULTS: AnalyticsConfig = {
  timezone: 'Asia/Shanghai',
  sessionCapMs: 24 * 3_600_000,
  refreshIntervalMs: 60_000,
  refreshChunkHours: 2_000_000,
  maxRows: 100_000,
  sql: { enabled: false, maxExecutionSeconds: 30, maxResultRows: 100_000, maxMemoryBytes: 2 * 1024 ** 3 },
  bike: { cellMeters: 500, accumulationAt: 30, shortageAt: 0, windowMs: 10 * 60_000 },
  bikeAlerts: { enabled: true, openAfterMs: 10 * 60_000, closeAfterMs: 15 * 60_000 },
}

function blank(v: string | undefined): string | undefined {
  return v !== undefined && v.trim() !== '' ? v.trim() : undefined
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = blank(env[name])
  if (raw === undefined) return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < min || n > max) throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${name}: must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`])
  return n
}

function duration(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = blank(env[name])
  if (raw === undefined) return fallback
  if (raw === '0' || raw === 'off') return 0
  try {
    return parseDuration(raw)
  } catch {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${name}: not a duration (e.g. 24h, 90m): ${JSON.stringify(raw)}`])
  }
}

function flag(env: NodeJS.ProcessEnv, name: string, fallback = false): boolean {
  const raw = blank(env[name])?.toLowerCase()
  if (raw === undefined) return fallback
  if (raw === 'off' || raw === 'false' || raw === '0') return false
  if (raw === 'on' || raw === 'true' || raw === '1') return true
  throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${name}: expected on or off, got ${JSON.stringify(raw)}`])
}

export function analyticsConfigFromEnv(env: NodeJS.ProcessEnv = process.env): AnalyticsConfig {
  const d = ANALYTICS_DEFAULTS
  const timezone = blank(env.CITYSYNC_ANALYTICS_TIMEZONE) ?? d.timezone
  if (!isTimeZone(timezone)) throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`CITYSYNC_ANALYTICS_TIMEZONE: unknown time zone ${JSON.stringify(timezone)}`])
  const sessionCapMs = duration(env, 'CITYSYNC_ANALYTICS_SESSION_CAP', d.sessionCapMs)
  if (sessionCapMs < 3_600_000) throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', ['CITYSYNC_ANALYTICS_SESSION_CAP: at least 1h'])
  return {
    timezone,
    sessionCapMs,
    refreshIntervalMs: duration(env, 'CITYSYNC_ANALYTICS_REFRESH', d.refreshIntervalMs),
    refreshChunkHours: int(env, 'CITYSYNC_ANALYTICS_REFRESH_CHUNK', d.refreshChunkHours, 1_000, 1_000_000_000),
    maxRows: int(env, 'CITYSYNC_ANALYTICS_MAX_ROWS', d.maxRows, 1, 10_000_000),
    sql: {
      enabled: flag(env, 'CITYSYNC_ANALYST_SQL'),
      maxExecutionSeconds: int(env, 'CITYSYNC_ANALYST_SQL_MAX_SECONDS', d.sql.maxExecutionSeconds, 1, 3600),
      maxResultRows: int(env, 'CITYSYNC_ANALYST_SQL_MAX_ROWS', d.sql.maxResultRows, 1, 10_000_000),
      maxMemoryBytes: int(env, 'CITYSYNC_ANALYST_SQL_MAX_MEMORY', d.sql.maxMemoryBytes, 64 * 1024 ** 2, 2 ** 40),
    },
    bike: {
      cellMeters: int(env, 'CITYSYNC_BIKE_CELL_METERS', d.bike.cellMeters, 50, 10_000),
      accumulationAt: int(env, 'CITYSYNC_BIKE_ACCUMULATION_AT', d.bike.accumulationAt, 1, 1_000_000),
      shortageAt: int(env, 'CITYSYNC_BIKE_SHORTAGE_AT', d.bike.shortageAt, 0, 1_000_000),
      windowMs: duration(env, 'CITYSYNC_BIKE_WINDOW', d.bike.windowMs) || d.bike.windowMs,
    },
    bikeAlerts: {
      enabled: flag(env, 'CITYSYNC_BIKE_ALERTS', d.bikeAlerts.enabled),
      openAfterMs: duration(env, 'CITYSYNC_BIKE_ALERT_OPEN_AFTER', d.bikeAlerts.openAfterMs),
      closeAfterMs: duration(env, 'CITYSYNC_BIKE_ALERT_CLOSE_AFTER', d.bikeAlerts.closeAfterMs),
    },
  }
}
