import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import pg from 'pg'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { POSTGRES_URL, requireService } from '../../infra/test/services.ts'
import { ManualClock } from '../clock.ts'
import { deriveKeys } from '../crypto.ts'
import { isCitysyncError } from '../errors.ts'
import { createSecretCodec, isSealed, type SourceConfig } from '../source-config.ts'
import { openMetadata, type Metadata, type OpenMetadataOptions } from './db.ts'

// One suite, two stores: SQLite in a temp dir, PostgreSQL in a schema of its own.

async function postgresProblem(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3_000 })
  try {
    await client.connect()
    await client.query('select 1')
    return undefined
  } catch (err) {
    return `${POSTGRES_URL}: ${(err as Error).message}`
  } finally {
    await client.end().catch(() => undefined)
  }
}

const pgProblem = await postgresProblem()
const runPg = requireService('PostgreSQL', pgProblem === undefined, pgProblem ?? '')

const SCHEMAS: Record<string, Record<string, unknown>> = {
  'parking-lots': {
    type: 'object',
    properties: { baseUrl: { type: 'string' }, appKey: { type: 'string', 'x-secret': true } },
  },
  'bike-share': { type: 'object' },
}
const { encKey } = deriveKeys('metadata test passphrase, long enough')
const secrets = createSecretCodec((kind) => SCHEMAS[kind], encKey)

interface Backend {
  name: 'sqlite' | 'pg'
  run: boolean
  /** Options for a store on this backend; every call within one suite shares the database. */
  options(): OpenMetadataOptions
  setup(): Promise<void>
  teardown(): Promise<void>
}

function sqliteBackend(): Backend {
  let dataDir = ''
  return {
    name: 'sqlite',
    run: true,
    options: () => ({ dataDir }),
    async setup() {
      dataDir = await mkdtemp(join(tmpdir(), 'citysync-meta-'))
    },
    async teardown() {
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}

function postgresBackend(): Backend {
  const schema = `citysync_test_${process.pid}_${randomBytes(4).toString('hex')}`
  return {
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
  }
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (err) {
    return isCitysyncError(err) ? err.code : `not coded: ${String(err)}`
  }
  return 'no error'
}

function source(id: string, over: Partial<SourceConfig> = {}): SourceConfig {
  return {
    id,
    kind: 'parking-lots',
    name: `Source ${id}`,
    operator: null,
    district: null,
    timezone: 'Asia/Shanghai',
    schedule: { every: '1m' },
    freshness: { maxDelay: '2h' },
    config: { baseUrl: 'https://parking.example.cn/api', appKey: `key-of-${id}` },
    ...over,
  }
}

const T0 = Date.parse('2026-03-01T08:00:00.123Z')

const payload = (n: number): string => `${n}:`.padEnd(2_000, String.fromCharCode(65 + (n % 26)))

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** Another process that saves checkpoints and records `failures` failures on source lot-a. */
async function startWriter(
  options: OpenMetadataOptions,
  failures: number,
): Promise<{ finished(): boolean; exitCode: Promise<number | null> }> {
  const dir = await mkdtemp(join(tmpdir(), 'citysync-writer-'))
  const script = join(dir, 'writer.mts')
  await writeFile(
    script,
    `
const { openMetadata } = await import(${JSON.stringify(pathToFileURL(join(REPO_ROOT, 'lib/metadata/db.ts')).href)})
const payload = ${payload.toString()}
const m = await openMetadata(${JSON.stringify(options)})
process.stdout.write('ready\\n')
for (let i = 0; i < ${failures}; i++) {
  const n = 100_000 + i
  await Promise.all([
    m.connectorState.saveCheckpoint('lot-a', { n, payload: payload(n) }, ${T0} + n),
    m.connectorState.recordFailure('lot-a', 'child ' + i, ${T0}),
  ])
}
await m.close()
`,
  )
  const proc = spawn(process.execPath, ['--import', 'tsx', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
  let done = false
  const exitCode = new Promise<number | null>((resolve) =>
    proc.once('exit', (code) => {
      done = true
      resolve(code)
      void rm(dir, { recursive: true, force: true })
    }),
  )
  await new Promise<void>((resolve, reject) => {
    proc.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) resolve()
    })
    proc.once('exit', (code) => reject(new Error(`writer exited with ${code} before it was ready`)))
  })
  return { finished: () => done, exitCode }
}

for (const backend of [sqliteBackend(), postgresBackend()]) {
  describe.skipIf(!backend.run)(`metadata store on ${backend.name}`, () => {
    const clock = new ManualClock(T0)
    let m: Metadata

    beforeAll(async () => {
      await backend.setup()
      m = await openMetadata({ ...backend.options(), clock, secrets })
    })

    afterAll(async () => {
      await m?.close()
      await backend.teardown()
    })

    beforeEach(async () => {
      await m.knex('sources').delete()
      clock.set(T0)
    })

    it('migrates once and records migrations without their file extension', async () => {
      expect(m.dialect).toBe(backend.name)
      const again = await openMetadata({ ...backend.options(), clock, secrets })
      try {
        const names = (await again.knex('knex_migrations').orderBy('id').pluck('name')) as string[]
        // Every file in infra/db/migrations, in order, named without its extension.
        const files = readdirSync(fileURLToPath(new URL('../../infra/db/migrations/', import.meta.url)))
          .filter((f) => /^\d{3}-.+\.ts$/.test(f))
          .sort()
          .map((f) => f.replace(/\.ts$/, ''))
        expect(files[0]).toBe('001-init')
        expect(names).toEqual(files)
      } finally {
        await again.close()
      }
    })

    it('adds sources paused, at version 1, with idle connector state', async () => {
      const added = await m.sources.add(source('lot-a', { operator: 'Hengqin Parking', district: '横琴' }))
      expect(added).toMatchObject({ id: 'lot-a', desiredState: 'paused', version: 1, createdAt: T0, updatedAt: T0 })
      expect(added.operator).toBe('Hengqin Parking')
      expect(added.district).toBe('横琴')
      expect(await m.sources.get('lot-a')).toEqual(added)
      expect(await m.connectorState.get('lot-a')).toEqual({
        cursor: null,
        checkpointAt: null,
        runState: 'idle',
        lastError: null,
        lastErrorAt: null,
        lastRunAt: null,
        consecutiveFailures: 0,
      })
      expect(await codeOf(m.sources.add(source('lot-a')))).toBe('CITYSYNC_ERR_SOURCE_EXISTS')
    })

    it('finds, gets and lists with filters', async () => {
      await m.sources.add(source('lot-b', { district: 'xiangzhou', operator: 'op-1' }))
      await m.sources.add(source('lot-a', { district: 'hengqin', operator: 'op-1' }))
      await m.sources.add(source('bikes', { kind: 'bike-share', district: 'hengqin', config: {} }))
      expect((await m.sources.list()).map((s) => s.id)).toEqual(['bikes', 'lot-a', 'lot-b'])
      expect((await m.sources.list({ kind: 'parking-lots' })).map((s) => s.id)).toEqual(['lot-a', 'lot-b'])
      expect((await m.sources.list({ district: 'hengqin' })).map((s) => s.id)).toEqual(['bikes', 'lot-a'])
      expect((await m.sources.list({ district: 'hengqin', operator: 'op-1' })).map((s) => s.id)).toEqual(['lot-a'])
      expect((await m.sources.list({ kind: undefined, operator: 'op-2' })).map((s) => s.id)).toEqual([])
      expect(await m.sources.find('nope')).toBeUndefined()
      expect(await codeOf(m.sources.get('nope'))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
    })

    it('keeps secrets sealed at rest and opens them on read', async () => {
      await m.sources.add(source('lot-a'))
      const row = await m.knex('sources').where({ id: 'lot-a' }).first<{ config: unknown }>('config')
      const stored = (typeof row.config === 'string' ? JSON.parse(row.config) : row.config) as Record<string, unknown>
      expect(stored.baseUrl).toBe('https://parking.example.cn/api')
      expect(isSealed(stored.appKey)).toBe(true)
      expect(JSON.stringify(stored)).not.toContain('key-of-lot-a')
      expect((await m.sources.get('lot-a')).config.appKey).toBe('key-of-lot-a')
      expect((await m.sources.list())[0]?.config.appKey).toBe('key-of-lot-a')
    })

    it('updates with optimistic concurrency', async () => {
      await m.sources.add(source('lot-a'))
      clock.advance(1_000)
      const v2 = await m.sources.update('lot-a', source('lot-a', { name: 'Renamed', schedule: { cron: '*/5 * * * *' } }), 1, 'alice')
      expect(v2).toMatchObject({ name: 'Renamed', version: 2, createdAt: T0, updatedAt: T0 + 1_000, schedule: { cron: '*/5 * * * *' } })
      expect(await codeOf(m.sources.update('lot-a', source('lot-a', { name: 'Stale' }), 1))).toBe(
        'CITYSYNC_ERR_SOURCE_VERSION_CONFLICT',
      )
      expect((await m.sources.get('lot-a')).name).toBe('Renamed')
      const v3 = await m.sources.update('lot-a', source('lot-a', { name: 'Last writer' }))
      expect(v3.version).toBe(3)
      expect(await codeOf(m.sources.update('lot-a', source('lot-a', { kind: 'bike-share' }), 3))).toBe('CITYSYNC_ERR_SOURCE_STATE')
      expect(await codeOf(m.sources.update('lot-a', source('lot-b'), 3))).toBe('CITYSYNC_ERR_CONFIG_INVALID')
      expect(await codeOf(m.sources.update('ghost', source('ghost')))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
      const history = await m.sources.history('lot-a', 10)
      expect(history.map((e) => [e.kind, e.actor, e.detail])).toEqual([
        ['updated', 'system', { version: 3 }],
        ['updated', 'alice', { version: 2 }],
        ['added', 'system', null],
      ])
    })

    it('only one of two concurrent updates at the same version wins', async () => {
      await m.sources.add(source('lot-a'))
      const results = await Promise.allSettled([
        m.sources.update('lot-a', source('lot-a', { name: 'one' }), 1),
        m.sources.update('lot-a', source('lot-a', { name: 'two' }), 1),
      ])
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
      const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
      expect(isCitysyncError(rejected.reason, 'CITYSYNC_ERR_SOURCE_VERSION_CONFLICT')).toBe(true)
      expect((await m.sources.get('lot-a')).version).toBe(2)
    })

    it('removes a source with its state and history', async () => {
      await m.sources.add(source('lot-a'))
      await m.sources.add(source('lot-b'))
      await m.connectorState.saveCheckpoint('lot-a', { page: 9 }, T0)
      await m.sources.setDesiredState('lot-a', 'deployed', 'bob')
      await m.sources.remove('lot-a')
      expect(await m.sources.find('lot-a')).toBeUndefined()
      const [{ n: stateRows }] = (await m.knex('connector_state').where({ source_id: 'lot-a' }).count({ n: '*' })) as [{ n: number | string }]
      const [{ n: eventRows }] = (await m.knex('source_events').where({ source_id: 'lot-a' }).count({ n: '*' })) as [{ n: number | string }]
      expect(Number(stateRows)).toBe(0)
      expect(Number(eventRows)).toBe(0)
      expect(await codeOf(m.connectorState.get('lot-a'))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
      expect(await codeOf(m.sources.history('lot-a', 5))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
      expect(await codeOf(m.sources.remove('lot-a'))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
      expect((await m.connectorState.get('lot-b')).cursor).toBeNull()
    })

    it('records desired-state changes, restarts and custom events in the history', async () => {
      await m.sources.add(source('lot-a'), 'cli')
      clock.advance(1)
      expect((await m.sources.setDesiredState('lot-a', 'deployed', 'alice')).desiredState).toBe('deployed')
      clock.advance(1)
      await m.sources.setDesiredState('lot-a', 'deployed', 'alice')
      clock.advance(1)
      await m.sources.setDesiredState('lot-a', 'paused', 'bob')
      clock.advance(1)
      await m.sources.setDesiredState('lot-a', 'deployed', 'carol')
      clock.advance(1)
      const restarted = await m.sources.restart('lot-a', 'dave')
      expect(restarted.version).toBe(2)
      expect(restarted.updatedAt).toBe(T0)
      clock.advance(1)
      await m.sources.recordEvent('lot-a', 'restarted', 'runtime', { reason: 'test' })

      const history = await m.sources.history('lot-a', 10)
      expect(history.map((e) => [e.kind, e.actor, e.at])).toEqual([
        ['restarted', 'runtime', T0 + 6],
        ['restarted', 'dave', T0 + 5],
        ['resumed', 'carol', T0 + 4],
        ['paused', 'bob', T0 + 3],
        ['deployed', 'alice', T0 + 1],
        ['added', 'cli', T0],
      ])
      expect(history[0]?.detail).toEqual({ reason: 'test' })
      expect(history.every((e) => e.sourceId === 'lot-a' && typeof e.id === 'number')).toBe(true)
      expect((await m.sources.history('lot-a', 2)).map((e) => e.kind)).toEqual(['restarted', 'restarted'])
      expect((await m.sources.get('lot-a')).desiredState).toBe('deployed')

      expect(await codeOf(m.sources.setDesiredState('ghost', 'deployed', 'x'))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
      expect(await codeOf(m.sources.restart('ghost', 'x'))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
      expect(await codeOf(m.sources.recordEvent('ghost', 'error', 'x'))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
    })

    it('round-trips JSON cursors and checkpoint times exactly', async () => {
      await m.sources.add(source('lot-a'))
      const cursors: unknown[] = [
        { since: '2026-03-01T07:59:59.999+08:00', page: 3, lots: ['a', 'b'], nested: { ok: true, n: null } },
        ['lot-1', 42, 1.5, false],
        'opaque-token-粤C·12345',
        '123',
        12345678901234,
        0,
        true,
        { '': 'empty key', 'a.b': 'dots', unicode: '横琴 💡' },
      ]
      for (const [i, cursor] of cursors.entries()) {
        const at = T0 + i * 1_001
        await m.connectorState.saveCheckpoint('lot-a', cursor, at)
        const state = await m.connectorState.get('lot-a')
        expect(state.cursor).toEqual(cursor)
        expect(state.checkpointAt).toBe(at)
        expect(typeof state.checkpointAt).toBe('number')
      }
      expect(await codeOf(m.connectorState.saveCheckpoint('ghost', {}, T0))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
      expect(await codeOf(m.connectorState.get('ghost'))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
    })

    it('resets the cursor and keeps the old one in the history', async () => {
      await m.sources.add(source('lot-a'))
      await m.connectorState.saveCheckpoint('lot-a', { page: 7 }, T0 + 5)
      clock.advance(60_000)
      await m.connectorState.resetCursor('lot-a', 'alice')
      const state = await m.connectorState.get('lot-a')
      expect(state.cursor).toBeNull()
      expect(state.checkpointAt).toBeNull()
      const [latest] = await m.sources.history('lot-a', 1)
      expect(latest).toMatchObject({
        kind: 'cursor_reset',
        actor: 'alice',
        at: T0 + 60_000,
        detail: { previousCursor: { page: 7 }, previousCheckpointAt: T0 + 5 },
      })
      await m.connectorState.saveCheckpoint('lot-a', { page: 1 }, T0 + 70_000)
      expect((await m.connectorState.get('lot-a')).cursor).toEqual({ page: 1 })
      expect(await codeOf(m.connectorState.resetCursor('ghost', 'x'))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
    })

    it('tracks run state, failures and recovery', async () => {
      await m.sources.add(source('lot-a'))
      await m.connectorState.setRunState('lot-a', 'running')
      expect((await m.connectorState.get('lot-a')).runState).toBe('running')

      clock.advance(10)
      await m.connectorState.setRunState('lot-a', 'backoff', 'HTTP 503')
      await m.connectorState.recordFailure('lot-a', 'HTTP 503', T0 + 100)
      await m.connectorState.recordFailure('lot-a', 'HTTP 503', T0 + 200)
      await m.connectorState.recordFailure('lot-a', 'timeout', T0 + 300)
      let state = await m.connectorState.get('lot-a')
      expect(state).toMatchObject({
        runState: 'backoff',
        lastError: 'timeout',
        lastErrorAt: T0 + 300,
        lastRunAt: T0 + 300,
        consecutiveFailures: 3,
      })

      await m.connectorState.recordSuccess('lot-a', T0 + 400)
      await m.connectorState.recordSuccess('lot-a', T0 + 500)
      await m.connectorState.setRunState('lot-a', 'idle')
      state = await m.connectorState.get('lot-a')
      expect(state).toMatchObject({ runState: 'idle', lastError: 'timeout', lastRunAt: T0 + 500, consecutiveFailures: 0 })

      const history = await m.sources.history('lot-a', 10)
      expect(history.map((e) => [e.kind, e.at, e.detail])).toEqual([
        ['recovered', T0 + 400, null],
        ['error', T0 + 100, { error: 'HTTP 503' }],
        ['added', T0, null],
      ])
      expect(await codeOf(m.connectorState.recordFailure('ghost', 'x', T0))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
      expect(await codeOf(m.connectorState.recordSuccess('ghost', T0))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
      expect(await codeOf(m.connectorState.setRunState('ghost', 'idle'))).toBe('CITYSYNC_ERR_SOURCE_NOT_FOUND')
    })

    it('survives concurrent writers without torn rows or lost increments', async () => {
      await m.sources.add(source('lot-a'))
      const inProcess: Promise<unknown>[] = []
      for (let n = 0; n < 200; n++) {
        inProcess.push(m.connectorState.saveCheckpoint('lot-a', { n, payload: payload(n) }, T0 + n))
        if (n < 60) inProcess.push(m.connectorState.recordFailure('lot-a', `failure ${n}`, T0 + n))
        if (n % 10 === 0) inProcess.push(m.connectorState.setRunState('lot-a', n % 20 === 0 ? 'running' : 'backoff'))
      }
      await Promise.all(inProcess)

      // And another process writing at the same time (for SQLite: a second
      // connection that must wait for the lock rather than fail).
      const child = await startWriter({ ...backend.options(), migrate: false }, 300)
      let parentFailures = 0
      let round = 0
      const deadline = Date.now() + 60_000
      while (!child.finished() && Date.now() < deadline) {
        // better-sqlite3 answers synchronously: let timers and the child's exit event through.
        await new Promise((resolve) => setTimeout(resolve, 1))
        const batch: Promise<unknown>[] = []
        for (let i = 0; i < 10; i++, round++) {
          batch.push(m.connectorState.saveCheckpoint('lot-a', { n: round, payload: payload(round) }, T0 + round))
        }
        batch.push(m.connectorState.recordFailure('lot-a', 'parent', T0))
        parentFailures++
        await Promise.all(batch)
      }
      expect(await child.exitCode).toBe(0)
      expect(parentFailures).toBeGreaterThan(1)

      const state = await m.connectorState.get('lot-a')
      const cursor = state.cursor as { n: number; payload: string }
      expect(cursor.payload).toBe(payload(cursor.n))
      expect(state.checkpointAt).toBe(T0 + cursor.n)
      expect(state.consecutiveFailures).toBe(60 + 300 + parentFailures)
      expect(['running', 'backoff']).toContain(state.runState)
      const errors = (await m.sources.history('lot-a', 1_000)).filter((e) => e.kind === 'error')
      expect(errors).toHaveLength(1)
    })
  })
}
