import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../lib/clock.ts'
import { SchemaCatalogue } from '../schemas/catalogue.ts'
import { type ParkingPassage } from '../schemas/events.ts'
import { type IncomingBatch } from './bus/bus.ts'
import { MemoryBus } from './bus/memory-bus.ts'
import { Publisher, HEADER_CONTENT } from './publisher.ts'
import { WarehouseSink } from './warehouse-sink.ts'
import { openWarehouse } from './warehouse/open.ts'
import { type Warehouse } from './warehouse/warehouse.ts'

const catalogue = SchemaCatalogue.load()
const clock = new ManualClock('2026-11-21T02:00:00Z')
const protect = (plate: string | null) => ({ plateKey: plate ? 'key-' + plate.length : null, plateCipher: plate ? 'c1' : null, plateMasked: plate ? '粤C·***45' : null })
let dir: string
let wh: Warehouse

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'citysync-sink-'))
  wh = await openWarehouse({ dataDir: dir })
})
afterAll(async () => {
  await wh.close()
  rmSync(dir, { recursive: true, force: true })
})

/** Publishes through a real Publisher and captures the batch the bus delivers. */
async function batchOf(build: (p: Publisher) => void): Promise<IncomingBatch> {
  const bus = new MemoryBus()
  const pub = new Publisher({ sourceId: 'lot-vendor-a', bus, catalogue, clock, protectPlate: protect })
  build(pub)
  const ctl = new AbortController()
  const batches: IncomingBatch[] = []
  const sub = bus.subscribe({ group: 'g', topics: ['citysync.parking.passage', 'citysync.ingest-error'], maxBatchSize: 1000, maxWaitMs: 5, signal: ctl.signal }, (b) => {
    batches.push(b)
    return Promise.resolve()
  })
  await pub.flush()
  ctl.abort()
  await sub.done
  const passage = batches.find((b) => b.topic === 'citysync.parking.passage')
  return { ...passage!, messages: batches.flatMap((b) => b.messages) }
}

const passage = (recordNo: string, at: string, extra: Partial<ParkingPassage> = {}) => ({
  lotId: 'HQ01',
  recordNo,
  direction: 'entry' as const,
  gateId: 'G1',
  plate: '粤C12345',
  plateType: 'blue',
  isBackfill: false,
  feeCents: null,
  entryAt: null,
  occurredAt: Date.parse(at),
  ...extra,
})

describe('WarehouseSink (chDB)', () => {
  it('lands good rows once, drops re-deliveries, dead-letters conflicts and future times, writes the ingest log', async () => {
    const sink = new WarehouseSink({ warehouse: wh, catalogue, clock, log: pino({ level: 'silent' }) })
    const batch = await batchOf((p) => {
      p.record('ParkingPassage', passage('R1', '2026-11-21T01:00:00Z'))
      p.record('ParkingPassage', passage('R2', '2026-11-21T01:10:00Z', { isBackfill: true }))
      p.record('ParkingPassage', passage('R1', '2026-11-21T01:00:00Z')) // exact re-delivery
      p.record('ParkingPassage', passage('R3', '2026-11-21T01:20:00Z'))
      p.record('ParkingPassage', passage('R3', '2026-11-21T01:25:00Z')) // same record number, other content
      p.record('ParkingPassage', passage('R4', '2026-11-23T01:00:00Z')) // two days ahead
      p.reject('connector', 'missing_field', 'inTime is missing', 'ParkingPassage', JSON.stringify({ recordNo: 'R5', plateNo: '粤C99999' }))
    })
    // Every message names its source, schema id (as in its wire header), trace and content.
    const first = batch.messages[0]!
    expect(Object.keys(first.headers).sort()).toEqual(['citysync-content-hash', 'citysync-schema-id', 'citysync-source-id', 'citysync-trace-id'])
    expect(first.headers['citysync-schema-id']).toBe(String(first.value.readUInt32BE(1)))
    expect(first.headers['citysync-source-id']).toBe('lot-vendor-a')
    await sink.handle(batch)

    const rows = await wh.query<{ recordNo: string; plateMasked: string; plateCipher: string }>(
      `SELECT recordNo, plateMasked, plateCipher FROM parking_passage WHERE sourceId = 'lot-vendor-a' ORDER BY recordNo`,
    )
    expect(rows.map((r) => r.recordNo)).toEqual(['R1', 'R2', 'R3'])
    expect(rows.every((r) => r.plateMasked === '粤C·***45')).toBe(true)

    const dead = await wh.query<{ code: string; reason: string; raw: string }>(
      `SELECT code, reason, raw FROM dead_letter WHERE sourceId = 'lot-vendor-a' ORDER BY code`,
    )
    expect(dead.map((d) => d.code)).toEqual(['duplicate_record', 'future_timestamp', 'missing_field'])
    expect(dead.find((d) => d.code === 'duplicate_record')!.reason).toContain('recordNo=R3')
    expect(dead.find((d) => d.code === 'missing_field')!.raw).not.toContain('99999')

    const log = await wh.query<{ rows: number; backfillRows: number; minEventTime: number; maxLiveEventTime: number }>(
      `SELECT rows, backfillRows, toUnixTimestamp64Milli(minEventTime) AS minEventTime, toUnixTimestamp64Milli(maxLiveEventTime) AS maxLiveEventTime
       FROM ingest_log WHERE sourceId = 'lot-vendor-a'`,
    )
    expect(log).toEqual([{ rows: 3, backfillRows: 1, minEventTime: Date.parse('2026-11-21T01:00:00Z'), maxLiveEventTime: Date.parse('2026-11-21T01:20:00Z') }])
    expect(sink.stats).toMatchObject({ landed: 3, duplicates: 1, deadLettered: 3 })

    // The bus redelivers the same batch (as after a crash before the commit): nothing doubles.
    const fresh = new WarehouseSink({ warehouse: wh, catalogue, clock, log: pino({ level: 'silent' }) })
    await fresh.handle(batch)
    const [counts] = await wh.query<{ p: number; d: number; l: number }>(
      `SELECT (SELECT count() FROM parking_passage WHERE sourceId = 'lot-vendor-a') AS p,
              (SELECT count() FROM dead_letter WHERE sourceId = 'lot-vendor-a') AS d,
              (SELECT count() FROM ingest_log WHERE sourceId = 'lot-vendor-a') AS l`,
    )
    expect(counts).toEqual({ p: 3, d: 3, l: 1 })
  })

  it('dead-letters bytes that are not a citysync wire message', async () => {
    const sink = new WarehouseSink({ warehouse: wh, catalogue, clock, log: pino({ level: 'silent' }) })
    await sink.handle({
      scope: '',
      topic: 'citysync.parking.passage',
      partition: 0,
      firstOffset: 0,
      lastOffset: 0,
      messages: [{ offset: 0, timestamp: clock.now(), key: 'garbage-src', value: Buffer.from('{"not":"avro"}'), headers: { [HEADER_CONTENT]: 'x' } }],
    })
    const dead = await wh.query<{ stage: string; code: string }>(`SELECT stage, code FROM dead_letter WHERE sourceId = 'garbage-src'`)
    expect(dead).toEqual([{ stage: 'decode', code: 'undecodable' }])
  })

  it('remembers landed ids across a restart by warming from the warehouse', async () => {
    const sink = new WarehouseSink({ warehouse: wh, catalogue, clock, log: pino({ level: 'silent' }) })
    expect(await sink.dedupe.warm(wh, 3600_000, clock.now())).toBeGreaterThanOrEqual(3)
    const batch = await batchOf((p) => p.record('ParkingPassage', passage('R1', '2026-11-21T01:00:00Z')))
    await sink.handle({ ...batch, firstOffset: 100, lastOffset: 100 })
    expect(sink.stats.duplicates).toBe(1)
  })
})
