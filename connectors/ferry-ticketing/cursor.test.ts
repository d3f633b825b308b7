import { describe, expect, it } from 'vitest'
import { isCitysyncError } from '../../lib/errors.ts'
import { parseLocal } from '../../lib/local-time.ts'
import { FeedWindow, parseCursor } from './cursor.ts'
import { type Position } from './map.ts'
import { quietFrom, timetableRef } from './timetable.ts'

const TZ = 'Asia/Shanghai'
const MIN = 60_000
const pos = (id: string, local: string): Position => ({ id, ts: parseLocal(local, TZ)!, local })

describe('FeedWindow', () => {
  it('starts the first read at the given instant, later reads lookbackMs behind the newest row', () => {
    const w = new FeedWindow(undefined, 15 * MIN, TZ)
    expect(w.start(parseLocal('2026-11-14 12:00:00', TZ)!)).toEqual({ updatedAfter: '2026-11-14 12:00:00', afterId: '' })
    expect(w.admit(pos('T1', '2026-11-21 10:00:00'))).toBe(true)
    w.advance(pos('T1', '2026-11-21 10:00:00'))
    expect(w.start(0)).toEqual({ updatedAfter: '2026-11-21 09:45:00', afterId: '' })
    expect(w.cursor()).toEqual({ after: '2026-11-21 10:00:00', id: 'T1', seen: ['T1@2026-11-21 10:00:00'] })
  })

  it('skips row versions it has seen, admits a new version of the same row and late rows inside the window', () => {
    const w = new FeedWindow({ after: '2026-11-21 10:00:00', id: 'T5', seen: ['T5@2026-11-21 10:00:00', 'T4@2026-11-21 09:58:00'] }, 15 * MIN, TZ)
    expect(w.admit(pos('T4', '2026-11-21 09:58:00'))).toBe(false) // re-read of the window
    expect(w.admit(pos('T3', '2026-11-21 09:50:00'))).toBe(true) // appeared late
    expect(w.admit(pos('T3', '2026-11-21 09:50:00'))).toBe(false) // repeated on the next page
    expect(w.admit(pos('T4', '2026-11-21 10:20:00'))).toBe(true) // refunded: a new version
    expect(w.admit(pos('T2', '2026-11-21 09:44:59'))).toBe(false) // behind the window: only a repeating page serves it
  })

  it('forgets what falls out of the window as it advances, and never moves back', () => {
    const w = new FeedWindow(undefined, 10 * MIN, TZ)
    for (const p of [pos('A', '2026-11-21 10:00:00'), pos('B', '2026-11-21 10:05:00'), pos('C', '2026-11-21 10:12:00')]) {
      w.admit(p)
      w.advance(p)
    }
    w.advance(pos('A', '2026-11-21 10:00:00'))
    expect(w.cursor()).toEqual({ after: '2026-11-21 10:12:00', id: 'C', seen: ['B@2026-11-21 10:05:00', 'C@2026-11-21 10:12:00'] })
  })

  it('without a look-back, resumes exactly after the newest row', () => {
    const w = new FeedWindow({ after: '2026-11-21 10:00:00', id: 'T5', seen: [] }, 0, TZ)
    expect(w.start(0)).toEqual({ updatedAfter: '2026-11-21 10:00:00', afterId: 'T5' })
    expect(w.admit(pos('T5', '2026-11-21 10:00:00'))).toBe(false)
    expect(w.admit(pos('T6', '2026-11-21 10:00:00'))).toBe(true)
  })
})

describe('parseCursor', () => {
  it('accepts what the connector saves and nothing else', () => {
    const good = { tickets: { after: '2026-11-21 10:00:00', id: 'T5', seen: ['T5@2026-11-21 10:00:00'] } }
    expect(parseCursor(good, TZ)).toEqual(good)
    expect(parseCursor(undefined, TZ)).toEqual({})
    for (const bad of [
      [],
      { parking: { after: '2026-11-21 10:00:00', id: 'x', seen: [] } },
      { tickets: { after: 'yesterday', id: 'x', seen: [] } },
      { tickets: { after: '2026-11-21 10:00:00', id: 5, seen: [] } },
      { tickets: { after: '2026-11-21 10:00:00', id: 'x', seen: ['no-time'] } },
    ]) {
      let err: unknown
      try {
        parseCursor(bad, TZ)
      } catch (e) {
        err = e
      }
      expect(isCitysyncError(err, 'CITYSYNC_ERR_CONFIG_INVALID'), JSON.stringify(bad)).toBe(true)
    }
  })
})

describe('timetable', () => {
  const day = parseLocal('2026-11-21 00:00:00', TZ)!
  const v = (sailingId: string, local: string, status: 'scheduled' | 'cancelled' | 'arrived', version: number) => ({
    sailingId,
    terminalId: sailingId.slice(0, 3),
    scheduledDeparture: parseLocal(`2026-11-21 ${local}:00`, TZ)!,
    status,
    occurredAt: day - 6 * 3_600_000 + version,
  })

  it('expects quiet from the last sailing that was not cancelled, plus the grace period', () => {
    const sailings = [
      v('JZG-HKM-2130', '21:30', 'scheduled', 1),
      v('JZG-HKM-2130', '21:30', 'cancelled', 2), // its latest version counts
      v('JZG-HKM-2000', '20:00', 'arrived', 3),
      v('HQT-HKK-1930', '19:30', 'scheduled', 1),
    ]
    expect(quietFrom(sailings, 'JZG', day, day + 86_400_000, 90 * MIN)).toBe(parseLocal('2026-11-21 21:30:00', TZ)!)
    expect(quietFrom(sailings, 'HQT', day, day + 86_400_000, 0)).toBe(parseLocal('2026-11-21 19:30:00', TZ)!)
    expect(quietFrom(sailings, 'HQT', day + 86_400_000, day + 2 * 86_400_000, 0)).toBeNull()
  })

  it('points at the FerrySailing table', () => {
    expect(timetableRef({ graceMs: 1000 })).toEqual({
      event: 'FerrySailing',
      table: 'ferry_sailing',
      terminalColumn: 'terminalId',
      departureColumn: 'scheduledDeparture',
      statusColumn: 'status',
      graceMs: 1000,
    })
    expect(timetableRef(undefined).graceMs).toBe(90 * MIN)
  })
})
