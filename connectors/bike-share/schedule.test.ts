import { describe, expect, it } from 'vitest'
import { type BikeShareCursor, emptyCursor, freshness, isDue, nextFetchAt, operatorStatusDue, startCursor } from './schedule.ts'

const T = Date.UTC(2026, 10, 21, 0, 0, 0)

describe('ttl scheduling', () => {
  it('a file is due when never fetched, or once its ttl has run out since the fetch', () => {
    expect(isDue(undefined, T)).toBe(true)
    const state = { lastUpdated: T - 5_000, nextFetchAt: nextFetchAt(T, 60) }
    expect(state.nextFetchAt).toBe(T + 60_000)
    expect(isDue(state, T)).toBe(false)
    expect(isDue(state, T + 59_999)).toBe(false)
    expect(isDue(state, T + 60_000)).toBe(true)
  })

  it('ttl 0 means every read; a negative ttl counts as 0', () => {
    expect(isDue({ lastUpdated: T, nextFetchAt: nextFetchAt(T, 0) }, T)).toBe(true)
    expect(nextFetchAt(T, -10)).toBe(T)
  })

  it('counts the ttl from the fetch, not from last_updated (a stale producer must not make every read fetch)', () => {
    const staleSince = T - 3_600_000
    const state = { lastUpdated: staleSince, nextFetchAt: nextFetchAt(T, 60) }
    expect(isDue(state, T + 30_000)).toBe(false)
  })

  it('tells a new snapshot from the same one and from an older one', () => {
    const state = { lastUpdated: T, nextFetchAt: T }
    expect(freshness(undefined, T)).toBe('new')
    expect(freshness(state, T + 1)).toBe('new')
    expect(freshness(state, T)).toBe('same')
    expect(freshness(state, T - 1)).toBe('older')
  })
})

describe('operator status', () => {
  const cursor = (patch: Partial<BikeShareCursor>): BikeShareCursor => ({ ...emptyCursor(), ...patch })

  it('adds vehicles at stations and vehicles elsewhere, stamped with the later snapshot', () => {
    expect(operatorStatusDue(cursor({ stationVehicles: { at: T, count: 40 }, freeVehicles: { at: T + 5_000, count: 7 } }))).toEqual({ at: T + 5_000, vehiclesReporting: 47 })
    expect(operatorStatusDue(cursor({ freeVehicles: { at: T, count: 6 } }))).toEqual({ at: T, vehiclesReporting: 6 })
    expect(operatorStatusDue(cursor({}))).toBeNull()
  })

  it('is emitted once per instant: not again until a newer snapshot is taken', () => {
    const c = cursor({ stationVehicles: { at: T, count: 40 }, freeVehicles: { at: T, count: 7 }, operator: { at: T, peak: 47 } })
    expect(operatorStatusDue(c)).toBeNull()
    expect(operatorStatusDue({ ...c, freeVehicles: { at: T + 60_000, count: 9 } })).toEqual({ at: T + 60_000, vehiclesReporting: 49 })
  })
})

describe('startCursor', () => {
  it('starts empty from nothing and keeps what it knows', () => {
    expect(startCursor(undefined)).toEqual(emptyCursor())
    expect(startCursor(null)).toEqual(emptyCursor())
    const saved = {
      ...emptyCursor(),
      discovery: { url: 'https://x/gbfs.json', version: '3.0', language: null, feeds: { station_status: 'https://x/ss', geofencing_zones: 'https://x/g' }, lastUpdated: T, nextFetchAt: T },
      files: { station_status: { lastUpdated: T, nextFetchAt: T + 60_000 }, station_information: { lastUpdated: T, nextFetchAt: T, contentHash: 'abc' } },
      systemId: 'sys',
      operator: { at: T, peak: 12 },
      trips: { cursor: 'o5' },
    }
    const c = startCursor(JSON.parse(JSON.stringify(saved)))
    expect(c.discovery?.feeds).toEqual({ station_status: 'https://x/ss' })
    expect(c.files).toEqual(saved.files)
    expect(c).toMatchObject({ systemId: 'sys', operator: { at: T, peak: 12 }, trips: { cursor: 'o5' } })
  })

  it.each([
    ['a list', [], 'not an object'],
    ['a malformed file state', { files: { station_status: { lastUpdated: 'x' } } }, 'files.station_status is malformed'],
    ['a malformed operator', { operator: { at: 1 } }, 'operator is malformed'],
    ['a malformed trips cursor', { trips: { cursor: 5 } }, 'trips is malformed'],
  ])('refuses %s, saying how to clear it', (_what, saved, message) => {
    expect(() => startCursor(saved)).toThrow(message)
    expect(() => startCursor(saved)).toThrow('DELETE /api/v1/sources/:id/cursor')
  })
})
