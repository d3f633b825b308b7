import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../lib/clock.ts'
import { sm3Hmac } from '../lib/crypto.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { signPush } from './routes/ingest.ts'
import { backends, client, type Stack, startStack } from './test-stack.ts'

// Signed push ingest over real HTTP into chDB: a bad signature or a stale
// timestamp lands nothing; a good batch lands exactly its good records, is
// acknowledged item by item, and its bad records are dead-lettered with their
// reasons. The answer comes after the pipeline has taken the batch, so the
// counts are read right after it, without waiting.

const SECRET = 'push-shared-secret-4f9a1c'
const SM3_SECRET = 'sm3-shared-secret-88d0e2'
// 18:00 in Asia/Shanghai, the zone the vendor writes its times in.
const NOW = Date.parse('2026-11-21T10:00:00Z')

let warehouse: Warehouse
let whDir: string

beforeAll(async () => {
  whDir = mkdtempSync(join(tmpdir(), 'citysync-api-ingest-'))
  warehouse = await openWarehouse({ dataDir: whDir })
})

afterAll(async () => {
  await warehouse.close()
  rmSync(whDir, { recursive: true, force: true })
})

async function counts(sourceId: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const table of ['parking_passage', 'parking_occupancy', 'parking_lot', 'dead_letter', 'ingest_log']) {
    // The runner of a deployed push source still logs its heartbeats; they are not data.
    const data = table === 'ingest_log' ? " AND tableName != 'source_heartbeat'" : ''
    const rows = await warehouse.query<{ n: number }>(`SELECT count() AS n FROM ${table} WHERE sourceId = {id:String}${data}`, { id: sourceId })
    out[table] = Number(rows[0]!.n)
  }
  return out
}

const NOTHING = { parking_passage: 0, parking_occupancy: 0, parking_lot: 0, dead_letter: 0, ingest_log: 0 }

const entry = (recordNo: string, parkCode: string, inTime: string | undefined, plateNo = '粤C12345') => ({
  type: 'in',
  seq: Number(recordNo.slice(1)),
  recordNo,
  parkCode,
  gateNo: 'E1',
  plateNo,
  plateColor: 'blue',
  ...(inTime === undefined ? {} : { inTime }),
  isReupload: 0,
})

const BATCH = {
  records: [
    entry('R1', 'P001', '2026-11-21 17:41:07'),
    { ...entry('R1', 'P001', '2026-11-21 17:41:07'), type: 'out', outTime: '2026-11-21 17:55:30', fee: '12.50' },
    { type: 'space', seq: 3, parkCode: 'P001', freeSpace: 118, totalSpace: 400, reportTime: '2026-11-21 17:45:00' },
    { type: 'park', parkCode: 'P001', parkName: '横琴口岸P1', totalSpace: 400, lng: 113.54, lat: 22.13, coordType: 'GCJ02', address: '横琴口岸', openTime: '00:00-24:00' },
    entry('R5', 'P001', undefined, '粤C77777'),
    entry('R6', 'P099', '2026-11-21 17:50:00'),
    entry('R7', 'P002', '2026-11-21 18:30:00'),
    { type: 'coupon', parkCode: 'P001' },
    42,
    { type: 'space', seq: 10, parkCode: 'P002', freeSpace: 500, totalSpace: 400, reportTime: '2026-11-21 17:45:00' },
    entry('R11', 'P002', '2026-11-21 17:59:59', '粤C54321'),
  ],
}

const REJECTED = [
  { index: 4, status: 'rejected', code: 'missing_field', reason: 'record 4 (entry seq 5): missing field inTime' },
  { index: 5, status: 'rejected', code: 'unknown_lot', reason: 'record 5 (entry seq 6): parkCode "P099" is not among the lots of this source' },
  {
    index: 6,
    status: 'rejected',
    code: 'future_timestamp',
    reason: 'record 6 (entry seq 7): inTime 2026-11-21T10:30:00.000Z is 30.0 min ahead of now (tolerance 5.0 min)',
  },
  { index: 7, status: 'rejected', code: 'invalid_value', reason: 'record 7: type must be one of in, out, space, park' },
  { index: 8, status: 'rejected', code: 'wrong_type', reason: 'record 8: must be an object' },
  { index: 9, status: 'rejected', code: 'invalid_value', reason: 'record 9 (space seq 10): freeSpace 500 is above totalSpace 400' },
]

for (const backend of await backends()) {
  describe.skipIf(!backend.run)(`signed push ingest (${backend.name} metadata)`, () => {
    const id = `push-${backend.name}`
    const sm3Id = `push-sm3-${backend.name}`
    const clock = new ManualClock(NOW)
    const seen: string[] = []
    let stack: Stack
    let call: ReturnType<typeof client>

    const push = (sourceId: string, body: string, o: { ts?: string; signature?: string; secret?: string } = {}) => {
      const ts = o.ts ?? String(clock.now())
      const signature = o.signature ?? signPush('hmac-sha256', o.secret ?? SECRET, ts, body)
      return call('POST', `/api/v1/ingest/${sourceId}`, body, { 'x-citysync-timestamp': ts, 'x-citysync-signature': signature })
    }

    beforeAll(async () => {
      stack = await startStack(backend, warehouse, clock)
      call = client(stack.url, seen, stack.token)
      const added = await call('POST', '/api/v1/sources', { id, kind: 'parking-push', name: '横琴推送停车场', config: { secret: SECRET, lots: ['P001', 'P002'] } })
      expect(added.status).toBe(201)
      expect(added.json).toMatchObject({ config: { secret: '******', algorithm: 'hmac-sha256', replayWindowSeconds: 300 }, status: { state: 'provisioned' } })
      const sm3 = await call('POST', '/api/v1/sources', { id: sm3Id, kind: 'parking-push', name: 'SM3 推送', config: { secret: SM3_SECRET, algorithm: 'hmac-sm3', maxItems: 5 } })
      expect(sm3.status).toBe(201)
    })
    afterAll(async () => {
      await stack?.close()
    })

    it('is checked and deployed like any source', async () => {
      expect((await call('POST', `/api/v1/sources/${id}/check`)).json).toEqual({
        ok: true,
        message: `accepts signed pushes at POST /api/v1/ingest/${id} (hmac-sha256, replay window 300 s, 2 car parks)`,
        details: { algorithm: 'hmac-sha256', replayWindowSeconds: 300, lots: ['P001', 'P002'], secrets: 1 },
      })
      expect((await call('POST', `/api/v1/sources/${id}/deploy`)).status).toBe(200)
      expect((await call('POST', `/api/v1/sources/${sm3Id}/deploy`)).status).toBe(200)
    })

    it('refuses a bad signature or a stale timestamp with 401, and nothing lands', async () => {
      const body = JSON.stringify(BATCH)
      const refusals = [
        await push(id, body, { secret: 'someone-elses-secret-000' }),
        await push(id, body, { signature: signPush('hmac-sha256', SECRET, String(NOW), JSON.stringify({ records: BATCH.records.slice(0, 1) })) }),
        await push(id, body, { signature: '' }),
        await push(id, body, { ts: String(NOW - 301_000) }),
        await push(id, body, { ts: String(NOW + 301_000) }),
        await push(id, body, { ts: String(Math.floor((NOW - 400_000) / 1000)) }),
        await push(id, body, { ts: 'yesterday' }),
      ]
      expect(refusals.map((r) => [r.status, r.json])).toEqual([
        [401, { code: 'CITYSYNC_ERR_INGEST_SIGNATURE', message: 'push refused: signature does not match' }],
        [401, { code: 'CITYSYNC_ERR_INGEST_SIGNATURE', message: 'push refused: signature does not match' }],
        [401, { code: 'CITYSYNC_ERR_INGEST_SIGNATURE', message: 'push refused: x-citysync-signature is missing or not hex' }],
        [401, { code: 'CITYSYNC_ERR_INGEST_TIMESTAMP', message: 'push refused: timestamp is 301 s old, outside the replay window of 300 s' }],
        [401, { code: 'CITYSYNC_ERR_INGEST_TIMESTAMP', message: 'push refused: timestamp is 301 s ahead, outside the replay window of 300 s' }],
        [401, { code: 'CITYSYNC_ERR_INGEST_TIMESTAMP', message: 'push refused: timestamp is 400 s old, outside the replay window of 300 s' }],
        [401, { code: 'CITYSYNC_ERR_INGEST_TIMESTAMP', message: 'push refused: x-citysync-timestamp is missing or not epoch seconds or milliseconds' }],
      ])
      // Longer than the sink lingers: anything published would have landed by now.
      await new Promise((r) => setTimeout(r, 300))
      expect(await counts(id)).toEqual(NOTHING)
      expect((await stack.metadata.connectorState.get(id)).checkpointAt).toBeNull()
    })

    it('lands exactly the good records of a batch, acknowledges each one, dead-letters the rest with reasons', async () => {
      const res = await push(id, JSON.stringify(BATCH))
      expect(res.status).toBe(200)
      const ack = res.json as { sourceId: string; accepted: number; rejected: number; items: { index: number; status: string; eventId?: string }[] }
      expect(ack).toMatchObject({ sourceId: id, accepted: 5, rejected: 6 })
      expect(ack.items.filter((i) => i.status === 'accepted').map((i) => i.index)).toEqual([0, 1, 2, 3, 10])
      expect(ack.items.filter((i) => i.status === 'rejected')).toEqual(REJECTED)
      expect(await counts(id)).toEqual({ parking_passage: 3, parking_occupancy: 1, parking_lot: 1, dead_letter: 6, ingest_log: 3 })

      const passages = await warehouse.query<{ eventId: string; recordNo: string; direction: string; occurredAt: number; feeCents: number | null; plateMasked: string }>(
        `SELECT eventId, recordNo, direction, toUnixTimestamp64Milli(occurredAt) AS occurredAt, feeCents, plateMasked
         FROM parking_passage WHERE sourceId = {id:String} ORDER BY recordNo, direction`,
        { id },
      )
      expect(passages.map(({ eventId: _e, ...p }) => ({ ...p, occurredAt: Number(p.occurredAt) }))).toEqual([
        { recordNo: 'R1', direction: 'entry', occurredAt: Date.parse('2026-11-21T09:41:07Z'), feeCents: null, plateMasked: '粤C·***45' },
        { recordNo: 'R1', direction: 'exit', occurredAt: Date.parse('2026-11-21T09:55:30Z'), feeCents: 1250, plateMasked: '粤C·***45' },
        { recordNo: 'R11', direction: 'entry', occurredAt: Date.parse('2026-11-21T09:59:59Z'), feeCents: null, plateMasked: '粤C·***21' },
      ])
      const ackedIds = ack.items.filter((i) => i.status === 'accepted').map((i) => i.eventId)
      for (const p of passages) expect(ackedIds).toContain(p.eventId)

      const dead = await warehouse.query<{ stage: string; code: string; reason: string; family: string | null; raw: string }>(
        `SELECT stage, code, reason, family, raw FROM dead_letter WHERE sourceId = {id:String} ORDER BY reason`,
        { id },
      )
      expect(dead.map((d) => [d.stage, d.code, d.reason, d.family])).toEqual(
        REJECTED.map((r) => ['connector', r.code, r.reason, r.index === 7 || r.index === 8 ? null : r.index === 9 ? 'ParkingOccupancy' : 'ParkingPassage']),
      )
      // Every field named like a plate is masked on the way to the dead-letter store.
      expect(JSON.parse(dead[0]!.raw)).toEqual({ ...entry('R5', 'P001', undefined), plateNo: '粤C·***77', plateColor: '****' })
      expect(dead.map((d) => d.raw).join('\n')).not.toMatch(/粤C(12345|77777|54321)/)

      const status = (await call('GET', `/api/v1/sources/${id}/status`)).json
      // The lot record is stamped with the hour it was reported in (10:00), the newest event time.
      expect(status).toMatchObject({ rowsLanded: 5, rowsRejected: 6, lastCheckpointAt: new Date(NOW).toISOString(), lastEventAt: new Date(NOW).toISOString() })
      expect((await call('GET', `/api/v1/sources/${id}/cursor`)).json).toEqual({ cursor: { lastPushAt: new Date(NOW).toISOString() }, checkpointAt: new Date(NOW).toISOString() })

      // The same signed request again, inside the window: acknowledged again, landed once.
      const again = await push(id, JSON.stringify(BATCH))
      expect(again.json).toEqual(ack)
      const after = await counts(id)
      expect([after.parking_passage, after.parking_occupancy, after.parking_lot]).toEqual([3, 1, 1])
      const ids = await warehouse.query<{ n: number }>(`SELECT uniqExact(eventId) AS n FROM dead_letter WHERE sourceId = {id:String}`, { id })
      expect(Number(ids[0]!.n)).toBe(6)
    })

    it('accepts HMAC-SM3 signatures and seconds timestamps where the source says so', async () => {
      const body = JSON.stringify({ records: [entry('R21', 'Q001', '2026-11-21 17:30:00', '粤C24680')] })
      const ts = String(Math.floor(NOW / 1000))
      const sm3 = sm3Hmac(Buffer.from(SM3_SECRET), `${ts}\n${body}`)
      expect(signPush('hmac-sm3', SM3_SECRET, ts, body)).toBe(sm3)
      const sha = await push(sm3Id, body, { ts, secret: SM3_SECRET })
      expect(sha.status).toBe(401)
      const prefixed = await push(sm3Id, body, { ts, signature: `sha256=${sm3}` })
      expect(prefixed.json).toEqual({ code: 'CITYSYNC_ERR_INGEST_SIGNATURE', message: 'push refused: this source expects hmac-sm3 signatures' })
      expect(await counts(sm3Id)).toEqual(NOTHING)
      const ok = await push(sm3Id, body, { ts, signature: `sm3=${sm3.toUpperCase()}` })
      expect(ok.status).toBe(200)
      expect(ok.json).toMatchObject({ accepted: 1, rejected: 0 })
      expect((await counts(sm3Id)).parking_passage).toBe(1)
    })

    it('refuses what it cannot take: record and byte limits, bodies that are not a batch, other kinds, paused sources', async () => {
      const six = JSON.stringify({ records: Array.from({ length: 6 }, (_, i) => entry(`R${30 + i}`, 'Q001', '2026-11-21 17:30:00')) })
      const tooMany = await push(sm3Id, six, { signature: signPush('hmac-sm3', SM3_SECRET, String(NOW), six) })
      expect([tooMany.status, tooMany.json]).toEqual([413, { code: 'CITYSYNC_ERR_INGEST_TOO_LARGE', message: 'push too large: 6 records, at most 5 per push' }])
      const huge = JSON.stringify({ records: [{ type: 'park', parkName: 'x'.repeat(1024 * 1024) }] })
      const tooBig = await push(id, huge)
      expect([tooBig.status, tooBig.json]).toEqual([413, { code: 'CITYSYNC_ERR_INGEST_TOO_LARGE', message: 'push too large: body above 1048576 bytes' }])
      expect((await counts(sm3Id)).dead_letter).toBe(0)

      const before = await counts(id)
      const good0 = JSON.stringify({ records: [entry('R39', 'P001', '2026-11-21 17:58:00')] })
      const notJson = await push(id, '{"records": [')
      expect([notJson.status, (notJson.json as { code: string }).code]).toEqual([400, 'CITYSYNC_ERR_INGEST_BODY'])
      const plain = await call('POST', `/api/v1/ingest/${id}`, good0, { 'content-type': 'text/plain', 'x-citysync-timestamp': String(NOW), 'x-citysync-signature': signPush('hmac-sha256', SECRET, String(NOW), good0) })
      expect([plain.status, plain.json]).toEqual([400, { code: 'CITYSYNC_ERR_INGEST_BODY', message: 'push body unusable: send the batch as application/json' }])
      const notBatch = await push(id, '{"list": []}')
      expect([notBatch.status, notBatch.json]).toEqual([400, { code: 'CITYSYNC_ERR_INGEST_BODY', message: 'push body unusable: records must be an array' }])
      const dead = await warehouse.query<{ stage: string; code: string; raw: string }>(
        `SELECT stage, code, raw FROM dead_letter WHERE sourceId = {id:String} AND stage = 'ingest' ORDER BY code`,
        { id },
      )
      expect(dead).toEqual([
        { stage: 'ingest', code: 'invalid_body', raw: '{"list":[]}' },
        { stage: 'ingest', code: 'malformed_json', raw: '{"records": [' },
      ])
      expect(await counts(id)).toEqual({ ...before, dead_letter: before.dead_letter! + 2 })

      await stack.metadata.sources.add({ id: `pull-${backend.name}`, kind: 'parking-lots', name: 'pulled', operator: null, district: null, timezone: 'Asia/Shanghai', schedule: { every: '1m' }, freshness: { maxDelay: '2h' }, config: { baseUrl: 'http://127.0.0.1:9/' } })
      expect((await push(`pull-${backend.name}`, '{}')).json).toEqual({
        code: 'CITYSYNC_ERR_INGEST_NOT_PUSH',
        message: `source pull-${backend.name} is of kind parking-lots, which does not accept pushes`,
      })
      expect((await push('nobody-here', '{}')).json).toEqual({ code: 'CITYSYNC_ERR_SOURCE_NOT_FOUND', message: 'source nobody-here not found' })

      expect((await call('POST', `/api/v1/sources/${id}/pause`)).status).toBe(200)
      const good = JSON.stringify({ records: [entry('R40', 'P001', '2026-11-21 17:58:00')] })
      const paused = await push(id, good)
      expect([paused.status, paused.headers.get('retry-after'), paused.json]).toEqual([
        503,
        '60',
        { code: 'CITYSYNC_ERR_INGEST_PAUSED', message: `source ${id} is paused: pushes are refused until it is deployed; send the batch again later` },
      ])
      expect(await counts(id)).toEqual({ ...before, dead_letter: before.dead_letter! + 2 })
      expect((await call('POST', `/api/v1/sources/${id}/resume`)).status).toBe(200)
      expect((await push(id, good)).json).toMatchObject({ accepted: 1 })
      expect((await counts(id)).parking_passage).toBe(before.parking_passage! + 1)
    })

    it('never answers with a secret', () => {
      expect(seen.length).toBeGreaterThan(15)
      for (const text of seen) {
        expect(text).not.toContain(SECRET)
        expect(text).not.toContain(SM3_SECRET)
      }
    })
  })
}
