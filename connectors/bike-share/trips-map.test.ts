import { describe, expect, it } from 'vitest'
import { mapTrip, type TripMapContext } from './trips-map.ts'

const NOW = Date.parse('2026-11-21T10:00:00Z') // 18:00 in Shanghai
const ctx: TripMapContext = { operatorId: 'hellobike', timezone: 'Asia/Shanghai', coordSystem: 'GCJ02', now: NOW, futureToleranceMs: 300_000 }

const trip = {
  orderNo: 'OD20261121174102000123',
  bikeNo: '8610380112',
  startTime: '2026-11-21 17:41:02',
  endTime: '2026-11-21 17:58:40',
  startLng: 113.935912,
  startLat: 22.530542,
  endLng: 113.943177,
  endLat: 22.519004,
  rideSeconds: 1058,
  distance: 2950,
  fee: '3.00',
  isReupload: 0,
}

describe('mapTrip', () => {
  it('reads naive local times in the source zone and the fee in yuan', () => {
    expect(mapTrip(trip, ctx)).toEqual({
      ok: true,
      value: {
        occurredAt: Date.parse('2026-11-21T09:58:40Z'),
        operatorId: 'hellobike',
        tripId: 'OD20261121174102000123',
        vehicleId: '8610380112',
        startedAt: Date.parse('2026-11-21T09:41:02Z'),
        endedAt: Date.parse('2026-11-21T09:58:40Z'),
        startLat: 22.530542,
        startLon: 113.935912,
        endLat: 22.519004,
        endLon: 113.943177,
        coordSystem: 'GCJ02',
        durationS: 1058,
        distanceM: 2950,
        feeCents: 300,
        isBackfill: false,
      },
    })
  })

  it('reads the same wall time differently in another zone', () => {
    const m = mapTrip(trip, { ...ctx, timezone: 'Europe/Berlin', now: Date.parse('2026-11-21T18:00:00Z') })
    expect(m.ok && m.value.endedAt).toBe(Date.parse('2026-11-21T16:58:40Z'))
  })

  it('flags re-uploads as backfill; derives the duration when not given; 0,0 is no position', () => {
    const m = mapTrip({ ...trip, isReupload: 1, rideSeconds: undefined, startLng: 0, startLat: 0, endLng: null, endLat: null, fee: undefined }, ctx)
    expect(m).toMatchObject({ ok: true, value: { isBackfill: true, durationS: 1058, startLat: null, startLon: null, endLat: null, coordSystem: null, feeCents: null } })
  })

  it.each([
    ['no order number', { orderNo: undefined }, 'missing_field', 'missing field orderNo'],
    ['an empty bike number', { bikeNo: '' }, 'missing_field', 'bikeNo is empty'],
    ['a month 13', { startTime: '2026/13/01 00:00:00' }, 'invalid_value', 'startTime is not a valid local time: "2026/13/01 00:00:00"'],
    ['an epoch end time', { endTime: 1763719120 }, 'wrong_type', 'endTime must be a local time string, got number'],
    ['an end before the start', { endTime: '2026-11-21 17:30:00' }, 'invalid_value', 'endTime is before startTime'],
    ['an unknown fee', { fee: 'unknown' }, 'invalid_value', 'fee is not an amount in yuan: "unknown"'],
    ['an unknown distance', { distance: 'unknown' }, 'invalid_value', 'distance is not a number: "unknown"'],
    ['half a position', { endLng: 113.9, endLat: undefined }, 'missing_field', 'endLng and endLat must both be given or both be absent'],
    ['an end in the future', { endTime: '2026-11-21 18:10:00' }, 'future_timestamp', 'endTime 2026-11-21T10:10:00.000Z is 600 s ahead of now (tolerance 300 s)'],
  ])('refuses a trip with %s', (_what, patch, code, reason) => {
    expect(mapTrip({ ...trip, ...patch }, ctx)).toMatchObject({ ok: false, fault: { code, reason } })
  })
})
