import { describe, expect, it } from 'vitest'
import { isCitysyncError } from '../lib/errors.ts'
import { validateSourceConfig } from '../lib/source-config.ts'
import { interpolateEnv, matchRoutes, parseAlertingConfig } from './alerting-config.ts'
import { resolveSettings, scheduleIntervalMs } from './freshness-config.ts'

const lookup = (): Record<string, unknown> => ({ type: 'object' })
const base = { id: 'hengqin-parking', kind: 'parking-lots', name: 'Hengqin' }

function problem(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (isCitysyncError(err)) return err.message
    throw err
  }
  throw new Error('expected a refusal')
}

describe('freshness block of a source definition', () => {
  it('keeps thresholds, calendars and entity overrides, and resolves them', () => {
    const freshness = {
      maxDelay: '2h',
      closeAfter: '30m',
      calendar: { openingHours: 'Mo-Su 07:00-22:00', holidays: ['2026-10-01'], maintenance: [{ hours: 'Tu 02:00-03:00', reason: 'backup' }] },
      entities: { P003: { maxDelay: '4h' }, P009: { ignore: true } },
    }
    const cfg = validateSourceConfig({ ...base, schedule: { cron: '*/5 * * * *' }, freshness }, lookup)
    expect(cfg.freshness).toEqual(freshness)
    const s = resolveSettings(cfg)
    expect([s.maxDelayMs, s.openAfterMs, s.closeAfterMs, s.stoppedAfterMs, s.skewToleranceMs, s.lotHours]).toEqual([7_200_000, 0, 1_800_000, 900_000, 300_000, true])
    expect(s.entities.get('P003')).toMatchObject({ maxDelayMs: 14_400_000, ignore: false })
    expect(s.entities.get('P009')?.ignore).toBe(true)
    expect(s.calendar.always).toBe(false)
    expect(scheduleIntervalMs({ cron: '0 */2 * * *' }, 'Asia/Shanghai')).toBe(7_200_000)
    expect(scheduleIntervalMs({ every: '30s' }, 'Asia/Shanghai')).toBe(30_000)
    expect(resolveSettings({ ...cfg, schedule: { every: '10m' }, freshness: { maxDelay: '2h' } }).stoppedAfterMs).toBe(1_800_000)
  })

  it('refuses calendars it cannot read, naming the field', () => {
    expect(problem(() => validateSourceConfig({ ...base, freshness: { calendar: { openingHours: 'Mo-Fr 7-22' } } }, lookup))).toBe(
      'invalid configuration: freshness.calendar.openingHours: must be opening hours such as 24/7 or Mo-Fr 07:00-22:00; Sa,Su 09:00-18:00',
    )
    expect(problem(() => validateSourceConfig({ ...base, freshness: { calendar: { holidays: ['2026-02-30'] } } }, lookup))).toBe(
      'invalid configuration: freshness.calendar: "2026-02-30" is not a date YYYY-MM-DD',
    )
    expect(problem(() => validateSourceConfig({ ...base, freshness: { calendar: { maintenance: [{ from: '2026-11-22 05:00', to: '2026-11-22 01:00' }] } } }, lookup))).toBe(
      'invalid configuration: freshness.calendar: maintenance window 2026-11-22 05:00 – 2026-11-22 01:00 ends before it starts',
    )
    expect(problem(() => validateSourceConfig({ ...base, freshness: { entities: { P1: { maxDelay: 'soon' } } } }, lookup))).toContain('freshness.entities.P1.maxDelay: must be a duration')
    expect(problem(() => validateSourceConfig({ ...base, freshness: { calendar: { timetable: { departures: 'daily' } } } }, lookup))).toContain(
      'freshness.calendar.timetable.departures: must be departures such as Mo-Su 07:30,09:00,21:30 or sailings',
    )
    expect(problem(() => validateSourceConfig({ ...base, freshness: { calendar: { opening: '24/7' } } }, lookup))).toContain('freshness.calendar.opening: is not an allowed property')
  })
})

describe('alerting configuration', () => {
  it('reads receivers and routes, with defaults', () => {
    const cfg = parseAlertingConfig({
      receivers: [{ name: 'ops', channels: [{ type: 'dingtalk', url: 'https://oapi.dingtalk.com/robot/send?access_token=x', secret: 'SEC1' }] }],
      routes: [{ match: { district: '横琴', state: ['LATE', 'STOPPED'] }, receivers: ['ops'], escalate: [{ after: '30m', receivers: ['ops'] }] }],
    })
    expect(cfg.receivers.get('ops')!.channels[0]).toMatchObject({ type: 'dingtalk', name: 'ops/dingtalk' })
    expect(cfg.routes[0]).toMatchObject({ groupBy: ['sourceId'], groupIntervalMs: 60_000, repeatIntervalMs: 14_400_000, sendResolved: true, escalate: [{ afterMs: 1_800_000, receivers: ['ops'] }] })
    expect(matchRoutes(cfg, { district: '横琴', state: 'LATE' })).toHaveLength(1)
    expect(matchRoutes(cfg, { district: '横琴', state: 'SKEWED' })).toHaveLength(0)
    expect(cfg.delivery).toEqual({ attempts: 5, backoffMs: 2_000, timeoutMs: 10_000, concurrency: 4 })
  })

  it('refuses unknown receivers, states and channel fields, and missing environment variables', () => {
    expect(problem(() => parseAlertingConfig({ routes: [{ receivers: ['nobody'] }] }))).toBe('invalid configuration: alerting: routes[0]: unknown receiver nobody')
    expect(problem(() => parseAlertingConfig({ receivers: [{ name: 'a', channels: [{ type: 'wecom', url: 'https://x', key: 'k' }] }] }))).toContain(
      'receivers[0].channels[0].key: is not an allowed property',
    )
    expect(problem(() => parseAlertingConfig({ receivers: [{ name: 'a', channels: [{ type: 'email', to: ['a@b.cn'] }] }] }))).toContain('receivers[0].channels[0].smtp: is required')
    expect(problem(() => parseAlertingConfig({ receivers: [{ name: 'a', channels: [{ type: 'sms' }] }] }))).toContain('receivers[0].channels[0].type: must be equal to one of the allowed values')
    expect(problem(() => parseAlertingConfig({ receivers: [{ name: 'a', channels: [{ type: 'webhook', url: 'https://x' }] }], routes: [{ match: { state: 'GONE' }, receivers: ['a'] }] }))).toContain(
      'routes[0].match.state: unknown state GONE',
    )
    expect(interpolateEnv('secret: ${DING_SECRET}', { DING_SECRET: 'SEC9' })).toBe('secret: SEC9')
    expect(problem(() => interpolateEnv('a: ${NOPE_A} b: ${NOPE_B}', {}))).toBe('invalid configuration: alerting: environment variable(s) NOPE_A, NOPE_B not set')
  })
})
