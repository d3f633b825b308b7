import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MAX_PAGE_LIMIT, ParkingSimulator } from '../connectors/parking-lots/simulator.ts'
import { maskPlate, normalisePlate, sm3Hmac } from '../lib/crypto.ts'
import { formatLocal } from '../lib/local-time.ts'
import { type Metadata } from '../lib/metadata/db.ts'
import { PLATE_SAFE_LOGGING, scrubPlates } from '../lib/plate-redaction.ts'
import { type Bus, type OutgoingMessage } from '../pipelines/bus/bus.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { refreshParking } from './analytics/refresh.ts'
import { signPush } from './routes/ingest.ts'
import { backends, catalogue, client, KEYS, type Stack, startStack, until } from './test-stack.ts'

// The plate scan: known plates go in through the real paths — the parking
// open-API connector against its simulator (with defective and malformed
// items) and the signed push route (with a record from the future and a body
// that is not JSON) — and then every place a plate could end up is searched
// for them in clear: every ClickHouse table, every metadata table (and the
// SQLite file's bytes), the dead-letter table and the Kafka-style dead-letter
// messages, every log line of the stack, every API answer. The masked forms
// and the join keys must be there (the scan looks in the right places), the
// clear plates must not, and only the audited reveal gives one back.

const SECRET = 'plate-scan-push-secret-1b9d'
const ZONE = 'Asia/Shanghai'

// Pushed: four that land (a new-energy plate among them, and a Macau one), one
// from the future, one in a record that misses a field, one in a body that is not JSON.
const LANDING = ['粤C12345', '沪AD12345', '京A88888', '澳MA1234'] as const
const FUTURE = '粤B67890'
const INCOMPLETE = '苏E24680'
const IN_BAD_BODY = '闽D54321'
const PUSHED = [...LANDING, FUTURE, INCOMPLETE, IN_BAD_BODY]

let warehouse: Warehouse
let whDir: string
let sim: ParkingSimulator
let simUrl: string
let simPlates: string[]
let simCounts: { in: number; out: number; space: number }

beforeAll(async () => {
  whDir = mkdtempSync(join(tmpdir(), 'citysync-api-plates-'))
  warehouse = await openWarehouse({ dataDir: whDir })
  sim = new ParkingSimulator({ seed: 23, lots: 2, eventsPerMinute: 30, maxEvents: 60, startAt: Date.now() - 4 * 3600_000, faults: { badRate: 0.2 } })
  simUrl = await sim.start(0)
  sim.advance()
  simCounts = sim.counts()
  // Every plate the simulator serves, read before a page is made malformed.
  const plates = new Set<string>()
  for (const stream of ['in', 'out'] as const) {
    const body = JSON.parse(sim.page(stream, 0, MAX_PAGE_LIMIT)) as { data: { list: { plateNo?: unknown }[] } }
    for (const item of body.data.list) if (typeof item.plateNo === 'string' && normalisePlate(item.plateNo).length >= 6) plates.add(item.plateNo)
  }
  simPlates = [...plates]
  sim.setMalformedSeqs({ in: [7] })
})

afterAll(async () => {
  await sim?.stop()
  await warehouse?.close()
  rmSync(whDir, { recursive: true, force: true })
})

/** A plate's clear forms worth searching for: as written, normalised, and without its province character. */
function clearForms(plate: string): string[] {
  const normal = normalisePlate(plate)
  return [...new Set([plate, normal, normal.slice(1)])]
}

function findings(where: string, text: string, plates: readonly string[]): string[] {
  const out: string[] = []
  for (const plate of plates) {
    for (const form of clearForms(plate)) {
      const at = text.indexOf(form)
      if (at >= 0) out.push(`${where}: ${form} in …${text.slice(Math.max(0, at - 60), at + form.length + 60)}…`)
    }
  }
  return out
}

async function warehouseDump(wh: Warehouse): Promise<Map<string, string>> {
  const tables = await wh.query<{ name: string }>(
    `SELECT name FROM system.tables WHERE database = currentDatabase() AND engine NOT IN ('View', 'MaterializedView') ORDER BY name`,
  )
  const out = new Map<string, string>()
  for (const { name } of tables) {
    const rows = await wh.query(`SELECT * FROM \`${name}\``)
    out.set(name, rows.map((r) => JSON.stringify(r)).join('\n'))
  }
  return out
}

async function metadataDump(metadata: Metadata): Promise<Map<string, string>> {
  const names =
    metadata.dialect === 'sqlite'
      ? (await metadata.knex.raw<{ name: string }[]>(`SELECT name FROM sqlite_master WHERE type = 'table'`)).map((r) => r.name)
      : (await metadata.knex.raw<{ rows: { name: string }[] }>(`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)).rows.map((r) => r.name)
  const out = new Map<string, string>()
  for (const name of names) {
    const rows = (await metadata.knex(name).select('*')) as Record<string, unknown>[]
    out.set(name, rows.map((r) => JSON.stringify(r)).join('\n'))
  }
  return out
}

/** The SQLite database and its journal files, as bytes: old row versions and free pages included. */
function sqliteFiles(metadata: Metadata): Map<string, Buffer> {
  const out = new Map<string, Buffer>()
  if (metadata.dialect !== 'sqlite') return out
  const file = (metadata.knex.client as { config: { connection: { filename: string } } }).config.connection.filename
  for (const f of [file, `${file}-wal`, `${file}-journal`]) if (existsSync(f)) out.set(f, readFileSync(f))
  return out
}

function bytesFindings(where: string, bytes: Buffer, plates: readonly string[]): string[] {
  const out: string[] = []
  for (const plate of plates) for (const form of clearForms(plate)) if (bytes.includes(Buffer.from(form, 'utf8'))) out.push(`${where}: ${form}`)
  return out
}

for (const backend of await backends()) {
  describe.skipIf(!backend.run)(`plates are never stored, logged or answered in clear (${backend.name} metadata)`, () => {
    const pushId = `plates-push-${backend.name}`
    const pullId = `plates-pull-${backend.name}`
    const seen: string[] = []
    const logLines: string[] = []
    const preScrub: string[] = []
    const dlq: { topic: string; message: OutgoingMessage }[] = []
    const acks = new Map<string, string>() // plate -> eventId of its landed passage
    let stack: Stack
    let call: ReturnType<typeof client>

    const recordingBus: Bus = {
      kind: 'memory',
      publish(topic, messages) {
        for (const message of messages) dlq.push({ topic, message })
        return Promise.resolve()
      },
      subscribe() {
        throw new Error('the dead-letter bus is only written to here')
      },
      close: () => Promise.resolve(),
    }

    const push = (body: string) => {
      const ts = String(Date.now())
      return call('POST', `/api/v1/ingest/${pushId}`, body, { 'x-citysync-timestamp': ts, 'x-citysync-signature': signPush('hmac-sha256', SECRET, ts, body) })
    }

    beforeAll(async () => {
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          logLines.push(chunk.toString('utf8'))
          done()
        },
      })
      // The production logger's options (cli/embedded.ts createLogger), at debug level;
      // what reaches the net is kept too, to find code that leans on it.
      const log = pino(
        { level: 'debug', base: { service: 'citysync' }, ...PLATE_SAFE_LOGGING, hooks: { streamWrite: (s: string) => (preScrub.push(s), scrubPlates(s)) } },
        sink,
      )
      stack = await startStack(backend, warehouse, undefined, { log, deadLetterBus: recordingBus })
      call = client(stack.url, seen, stack.token)
      for (const def of [
        { id: pushId, kind: 'parking-push', name: '车牌扫描推送', config: { secret: SECRET, lots: ['P001'] } },
        { id: pullId, kind: 'parking-lots', name: '车牌扫描拉取', schedule: { every: '1s' }, config: { baseUrl: simUrl, pageSize: 20 } },
      ]) {
        expect((await call('POST', '/api/v1/sources', def)).status).toBe(201)
        expect((await call('POST', `/api/v1/sources/${def.id}/deploy`, undefined, {})).status).toBe(200)
      }
    })
    afterAll(async () => {
      await stack?.close()
    })

    it('takes the pushed plates through the push route, dead-lettering the bad ones', async () => {
      const now = Date.now()
      const at = (ms: number) => formatLocal(ms, ZONE)
      const entry = (seq: number, plateNo: string, inTime: string | undefined) => ({
        type: 'in', seq, recordNo: `PS${seq}`, parkCode: 'P001', gateNo: 'E1', plateNo, plateColor: 'blue', ...(inTime === undefined ? {} : { inTime }), isReupload: 0,
      })
      const body = {
        records: [
          entry(1, LANDING[0], at(now - 50 * 60_000)),
          entry(2, LANDING[1], at(now - 40 * 60_000)),
          { ...entry(2, LANDING[1], at(now - 40 * 60_000)), type: 'out', recordNo: 'PS2-OUT', outTime: at(now - 10 * 60_000), fee: '5.00' },
          entry(4, '京A 88888', at(now - 30 * 60_000)),
          entry(5, LANDING[3], at(now - 20 * 60_000)),
          entry(6, FUTURE, at(now + 2 * 3600_000)),
          entry(7, INCOMPLETE, undefined),
        ],
      }
      const res = await push(JSON.stringify(body))
      expect(res.status).toBe(200)
      const ack = res.json as { accepted: number; rejected: number; items: { index: number; status: string; eventId?: string; code?: string }[] }
      expect([ack.accepted, ack.rejected]).toEqual([5, 2])
      expect(ack.items.filter((i) => i.status === 'rejected').map((i) => i.code)).toEqual(['future_timestamp', 'missing_field'])
      acks.set(LANDING[0], ack.items[0]!.eventId!)
      acks.set(LANDING[1], ack.items[1]!.eventId!)

      // The same record again with other content: the sink dead-letters it, also onto the dead-letter topic.
      const conflict = { records: [{ ...body.records[0], gateNo: 'E9' }] }
      expect((await push(JSON.stringify(conflict))).status).toBe(200)
      expect(dlq.map((d) => d.message.headers['citysync-dlq-code'])).toEqual(['duplicate_record'])

      const broken = `{"records":[{"type":"in","seq":8,"recordNo":"PS8","parkCode":"P001","plateNo":"${IN_BAD_BODY}", "inTime": 2026-11-21}]}`
      const refused = await push(broken)
      expect(refused.status).toBe(400)
      expect(refused.json).toMatchObject({ code: 'CITYSYNC_ERR_INGEST_BODY' })
    })

    it('reads the simulator through the open-API connector, dead-lettering defects and a malformed item', async () => {
      await until('the pull source to read everything', async () => {
        const c = (await call('GET', `/api/v1/sources/${pullId}/cursor`)).json as { cursor: { in: number; out: number } | null }
        return c.cursor !== null && c.cursor.in === simCounts.in && c.cursor.out === simCounts.out
      })
      const dead = await warehouse.query<{ code: string; n: number }>(
        `SELECT code, count() AS n FROM dead_letter WHERE sourceId = {id:String} GROUP BY code ORDER BY code`,
        { id: pullId },
      )
      const codes = dead.map((d) => d.code)
      expect(codes).toContain('malformed_json')
      expect(codes.length).toBeGreaterThan(1)
      await refreshParking(warehouse, { now: Date.now(), timezone: ZONE, sessionCapMs: 24 * 3600_000, full: true })
    })

    it('reveals a plate to an admin, with a reason, and audits it', async () => {
      const eventId = acks.get(LANDING[1])!
      const tooShort = await call('POST', '/api/v1/plates/reveal', { eventId, reason: 'why' })
      expect(tooShort.status).toBe(400)
      expect(tooShort.json).toMatchObject({ code: 'CITYSYNC_ERR_API_VALIDATION' })
      expect((await call('POST', '/api/v1/plates/reveal', { eventId: 'f'.repeat(32), reason: 'incident 2026-118' })).json).toMatchObject({ code: 'CITYSYNC_ERR_PLATE_NOT_FOUND' })

      const token = await call('POST', '/api/v1/tokens', { name: `analyst-${backend.name}`, role: 'analyst', expiresIn: '1d' })
      expect(token.status).toBe(201)
      const analyst = await call('POST', '/api/v1/plates/reveal', { eventId, reason: 'incident 2026-118' }, { authorization: `Bearer ${(token.json as { token: string }).token}` })
      expect(analyst.status).toBe(403)
      expect(analyst.json).toMatchObject({ code: 'CITYSYNC_ERR_AUTH_FORBIDDEN' })
      expect(analyst.text).not.toContain('AD12345')

      const revealed = await call('POST', '/api/v1/plates/reveal', { eventId, reason: 'police request 2026-118' })
      expect(revealed.status).toBe(200)
      expect(revealed.json).toMatchObject({ eventId, sourceId: pushId, lotId: 'P001', plate: '沪AD12345', masked: '沪A·****45' })
      seen.pop() // the one answer that may carry a plate

      const audit = (await stack.metadata.knex('audit_log').where({ action: 'plates.reveal' }).orderBy('seq')) as { target: string; status: number; actor: string; detail: string }[]
      expect(audit.map((a) => [a.target, a.status, a.actor])).toEqual([
        ['f'.repeat(32), 404, 'token:test-admin'],
        [eventId, 200, 'token:test-admin'],
      ])
      expect(JSON.parse(audit[1]!.detail)).toMatchObject({ reason: 'police request 2026-118', outcome: 'revealed', masked: '沪A·****45', sourceId: pushId })
    })

    it('answers with masked plates only', async () => {
      for (const path of [
        '/api/v1/sources',
        `/api/v1/sources/${pushId}/status`,
        `/api/v1/sources/${pullId}/status`,
        `/api/v1/sources/${pullId}/cursor`,
        '/api/v1/alerts',
        '/api/v1/incidents',
        `/api/v1/analytics/parking/turnover?from=${formatLocal(Date.now() - 86_400_000, ZONE).slice(0, 10)}&to=${formatLocal(Date.now() + 86_400_000, ZONE).slice(0, 10)}`,
      ]) {
        expect((await call('GET', path)).status).toBe(200)
      }
      const answers = seen.join('\n')
      expect(findings('API answers', answers, [...PUSHED, ...simPlates])).toEqual([])
    })

    it('stores no plate in clear in ClickHouse, and stores their masks and join keys', async () => {
      const dump = await warehouseDump(warehouse)
      expect([...dump.keys()]).toEqual(expect.arrayContaining(['parking_passage', 'dead_letter', 'ingest_log', 'parking_session', 'source_heartbeat']))
      const found: string[] = []
      for (const [table, text] of dump) found.push(...findings(`ClickHouse ${table}`, text, [...PUSHED, ...simPlates]))
      expect(found).toEqual([])

      const passages = dump.get('parking_passage')!
      for (const plate of LANDING) {
        expect(passages).toContain(maskPlate(plate))
        expect(passages).toContain(sm3Hmac(KEYS.macKey, normalisePlate(plate)))
      }
      const simKey = sm3Hmac(KEYS.macKey, normalisePlate(simPlates[0]!))
      expect(passages).toContain(simKey)
      expect(dump.get('parking_session')!.length).toBeGreaterThan(0)
      const dead = dump.get('dead_letter')!
      for (const plate of [FUTURE, INCOMPLETE, IN_BAD_BODY]) expect(dead).toContain(maskPlate(plate))
    })

    it('stores no plate in clear in the metadata store', async () => {
      const found: string[] = []
      const dump = await metadataDump(stack.metadata)
      expect([...dump.keys()]).toEqual(expect.arrayContaining(['sources', 'connector_state', 'audit_log']))
      for (const [table, text] of dump) found.push(...findings(`metadata ${table}`, text, [...PUSHED, ...simPlates]))
      for (const [file, bytes] of sqliteFiles(stack.metadata)) found.push(...bytesFindings(file, bytes, [...PUSHED, ...simPlates]))
      expect(found).toEqual([])
      expect(dump.get('audit_log')).toContain('沪A·****45')
      if (backend.name === 'sqlite') expect(sqliteFiles(stack.metadata).size).toBeGreaterThan(0)
    })

    it('puts no plate in clear on the dead-letter topic', () => {
      const found: string[] = []
      for (const { topic, message } of dlq) {
        found.push(...bytesFindings(`DLQ ${topic}`, message.value, [...PUSHED, ...simPlates]))
        found.push(...findings(`DLQ ${topic} headers`, JSON.stringify(message.headers), [...PUSHED, ...simPlates]))
        const decoded = JSON.stringify(catalogue.decode(message.value).value)
        found.push(...findings(`DLQ ${topic} decoded`, decoded, [...PUSHED, ...simPlates]))
      }
      expect(dlq.length).toBeGreaterThan(0)
      expect(found).toEqual([])
    })

    it('logs no plate in clear, and needs no help from the log scrubber to get there', () => {
      const text = logLines.join('')
      expect(text).toContain('push acknowledged')
      expect(findings('log', text, [...PUSHED, ...simPlates])).toEqual([])
      expect(findings('log before the scrubber', preScrub.join(''), [...PUSHED, ...simPlates])).toEqual([])
    })
  })
}
