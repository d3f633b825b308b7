import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openWarehouse } from '../../pipelines/warehouse/open.ts'
import { type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { parkingOccupancy, parkingTurnover, type ParkingQuery } from './parking.ts'
import { refreshParking, resetParkingAnalytics } from './refresh.ts'
import { type ResolvedScope } from './scope.ts'
import { CAP_MS, CAPACITY_CHANGE, L, land, LATE_EXIT, LOTS, NOW, PASSAGES, SNAPSHOTS, TZ } from './test-fixture.ts'
import { type Granularity, parsePeriod } from './time-range.ts'

// Every figure of the hand-built car parks (test-fixture.ts), worked out by
// hand below, against what the refresher and the query builders compute in
// chDB: once landed in three steps with a refresh after each (the late exit
// of C last), once rebuilt from scratch.
//
// P1's vehicles parked (running count, capped at capacity 4, 6 from D2 12:00),
// in vehicle-minutes:
//   D1 00:00-08:00 1 → 480 | 08-09 2 → 120 | 09:00-09:15 3 → 45 | 09:15-09:20 4 → 20
//      09:20-09:30 5, capacity 4 → 40 | 09:30-09:40 4 → 40 | 09:40-09:45 3 → 15
//      09:45-10:30 2 → 90 | 10:30-11:00 1 → 30 | 11:00-20:00 0 (X out; Z out does
//      not go below 0) | 20:00-24:00 1 → 240                       D1: 1120
//   D2 00:00-07:30 1 → 450 | 07:30-08:00 2 → 60 | 08-09 1 → 60 | 09-10 0 (Y out)
//      10-11 1 → 60 | 11-13 0 | 13-14 1 → 60 | 14-16 2 → 240 | 16-17 3 → 180
//      17-18 2 → 120 | 18-24 1 → 360                               D2: 1590
//   space-minutes: D1 4 × 1440 = 5760, D2 4 × 720 + 6 × 720 = 7200.
//   Busiest hour: D1 09:00 (45 + 20 + 40 + 40 + 15 + 2 × 15 = 190 of 240),
//   D2 16:00 (180 of 360; 07:00 is 90 of 240).
// P2 (snapshots): D1 00-08 0, 08-12 6 → 1440, 12-18 3 → 1080, 18-24 0 (12 free of
//   its own 12) = 2520 vehicle-minutes; D2 0. Space 10 × 1440 per day.
// P3: series from its first passage (D1 10:00): 1 vehicle 10:00-14:00 of 2 spaces.

const H = 60 // minutes per hour

let dir: string
let wh: Warehouse

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'citysync-analytics-'))
  wh = await openWarehouse({ dataDir: dir })
})
afterAll(async () => {
  await wh.close()
  rmSync(dir, { recursive: true, force: true })
})

function query(scope: ResolvedScope, granularity: Granularity, from: string, to: string, extra: Partial<ParkingQuery> = {}): ParkingQuery {
  return { scope, period: parsePeriod(from, to, granularity, TZ), granularity, byLot: false, timezone: TZ, maxRows: 10_000, ...extra }
}

const P1: ResolvedScope = { lot: 'P1' }
const D1 = '2026-11-02'
const D3 = '2026-11-04'

async function sessionsOf(lot: string): Promise<unknown[]> {
  const rows = await wh.query<{ start: number; status: string; minutes: number | null; fee: number | null; end: number | null }>(
    `SELECT toUnixTimestamp64Milli(startAt) AS start, status, durationMs / 60000 AS minutes, feeCents AS fee, toUnixTimestamp64Milli(endAt) AS end
     FROM analytics_parking_session WHERE lotId = {lot:String} ORDER BY startAt, sessionId`,
    { lot },
  )
  return rows.map((r) => [r.start, r.status, r.minutes, r.fee, r.end])
}

/** The figures of the fixture, whatever way it was landed and refreshed. */
async function expectHandFigures(): Promise<void> {
  // Sessions: [start, status, minutes, fee (fen), end]
  expect(await sessionsOf('P1')).toEqual([
    [L('2026-11-02 00:00'), 'capped', 1440, null, L('2026-11-03 00:00')],
    [L('2026-11-02 08:00'), 'matched', 150, 500, L('2026-11-02 10:30')],
    [L('2026-11-02 09:00'), 'matched', 45, 300, L('2026-11-02 09:45')],
    [L('2026-11-02 09:15'), 'matched', 15, 100, L('2026-11-02 09:30')],
    [L('2026-11-02 09:20'), 'matched', 20, 100, L('2026-11-02 09:40')],
    [L('2026-11-02 11:00'), 'exit_only', null, 200, L('2026-11-02 11:00')],
    [L('2026-11-02 12:00'), 'exit_only', null, null, L('2026-11-02 12:00')],
    [L('2026-11-02 20:00'), 'matched', 720, 1500, L('2026-11-03 08:00')],
    [L('2026-11-03 07:30'), 'matched', 630, 2000, L('2026-11-03 18:00')],
    [L('2026-11-03 09:00'), 'exit_only', null, 800, L('2026-11-03 09:00')],
    [L('2026-11-03 10:00'), 'entry_only', null, null, null],
    [L('2026-11-03 11:00'), 'exit_only', null, 300, L('2026-11-03 11:00')],
    [L('2026-11-03 13:00'), 'open', null, null, null],
    [L('2026-11-03 14:00'), 'entry_only', null, null, null],
    [L('2026-11-03 16:00'), 'matched', 60, 100, L('2026-11-03 17:00')],
  ])

  // P1 by day.
  const occ = await parkingOccupancy(wh, query(P1, 'day', D1, D3))
  expect(occ.items).toEqual([
    { bucket: '2026-11-02', lotHours: 24, spaceHours: 5760 / H, vehicleHours: 1120 / H, occupancyRate: 1120 / 5760, peakOccupancyRate: 190 / 240, peakHour: '2026-11-02T09:00:00+08:00', snapshotShare: 0 },
    { bucket: '2026-11-03', lotHours: 24, spaceHours: 7200 / H, vehicleHours: 1590 / H, occupancyRate: 1590 / 7200, peakOccupancyRate: 180 / 360, peakHour: '2026-11-03T16:00:00+08:00', snapshotShare: 0 },
  ])
  const turn = await parkingTurnover(wh, query(P1, 'day', D1, D3))
  expect(turn.items).toEqual([
    // 8 sessions: F A B H I C (entries) + X Z (exits without entry); space-days 4 × 1
    { bucket: '2026-11-02', spaceDays: 4, sessions: 8, turnoverRate: 8 / 4, matched: 5, open: 0, capped: 1, entryOnly: 0, exitOnly: 2, entries: 6, exits: 6,
      averageDurationMinutes: (1440 + 150 + 45 + 15 + 20 + 720) / 6, revenueCents: 500 + 300 + 100 + 100 + 200, revenueYuan: 12 },
    // 7 sessions: D, plateless in, E, G, G + Y, plateless out; space-days 4 × 0.5 + 6 × 0.5
    { bucket: '2026-11-03', spaceDays: 5, sessions: 7, turnoverRate: 7 / 5, matched: 2, open: 1, capped: 0, entryOnly: 2, exitOnly: 2, entries: 5, exits: 5,
      averageDurationMinutes: (630 + 60) / 2, revenueCents: 1500 + 800 + 300 + 100 + 2000, revenueYuan: 47 },
  ])
  expect(turn.totals).toEqual({ spaceDays: 9, sessions: 15, turnoverRate: 15 / 9, averageDurationMinutes: 3080 / 8, revenueCents: 5900, revenueYuan: 59 })

  // P1 by month: one bucket, the same sums.
  const month = await parkingOccupancy(wh, query(P1, 'month', D1, D3))
  expect(month.items).toEqual([
    { bucket: '2026-11', lotHours: 48, spaceHours: 12960 / H, vehicleHours: 2710 / H, occupancyRate: 2710 / 12960, peakOccupancyRate: 190 / 240, peakHour: '2026-11-02T09:00:00+08:00', snapshotShare: 0 },
  ])
  const monthTurn = await parkingTurnover(wh, query(P1, 'month', D1, D3))
  expect(monthTurn.items).toEqual([
    { bucket: '2026-11', spaceDays: 9, sessions: 15, turnoverRate: 15 / 9, matched: 7, open: 1, capped: 1, entryOnly: 2, exitOnly: 4, entries: 11, exits: 11, averageDurationMinutes: 3080 / 8, revenueCents: 5900, revenueYuan: 59 },
  ])

  // P1 by hour, D1 09:00-11:00.
  const hours = await parkingOccupancy(wh, query(P1, 'hour', '2026-11-02T09:00', '2026-11-02T11:00'))
  expect(hours.items).toEqual([
    { bucket: '2026-11-02T09:00+08:00', lotHours: 1, spaceHours: 4, vehicleHours: 190 / H, occupancyRate: 190 / 240, peakOccupancyRate: 190 / 240, peakHour: '2026-11-02T09:00:00+08:00', snapshotShare: 0 },
    // 10:00-10:30 2, 10:30-11:00 1
    { bucket: '2026-11-02T10:00+08:00', lotHours: 1, spaceHours: 4, vehicleHours: 90 / H, occupancyRate: 90 / 240, peakOccupancyRate: 90 / 240, peakHour: '2026-11-02T10:00:00+08:00', snapshotShare: 0 },
  ])
  const hourTurn = await parkingTurnover(wh, query(P1, 'hour', '2026-11-02T09:00', '2026-11-02T11:00'))
  expect(hourTurn.items).toEqual([
    { bucket: '2026-11-02T09:00+08:00', spaceDays: 4 / 24, sessions: 3, turnoverRate: 3 / (4 / 24), matched: 3, open: 0, capped: 0, entryOnly: 0, exitOnly: 0, entries: 3, exits: 3, averageDurationMinutes: (45 + 15 + 20) / 3, revenueCents: 500, revenueYuan: 5 },
    { bucket: '2026-11-02T10:00+08:00', spaceDays: 4 / 24, sessions: 0, turnoverRate: 0, matched: 0, open: 0, capped: 0, entryOnly: 0, exitOnly: 0, entries: 0, exits: 1, averageDurationMinutes: null, revenueCents: 500, revenueYuan: 5 },
  ])

  // P2: occupancy from its snapshots only.
  const p2 = await parkingOccupancy(wh, query({ lot: 'P2' }, 'day', D1, D3, { byLot: true }))
  expect(p2.items).toEqual([
    { bucket: '2026-11-02', sourceId: 'fx-parking', lotId: 'P2', name: '停车场 P2', district: '横琴', lotHours: 24, spaceHours: 240, vehicleHours: 2520 / H, occupancyRate: 2520 / 14400, peakOccupancyRate: 360 / 600, peakHour: '2026-11-02T08:00:00+08:00', snapshotShare: 1, averageCapacity: 10, maxOccupied: 6 },
    { bucket: '2026-11-03', sourceId: 'fx-parking', lotId: 'P2', name: '停车场 P2', district: '横琴', lotHours: 24, spaceHours: 240, vehicleHours: 0, occupancyRate: 0, peakOccupancyRate: 0, peakHour: '2026-11-03T00:00:00+08:00', snapshotShare: 1, averageCapacity: 10, maxOccupied: 0 },
  ])

  // District 横琴 = P1 + P2 (their descriptions name it); the peak is the lots' busiest hour together.
  const district: ResolvedScope = { district: '横琴', districtSources: [] }
  const d = await parkingOccupancy(wh, query(district, 'day', D1, D3))
  expect(d.items).toEqual([
    // hour 09: P1 190 + P2 360 vehicle-minutes of 240 + 600
    { bucket: '2026-11-02', lotHours: 48, spaceHours: (5760 + 14400) / H, vehicleHours: (1120 + 2520) / H, occupancyRate: 3640 / 20160, peakOccupancyRate: 550 / 840, peakHour: '2026-11-02T09:00:00+08:00', snapshotShare: 0.5 },
    // hour 16: P1 180 + P2 0 of 360 + 600
    { bucket: '2026-11-03', lotHours: 48, spaceHours: (7200 + 14400) / H, vehicleHours: 1590 / H, occupancyRate: 1590 / 21600, peakOccupancyRate: 180 / 960, peakHour: '2026-11-03T16:00:00+08:00', snapshotShare: 0.5 },
  ])
  expect(d.totals).toEqual({ lotHours: 96, spaceHours: 41760 / H, vehicleHours: 5230 / H, occupancyRate: 5230 / 41760, peakOccupancyRate: 550 / 840, peakHour: '2026-11-02T09:00:00+08:00' })
  const dTurn = await parkingTurnover(wh, query(district, 'day', D1, D3))
  expect(dTurn.items.map((i) => [i.bucket, i.sessions, i.spaceDays, i.turnoverRate, i.averageDurationMinutes, i.revenueCents])).toEqual([
    ['2026-11-02', 9, 14, 9 / 14, (2390 + 60) / 7, 1800],
    ['2026-11-03', 7, 15, 7 / 15, 690 / 2, 4700],
  ])

  // A district that only the source names (P3's description has none).
  const p3 = await parkingOccupancy(wh, query({ district: '香洲', districtSources: ['fx-other'] }, 'day', D1, D3, { byLot: true }))
  expect(p3.items.map((i) => [i.lotId, i.bucket, i.lotHours, i.spaceHours, i.vehicleHours, i.occupancyRate, i.peakHour])).toEqual([
    ['P3', '2026-11-02', 14, 28, 4, 4 / 28, '2026-11-02T10:00:00+08:00'],
    ['P3', '2026-11-03', 24, 48, 0, 0, '2026-11-03T00:00:00+08:00'],
  ])
  const p3Turn = await parkingTurnover(wh, query({ district: '香洲', districtSources: ['fx-other'] }, 'day', D1, D3))
  expect(p3Turn.items[0]).toMatchObject({ sessions: 1, spaceDays: 28 / 24, turnoverRate: 1 / (28 / 24), averageDurationMinutes: 240, revenueCents: 400 })

  // Which car parks are full at 9:00 on weekdays: hour 9 of Mon and Tue, per lot.
  const nine = await parkingOccupancy(wh, query(district, 'day', D1, D3, { byLot: true, hours: [9], weekdays: [1, 2, 3, 4, 5] }))
  expect(nine.items.map((i) => [i.lotId, i.bucket, i.vehicleHours, i.spaceHours, i.occupancyRate, i.maxOccupied])).toEqual([
    ['P1', '2026-11-02', 190 / H, 4, 190 / 240, 4],
    ['P1', '2026-11-03', 0, 4, 0, 0],
    ['P2', '2026-11-02', 6, 10, 6 / 10, 6],
    ['P2', '2026-11-03', 0, 10, 0, 0],
  ])
  const weekend = await parkingOccupancy(wh, query(district, 'day', D1, D3, { byLot: true, weekdays: [6, 7] }))
  expect(weekend.items).toEqual([])
  // The same filter on turnover: sessions starting 09:00-10:00 on D1 (B, H, I; Q at P2).
  const nineTurn = await parkingTurnover(wh, query(district, 'day', D1, D3, { hours: [9] }))
  expect(nineTurn.items.map((i) => [i.bucket, i.sessions, i.entries, i.exits])).toEqual([
    ['2026-11-02', 4, 4, 3],
    ['2026-11-03', 1, 0, 1],
  ])
}

describe('parking analytics on hand-built car parks', () => {
  it('lands in three steps, refreshing after each, the late exit last: every figure as worked out by hand', async () => {
    const d2 = L('2026-11-03 00:00')
    const early = PASSAGES.filter((p) => (p.occurredAt as number) < d2 && p !== LATE_EXIT)
    const later = PASSAGES.filter((p) => (p.occurredAt as number) >= d2 && p !== LATE_EXIT)
    const refresh = (now: number): ReturnType<typeof refreshParking> => refreshParking(wh, { now, timezone: TZ, sessionCapMs: CAP_MS, watermarkMarginMs: 0 })

    await land(wh, 'parking_lot', LOTS.filter((l) => l !== CAPACITY_CHANGE))
    await land(wh, 'parking_occupancy', SNAPSHOTS)
    await land(wh, 'parking_passage', early)
    expect((await refresh(d2)).full).toBe(true)
    // C is inside (no exit yet), F's stay has just reached the cap.
    expect((await sessionsOf('P1')).map((s) => (s as unknown[])[1])).toEqual(['capped', 'matched', 'matched', 'matched', 'matched', 'exit_only', 'exit_only', 'open'])

    await land(wh, 'parking_lot', [CAPACITY_CHANGE])
    await land(wh, 'parking_passage', later)
    const noon = await refresh(L('2026-11-03 12:30'))
    expect(noon.full).toBe(false)
    // Without its exit C is still open at 12:30 (16.5 h < 24 h).
    expect(((await sessionsOf('P1'))[7] as unknown[]).slice(0, 2)).toEqual([L('2026-11-02 20:00'), 'open'])

    await land(wh, 'parking_passage', [LATE_EXIT])
    const last = await refresh(NOW)
    expect(last.full).toBe(false)
    await expectHandFigures()
  })

  it('rebuilt from scratch, gives the same figures', async () => {
    await resetParkingAnalytics(wh)
    const r = await refreshParking(wh, { now: NOW, timezone: TZ, sessionCapMs: CAP_MS })
    expect(r).toMatchObject({ full: true, lots: 3 })
    await expectHandFigures()
  })

  it('a refresh with nothing new keeps the figures and extends the series to the new time', async () => {
    await refreshParking(wh, { now: NOW + 30 * 60_000, timezone: TZ, sessionCapMs: CAP_MS, watermarkMarginMs: 0 })
    const rows = await wh.query<{ lotId: string; hours: number; lastMs: number; coveredMs: number }>(
      `SELECT lotId, count() AS hours, toInt64(toUnixTimestamp(max(hour))) * 1000 AS lastMs, argMax(coveredMs, hour) AS coveredMs
       FROM analytics_parking_lot_hour GROUP BY lotId ORDER BY lotId`,
    )
    // P1 and P2 from D1 00:00, P3 from D1 10:00, all up to D3 00:30 (a half hour).
    expect(rows).toEqual([
      { lotId: 'P1', hours: 49, lastMs: NOW, coveredMs: 1_800_000 },
      { lotId: 'P2', hours: 49, lastMs: NOW, coveredMs: 1_800_000 },
      { lotId: 'P3', hours: 39, lastMs: NOW, coveredMs: 1_800_000 },
    ])
    // E (in D2 13:00) is still open; by D3 13:00 it is capped.
    await refreshParking(wh, { now: L('2026-11-04 13:00'), timezone: TZ, sessionCapMs: CAP_MS, watermarkMarginMs: 0 })
    expect((await sessionsOf('P1'))[12]).toEqual([L('2026-11-03 13:00'), 'capped', 1440, null, L('2026-11-04 13:00')])
  })
})

describe('district hours from their sums (parking_district_hour)', () => {
  const HENGQIN: ResolvedScope = { district: '横琴', districtSources: [] }
  const XIANGZHOU: ResolvedScope = { district: '香洲', districtSources: ['fx-other'] }
  const refresh = (now: number): ReturnType<typeof refreshParking> => refreshParking(wh, { now, timezone: TZ, sessionCapMs: CAP_MS, watermarkMarginMs: 0 })

  /** Every district query whose hours come from the sums, against the same query over the lots' hours. */
  async function expectSumsEqualLots(scope: ResolvedScope, to: string): Promise<void> {
    const cases: [Granularity, Partial<ParkingQuery>][] = [['hour', {}], ['day', { hours: [9, 16] }], ['month', { hours: [10], weekdays: [1] }]]
    for (const [granularity, extra] of cases) {
      const q = query(scope, granularity, D1, to, extra)
      const lots = { ...q, plan: 'lots' as const }
      expect(await parkingOccupancy(wh, q)).toEqual(await parkingOccupancy(wh, lots))
      expect(await parkingTurnover(wh, q)).toEqual(await parkingTurnover(wh, lots))
    }
  }

  /** The sums as stored, against the lot hours summed in the test: per district, source and hour. */
  async function expectRowsEqualRaw(): Promise<void> {
    const cols = 'count() AS lots, sum(coveredMs) AS c, sum(spaceMs) AS s, sum(vehicleMs) AS v, sum(sessions) AS n, sum(revenueCents) AS r, sum(entries) AS e'
    const fromLots = await wh.query(
      `SELECT ifNull(l.district, '') AS district, h.sourceId AS sourceId, toInt64(toUnixTimestamp(h.hour)) AS hour, ${cols}
       FROM parking_lot_hour AS h FINAL INNER JOIN analytics_parking_lot AS l ON h.sourceId = l.sourceId AND h.lotId = l.lotId
       GROUP BY district, sourceId, hour ORDER BY district, sourceId, hour`,
    )
    const sums = await wh.query(
      `SELECT district, sourceId, toInt64(toUnixTimestamp(hour)) AS hour, sum(lots) AS lots, sum(coveredMs) AS c, sum(spaceMs) AS s, sum(vehicleMs) AS v,
         sum(sessions) AS n, sum(revenueCents) AS r, sum(entries) AS e
       FROM parking_district_hour FINAL GROUP BY district, sourceId, hour ORDER BY district, sourceId, hour`,
    )
    expect(sums.length).toBeGreaterThan(0)
    expect(sums).toEqual(fromLots)
  }

  it('are the lots summed, and a district query from them equals the one over the lots', async () => {
    // Left by the tests above: refreshed incrementally up to D3 13:00.
    await expectRowsEqualRaw()
    await expectSumsEqualLots(HENGQIN, D3)
    await expectSumsEqualLots(XIANGZHOU, D3)
    // One figure by hand: 横琴 at D1 09:00 is P1 190 + P2 360 vehicle-minutes of 240 + 600.
    const nine = await parkingOccupancy(wh, query(HENGQIN, 'hour', '2026-11-02T09:00', '2026-11-02T10:00'))
    expect(nine.items).toEqual([
      { bucket: '2026-11-02T09:00+08:00', lotHours: 2, spaceHours: 14, vehicleHours: 550 / H, occupancyRate: 550 / 840, peakOccupancyRate: 550 / 840, peakHour: '2026-11-02T09:00:00+08:00', snapshotShare: 0.5 },
    ])
  })

  it('follow a car park that moves to another district, and late passages', async () => {
    // P2's new description puts it in 香洲; a late visit at P3 on D1.
    await land(wh, 'parking_lot', [{ ...LOTS[2]!, eventId: 'P2-lot-moved', occurredAt: L('2026-11-04 13:10'), receivedAt: L('2026-11-04 13:10'), district: '香洲' }])
    await land(wh, 'parking_passage', [
      { ...PASSAGES[24]!, eventId: 'P3-late-entry', recordNo: 'late-1', occurredAt: L('2026-11-02 11:00'), receivedAt: L('2026-11-04 13:10') },
      { ...PASSAGES[25]!, eventId: 'P3-late-exit', recordNo: 'late-2', plateKey: 'key-R', occurredAt: L('2026-11-02 12:00'), receivedAt: L('2026-11-04 13:10') },
    ])
    await refresh(L('2026-11-04 14:00'))
    await expectRowsEqualRaw()
    await expectSumsEqualLots(HENGQIN, '2026-11-05')
    await expectSumsEqualLots(XIANGZHOU, '2026-11-05')
    const lots = await wh.query<{ district: string; sourceId: string; lots: number }>(
      `SELECT district, sourceId, max(lots) AS lots FROM parking_district_hour FINAL GROUP BY district, sourceId ORDER BY district, sourceId`,
    )
    // P3's description names no district: '' of its source; 横琴 keeps P1 only.
    expect(lots).toEqual([
      { district: '', sourceId: 'fx-other', lots: 1 },
      { district: '横琴', sourceId: 'fx-parking', lots: 1 },
      { district: '香洲', sourceId: 'fx-parking', lots: 1 },
    ])
    // 香洲 at D1 09:00 is now P2's 360 vehicle-minutes of 600 (P3's series starts at 10:00).
    const nine = await parkingOccupancy(wh, query(XIANGZHOU, 'hour', '2026-11-02T09:00', '2026-11-02T10:00'))
    expect(nine.items.map((i) => [i.lotHours, i.vehicleHours, i.spaceHours])).toEqual([[1, 6, 10]])
  })

  it('are rebuilt by a full refresh', async () => {
    await resetParkingAnalytics(wh)
    await refreshParking(wh, { now: L('2026-11-04 14:00'), timezone: TZ, sessionCapMs: CAP_MS })
    await expectRowsEqualRaw()
    await expectSumsEqualLots(HENGQIN, '2026-11-05')
    await expectSumsEqualLots(XIANGZHOU, '2026-11-05')
  })
})
