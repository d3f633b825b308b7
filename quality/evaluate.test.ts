import { describe, expect, it } from 'vitest'
import { ManualClock } from '../lib/clock.ts'
import { parseLocal } from '../lib/local-time.ts'
import { type Freshness } from '../lib/source-config.ts'
import {
  classifySource,
  type EntityReading,
  evaluateCycle,
  type SourceContext,
  type SourceReading,
  step,
  type Trackers,
  type Transition,
} from './evaluate.ts'
import { resolveSettings } from './freshness-config.ts'
import { emptyReading } from './reader.ts'

const TZ = 'Asia/Shanghai'
const at = (local: string): number => parseLocal(`${local}:00`, TZ)!
const M = 60_000
const H = 60 * M

function context(freshness: Partial<Freshness> = {}, extra: Partial<SourceContext> = {}): SourceContext {
  return {
    id: 'hengqin-parking',
    name: '横琴口岸停车场平台',
    kind: 'parking-lots',
    operator: '横琴停车公司',
    district: '横琴',
    paused: false,
    runState: 'idle',
    createdAt: at('2026-11-20 00:00'),
    settings: resolveSettings({ freshness: { maxDelay: '2h', ...freshness }, schedule: { every: '1m' }, timezone: TZ, config: {} }),
    ...extra,
  }
}

function reading(r: Partial<SourceReading>): SourceReading {
  return { ...emptyReading(), ...r }
}

/** Runs one cycle per `stepMs` from `from` to `to` (inclusive) and collects the transitions. */
function run(
  clock: ManualClock,
  ctx: SourceContext,
  readingAt: (now: number) => SourceReading,
  to: number,
  stepMs = M,
  trackers: Trackers = new Map(),
  entitiesAt: (now: number) => EntityReading[] = () => [],
): Transition[] {
  const out: Transition[] = []
  for (; clock.now() <= to; clock.advance(stepMs)) {
    const now = clock.now()
    out.push(...evaluateCycle(now, [{ ctx, reading: readingAt(now), entities: entitiesAt(now) }], trackers).transitions)
  }
  return out
}

describe('freshness of a source', () => {
  it('is LATE and alerted once maxDelay has passed since it stopped at 10:00, and recovers when data returns', () => {
    const clock = new ManualClock(at('2026-11-21 09:00'))
    const ctx = context()
    // Data every minute until 10:00, then nothing until 13:00.
    const data = (now: number): SourceReading => {
      const last = now < at('2026-11-21 13:00') ? Math.min(now, at('2026-11-21 10:00')) : now
      return reading({ lastEventAt: last, lastArrivalAt: last + 2_000 })
    }
    const trackers: Trackers = new Map()
    expect(run(clock, ctx, data, at('2026-11-21 12:00'), M, trackers)).toEqual([])
    expect(classifySource(ctx, data(at('2026-11-21 12:00')), at('2026-11-21 12:00')).state).toBe('OK')

    const alerted = run(clock, ctx, data, at('2026-11-21 12:01'), M, trackers)
    expect(alerted.map((t) => [t.from, t.to, new Date(t.since).toISOString()])).toEqual([['OK', 'LATE', '2026-11-21T04:00:00.000Z']])
    expect(alerted[0]!.verdict.reason).toBe('no new data for 2h1m of expected time (limit 2h)')

    // Data back at 13:00: recovery must hold closeAfter (15 minutes) before the alert resolves.
    expect(run(clock, ctx, data, at('2026-11-21 13:14'), M, trackers)).toEqual([])
    const recovered = run(clock, ctx, data, at('2026-11-21 13:15'), M, trackers)
    expect(recovered.map((t) => [t.from, t.to, new Date(t.since).toISOString()])).toEqual([['LATE', 'OK', '2026-11-21T05:00:00.000Z']])
  })

  it('raises nothing overnight for a car park closed 22:00-07:00 and is LATE at 09:00 if still silent', () => {
    const clock = new ManualClock(at('2026-11-21 20:00'))
    const ctx = context({ calendar: { openingHours: 'Mo-Su 07:00-22:00' } })
    const data = (now: number): SourceReading => reading({ lastEventAt: Math.min(now, at('2026-11-21 21:59')), lastArrivalAt: Math.min(now, at('2026-11-21 21:59')) })
    const trackers: Trackers = new Map()
    const night = run(clock, ctx, data, at('2026-11-22 08:59'), M, trackers)
    expect(night).toEqual([])
    expect(classifySource(ctx, data(at('2026-11-22 03:00')), at('2026-11-22 03:00'))).toMatchObject({ state: 'QUIET', reason: 'no data expected now' })
    const morning = run(clock, ctx, data, at('2026-11-22 09:00'), M, trackers)
    expect(morning.map((t) => [t.to, new Date(t.since).toISOString(), t.verdict.delayMs])).toEqual([['LATE', '2026-11-22T00:59:00.000Z', 2 * H + M]])
  })

  it('is QUIET after the last sailing of a ferry timetable', () => {
    const clock = new ManualClock(at('2026-11-21 21:00'))
    const ctx = context({ calendar: { timetable: { departures: 'Mo-Su 07:30,12:00,17:30,21:30', lead: '2h', grace: '90m' } } })
    const data = (now: number): SourceReading => reading({ lastEventAt: Math.min(now, at('2026-11-21 21:35')), lastArrivalAt: Math.min(now, at('2026-11-21 21:35')) })
    const trackers: Trackers = new Map()
    expect(run(clock, ctx, data, at('2026-11-22 06:05'), M, trackers)).toEqual([])
    expect(classifySource(ctx, data(at('2026-11-22 01:00')), at('2026-11-22 01:00'))).toMatchObject({ state: 'QUIET', delayMs: 85 * M })
    // The clock ran 21:35-23:00 (the grace after the last sailing) and runs again from 05:30 (two hours before the first).
    const morning = run(clock, ctx, data, at('2026-11-22 06:06'), M, trackers)
    expect(morning.map((t) => [t.to, new Date(t.since).toISOString()])).toEqual([['LATE', '2026-11-21T22:05:00.000Z']])
  })

  it('is SKEWED, not fresh, when event times run 3 hours ahead', () => {
    const now = at('2026-11-21 12:00')
    const ctx = context()
    // Landed with a lenient tolerance: the event clock says "fresh", three hours ahead.
    expect(classifySource(ctx, reading({ lastEventAt: now + 3 * H, lastArrivalAt: now, maxAheadMs: 3 * H, recentLiveRows: 40 }), now)).toMatchObject({
      state: 'SKEWED',
      reason: 'newest event time is 3h in the future',
    })
    // Rejected by the sink: nothing lands, the dead-letter table fills with future timestamps.
    expect(classifySource(ctx, reading({ lastEventAt: now - 30 * M, lastArrivalAt: now - 30 * M, futureRejected: 120, firstFutureAt: now - 20 * M }), now)).toMatchObject({
      state: 'SKEWED',
      since: now - 20 * M,
      reason: '120 records rejected for future timestamps, 0 landed',
    })
    // A stray bad record among good ones does not make the source skewed.
    expect(classifySource(ctx, reading({ lastEventAt: now - M, lastArrivalAt: now - M, futureRejected: 1, recentLiveRows: 300 }), now).state).toBe('OK')
  })

  it('tells STALLED (the upstream answers, nothing new) and STOPPED (connector silent or failing) from LATE', () => {
    const now = at('2026-11-21 12:00')
    const ctx = context()
    const stale = { lastEventAt: now - 3 * H, lastArrivalAt: now - 3 * H }
    const answering = { lastAt: now - M, lastOkAt: now - M, lastErrorAt: null, lastError: null }
    expect(classifySource(ctx, reading({ ...stale, heartbeat: answering }), now)).toMatchObject({ state: 'STALLED', since: now - H })
    expect(classifySource(ctx, reading({ ...stale }), now).state).toBe('LATE')
    expect(classifySource(ctx, reading({ ...stale, heartbeat: { lastAt: now - 40 * M, lastOkAt: now - 40 * M, lastErrorAt: null, lastError: null } }), now)).toMatchObject({
      state: 'STOPPED',
      since: now - 25 * M,
      reason: 'connector not running: last run 40m ago',
    })
    const failing = { lastAt: now - M, lastOkAt: now - 20 * M, lastErrorAt: now - M, lastError: 'upstream answered 502' }
    expect(classifySource(ctx, reading({ lastEventAt: now - 20 * M, lastArrivalAt: now - 20 * M, heartbeat: failing }), now)).toMatchObject({
      state: 'STOPPED',
      reason: 'connector failing since 20m: upstream answered 502',
    })
    expect(classifySource(ctx, reading({ ...stale }), now, undefined).state).toBe('LATE')
    expect(classifySource({ ...ctx, paused: true }, reading({ ...stale }), now)).toMatchObject({ state: 'MAINTENANCE', reason: 'source is paused' })
    expect(classifySource({ ...ctx, runState: 'failed' }, reading({ ...stale, heartbeat: failing }), now).state).toBe('STOPPED')
  })

  it('does not take backfilled data for fresh data', () => {
    const now = at('2026-11-21 12:00')
    // The reader's clocks exclude backfill: only the backfill arrival moved.
    expect(classifySource(context(), reading({ lastEventAt: now - 3 * H, lastArrivalAt: now - 3 * H, lastBackfillAt: now - M }), now).state).toBe('LATE')
  })
})

describe('hysteresis', () => {
  it('needs openAfter before an alert and closeAfter of recovery before it ends; QUIET never ends one', () => {
    const hold = { openAfterMs: 5 * M, closeAfterMs: 15 * M }
    let s = step(undefined, { state: 'LATE', since: 0 }, 2 * M, hold)
    expect(s.change).toBeUndefined()
    expect(s.tracker).toMatchObject({ state: 'OK', candidate: 'LATE', candidateSince: 0 })
    s = step(s.tracker, { state: 'LATE', since: 0 }, 5 * M, hold)
    expect(s.change).toEqual({ from: 'OK', to: 'LATE', since: 0 })
    s = step(s.tracker, { state: 'QUIET', since: 6 * M }, 6 * M, hold)
    expect(s.change).toBeUndefined()
    expect(s.tracker.state).toBe('LATE')
    s = step(s.tracker, { state: 'OK', since: 10 * M }, 20 * M, hold)
    expect(s.change).toBeUndefined()
    s = step(s.tracker, { state: 'LATE', since: 21 * M }, 21 * M, hold)
    s = step(s.tracker, { state: 'OK', since: 22 * M }, 30 * M, hold)
    expect(s.change).toBeUndefined()
    s = step(s.tracker, { state: 'OK', since: 22 * M }, 37 * M, hold)
    expect(s.change).toEqual({ from: 'LATE', to: 'OK', since: 22 * M })
    // One alerting state gives way to another at once.
    s = step({ state: 'LATE', since: 0, candidate: null, candidateSince: 0 }, { state: 'STOPPED', since: 40 * M }, 40 * M, hold)
    expect(s.change).toEqual({ from: 'LATE', to: 'STOPPED', since: 40 * M })
  })

  it('opens at most one incident per hour when data arrives every 119 to 121 minutes against a 2 h limit', () => {
    const start = at('2026-11-21 00:00')
    // Evaluations every minute, half a minute off the arrivals (as they would be).
    const clock = new ManualClock(start + 30_000)
    const ctx = context()
    // A fixed, irregular sequence of gaps between 119 and 121 minutes, for two days.
    const gaps = [121, 119, 120, 121, 121, 119, 120, 119, 121, 120, 121, 119, 121, 121, 120, 119, 121, 120, 119, 121, 121, 119, 120, 121]
    const arrivals: number[] = [start]
    for (let i = 0; arrivals.length < 26; i++) arrivals.push(arrivals[arrivals.length - 1]! + gaps[i % gaps.length]! * M)
    const last = (now: number): number => arrivals.filter((a) => a <= now).pop()!
    const end = start + 48 * H
    const transitions = run(clock, ctx, (now) => reading({ lastEventAt: last(now), lastArrivalAt: last(now) }), end)
    const opened = transitions.filter((t) => t.to === 'LATE')
    // Each 121-minute gap is late for one minute: one alert, which the 15-minute recovery hold then closes.
    const lateGaps = arrivals.slice(1).filter((a, i) => a - arrivals[i]! === 121 * M && arrivals[i]! + 120.5 * M <= end)
    expect(lateGaps.length).toBe(10)
    expect(opened.length).toBe(10)
    expect(transitions.filter((t) => t.to === 'OK').length).toBe(10)
    for (let i = 1; i < opened.length; i++) expect(opened[i]!.since - opened[i - 1]!.since).toBeGreaterThanOrEqual(H)
  })
})

describe('entities', () => {
  const lots = (now: number, silent: string[]): EntityReading[] =>
    ['P001', 'P002', 'P003'].map((id) => {
      const last = silent.includes(id) ? at('2026-11-21 08:00') : now
      return { id, kind: 'car-park' as const, lastEventAt: last, lastArrivalAt: last, maxAheadMs: null }
    })

  it('alerts on one silent car park while the source flows, with its own opening hours', () => {
    const now = at('2026-11-21 10:01')
    const ctx = context()
    const trackers: Trackers = new Map()
    const fresh = reading({ lastEventAt: now, lastArrivalAt: now })
    const entities = lots(now, ['P002', 'P003']).map((e) => (e.id === 'P003' ? { ...e, openingHours: 'Mo-Su 11:00-22:00' } : e))
    const { results, transitions } = evaluateCycle(now, [{ ctx, reading: fresh, entities }], trackers)
    expect(transitions.map((t) => [t.entityId, t.to])).toEqual([['P002', 'LATE']])
    expect(results[0]!.entityCounts).toMatchObject({ OK: 1, LATE: 1, QUIET: 1 })
    // Overridden per entity: P002 may be silent for 4 hours.
    const relaxed = context({ entities: { P002: { maxDelay: '4h' } } })
    expect(evaluateCycle(now, [{ ctx: relaxed, reading: fresh, entities: lots(now, ['P002']) }], new Map()).transitions).toEqual([])
  })

  it('holds entity alerts back while the whole source is late: one incident, not one per car park', () => {
    const now = at('2026-11-21 10:01')
    const silent = reading({ lastEventAt: at('2026-11-21 08:00'), lastArrivalAt: at('2026-11-21 08:00') })
    const { results, transitions } = evaluateCycle(now, [{ ctx: context(), reading: silent, entities: lots(now, ['P001', 'P002', 'P003']) }], new Map())
    expect(transitions.map((t) => [t.entityId, t.to])).toEqual([[null, 'LATE']])
    expect(results[0]!.entityCounts.LATE).toBe(3)
  })
})
