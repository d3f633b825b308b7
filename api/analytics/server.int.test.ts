import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startWarehouseProcess, type Spawned } from '../../infra/test/processes.ts'
import { migrateWarehouse } from '../../pipelines/warehouse/migrate.ts'
import { ServerWarehouse } from '../../pipelines/warehouse/server-warehouse.ts'
import { ANALYTICS_DEFAULTS } from './config.ts'
import { parkingOccupancy, parkingTurnover } from './parking.ts'
import { refreshParking } from './refresh.ts'
import { runAnalystSql } from './sql-guard.ts'
import { CAP_MS, land, LATE_EXIT, LOTS, NOW, PASSAGES, SNAPSHOTS, TZ } from './test-fixture.ts'
import { parsePeriod } from './time-range.ts'

// The same analytics SQL through the ClickHouse server driver (@clickhouse/client
// over HTTP: it appends FORMAT to every query, INSERT ... SELECT and EXPLAIN
// included), against the chDB HTTP endpoint in its own process.

const dir = mkdtempSync(join(tmpdir(), 'citysync-analytics-server-'))
let endpoint: { url: string; proc: Spawned }
let wh: ServerWarehouse

beforeAll(async () => {
  endpoint = await startWarehouseProcess(join(dir, 'http'))
  wh = new ServerWarehouse(endpoint.url)
  await migrateWarehouse(wh)
})
afterAll(async () => {
  await wh?.close()
  await endpoint?.proc.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('analytics through the server driver', () => {
  it('refreshes and answers the hand-worked figures', async () => {
    await land(wh, 'parking_lot', LOTS)
    await land(wh, 'parking_occupancy', SNAPSHOTS)
    await land(wh, 'parking_passage', PASSAGES.filter((p) => p !== LATE_EXIT))
    expect(await refreshParking(wh, { now: NOW, timezone: TZ, sessionCapMs: CAP_MS })).toMatchObject({ full: true, lots: 3 })
    await land(wh, 'parking_passage', [LATE_EXIT])
    expect(await refreshParking(wh, { now: NOW, timezone: TZ, sessionCapMs: CAP_MS, watermarkMarginMs: 0 })).toMatchObject({ full: false })

    const q = { scope: { lot: 'P1' }, period: parsePeriod('2026-11-02', '2026-11-04', 'day', TZ), granularity: 'day' as const, byLot: false, timezone: TZ, maxRows: 100 }
    const occ = await parkingOccupancy(wh, q)
    expect(occ.items.map((i) => [i.bucket, i.vehicleHours, i.occupancyRate, i.peakHour])).toEqual([
      ['2026-11-02', 1120 / 60, 1120 / 5760, '2026-11-02T09:00:00+08:00'],
      ['2026-11-03', 1590 / 60, 1590 / 7200, '2026-11-03T16:00:00+08:00'],
    ])
    expect((await parkingTurnover(wh, q)).totals).toEqual({ spaceDays: 9, sessions: 15, turnoverRate: 15 / 9, averageDurationMinutes: 3080 / 8, revenueCents: 5900, revenueYuan: 59 })
  })

  it('guards analyst SQL the same way', async () => {
    const r = await runAnalystSql(wh, "SELECT status, count() AS n FROM analytics_parking_session WHERE lotId = 'P1' GROUP BY status ORDER BY status", ANALYTICS_DEFAULTS.sql)
    expect(r.rows).toEqual([
      { status: 'capped', n: 1 },
      { status: 'entry_only', n: 2 },
      { status: 'exit_only', n: 4 },
      { status: 'matched', n: 7 },
      { status: 'open', n: 1 },
    ])
    await expect(runAnalystSql(wh, 'SELECT count() FROM parking_passage', ANALYTICS_DEFAULTS.sql)).rejects.toThrow(/table default\.parking_passage is not one of the analytics views/)
    await expect(runAnalystSql(wh, 'SELECT * FROM analytics_parking_lot SETTINGS readonly = 0', ANALYTICS_DEFAULTS.sql)).rejects.toThrow('SETTINGS are not allowed')
  })
})
