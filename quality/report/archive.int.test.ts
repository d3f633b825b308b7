import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { POSTGRES_URL, postgresReachable, requireService } from '../../infra/test/services.ts'
import { openMetadata, type Metadata, type OpenMetadataOptions } from '../../lib/metadata/db.ts'
import { ReportArchive } from './archive.ts'

// The report archive (migration 004) on both metadata stores.

const runPg = requireService('PostgreSQL', await postgresReachable(), POSTGRES_URL)

interface Backend {
  name: string
  run: boolean
  options(): OpenMetadataOptions
  setup(): Promise<void>
  teardown(): Promise<void>
}

let dataDir = ''
const schema = `citysync_rep_${process.pid}_${randomBytes(3).toString('hex')}`
const backends: Backend[] = [
  {
    name: 'sqlite',
    run: true,
    options: () => ({ dataDir }),
    async setup() {
      dataDir = await mkdtemp(join(tmpdir(), 'citysync-archive-'))
    },
    async teardown() {
      await rm(dataDir, { recursive: true, force: true })
    },
  },
  {
    name: 'pg',
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
  },
]

for (const backend of backends) {
  describe.skipIf(!backend.run)(`report archive on ${backend.name}`, () => {
    let m: Metadata
    beforeAll(async () => {
      await backend.setup()
      m = await openMetadata(backend.options())
    })
    afterAll(async () => {
      await m?.close()
      await backend.teardown()
    })

    it('keeps every revision, the newest current, and the model intact', async () => {
      expect((await m.knex('knex_migrations').pluck('name')) as string[]).toContain('004-report-archive')
      const a = new ReportArchive(m.knex, m.dialect)
      const model = { kind: 'sync', month: '2026-11', rows: [{ id: 'P001', name: '横琴口岸P1停车场', completeness: 0.9861 }] }
      const t = Date.parse('2026-12-01T00:00:00Z')
      const first = await a.save({ kind: 'sync', period: '2026-11', zone: 'Asia/Shanghai', trigger: 'schedule', generatedAt: t, dataThrough: t, summary: { completeness: 0.9861 }, model })
      const second = await a.save({ kind: 'sync', period: '2026-11', zone: 'Asia/Shanghai', trigger: 'backfill', reason: '3 backfilled rows', generatedAt: t + 3_600_000, dataThrough: t + 3_600_000, summary: { completeness: 0.99 }, model: { ...model, rows: [] } })
      await a.save({ kind: 'onboarding', period: '2026Q4', zone: 'Asia/Shanghai', trigger: 'manual', generatedAt: t, dataThrough: t, summary: { onboarded: 2 }, model: {} })
      expect([first.revision, second.revision]).toEqual([1, 2])
      expect(await a.latestEntry('sync', '2026-11', 'Asia/Shanghai')).toMatchObject({ revision: 2, trigger: 'backfill', reason: '3 backfilled rows', generatedAt: t + 3_600_000, summary: { completeness: 0.99 } })
      expect((await a.latest('sync', '2026-11', 'Asia/Shanghai'))!.model).toEqual({ ...model, rows: [] })
      expect((await a.list({ kind: 'sync' })).map((e) => e.revision)).toEqual([2, 1])
      expect((await a.current('sync')).map((e) => [e.period, e.revision])).toEqual([['2026-11', 2]])
      expect(await a.latestEntry('sync', '2026-10', 'Asia/Shanghai')).toBeUndefined()
    })
  })
}
