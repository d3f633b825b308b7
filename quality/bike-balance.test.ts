import { describe, expect, it } from 'vitest'
import { type AreaTracker, stepArea } from './bike-balance.ts'

const M = 60_000
const hold = { openAfterMs: 5 * M, closeAfterMs: 10 * M }
const normal: AreaTracker = { state: 'normal', since: 0, candidate: null, candidateSince: 0 }

/** Feeds observations one minute apart; returns the confirmed state after each. */
function run(observed: readonly AreaTracker['state'][]): string[] {
  let t = normal
  return observed.map((o, i) => {
    t = stepArea(t, o, i * M, hold).tracker
    return t.candidate === null ? t.state : `${t.state}>${t.candidate}`
  })
}

describe('bike-share area hysteresis', () => {
  it('confirms a shortage after openAfter and ends it after closeAfter of balance', () => {
    const seen = run(['shortage', 'shortage', 'shortage', 'shortage', 'shortage', 'shortage', ...Array<'normal'>(11).fill('normal')])
    expect(seen.slice(0, 6)).toEqual(['normal>shortage', 'normal>shortage', 'normal>shortage', 'normal>shortage', 'normal>shortage', 'shortage'])
    expect(seen.slice(6, 16)).toEqual(Array(10).fill('shortage>normal'))
    expect(seen[16]).toBe('normal')
  })

  it('starts the alert when the condition was first seen, and forgets a blip', () => {
    let t = normal
    t = stepArea(t, 'accumulation', 0, hold).tracker
    t = stepArea(t, 'normal', 2 * M, hold).tracker
    expect(t).toMatchObject({ state: 'normal', candidate: null })
    t = stepArea(t, 'accumulation', 3 * M, hold).tracker
    const r = stepArea(t, 'accumulation', 8 * M, hold)
    expect(r).toMatchObject({ changed: true, tracker: { state: 'accumulation', since: 3 * M, candidate: null } })
  })

  it('moves from one imbalance to the other after openAfter', () => {
    const t: AreaTracker = { state: 'accumulation', since: 0, candidate: null, candidateSince: 0 }
    const a = stepArea(t, 'shortage', 10 * M, hold)
    expect(a.changed).toBe(false)
    expect(stepArea(a.tracker, 'shortage', 15 * M, hold)).toMatchObject({ changed: true, tracker: { state: 'shortage', since: 10 * M } })
  })

  it('with no hold, changes at once', () => {
    expect(stepArea(normal, 'shortage', 7 * M, { openAfterMs: 0, closeAfterMs: 0 })).toMatchObject({ changed: true, tracker: { state: 'shortage', since: 7 * M } })
  })
})
