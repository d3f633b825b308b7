import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { POSTGRES_URL, postgresReachable, requireService } from '../../infra/test/services.ts'
import { ManualClock } from '../clock.ts'
import { isCitysyncError } from '../errors.ts'
import { openMetadata, type Metadata, type OpenMetadataOptions } from './db.ts'

// The onboarding migration and repository on both metadata stores.

const runPg = requireService('PostgreSQL', await postgresReachable(), POSTGRES_URL)

// 2026-03-31 23:30 in Shanghai: "today" is the 31st there, the 31st in UTC too until 16:00Z.
const T0 = Date.parse('2026-03-31T15:30:00Z')

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (err) {
    return isCitysyncError(err) ? err.code : `not coded: ${String(err)}`
  }
  return 'no error'
}

interface Backend {
  name: 'sqlite' | 'pg'
  run: boolean
  options(): OpenMetadataOptions
  setup(): Promise<void>
  teardown(): Promise<void>
}

const backends: Backend[] = [
  (() => {
    let dataDir = ''
    return {
      name: 'sqlite' as const,
      run: true,
      options: () => ({ dataDir }),
      async setup() {
        dataDir = await mkdtemp(join(tmpdir(), 'citysync-onboarding-'))
      },
      async teardown() {
        await rm(dataDir, { recursive: true, force: true })
      },
    }
  })(),
  (() => {
    const schema = `citysync_onb_${process.pid}_${randomBytes(3).toString('hex')}`
    return {
      name: 'pg' as const,
      run: runPg,
      options: () => ({ databaseUrl: POSTGRES_URL, dataDir: tmpdir(), schema }),
      async setup() {},
      async teardown() {
        const client = new pg.Client({ connectionString: POSTGRES_URL })
        await client.connect()
        try {
          await client.query(`drop schema if exists "${schema}" cascade`)
        } finally {
          await client.end()
        }
      },
    }
  })(),
]

for (const backend of backends) {
  describe.skipIf(!backend.run)(`county onboarding on ${backend.name}`, () => {
    const clock = new ManualClock(T0)
    let m: Metadata

    beforeAll(async () => {
      await backend.setup()
      m = await openMetadata({ ...backend.options(), clock })
      await m.sources.add({
        id: 'rudong-files', kind: 'county-files', name: '如东县文件报送', operator: null, district: '如东县', timezone: 'Asia/Shanghai',
        schedule: { every: '1m' }, freshness: { maxDelay: '2h' }, config: { county: '如东县', dropDir: '/tmp/x' },
      })
    })
    afterAll(async () => {
      await m?.close()
      await backend.teardown()
    })
    beforeEach(async () => {
      await m.knex('county_lot_onboarding').delete()
      clock.set(T0)
    })

    it('migrates: both tables exist, the migration is recorded, and it can be rolled back and forward', async () => {
      const names = (await m.knex('knex_migrations').orderBy('id').pluck('name')) as string[]
      expect(names).toContain('002-county-onboarding')
      expect(await m.knex.schema.hasTable('county_lot_onboarding')).toBe(true)
      expect(await m.knex.schema.hasTable('county_lot_onboarding_history')).toBe(true)
      for (const column of ['lot_id', 'county', 'source_id', 'status', 'planned_date', 'connected_date', 'onboarded_date', 'suspended_date', 'note', 'version']) {
        expect(await m.knex.schema.hasColumn('county_lot_onboarding', column), column).toBe(true)
      }
      // The status column refuses values outside the list, in the database itself.
      const bad = m.knex('county_lot_onboarding').insert({
        lot_id: 'X', county: 'c', status: 'live', created_at: backend.name === 'pg' ? new Date(T0) : new Date(T0).toISOString(),
        updated_at: backend.name === 'pg' ? new Date(T0) : new Date(T0).toISOString(), updated_by: 't',
      })
      await expect(bad).rejects.toThrow()
    })

    it('creates a record with a history line, fills the date of the status entered, and lists by county', async () => {
      const a = await m.onboarding.put('RD-P001', { county: '如东县', name: '如东县人民医院停车场', sourceId: 'rudong-files', status: 'planned', plannedDate: '2026-05-01' }, 'alice')
      expect(a.created).toBe(true)
      expect(a.record).toMatchObject({
        lotId: 'RD-P001', county: '如东县', status: 'planned', plannedDate: '2026-05-01', connectedDate: null,
        onboardedDate: null, suspendedDate: null, version: 1, updatedBy: 'alice', createdAt: T0, updatedAt: T0,
      })
      const b = await m.onboarding.put('RD-P002', { county: '如东县', status: 'connecting' }, 'bob')
      expect(b.record.connectedDate).toBe('2026-03-31')
      await m.onboarding.put('HA-P001', { county: '海安市', status: 'onboarded', onboardedDate: '2026-01-15' }, 'bob')
      expect((await m.onboarding.list({ county: '如东县' })).map((r) => r.lotId)).toEqual(['RD-P001', 'RD-P002'])
      expect((await m.onboarding.list({ status: 'onboarded' })).map((r) => r.lotId)).toEqual(['HA-P001'])
      expect((await m.onboarding.list()).map((r) => r.county)).toEqual(['如东县', '如东县', '海安市'].sort())
      expect(await m.onboarding.history('RD-P001')).toEqual([
        {
          id: expect.any(Number) as number, lotId: 'RD-P001', at: T0, actor: 'alice', from: null, to: 'planned',
          changes: {
            county: { from: null, to: '如东县' }, name: { from: null, to: '如东县人民医院停车场' }, sourceId: { from: null, to: 'rudong-files' },
            status: { from: null, to: 'planned' }, plannedDate: { from: null, to: '2026-05-01' },
          },
        },
      ])
    })

    it('moves through the statuses with who, when, from and to; refuses what is not allowed', async () => {
      await m.onboarding.put('RD-P001', { county: '如东县', status: 'planned' }, 'alice')
      clock.set(Date.parse('2026-04-02T02:00:00Z'))
      const c = await m.onboarding.put('RD-P001', { status: 'connecting', note: '厂商已提供数据库账号' }, 'bob')
      expect(c.record).toMatchObject({ status: 'connecting', connectedDate: '2026-04-02', version: 2, note: '厂商已提供数据库账号' })
      clock.set(Date.parse('2026-04-10T02:00:00Z'))
      await m.onboarding.put('RD-P001', { status: 'onboarded', onboardedDate: '2026-04-09' }, 'carol')
      expect(await codeOf(m.onboarding.put('RD-P001', { status: 'planned' }, 'dave'))).toBe('CITYSYNC_ERR_ONBOARDING_TRANSITION')
      clock.set(Date.parse('2026-06-01T02:00:00Z'))
      await m.onboarding.put('RD-P001', { status: 'suspended', note: '设备改造' }, 'dave')
      // Nothing to change: no history line, same version.
      const same = await m.onboarding.put('RD-P001', { status: 'suspended' }, 'dave')
      expect(same).toMatchObject({ changed: false, record: { version: 4 } })

      const h = await m.onboarding.history('RD-P001')
      expect(h.map((x) => [x.actor, x.at, x.from, x.to])).toEqual([
        ['dave', Date.parse('2026-06-01T02:00:00Z'), 'onboarded', 'suspended'],
        ['carol', Date.parse('2026-04-10T02:00:00Z'), 'connecting', 'onboarded'],
        ['bob', Date.parse('2026-04-02T02:00:00Z'), 'planned', 'connecting'],
        ['alice', T0, null, 'planned'],
      ])
      expect(h[0]!.changes).toEqual({
        status: { from: 'onboarded', to: 'suspended' },
        suspendedDate: { from: null, to: '2026-06-01' },
        note: { from: '厂商已提供数据库账号', to: '设备改造' },
      })
      expect(await m.onboarding.get('RD-P001')).toMatchObject({
        status: 'suspended', connectedDate: '2026-04-02', onboardedDate: '2026-04-09', suspendedDate: '2026-06-01', version: 4, updatedBy: 'dave',
      })
    })

    it('guards against lost updates with the version, and validates input', async () => {
      await m.onboarding.put('RD-P003', { county: '如东县', status: 'planned' }, 'a')
      await m.onboarding.put('RD-P003', { note: 'first' }, 'a', 1)
      expect(await codeOf(m.onboarding.put('RD-P003', { note: 'stale' }, 'b', 1))).toBe('CITYSYNC_ERR_ONBOARDING_CONFLICT')
      expect(await codeOf(m.onboarding.put('RD-P009', { status: 'planned' }, 'a'))).toBe('CITYSYNC_ERR_API_VALIDATION')
      expect(await codeOf(m.onboarding.put('RD-P009', { county: '如东县', status: 'planned', plannedDate: '2026-02-30' }, 'a'))).toBe('CITYSYNC_ERR_API_VALIDATION')
      expect(await codeOf(m.onboarding.put('RD-P009', { county: '如东县', status: 'planned', sourceId: 'ghost' }, 'a'))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
      expect(await codeOf(m.onboarding.get('nope'))).toBe('CITYSYNC_ERR_ONBOARDING_NOT_FOUND')
    })

    it('promotes connecting to onboarded once, and only from connecting', async () => {
      await m.onboarding.put('RD-P004', { county: '如东县', status: 'connecting', sourceId: 'rudong-files' }, 'a')
      await m.onboarding.put('RD-P005', { county: '如东县', status: 'planned' }, 'a')
      expect(await m.onboarding.promote('RD-P004', '2026-03-31', 'citysync', 'first good data landed')).toBe(true)
      expect(await m.onboarding.promote('RD-P004', '2026-04-01', 'citysync', 'again')).toBe(false)
      expect(await m.onboarding.promote('RD-P005', '2026-03-31', 'citysync', 'not connecting')).toBe(false)
      expect(await m.onboarding.get('RD-P004')).toMatchObject({ status: 'onboarded', onboardedDate: '2026-03-31', version: 2, updatedBy: 'citysync' })
      const [last] = await m.onboarding.history('RD-P004')
      expect(last).toMatchObject({ actor: 'citysync', from: 'connecting', to: 'onboarded' })
    })

    it('keeps the record when its source is removed, without the link', async () => {
      await m.sources.add({
        id: 'tmp-src', kind: 'county-files', name: 'tmp', operator: null, district: null, timezone: 'Asia/Shanghai',
        schedule: { every: '1m' }, freshness: { maxDelay: '2h' }, config: { county: 'x', dropDir: '/tmp/y' },
      })
      await m.onboarding.put('RD-P006', { county: '如东县', status: 'planned', sourceId: 'tmp-src' }, 'a')
      await m.sources.remove('tmp-src')
      expect(await m.onboarding.get('RD-P006')).toMatchObject({ sourceId: null, status: 'planned' })
    })
  })
}
