import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ChdbWarehouse } from './chdb-warehouse.ts'
import { migrateWarehouse } from './migrate.ts'
import { ServerWarehouse } from './server-warehouse.ts'
import { toJsonEachRow, type Warehouse } from './warehouse.ts'

// One contract, every transport: chDB always; a ClickHouse server whenever
// CLICKHOUSE_URL points at one (none can be installed on the CI machine).
const dir = mkdtempSync(join(tmpdir(), 'citysync-wh-'))
const transports: [string, () => Warehouse][] = [['chdb', () => new ChdbWarehouse(dir)]]
if (process.env.CLICKHOUSE_URL) transports.push(['server', () => new ServerWarehouse(process.env.CLICKHOUSE_URL!)])
else console.warn('CLICKHOUSE_URL is not set: the warehouse contract runs on chDB only')

afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe.each(transports)('warehouse contract on %s', (_name, open) => {
  const wh = open()
  const src = `contract-${Date.now()}`
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
