import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Knex } from 'knex'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { injectAsAdmin } from '../../api/test-stack.ts'
import { startEmbedded, type Embedded } from '../../cli/embedded.ts'
import { loadConfig } from '../../lib/config.ts'
import { formatLocal, parseLocal } from '../../lib/local-time.ts'
import { openVendorDb } from '../sdk/db-pull.ts'
import { VENDOR_MYSQL, VENDOR_POSTGRES, vendorDbsAvailable } from '../sdk/test-vendor-dbs.ts'
import { type CountyFilesCursor } from './files.ts'
import { CountyStayTable, countyDrop, countyLots, dropTotals, occupancyTable, passagesTable, toCsv, toXlsx } from './simulator.ts'

// County feeds end to end: real files in every encoding and delimiter and
// XLSX, an upload through the API, county tables in real MariaDB and
// PostgreSQL, all landing through the embedded pipeline in ClickHouse (chDB),
// with exact counts in the event tables and in dead_letter; and the
// onboarding status that follows the first good data.

const available = await vendorDbsAvailable()
const ZONE = 'Asia/Shanghai'
const dir = mkdtempSync(join(tmpdir(), 'citysync-county-'))
const drop = join(dir, 'drops', 'rudong')
// Yesterday where the county is: all of it in the past.
const DAY = formatLocal(Date.now() - 86_400_000, ZONE).slice(0, 10)
let e: Embedded

beforeAll(async () => {
  process.env.CITYSYNC_MASTER_KEY = 'county-feeds-test-master-key-01'
  e = await startEmbedded({ cfg: { ...loadConfig({ CITYSYNC_DATA_DIR: join(dir, 'data') }), port: 0 }, demo: false, log: pino({ level: 'silent' }), maxWaitMs: 50 })
  await injectAsAdmin(e.app, e.stores.metadata)
})
afterAll(async () => {
  await e?.close()
  rmSync(dir, { recursive: true, force: true })
})

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  for (const deadline = Date.now() + timeoutMs; ; ) {
    const v = await fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function deploy(id: string, kind: string, name: string, config: Record<string, unknown>): Promise<void> {
  await e.stores.metadata.sources.add({ id, kind, name, operator: '如东县交通运输局', district: '如东县', timezone: ZONE, schedule: { every: '1s' }, freshness: { maxDelay: '2h' }, config })
  await e.stores.metadata.sources.setDesiredState(id, 'deployed', 'test')
  await e.manager.reconcile()
}

async function counts(sourceId: string) {
  const [c] = await e.stores.warehouse.query<{ lots: number; occupancy: number; entries: number; exits: number; backfill: number; passages: number; passageIds: number; occIds: number }>(
    `SELECT (SELECT count() FROM parking_lot WHERE sourceId = {s:String}) AS lots,
            (SELECT count() FROM parking_occupancy WHERE sourceId = {s:String}) AS occupancy,
            (SELECT uniqExact(eventId) FROM parking_occupancy WHERE sourceId = {s:String}) AS occIds,
            (SELECT countIf(direction = 'entry') FROM parking_passage WHERE sourceId = {s:String}) AS entries,
            (SELECT countIf(direction = 'exit') FROM parking_passage WHERE sourceId = {s:String}) AS exits,
            (SELECT countIf(isBackfill) FROM parking_passage WHERE sourceId = {s:String}) AS backfill,
            (SELECT count() FROM parking_passage WHERE sourceId = {s:String}) AS passages,
            (SELECT uniqExact(eventId) FROM parking_passage WHERE sourceId = {s:String}) AS passageIds`,
    { s: sourceId },
  )
  const dead = await e.stores.warehouse.query<{ code: string; n: number }>(`SELECT code, count() AS n FROM dead_letter WHERE sourceId = {s:String} GROUP BY code ORDER BY code`, { s: sourceId })
  return { ...c!, dead: Object.fromEntries(dead.map((d) => [d.code, Number(d.n)])) as Record<string, number> }
}

describe('county files through the pipeline', () => {
  const id = 'rudong-files'

  it('lands every good row of every encoding, delimiter and XLSX file, and dead-letters each bad row', async () => {
    const files = await countyDrop({ day: DAY })
    mkdirSync(drop, { recursive: true })
    await deploy(id, 'county-files', '如东县停车数据报送', { county: '如东县', dropDir: drop, settleMs: 0 })
    for (const f of files) writeFileSync(join(drop, f.name), f.bytes)

    // One more day of stays, uploaded through the API.
    const lots = countyLots()
    const extra = passagesTable(lots, { from: parseLocal(`${DAY} 20:00:00`, ZONE)!, count: 12, badEvery: 4, zone: ZONE, seed: 77, until: parseLocal(`${DAY} 23:59:59`, ZONE)! })
    const upload = toCsv(extra, { encoding: 'gb18030', delimiter: ',' })
    const url = `/api/v1/county/${id}/files?name=${encodeURIComponent(`${DAY}_夜间停车记录.csv`)}`
    const up = await e.app.inject({ method: 'POST', url, headers: { 'content-type': 'text/csv' }, payload: upload })
    expect(up.statusCode).toBe(201)
    expect(up.json()).toMatchObject({ sourceId: id, file: `${DAY}_夜间停车记录.csv`, bytes: upload.length, format: 'csv', encoding: 'gb18030', delimiter: ',', dataset: 'passages', rows: 12 })

    // Refused uploads: not a data file, a header that fits nothing, too large, another kind of source.
    const junk = await e.app.inject({ method: 'POST', url: `/api/v1/county/${id}/files?name=a.csv`, headers: { 'content-type': 'text/csv' }, payload: '编号,数量\n1,2\n' })
    expect(junk.statusCode).toBe(400)
    expect(junk.json()).toMatchObject({ code: 'CITYSYNC_ERR_COUNTY_FILE', message: expect.stringMatching(/fits no dataset/) as string })
    const big = await e.app.inject({ method: 'POST', url: `/api/v1/county/${id}/files?name=big.csv`, headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.alloc(21 * 1024 * 1024, 0x41) })
    expect(big.statusCode).toBe(413)
    expect(big.json()).toMatchObject({ code: 'CITYSYNC_ERR_COUNTY_FILE_TOO_LARGE' })
    const missing = await e.app.inject({ method: 'POST', url: `/api/v1/county/nope/files?name=a.csv`, headers: { 'content-type': 'text/csv' }, payload: upload })
    expect(missing.json()).toMatchObject({ code: 'CITYSYNC_ERR_SOURCE_NOT_FOUND' })

    // Landed, and moved to processed/ by the run after.
    await until('every file to be processed', () => {
      try {
        return Promise.resolve(readdirSync(join(drop, 'processed')).length === files.length + 1)
      } catch {
        return Promise.resolve(false)
      }
    })
    const t = dropTotals(files)
    const c = await counts(id)
    expect({ lots: c.lots, occupancy: c.occupancy, entries: c.entries, exits: c.exits }).toEqual({
      lots: t.lots, occupancy: t.occupancy, entries: t.entries + extra.expect.entries, exits: t.exits + extra.expect.exits,
    })
    expect([c.lots, c.occupancy, c.entries, c.exits]).toEqual([4, 99, 135 + extra.expect.entries, 93 + extra.expect.exits])
    expect([extra.expect.entries, extra.expect.exits, extra.bad.length]).toEqual([9, 5, 3])
    expect(c.passages).toBe(c.passageIds)
    expect(c.occupancy).toBe(c.occIds)
    const badRows = [...files.flatMap((f) => f.table.bad), ...extra.bad]
    expect(badRows).toHaveLength(30)
    const tally: Record<string, number> = {}
    for (const b of badRows) tally[b.code] = (tally[b.code] ?? 0) + 1
    expect(c.dead).toEqual(tally)
    expect(c.dead).toEqual({ invalid_value: 25, missing_field: 5 })

    const dead = await e.stores.warehouse.query<{ reason: string; raw: string; family: string }>(`SELECT reason, raw, family FROM dead_letter WHERE sourceId = {s:String}`, { s: id })
    for (const f of files) {
      for (const b of f.table.bad) {
        const line = f.firstRowLine + b.index - 1
        expect(dead.some((d) => d.reason.startsWith(`file ${f.name} row ${line}`)), `${f.name} row ${line} (${b.what})`).toBe(true)
      }
    }
    expect(dead.some((d) => d.reason.includes('剩余车位 is not a number: "unknown"'))).toBe(true)
    expect(dead.some((d) => /剩余车位 \d+ is above 总车位 \d+/.test(d.reason))).toBe(true)
    expect(dead.some((d) => d.reason.includes('上报时间 is not a valid local time: "2026-13-45 25:61:00"'))).toBe(true)
    // Raw rows as received, plates masked.
    expect(dead.every((d) => !/苏F[0-9A-Z]{5}/.test(d.raw))).toBe(true)

    // Times are read in the county's zone: the first report of the GB18030 file is 06:00 local.
    const [first] = await e.stores.warehouse.query<{ t: number }>(`SELECT toUnixTimestamp64Milli(min(occurredAt)) AS t FROM parking_occupancy WHERE sourceId = {s:String}`, { s: id })
    expect(first!.t).toBe(parseLocal(`${DAY} 06:00:00`, ZONE))
  })

  it('never lands a file twice: the same content again is refused, by the watcher and by the API', async () => {
    const before = await counts(id)
    const files = await countyDrop({ day: DAY })
    writeFileSync(join(drop, 'again.csv'), files[4]!.bytes)
    const dup = await e.app.inject({ method: 'POST', url: `/api/v1/county/${id}/files?name=x.csv`, headers: { 'content-type': 'text/csv' }, payload: files[1]!.bytes })
    expect(dup.statusCode).toBe(409)
    expect(dup.json()).toMatchObject({ code: 'CITYSYNC_ERR_COUNTY_FILE_DUPLICATE' })
    const rejected = (): string[] => {
      try {
        return readdirSync(join(drop, 'rejected'))
      } catch {
        return []
      }
    }
    await until('the duplicate to be rejected', () => Promise.resolve(rejected().includes('again.csv.reason.txt')))
    await until('its dead-letter row', async () => ((await counts(id)).dead.duplicate_file === 1 ? true : undefined))
    const after = await counts(id)
    expect({ ...after, dead: undefined }).toEqual({ ...before, dead: undefined })
    expect(after.dead).toEqual({ ...before.dead, duplicate_file: 1 })
    const cursor = (await e.stores.metadata.connectorState.get(id)).cursor as CountyFilesCursor
    expect(Object.keys(cursor.files)).toHaveLength(files.length + 1)
  })
})

for (const [name, conn, run] of [['MariaDB', VENDOR_MYSQL, available.mysql], ['PostgreSQL', VENDOR_POSTGRES, available.postgres]] as const) {
  describe.skipIf(!run)(`county tables in ${name} through the pipeline`, () => {
    const id = `rudong-db-${conn.dialect}`
    const stays = `county_stay_${process.pid}`
    const occ = `county_occ_${process.pid}`
    let db: Knex
    let sim: CountyStayTable
    const lastStay = async () => (await db(stays).orderBy([{ column: '更新时间', order: 'desc' }, { column: 'id', order: 'desc' }]).first<{ id: number }>('id')).id

    beforeAll(async () => {
      db = openVendorDb(conn, ZONE)
      const lots = countyLots()
      sim = new CountyStayTable(db, { table: stays, lots, from: parseLocal(`${DAY} 06:00:00`, ZONE)!, writesFrom: Date.now() - 3_600_000, seed: conn.dialect === 'mysql' ? 41 : 42 })
      await sim.create()
      // Free-space reports in a table with the county's own column names, its update time zoned in PostgreSQL.
      await db.schema.dropTableIfExists(occ)
      await db.schema.createTable(occ, (t) => {
        t.increments('id').primary()
        t.string('ccbh', 20)
        t.string('sycw', 16)
        t.string('zcw', 16)
        t.string('sbsj', 32)
        t.datetime('gxsj', { useTz: conn.dialect === 'postgres', precision: 3 }).notNullable()
      })
    })
    afterAll(async () => {
      await db?.schema.dropTableIfExists(stays)
      await db?.schema.dropTableIfExists(occ)
      await db?.destroy()
    })

    it('lands stays and reports from the county tables, late exits and backfilled rows included; a re-read lands no duplicates', async () => {
      await sim.seed(120, 13)
      const reports = occupancyTable(countyLots(), { from: parseLocal(`${DAY} 07:00:00`, ZONE)!, count: 10, badEvery: 6, zone: ZONE, seed: 51 })
      const stamp = (i: number) => (conn.dialect === 'postgres' ? new Date(Date.now() - 600_000 + Math.floor(i / 3) * 1000).toISOString() : formatLocal(Date.now() - 600_000 + Math.floor(i / 3) * 1000, ZONE, true))
      await db(occ).insert(reports.rows.map((r, i) => ({ ccbh: String(r[0]), sycw: String(r[1]), zcw: String(r[2]), sbsj: String(r[3]), gxsj: stamp(i) })))
      const lastOcc = (await db(occ).orderBy([{ column: 'gxsj', order: 'desc' }, { column: 'id', order: 'desc' }]).first<{ id: number }>('id')).id

      await deploy(id, 'county-db', `如东县停车数据库 (${name})`, {
        county: '如东县',
        connection: conn,
        datasets: [
          { name: 'stays', kind: 'passages', table: stays, updatedAtColumn: '更新时间', pageSize: 20 },
          { name: 'reports', kind: 'occupancy', table: occ, updatedAtColumn: 'gxsj', pageSize: 7, columns: { lotId: 'ccbh', free: 'sycw', capacity: 'zcw', observedAt: 'sbsj' } },
        ],
      })
      const caughtUp = async (): Promise<void> => {
        const want = { stays: await lastStay(), reports: lastOcc }
        await until(`${id} to catch up with ${JSON.stringify(want)}`, async () => {
          const c = (await e.stores.metadata.connectorState.get(id)).cursor as Record<string, { id: number | string }> | null
          return c !== null && String(c.stays?.id) === String(want.stays) && String(c.reports?.id) === String(want.reports)
        })
      }
      await caughtUp()
      let truth = sim.truth()
      expect([truth.rows, truth.entries, truth.exits, truth.bad]).toEqual(conn.dialect === 'mysql' ? [120, 119, 74, 9] : [120, 116, 82, 9])
      let c = await counts(id)
      expect({ entries: c.entries, exits: c.exits, occupancy: c.occupancy, backfill: c.backfill }).toEqual({ entries: truth.entries, exits: truth.exits, occupancy: reports.expect.occupancy, backfill: 0 })
      expect(reports.expect.occupancy).toBe(34)
      const reportBad: Record<string, number> = {}
      for (const b of reports.bad) reportBad[b.code] = (reportBad[b.code] ?? 0) + 1
      const stayBad = { missing_field: truth.rows - truth.entries, invalid_value: truth.bad - (truth.rows - truth.entries) }
      expect(c.dead).toEqual({ invalid_value: (reportBad.invalid_value ?? 0) + stayBad.invalid_value, missing_field: (reportBad.missing_field ?? 0) + stayBad.missing_field })

      // Cars leave (rows updated, 更新时间 moves) and a late upload of yesterday's stays arrives.
      const exited = await sim.lateExits(10)
      await sim.seed(20, 0, true)
      await caughtUp()
      truth = sim.truth()
      c = await counts(id)
      expect(exited).toBe(10)
      expect({ entries: c.entries, exits: c.exits, backfill: c.backfill }).toEqual({ entries: truth.entries, exits: truth.exits, backfill: 40 })
      expect(c.passages).toBe(c.passageIds)

      // Re-read everything from an older cursor: nothing lands twice.
      const before = c
      await e.stores.metadata.sources.setDesiredState(id, 'paused', 'test')
      await e.manager.reconcile()
      await e.stores.metadata.connectorState.saveCheckpoint(id, { stays: { updatedAt: formatLocal(Date.now() - 7_200_000, ZONE), id: 0 } }, Date.now())
      await e.stores.metadata.sources.setDesiredState(id, 'deployed', 'test')
      await e.manager.reconcile()
      await caughtUp()
      c = await counts(id)
      expect({ entries: c.entries, exits: c.exits, occupancy: c.occupancy, passages: c.passages, passageIds: c.passageIds, occIds: c.occIds }).toEqual({
        entries: before.entries, exits: before.exits, occupancy: before.occupancy, passages: before.passages, passageIds: before.passageIds, occIds: before.occIds,
      })
    })
  })
}

describe('county onboarding API', () => {
  const ACTOR = 'token:test-admin'
  it('creates, moves and lists car parks, and promotes a connecting one when its first good data has landed', async () => {
    const put = (lotId: string, body: Record<string, unknown>) => e.app.inject({ method: 'PUT', url: `/api/v1/county/onboarding/${encodeURIComponent(lotId)}`, payload: body })
    const created = await put('RD-P001', { county: '如东县', name: '如东县人民医院停车场', sourceId: 'rudong-files', status: 'connecting', changedBy: '王工' })
    expect(created.statusCode).toBe(201)
    const today = formatLocal(Date.now(), ZONE).slice(0, 10)
    // Recorded under the authenticated caller, whatever changedBy says.
    expect(created.json()).toMatchObject({ lotId: 'RD-P001', status: 'connecting', connectedDate: today, version: 1, updatedBy: ACTOR })
    expect((await put('RD-P002', { county: '如东县', sourceId: 'rudong-files', status: 'planned', plannedDate: '2027-03-31' })).statusCode).toBe(201)
    expect((await put('RD-P099', { county: '如东县', sourceId: 'rudong-files', status: 'connecting' })).statusCode).toBe(201)
    expect((await put('HA-P001', { county: '海安市', status: 'planned' })).statusCode).toBe(201)

    const list = await e.app.inject('/api/v1/county/onboarding?county=如东县')
    expect(list.statusCode).toBe(200)
    const body = list.json<{ items: { lotId: string; status: string; onboardedDate: string | null; updatedBy: string }[]; total: number; promoted: string[] }>()
    // RD-P001 has landed data from rudong-files; RD-P099 has none; RD-P002 is only planned.
    expect(body.promoted).toEqual(['RD-P001'])
    expect(body.total).toBe(3)
    expect(body.items.map((i) => [i.lotId, i.status, i.updatedBy])).toEqual([
      ['RD-P001', 'onboarded', 'citysync'],
      ['RD-P002', 'planned', ACTOR],
      ['RD-P099', 'connecting', ACTOR],
    ])
    expect(body.items[0]!.onboardedDate).toBe(today)
    expect((await e.app.inject('/api/v1/county/onboarding?county=如东县')).json()).toMatchObject({ promoted: [] })

    const one = (await e.app.inject('/api/v1/county/onboarding/RD-P001')).json<{ history: { actor: string; from: string | null; to: string }[] }>()
    expect(one.history.map((h) => [h.actor, h.from, h.to])).toEqual([
      ['citysync', 'connecting', 'onboarded'],
      [ACTOR, null, 'connecting'],
    ])

    const back = await put('RD-P001', { status: 'planned' })
    expect(back.statusCode).toBe(409)
    expect(back.json()).toMatchObject({ code: 'CITYSYNC_ERR_ONBOARDING_TRANSITION' })
    const stale = await put('RD-P002', { note: 'x', version: 7 })
    expect(stale.json()).toMatchObject({ code: 'CITYSYNC_ERR_ONBOARDING_CONFLICT' })
    const badDate = await put('RD-P002', { plannedDate: '2027-02-30' })
    expect(badDate.statusCode).toBe(400)
    const suspended = await put('RD-P001', { status: 'suspended', note: '停车场改造', changedBy: '李工' })
    expect(suspended.statusCode).toBe(200)
    expect(suspended.json()).toMatchObject({ status: 'suspended', suspendedDate: today, onboardedDate: today, version: 3 })
    expect((await e.app.inject('/api/v1/county/onboarding/NOPE')).json()).toMatchObject({ code: 'CITYSYNC_ERR_ONBOARDING_NOT_FOUND' })

    const spec = (await e.app.inject('/docs/json')).json<{ paths: Record<string, Record<string, { requestBody?: unknown }>> }>()
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(['/api/v1/county/{sourceId}/files', '/api/v1/county/onboarding', '/api/v1/county/onboarding/{lotId}']))
    expect(JSON.stringify(spec.paths['/api/v1/county/onboarding/{lotId}']!.put)).toContain('如东县人民医院停车场')
  })

  it('an XLSX upload is accepted like a CSV one', async () => {
    const t = occupancyTable(countyLots(), { from: parseLocal(`${DAY} 23:00:00`, ZONE)!, count: 1, asDates: true })
    const res = await e.app.inject({
      method: 'POST', url: `/api/v1/county/rudong-files/files?name=late.xlsx`,
      headers: { 'content-type': 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet' }, payload: await toXlsx(t),
    })
    expect(res.statusCode).toBe(201)
    expect(res.json()).toMatchObject({ format: 'xlsx', encoding: null, delimiter: null, dataset: 'occupancy', rows: 4 })
  })
})
