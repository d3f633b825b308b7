import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ParkingSimulator } from '../connectors/parking-lots/simulator.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { type Answer, backends, client, type Stack, startStack, until } from './test-stack.ts'

// A source's life over real HTTP, on SQLite and on PostgreSQL metadata, with
// rows landing in chDB: add (refused field by field when wrong) → check →
// deploy → pause → cursor reset → resume, updates, restarts, removal. The
// vendor's app key never appears in an answer.

const APP_KEY = 'vendor-app-key-7Hq2'
const WRONG_KEY = 'not-the-key-9Zx4'
const LOTS = 3
const PASSAGES = 200

let warehouse: Warehouse
let whDir: string
let sim: ParkingSimulator
let simUrl: string
let counts: { in: number; out: number; space: number }

beforeAll(async () => {
  whDir = mkdtempSync(join(tmpdir(), 'citysync-api-sources-'))
  warehouse = await openWarehouse({ dataDir: whDir })
  sim = new ParkingSimulator({ seed: 11, lots: LOTS, eventsPerMinute: 60, maxEvents: PASSAGES, appKey: APP_KEY, startAt: Date.now() - 8 * 3600_000 })
  simUrl = await sim.start(0)
  sim.advance()
  counts = sim.counts()
})

afterAll(async () => {
  await sim.stop()
  await warehouse.close()
  rmSync(whDir, { recursive: true, force: true })
})

async function count(table: string, sourceId: string): Promise<number> {
  const rows = await warehouse.query<{ n: number }>(`SELECT count() AS n FROM ${table} WHERE sourceId = {id:String}`, { id: sourceId })
  return Number(rows[0]!.n)
}

for (const backend of await backends()) {
  describe.skipIf(!backend.run)(`sources over REST (${backend.name} metadata)`, () => {
    const id = `lots-${backend.name}`
    const seen: string[] = []
    let stack: Stack
    let call: ReturnType<typeof client>
    const definition = (config: Record<string, unknown> = {}) => ({
      id,
      kind: 'parking-lots',
      name: '横琴口岸停车场平台',
      operator: '横琴停车公司',
      district: '横琴',
      schedule: { every: '1s' },
      config: { baseUrl: simUrl, appKey: APP_KEY, pageSize: 50, ...config },
    })
    const status = async () => (await call('GET', `/api/v1/sources/${id}/status`)).json as Record<string, unknown>
    const cursor = async () => ((await call('GET', `/api/v1/sources/${id}/cursor`)).json as { cursor: unknown }).cursor
    const atEnd = async () => {
      const c = (await cursor()) as { in: number; out: number; space: number } | null
      return c !== null && c.in === counts.in && c.out === counts.out && c.space === counts.space
    }

    beforeAll(async () => {
      stack = await startStack(backend, warehouse)
      call = client(stack.url, seen, stack.token)
    })
    afterAll(async () => {
      await stack?.close()
    })

    it('refuses a bad definition field by field', async () => {
      const bad = await call('POST', '/api/v1/sources', definition({ baseUrl: 'ftp://vendor', pageSize: 5000, streams: ['entries', 'bogus'], colour: 'red' }))
      expect(bad.status).toBe(400)
      expect(bad.json).toEqual({
        code: 'CITYSYNC_ERR_CONFIG_INVALID',
        message:
          'invalid configuration: config.colour: is not an allowed property; config.baseUrl: must match pattern "^https?://"; ' +
          'config.pageSize: must be <= 1000; config.streams[1]: must be one of "entries", "exits", "spaces"',
        errors: [
          { path: 'config.colour', message: 'is not an allowed property' },
          { path: 'config.baseUrl', message: 'must match pattern "^https?://"' },
          { path: 'config.pageSize', message: 'must be <= 1000' },
          { path: 'config.streams[1]', message: 'must be one of "entries", "exits", "spaces"' },
        ],
      })
      const envelope = await call('POST', '/api/v1/sources', { id: 'Bad_Id', kind: 'parking-lots', schedule: { every: '5 minutes' } })
      expect(envelope.status).toBe(400)
      expect((envelope.json as { errors: unknown }).errors).toEqual([
        { path: 'name', message: 'is required' },
        { path: 'id', message: 'must match pattern "^[a-z0-9][a-z0-9-]{1,62}$"' },
        { path: 'schedule.every', message: 'must be a duration such as 30s, 5m, 1h30m or 2h' },
      ])
      const kind = await call('POST', '/api/v1/sources', { ...definition(), kind: 'ferry-gates' })
      expect(kind.status).toBe(400)
      expect(kind.json).toEqual({
        code: 'CITYSYNC_ERR_SOURCE_KIND_UNKNOWN',
        message: 'unknown source kind ferry-gates',
        errors: [{ path: 'kind', message: 'unknown source kind ferry-gates' }],
      })
      const notJson = await call('POST', '/api/v1/sources', '{"id": "lots-')
      expect([notJson.status, (notJson.json as { code: string }).code]).toEqual([400, 'CITYSYNC_ERR_API_BODY_INVALID'])
      expect((await call('PUT', `/api/v1/sources/${id}?version=latest`, definition())).json).toEqual({
        code: 'CITYSYNC_ERR_API_VALIDATION',
        message: 'querystring/version must be integer',
      })
      expect((await stack.metadata.sources.list()).length).toBe(0)
    })

    it('adds a source paused, its secret sealed at rest and masked in answers', async () => {
      const added = await call('POST', '/api/v1/sources', definition())
      expect(added.status).toBe(201)
      expect(added.json).toMatchObject({
        id,
        kind: 'parking-lots',
        desiredState: 'paused',
        version: 1,
        timezone: 'Asia/Shanghai',
        config: { baseUrl: simUrl, appKey: '******', pageSize: 50, streams: ['entries', 'exits', 'spaces'] },
        status: { state: 'provisioned', rowsLanded: 0, rowsRejected: 0, lastCheckpointAt: null, lastError: null },
      })
      const row = await stack.metadata.knex('sources').where({ id }).first<{ config: unknown }>('config')
      const stored = typeof row.config === 'string' ? row.config : JSON.stringify(row.config)
      expect(stored).toContain('"appKey":{"$sealed":"')
      expect(stored).not.toContain(APP_KEY)
      expect((await call('POST', '/api/v1/sources', definition())).json).toMatchObject({ code: 'CITYSYNC_ERR_SOURCE_EXISTS' })
      const listed = (await call('GET', '/api/v1/sources')).json as { items: { id: string; status: { state: string } }[] }
      expect(listed.items.map((s) => [s.id, s.status.state])).toEqual([[id, 'provisioned']])
    })

    it('checks the source against its upstream, deploys it and lands every record', async () => {
      const check = await call('POST', `/api/v1/sources/${id}/check`)
      expect(check.status).toBe(200)
      expect(check.json).toEqual({ ok: true, message: `${LOTS} car parks found`, details: { lots: LOTS, parkCodes: sim.parks().map((p) => p.parkCode) } })

      const cursorWhileDeployed = async () => {
        const reset = await call('DELETE', `/api/v1/sources/${id}/cursor`)
        expect(reset.status).toBe(409)
        expect(reset.json).toEqual({ code: 'CITYSYNC_ERR_SOURCE_NOT_PAUSED', message: `source ${id} must be paused first: its cursor can only be changed while it is paused` })
      }
      const deployed = await call('POST', `/api/v1/sources/${id}/deploy`)
      expect(deployed.status).toBe(200)
      await until('every record to land', async () => (await atEnd()) && (await count('parking_passage', id)) === PASSAGES)
      expect(await count('parking_passage', id)).toBe(PASSAGES)
      expect(await count('parking_occupancy', id)).toBe(counts.space)
      expect(counts.in + counts.out).toBe(PASSAGES)

      const st = await status()
      const lots = await count('parking_lot', id)
      expect(lots % LOTS).toBe(0)
      expect(st).toMatchObject({ rowsLanded: PASSAGES + counts.space + lots, rowsRejected: 0, lastError: null })
      expect(['idle', 'running']).toContain(st.state)
      expect(typeof st.lastCheckpointAt).toBe('string')
      await cursorWhileDeployed()
      const remove = await call('DELETE', `/api/v1/sources/${id}`)
      expect(remove.status).toBe(409)
      expect(remove.json).toMatchObject({ code: 'CITYSYNC_ERR_SOURCE_NOT_PAUSED' })
    })

    it('pauses, resets the cursor (validated when given a value) and resumes from the beginning without duplicates', async () => {
      const paused = await call('POST', `/api/v1/sources/${id}/pause`)
      expect(paused.status).toBe(200)
      expect(paused.json).toMatchObject({ state: 'paused' })
      // Paused means silent towards the upstream: three schedule periods (1 s) pass without one request.
      const requestsAtPause = sim.totalRequests()
      await new Promise((r) => setTimeout(r, 3_000))
      expect(sim.totalRequests()).toBe(requestsAtPause)
      const before = await cursor()
      expect(before).toEqual(counts)

      const notObject = await call('DELETE', `/api/v1/sources/${id}/cursor`, { cursor: 17 })
      expect(notObject.status).toBe(400)
      expect(notObject.json).toEqual({
        code: 'CITYSYNC_ERR_SOURCE_CURSOR_INVALID',
        message: `cursor for source ${id} is invalid: cursor: must be an object`,
        errors: [{ path: 'cursor', message: 'must be an object' }],
      })
      const notJson = await call('DELETE', `/api/v1/sources/${id}/cursor?cursor=in%3D5`)
      expect(notJson.status).toBe(400)
      expect((notJson.json as { errors: unknown }).errors).toEqual([{ path: 'cursor', message: 'is not JSON' }])
      expect(await cursor()).toEqual(counts)

      // Set to a stretch to read again, then all the way back to the beginning.
      const stretch = { in: counts.in - 10, out: counts.out - 10, space: counts.space - 5 }
      const set = await call('DELETE', `/api/v1/sources/${id}/cursor?cursor=${encodeURIComponent(JSON.stringify(stretch))}`)
      expect(set.status).toBe(200)
      expect(set.json).toEqual({ cursor: stretch, previousCursor: counts })
      expect(await cursor()).toEqual(stretch)
      const reset = await call('DELETE', `/api/v1/sources/${id}/cursor`)
      expect(reset.status).toBe(200)
      expect(reset.json).toEqual({ cursor: null, previousCursor: stretch })
      expect(await cursor()).toBeNull()
      const history = await stack.metadata.sources.history(id, 10)
      expect(history.filter((e) => e.kind === 'cursor_reset').map((e) => e.detail?.previousCursor)).toEqual([stretch, counts])

      const resumed = await call('POST', `/api/v1/sources/${id}/resume`)
      expect(resumed.status).toBe(200)
      await until('the re-read to reach the end again', atEnd)
      expect(await count('parking_passage', id)).toBe(PASSAGES)
      expect(await count('parking_occupancy', id)).toBe(counts.space)
      expect((await stack.metadata.sources.history(id, 20)).map((e) => e.kind).filter((k) => k !== 'error' && k !== 'recovered')).toEqual([
        'resumed',
        'cursor_reset',
        'cursor_reset',
        'paused',
        'deployed',
        'added',
      ])
    })

    it('updates: bumps the version, keeps a masked secret, and the running connector picks the new config up', async () => {
      // A wrong key: the restarted connector is refused by the vendor.
      const wrong = await call('PUT', `/api/v1/sources/${id}`, definition({ appKey: WRONG_KEY }))
      expect(wrong.status).toBe(200)
      expect(wrong.json).toMatchObject({ version: 2, config: { appKey: '******' } })
      const failing = await until('the connector to fail on the new key', async () => {
        const st = await status()
        return st.state === 'backoff' || st.state === 'failed' ? st : undefined
      })
      expect(failing.lastError).toMatch(/^upstream answered code 401 \(invalid app key\) to \/openapi\/v1\/parks/)

      const stale = await call('PUT', `/api/v1/sources/${id}?version=1`, definition())
      expect(stale.status).toBe(409)
      expect(stale.json).toEqual({ code: 'CITYSYNC_ERR_SOURCE_VERSION_CONFLICT', message: `source ${id} was changed meanwhile: expected version 1, found 2` })
      const otherId = await call('PUT', `/api/v1/sources/${id}`, { ...definition(), id: 'another-source' })
      expect(otherId.status).toBe(400)
      expect((otherId.json as { errors: unknown }).errors).toEqual([{ path: 'id', message: `cannot change (${id})` }])
      const invalid = await call('PUT', `/api/v1/sources/${id}`, definition({ pageSize: 0 }))
      expect(invalid.status).toBe(400)
      expect((invalid.json as { errors: unknown }).errors).toEqual([{ path: 'config.pageSize', message: 'must be >= 1' }])

      const fixed = await call('PUT', `/api/v1/sources/${id}?version=2`, definition({ appKey: APP_KEY, pageSize: 20 }))
      expect(fixed.status).toBe(200)
      expect(fixed.json).toMatchObject({ version: 3, config: { appKey: '******', pageSize: 20 } })
      await until('the connector to recover', async () => (await status()).state === 'idle')

      // Sent back as GET shows it, the mask keeps the stored key.
      const shown = (await call('GET', `/api/v1/sources/${id}`)).json as { config: Record<string, unknown> }
      const masked = await call('PUT', `/api/v1/sources/${id}`, { ...definition(), config: { ...shown.config, pageSize: 30 } })
      expect(masked.json).toMatchObject({ version: 4, config: { appKey: '******', pageSize: 30 } })
      expect((await stack.metadata.sources.get(id)).config.appKey).toBe(APP_KEY)
      expect((await call('POST', `/api/v1/sources/${id}/check`)).json).toMatchObject({ ok: true })

      const restarted = await call('POST', `/api/v1/sources/${id}/restart`)
      expect(restarted.status).toBe(200)
      expect((await stack.metadata.sources.get(id)).version).toBe(5)
      expect(await count('parking_passage', id)).toBe(PASSAGES)
    })

    it('refuses to deploy a source whose check fails unless forced, and to remove it while deployed unless forced', async () => {
      const down = `down-${backend.name}`
      const added = await call('POST', '/api/v1/sources', { id: down, kind: 'parking-lots', name: 'vendor that is down', config: { baseUrl: 'http://127.0.0.1:9/', appKey: APP_KEY } })
      expect(added.status).toBe(201)
      const check = (await call('POST', `/api/v1/sources/${down}/check`)).json as { ok: boolean; message: string }
      expect(check.ok).toBe(false)
      expect(check.message).toMatch(/^upstream answered no response to \/openapi\/v1\/parks: /)
      const refused = await call('POST', `/api/v1/sources/${down}/deploy`)
      expect(refused.status).toBe(422)
      expect(refused.json).toEqual({
        code: 'CITYSYNC_ERR_SOURCE_CHECK_FAILED',
        message: `source ${down} failed its check: ${check.message} (deploy anyway with force)`,
      })
      expect((await stack.metadata.sources.get(down)).desiredState).toBe('paused')
      const forced = await call('POST', `/api/v1/sources/${down}/deploy?force=true`)
      expect(forced.status).toBe(200)
      expect((await stack.metadata.sources.get(down)).desiredState).toBe('deployed')

      expect((await call('DELETE', `/api/v1/sources/${down}`)).json).toEqual({
        code: 'CITYSYNC_ERR_SOURCE_NOT_PAUSED',
        message: `source ${down} must be paused first: pause it before removing it, or force the removal`,
      })
      const removed = await call('DELETE', `/api/v1/sources/${down}?force=true`)
      expect(removed.json).toEqual({ id: down, removed: true })
      expect(stack.manager.running()).toEqual([id])
      expect((await call('GET', `/api/v1/sources/${down}`)).json).toEqual({ code: 'CITYSYNC_ERR_SOURCE_NOT_FOUND', message: `source ${down} not found` })
    })

    it('never answers with a secret', async () => {
      const all: Answer[] = []
      for (const path of ['/api/v1/sources', `/api/v1/sources/${id}`, `/api/v1/sources/${id}/status`, `/api/v1/sources/${id}/cursor`]) {
        all.push(await call('GET', path))
      }
      expect(all.every((a) => a.status === 200)).toBe(true)
      expect(seen.length).toBeGreaterThan(30)
      for (const text of seen) {
        expect(text).not.toContain(APP_KEY)
        expect(text).not.toContain(WRONG_KEY)
        expect(text).not.toContain('$sealed')
      }
    })
  })
}

describe('OpenAPI description of the source and ingest routes', () => {
  it('gives every route a summary, a worked example and response schemas', async () => {
    const [backend] = await backends()
    const stack = await startStack(backend!, warehouse)
    try {
      const spec = (await stack.app.inject('/docs/json')).json<{ paths: Record<string, Record<string, { summary?: string; description?: string; responses?: Record<string, unknown> }>> }>()
      const operations = Object.entries(spec.paths)
        .filter(([path]) => path.startsWith('/api/v1/sources') || path.startsWith('/api/v1/ingest'))
        .flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ route: `${method.toUpperCase()} ${path}`, ...op })))
      expect(operations.map((o) => o.route).sort()).toEqual([
        'DELETE /api/v1/sources/{id}',
        'DELETE /api/v1/sources/{id}/cursor',
        'GET /api/v1/sources',
        'GET /api/v1/sources/{id}',
        'GET /api/v1/sources/{id}/cursor',
        'GET /api/v1/sources/{id}/errors',
        'GET /api/v1/sources/{id}/status',
        'POST /api/v1/ingest/{sourceId}',
        'POST /api/v1/sources',
        'POST /api/v1/sources/{id}/check',
        'POST /api/v1/sources/{id}/deploy',
        'POST /api/v1/sources/{id}/pause',
        'POST /api/v1/sources/{id}/restart',
        'POST /api/v1/sources/{id}/resume',
        'PUT /api/v1/sources/{id}',
      ])
      for (const op of operations) {
        expect(op.summary, op.route).toBeTruthy()
        expect(op.description, op.route).toContain('curl ')
        expect(Object.keys(op.responses ?? {}).some((status) => status.startsWith('2')), op.route).toBe(true)
      }
      // The source definition's body schema carries a worked example.
      const post = spec.paths['/api/v1/sources']!.post as { requestBody: { content: Record<string, { schema: { $ref: string } }> } }
      const ref = post.requestBody.content['application/json']!.schema.$ref.split('/').pop()!
      const components = (spec as unknown as { components: { schemas: Record<string, { examples?: { id: string }[] }> } }).components.schemas
      expect(components[ref]!.examples?.[0]?.id).toBe('hengqin-parking')
    } finally {
      await stack.close()
    }
  })
})
