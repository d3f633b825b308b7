import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Knex } from 'knex'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startEmbedded, type Embedded } from '../../cli/embedded.ts'
import { loadConfig } from '../../lib/config.ts'
import { isSealed } from '../../lib/source-config.ts'
import { type DbConnectionConfig, openVendorDb } from '../sdk/db-pull.ts'
import { VENDOR_MYSQL, VENDOR_POSTGRES, vendorDbsAvailable } from '../sdk/test-vendor-dbs.ts'
import { VendorParkingTable } from './db-simulator.ts'

// Car parks pulled from a vendor database, through the whole embedded
// pipeline into ClickHouse (chDB): late exits, backfilled rows, plate
// corrections, defective rows, and a re-read from the beginning.

const available = await vendorDbsAvailable()
const dir = mkdtempSync(join(tmpdir(), 'citysync-parking-db-'))
let e: Embedded

beforeAll(async () => {
  process.env.CITYSYNC_MASTER_KEY = 'parking-db-test-master-key-0001'
  e = await startEmbedded({ cfg: { ...loadConfig({ CITYSYNC_DATA_DIR: dir }), port: 0 }, demo: false, log: pino({ level: 'silent' }), maxWaitMs: 50 })
})
afterAll(async () => {
  await e?.close()
  rmSync(dir, { recursive: true, force: true })
})

async function untilCaughtUp(sourceId: string, lastId: number, timeoutMs = 60_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; ; ) {
    const c = (await e.stores.metadata.connectorState.get(sourceId)).cursor as { id: number | string } | null
    if (c !== null && String(c.id) === String(lastId)) return
    if (Date.now() > deadline) throw new Error(`${sourceId}: cursor stuck at ${JSON.stringify(c)}, last row is ${lastId}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function figures(sourceId: string) {
  const wh = e.stores.warehouse
  const [p] = await wh.query<{ entries: number; exits: number; backfill: number; n: number; ids: number }>(
    `SELECT countIf(direction = 'entry') AS entries, countIf(direction = 'exit') AS exits, countIf(isBackfill) AS backfill,
            count() AS n, uniqExact(eventId) AS ids FROM parking_passage WHERE sourceId = {s:String}`,
    { s: sourceId },
  )
  const dead = await wh.query<{ code: string; n: number }>(`SELECT code, count() AS n FROM dead_letter WHERE sourceId = {s:String} GROUP BY code ORDER BY code`, { s: sourceId })
  return { ...p!, dead: Object.fromEntries(dead.map((d) => [d.code, Number(d.n)])) as Record<string, number> }
}

const tally = (codes: string[]) => codes.reduce<Record<string, number>>((acc, c) => ({ ...acc, [c]: (acc[c] ?? 0) + 1 }), {})

for (const [name, conn, run] of [['MariaDB', VENDOR_MYSQL, available.mysql], ['PostgreSQL', VENDOR_POSTGRES, available.postgres]] as const) {
  describe.skipIf(!run)(`parking-db from ${name} into ClickHouse`, () => {
    const sourceId = `nt-parking-${conn.dialect}`
    const table = `park_record_${process.pid}`
    let db: Knex
    let sim: VendorParkingTable

    beforeAll(async () => {
      db = openVendorDb(conn, 'Asia/Shanghai')
      const now = Date.now()
      sim = new VendorParkingTable(db, { dialect: conn.dialect, table, seed: conn.dialect === 'mysql' ? 7 : 8, startAt: now - 2 * 86_400_000, writesFrom: now - 86_400_000, now })
      await sim.create()
    })
    afterAll(async () => {
      await db?.schema.dropTableIfExists(table)
      await db?.destroy()
    })

    it('lands every valid passage once and dead-letters every defective row with its reason', async () => {
      await sim.seed(300, 23)
      expect(sim.sharedStamps()).toBeGreaterThan(150)
      const connection: DbConnectionConfig = { ...conn, password: conn.password ?? '' }
      await e.stores.metadata.sources.add({
        id: sourceId, kind: 'parking-db', name: `南通停车场厂商库 (${name})`, operator: null, district: '崇川区', timezone: 'Asia/Shanghai',
        schedule: { every: '1s' }, freshness: { maxDelay: '2h' },
        config: {
          connection, table, pageSize: 25, lots: ['NT01', 'NT02', 'NT03'],
          mapping: { recordNo: 'record_no', lotId: 'park_code', plate: 'plate_no', plateColor: 'plate_color', gate: 'in_gate', exitGate: 'out_gate', entryTime: 'in_time', exitTime: 'out_time', fee: 'fee', backfill: 'is_reupload' },
        },
      })
      // The password is sealed at rest.
      const row = await e.stores.metadata.knex('sources').where({ id: sourceId }).first<{ config: unknown }>('config')
      const stored = (typeof row.config === 'string' ? JSON.parse(row.config) : row.config) as { connection: { password: unknown } }
      expect(isSealed(stored.connection.password)).toBe(true)
      expect((await e.stores.metadata.sources.get(sourceId)).config).toMatchObject({ connection: { password: connection.password } })
      await e.stores.metadata.sources.setDesiredState(sourceId, 'deployed', 'test')
      await e.manager.reconcile()
      await untilCaughtUp(sourceId, sim.lastId())

      const truth = sim.truth()
      expect([truth.rows, truth.entries.length, truth.exits.length, truth.errors.length]).toEqual(
        conn.dialect === 'mysql' ? [300, 293, 192, 13] : [300, 293, 198, 13],
      )
      const f = await figures(sourceId)
      expect({ entries: f.entries, exits: f.exits, n: f.n, ids: f.ids, backfill: f.backfill }).toEqual({
        entries: truth.entries.length, exits: truth.exits.length, n: truth.entries.length + truth.exits.length, ids: truth.entries.length + truth.exits.length, backfill: 0,
      })
      expect(f.dead).toEqual(tally(truth.errors.map((x) => x.code)))
      const keys = await e.stores.warehouse.query<{ k: string; direction: string }>(`SELECT concat(lotId, '/', recordNo) AS k, direction FROM parking_passage WHERE sourceId = {s:String}`, { s: sourceId })
      expect(keys.filter((k) => k.direction === 'entry').map((k) => k.k).sort()).toEqual([...truth.entries].sort())
      expect(keys.filter((k) => k.direction === 'exit').map((k) => k.k).sort()).toEqual([...truth.exits].sort())
      const dead = await e.stores.warehouse.query<{ reason: string; raw: string }>(`SELECT reason, raw FROM dead_letter WHERE sourceId = {s:String}`, { s: sourceId })
      for (const err of truth.errors) expect(dead.some((d) => d.reason.includes(`${err.failing}:`) && d.raw.includes(err.recordNo)), err.recordNo).toBe(true)
      expect(dead.some((d) => /"plate_no":"[^"*]{7,}"/.test(d.raw))).toBe(false)
    })

    it('reads late exits and backfilled rows as their updated_at moves, and shows corrected plates as conflicts', async () => {
      const before = await figures(sourceId)
      const exited = await sim.lateExits(20)
      const backfilled = await sim.backfill(15)
      expect([exited.length, backfilled.length]).toEqual([20, 15])
      await untilCaughtUp(sourceId, sim.lastId())
      const mid = await figures(sourceId)
      expect({ entries: mid.entries, exits: mid.exits, backfill: mid.backfill, n: mid.n, ids: mid.ids }).toEqual({
        entries: before.entries + 15, exits: before.exits + 20 + 15, backfill: 30, n: before.n + 50, ids: before.n + 50,
      })
      expect(mid.dead).toEqual(before.dead)

      const changed = await sim.correctPlates(5)
      await untilCaughtUp(sourceId, sim.lastId())
      const after = await figures(sourceId)
      expect(after.n).toBe(mid.n)
      expect(after.dead).toEqual({ ...mid.dead, duplicate_record: changed })
      expect(changed).toBe(10)
    })

    it('re-reading from the beginning lands no duplicates', async () => {
      const before = await figures(sourceId)
      await e.stores.metadata.sources.setDesiredState(sourceId, 'paused', 'test')
      await e.manager.reconcile()
      await e.stores.metadata.connectorState.resetCursor(sourceId, 'test')
      await e.stores.metadata.sources.setDesiredState(sourceId, 'deployed', 'test')
      await e.manager.reconcile()
      await untilCaughtUp(sourceId, sim.lastId())
      const after = await figures(sourceId)
      expect({ entries: after.entries, exits: after.exits, n: after.n, ids: after.ids, backfill: after.backfill }).toEqual({
        entries: before.entries, exits: before.exits, n: before.n, ids: before.ids, backfill: before.backfill,
      })
      // A defective row read again is the same dead letter (same event id): recorded once. A corrected
      // plate read again conflicts with the landed record once more, and that conflict is recorded.
      const expected = { ...before.dead }
      expected.duplicate_record = (expected.duplicate_record ?? 0) + 10
      expect(after.dead).toEqual(expected)
    })
  })
}
