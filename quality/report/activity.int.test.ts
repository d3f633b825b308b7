import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startWarehouseProcess, type Spawned } from '../../infra/test/processes.ts'
import { parseLocal } from '../../lib/local-time.ts'
import { ChdbWarehouse } from '../../pipelines/warehouse/chdb-warehouse.ts'
import { migrateWarehouse } from '../../pipelines/warehouse/migrate.ts'
import { ServerWarehouse } from '../../pipelines/warehouse/server-warehouse.ts'
import { toJsonEachRow, type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { backfillSince, readActivity, readDepartures, readEntityClock, readHourlyRows, readLiveRows, readLots, readRejected, readSourceClock } from './activity.ts'

// The completeness SQL is one text for chDB in process and for a ClickHouse
// server over HTTP (CLICKHOUSE_URL, else the chDB HTTP endpoint in its own
// process): the same rows give the same answers on both.

const TZ = 'Asia/Shanghai'
const at = (local: string): number => parseLocal(`${local}:00`, TZ)!
const M = 60_000
const H = 3_600_000
const FROM = at('2026-11-01 00:00')
const UNTIL = at('2026-11-02 00:00')
const S = 300_000

const dir = mkdtempSync(join(tmpdir(), 'citysync-activity-'))
let endpoint: { url: string; proc: Spawned } | undefined
const src = `act-${Date.now()}`

async function load(wh: Warehouse): Promise<void> {
  await migrateWarehouse(wh)
  const occupancy: object[] = []
  for (let t = FROM - H; t < UNTIL; t += 5 * M) {
    if (t <= at('2026-11-01 10:00') || t >= at('2026-11-01 13:00')) occupancy.push({ sourceId: src, eventId: `o1-${t}`, occurredAt: t, receivedAt: t + 2000, lotId: 'L1', free: 1, capacity: 9, status: 'open' })
    // L2 uploads its first hour an hour late.
    if (t >= FROM && t < FROM + H) occupancy.push({ sourceId: src, eventId: `o2-${t}`, occurredAt: t, receivedAt: t + H, lotId: 'L2', free: 1, capacity: 9, status: 'open' })
  }
  await wh.insertJsonEachRow('parking_occupancy', toJsonEachRow(occupancy))
  await wh.insertJsonEachRow(
    'parking_passage',
    toJsonEachRow([{ sourceId: src, eventId: 'bf1', occurredAt: at('2026-11-01 11:00'), receivedAt: at('2026-11-01 20:00'), lotId: 'L1', recordNo: 'R1', direction: 'entry', isBackfill: true }]),
  )
  await wh.insertJsonEachRow(
    'dead_letter',
    toJsonEachRow([
      { sourceId: src, eventId: 'd1', occurredAt: at('2026-11-01 12:00'), receivedAt: at('2026-11-01 12:00'), stage: 'validate', code: 'future_timestamp', reason: 'x', family: 'ParkingOccupancy', raw: JSON.stringify({ lotId: 'L1', occurredAt: at('2026-11-01 11:30') }) },
      { sourceId: src, eventId: 'd2', occurredAt: at('2026-11-01 12:10'), receivedAt: at('2026-11-01 12:10'), stage: 'connector', code: 'invalid_value', reason: 'y', family: 'ParkingOccupancy', raw: '{"parkCode":"L1","freeSpace":"x"}' },
      { sourceId: src, eventId: 'd3', occurredAt: at('2026-11-01 12:20'), receivedAt: at('2026-11-01 12:20'), stage: 'connector', code: 'malformed_json', reason: 'z', family: null, raw: '{"parkCo' },
    ]),
  )
  await wh.insertJsonEachRow(
    'ingest_log',
    toJsonEachRow(
      [at('2026-11-01 09:00'), at('2026-11-01 13:00'), at('2026-11-01 20:00')].map((a, i) => ({
        batchId: `b${i}`, sourceId: src, tableName: 'parking_occupancy', rows: i === 2 ? 1 : 10, backfillRows: i === 2 ? 1 : 0,
        minEventTime: a - H, maxEventTime: a, maxLiveEventTime: i === 2 ? null : a, minReceivedAt: a, arrivedAt: a,
      })),
    ),
  )
  await wh.insertJsonEachRow('parking_lot', toJsonEachRow([{ sourceId: src, eventId: 'l1', occurredAt: FROM - H, receivedAt: FROM - H, lotId: 'L1', name: '一号停车场', capacity: 9, openingHours: 'Mo-Su 07:00-22:00' }]))
}

async function answers(wh: Warehouse): Promise<unknown[]> {
  const mine = <T extends { sourceId: string }>(rows: T[]): T[] => rows.filter((r) => r.sourceId === src)
  const activity = mine(await readActivity(wh, FROM, UNTIL, 7 * 86_400_000)).sort((a, b) => a.entity.localeCompare(b.entity))
  const rejected = await readRejected(wh, FROM, UNTIL)
  return [
    activity,
    { byEntity: mine(rejected.byEntity).sort((a, b) => a.entity.localeCompare(b.entity)), byCode: mine(rejected.byCode).sort((a, b) => a.code.localeCompare(b.code)), byHour: mine(rejected.byHour) },
    mine(await readHourlyRows(wh, FROM, UNTIL)).sort((a, b) => a.hour - b.hour),
    mine(await readLots(wh, UNTIL)),
    await readSourceClock(wh, FROM, UNTIL, 35 * 86_400_000, 2 * H).then((c) => ({ steps: mine(c.steps), ends: mine(c.ends) })),
    await readEntityClock(wh, [{ sourceId: src, kind: 'car-park', entity: 'L2' }], FROM, UNTIL, 7 * 86_400_000, 2 * H),
    (await readLiveRows(wh, [{ sourceId: src, entity: { kind: 'car-park', id: 'L1' }, from: at('2026-11-01 10:00'), to: at('2026-11-01 13:10') }])).sort((a, b) => a.occurredAt - b.occurredAt),
    await backfillSince(wh, at('2026-11-01 19:00'), FROM, UNTIL),
    (await readDepartures(wh, FROM, UNTIL)).get(src) ?? null,
  ]
}

let expected: unknown[]

beforeAll(async () => {
  const local = new ChdbWarehouse(join(dir, 'local'))
  try {
    await load(local)
    expected = await answers(local)
  } finally {
    await local.close()
  }
  if (!process.env.CLICKHOUSE_URL) endpoint = await startWarehouseProcess(join(dir, 'http'))
})
afterAll(async () => {
  await endpoint?.proc.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('completeness reads', () => {
  it('answer as the data says on chDB in process', () => {
    const [activity, rejected, hourly, lots, sourceClock, entityClock, live, backfill] = expected as [
      Awaited<ReturnType<typeof readActivity>>,
      Awaited<ReturnType<typeof readRejected>>,
      Awaited<ReturnType<typeof readHourlyRows>>,
      Awaited<ReturnType<typeof readLots>>,
      Awaited<ReturnType<typeof readSourceClock>>,
      Awaited<ReturnType<typeof readEntityClock>>,
      Awaited<ReturnType<typeof readLiveRows>>,
      Awaited<ReturnType<typeof backfillSince>>,
    ]
    const slot = (local: string): number => at(local) / S
    expect(activity[0]).toEqual({
      sourceId: src, kind: 'car-park', entity: 'L1', rows: 288 - 35 + 1, maxLagMs: 2000,
      good: { starts: [slot('2026-11-01 00:00'), slot('2026-11-01 11:00'), slot('2026-11-01 13:00')], ends: [slot('2026-11-01 10:00'), slot('2026-11-01 11:00'), slot('2026-11-01 23:55')] },
      live: { starts: [slot('2026-11-01 00:00'), slot('2026-11-01 13:00')], ends: [slot('2026-11-01 10:00'), slot('2026-11-01 23:55')] },
      lastLiveSlotBefore: slot('2026-10-31 23:55'),
    })
    expect(activity[1]).toMatchObject({ entity: 'L2', rows: 12, maxLagMs: H, good: { starts: [slot('2026-11-01 00:00')], ends: [slot('2026-11-01 00:55')] }, lastLiveSlotBefore: null })
    expect(rejected.byEntity).toEqual([
      { sourceId: src, entity: '', count: 1, slots: { starts: [slot('2026-11-01 12:20')], ends: [slot('2026-11-01 12:20')] } },
      { sourceId: src, entity: 'L1', count: 2, slots: { starts: [slot('2026-11-01 11:30'), slot('2026-11-01 12:10')], ends: [slot('2026-11-01 11:30'), slot('2026-11-01 12:10')] } },
    ])
    expect(hourly).toHaveLength(23) // nothing landed for 12:00-13:00
    expect(hourly.reduce((n, h) => n + h.count, 0)).toBe(288 - 35 + 1 + 12)
    expect(lots).toEqual([{ sourceId: src, lotId: 'L1', name: '一号停车场', openingHours: 'Mo-Su 07:00-22:00', district: null }])
    // The first arrival (nothing before it), and 09:00 → 13:00: more than 2 h without new live data; the backfill batch at 20:00 does not count.
    expect(sourceClock.steps).toEqual([
      { sourceId: src, entity: null, kind: null, prevArrival: 0, prevLatest: 0, arrival: at('2026-11-01 09:00') },
      { sourceId: src, entity: null, kind: null, prevArrival: at('2026-11-01 09:00'), prevLatest: at('2026-11-01 09:00'), arrival: at('2026-11-01 13:00') },
    ])
    expect(sourceClock.ends).toEqual([{ sourceId: src, entity: null, kind: null, lastArrival: at('2026-11-01 13:00'), latest: at('2026-11-01 13:00') }])
    expect(entityClock.ends).toEqual([{ sourceId: src, entity: 'L2', kind: 'car-park', lastArrival: at('2026-11-01 01:55'), latest: at('2026-11-01 00:55') }])
    expect(live.map((r) => r.occurredAt)).toEqual([at('2026-11-01 10:00'), at('2026-11-01 13:00'), at('2026-11-01 13:05')])
    expect(backfill).toEqual({ rows: 1, lastArrival: at('2026-11-01 20:00') })
  })

  it('answer the same over the ClickHouse server interface', async () => {
    const server = new ServerWarehouse(process.env.CLICKHOUSE_URL ?? endpoint!.url)
    try {
      await load(server)
      expect(await answers(server)).toEqual(expected)
    } finally {
      await server.close()
    }
  })
})
