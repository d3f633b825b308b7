import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startWarehouseProcess, type Spawned } from '../../infra/test/processes.ts'
import { SchemaCatalogue, WIRE_HEADER_SIZE } from '../../schemas/catalogue.ts'
import { type ParkingPassage } from '../../schemas/events.ts'
import { ChdbWarehouse } from './chdb-warehouse.ts'
import { migrateWarehouse } from './migrate.ts'
import { ServerWarehouse } from './server-warehouse.ts'
import { toJsonEachRow, type Warehouse } from './warehouse.ts'

// One contract, every transport: chDB in process; the server driver over HTTP
// against CLICKHOUSE_URL when it points at a ClickHouse server, else against
// the chDB HTTP endpoint (infra/clickhouse/chdb-http.ts) in its own process.
const dir = mkdtempSync(join(tmpdir(), 'citysync-wh-'))
let endpoint: { url: string; proc: Spawned } | undefined
let serverUrl = process.env.CLICKHOUSE_URL

beforeAll(async () => {
  if (!serverUrl) {
    endpoint = await startWarehouseProcess(join(dir, 'http'))
    serverUrl = endpoint.url
  }
})
afterAll(async () => {
  await endpoint?.proc.stop()
  rmSync(dir, { recursive: true, force: true })
})

const transports: [string, () => Warehouse][] = [
  ['chdb', () => new ChdbWarehouse(join(dir, 'local'))],
  ['server', () => new ServerWarehouse(serverUrl!)],
]

describe.each(transports)('warehouse contract on %s', (_name, open) => {
  let wh: Warehouse
  const src = `contract-${Date.now()}`
  beforeAll(() => {
    wh = open()
  })
  afterAll(() => wh.close())

  it('answers a ping and applies migrations idempotently', async () => {
    expect(await wh.ping()).toBe(true)
    await migrateWarehouse(wh)
    expect(await migrateWarehouse(wh)).toEqual([])
    const tables = await wh.query<{ name: string }>('SELECT name FROM system.tables WHERE database = currentDatabase()')
    expect(tables.map((t) => t.name)).toEqual(expect.arrayContaining(['parking_passage', 'ingest_log', 'dead_letter', 'schema_migrations']))
  })

  it('drops a repeated insert that carries the same deduplication token', async () => {
    const rows = [1, 2, 3].map((i) => ({
      sourceId: src, eventId: `e${i}`, occurredAt: 1_795_300_000_000 + i, receivedAt: 1_795_300_000_500, lotId: 'L1', free: i, capacity: 10, status: 'open',
    }))
    await wh.insertJsonEachRow('parking_occupancy', toJsonEachRow(rows), { dedupToken: `${src}-a` })
    await wh.insertJsonEachRow('parking_occupancy', toJsonEachRow(rows), { dedupToken: `${src}-a` })
    const [r] = await wh.query<{ n: number }>('SELECT count() AS n FROM parking_occupancy WHERE sourceId = {s:String}', { s: src })
    expect(r!.n).toBe(3)
  })

  it('inserts wire-message bodies as an Avro block: every type mapped by name, a repeated token dropped', async () => {
    const catalogue = SchemaCatalogue.load()
    const passages: ParkingPassage[] = [1, 2].map((i) => ({
      sourceId: src, eventId: `p${i}`, occurredAt: 1_795_300_000_123 + i, receivedAt: 1_795_300_001_000, lotId: 'L1', recordNo: `R${i}`,
      direction: i === 1 ? 'entry' : 'exit', gateId: i === 1 ? 'G1' : null, plateKey: 'ab'.repeat(32), plateCipher: null, plateMasked: '粤C·***45',
      plateType: null, isBackfill: i === 2, feeCents: i === 2 ? 1500 : null, entryAt: i === 2 ? 1_795_299_000_000 : null,
    }))
    const datums = passages.map((p) => catalogue.encode('ParkingPassage', p).subarray(WIRE_HEADER_SIZE))
    const schema = catalogue.writerSchema(catalogue.latest('ParkingPassage').id)!
    const block = { schema: schema.text, columns: schema.fields, datums, bytes: datums.reduce((n, d) => n + d.length, 0) }
    await wh.insertAvro('parking_passage', block, { dedupToken: `${src}-avro` })
    await wh.insertAvro('parking_passage', block, { dedupToken: `${src}-avro` })
    const rows = await wh.query<Record<string, unknown>>(
      `SELECT eventId, toUnixTimestamp64Milli(occurredAt) AS occurredAt, direction, gateId, plateMasked, plateCipher, isBackfill, feeCents,
        toUnixTimestamp64Milli(entryAt) AS entryAt FROM parking_passage WHERE sourceId = {s:String} ORDER BY eventId`,
      { s: src },
    )
    expect(rows).toEqual([
      { eventId: 'p1', occurredAt: 1_795_300_000_124, direction: 'entry', gateId: 'G1', plateMasked: '粤C·***45', plateCipher: null, isBackfill: false, feeCents: null, entryAt: null },
      { eventId: 'p2', occurredAt: 1_795_300_000_125, direction: 'exit', gateId: null, plateMasked: '粤C·***45', plateCipher: null, isBackfill: true, feeCents: 1500, entryAt: 1_795_299_000_000 },
    ])
  })

  it('binds parameters, returns 64-bit integers as numbers and nulls as null', async () => {
    const rows = await wh.query<{ eventId: string; at: number; cap: number | null }>(
      `SELECT eventId, toUnixTimestamp64Milli(occurredAt) AS at, CAST(NULL AS Nullable(UInt32)) AS cap
       FROM parking_occupancy WHERE sourceId = {s:String} AND eventId IN {ids:Array(String)} ORDER BY eventId`,
      { s: src, ids: ['e1', 'e3'] },
    )
    expect(rows).toEqual([
      { eventId: 'e1', at: 1_795_300_000_001, cap: null },
      { eventId: 'e3', at: 1_795_300_000_003, cap: null },
    ])
  })

  it('reports a failing statement as a coded error', async () => {
    await expect(wh.query('SELECT * FROM no_such_table')).rejects.toMatchObject({ code: 'CITYSYNC_ERR_WAREHOUSE_QUERY' })
  })
})
