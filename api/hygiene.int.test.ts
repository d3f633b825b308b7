import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { pino } from 'pino'
import { chromium } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { requireService } from '../infra/test/services.ts'
import { isCitysyncError } from '../lib/errors.ts'
import { openMetadata, type Metadata } from '../lib/metadata/db.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { buildApp } from './app.ts'
import { CONSOLE_CSP, DOCS_CSP, hygieneFromEnv } from './hygiene.ts'

// What every answer carries and how the API refuses: security headers (with
// Swagger UI at /docs working under its own policy, in a real browser too),
// CORS closed unless configured, the push route's rate limit, body limits and
// media types under stable codes, pagination, plates masked in answers.

const BOOTSTRAP = 'hygiene-test-bootstrap-token-52a8'
const ADMIN = { authorization: `Bearer ${BOOTSTRAP}` }
const ALLOWED = 'https://console.example.org'
const CHROMIUM = '/usr/bin/chromium'

let dir: string
let metadata: Metadata
let warehouse: Warehouse
let app: FastifyInstance
let closed: FastifyInstance

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'citysync-api-hygiene-'))
  metadata = await openMetadata({ dataDir: dir })
  warehouse = await openWarehouse({ dataDir: dir })
  const base = { metadata, warehouse, logger: pino({ level: 'silent' }), version: 'test', auth: { bootstrapToken: BOOTSTRAP } }
  app = await buildApp({ ...base, hygiene: { corsOrigins: [ALLOWED], ingestPerMinute: 3 } })
  closed = await buildApp({ ...base, hygiene: {} })
})

afterAll(async () => {
  await app?.close()
  await closed?.close()
  await warehouse?.close()
  await metadata?.close()
  rmSync(dir, { recursive: true, force: true })
})

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return isCitysyncError(err) ? err.code : `not coded: ${String(err)}`
  }
  return undefined
}

function error(res: LightMyRequestResponse): { status: number; code: string } {
  return { status: res.statusCode, code: (res.json<{ code: string }>()).code }
}

describe('security headers', () => {
  it('are on every answer, with the strict policy outside /docs', async () => {
    for (const res of [await app.inject('/healthz'), await app.inject('/api/v1/nothing-here'), await app.inject('/api/v1/sources')]) {
      expect(res.headers).toMatchObject({
        'content-security-policy': CONSOLE_CSP,
        'x-frame-options': 'DENY',
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'strict-transport-security': 'max-age=15552000',
        'cross-origin-opener-policy': 'same-origin',
        'cross-origin-resource-policy': 'same-origin',
      })
    }
    expect(CONSOLE_CSP).toBe(
      "default-src 'self';script-src 'self';style-src 'self';img-src 'self' data: blob:;connect-src 'self';font-src 'self';object-src 'none';base-uri 'self';form-action 'self';frame-ancestors 'none'",
    )
  })

  it('serves /docs under its own policy: the page, every asset it names and the OpenAPI document load', async () => {
    const page = await app.inject('/docs')
    expect(page.statusCode).toBe(200)
    expect(page.headers['content-type']).toMatch(/^text\/html/)
    expect(page.headers['content-security-policy']).toBe(DOCS_CSP)
    expect(page.headers['x-frame-options']).toBe('DENY')
    const assets = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => new URL(m[1]!, 'http://citysync/docs/').pathname)
    expect(assets).toEqual(expect.arrayContaining(['/docs/static/swagger-ui-bundle.js', '/docs/static/swagger-ui.css', '/docs/static/swagger-initializer.js']))
    for (const asset of assets) {
      const res = await app.inject(asset)
      expect([asset, res.statusCode]).toEqual([asset, 200])
      expect(res.headers['content-security-policy']).toBe(DOCS_CSP)
    }
    const doc = await app.inject('/docs/json')
    expect(doc.statusCode).toBe(200)
    const spec = doc.json<{ openapi: string; paths: Record<string, Record<string, { responses: Record<string, unknown> }>> }>()
    expect(spec.openapi).toBe('3.1.0')
    expect(Object.keys(spec.paths['/api/v1/plates/reveal']!)).toEqual(['post'])
    expect(Object.keys(spec.paths['/api/v1/ingest/{sourceId}']!.post!.responses)).toContain('429')
  })

  const browser = requireService('Chromium', existsSync(CHROMIUM), CHROMIUM)
  it.skipIf(!browser)('renders /docs in Chromium without a Content Security Policy violation', async () => {
    const url = await app.listen({ port: 0, host: '127.0.0.1' })
    const chrome = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
    try {
      const tab = await chrome.newPage()
      const problems: string[] = []
      tab.on('console', (m) => {
        if (m.type() === 'error') problems.push(m.text())
      })
      tab.on('pageerror', (e) => problems.push(e.message))
      await tab.goto(`${url}/docs`, { waitUntil: 'networkidle' })
      await tab.locator('.swagger-ui .info .title').waitFor({ timeout: 15_000 })
      expect(await tab.locator('.swagger-ui .info .title').innerText()).toContain('citysync')
      expect(await tab.locator('.opblock').count()).toBeGreaterThan(20)
      await tab.locator('.opblock-summary').first().click()
      await tab.locator('.opblock-body').first().waitFor()
      expect(problems).toEqual([])
    } finally {
      await chrome.close()
    }
  })
})

describe('CORS', () => {
  const preflight = (target: FastifyInstance, origin: string, url = '/api/v1/sources') =>
    target.inject({ method: 'OPTIONS', url, headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, authorization' } })

  it('is off by default: preflights are refused and answers carry no allow-origin', async () => {
    const res = await preflight(closed, ALLOWED)
    expect(error(res)).toEqual({ status: 403, code: 'CITYSYNC_ERR_API_CORS_ORIGIN' })
    expect(res.headers['access-control-allow-origin']).toBeUndefined()
    const get = await closed.inject({ url: '/healthz', headers: { origin: ALLOWED } })
    expect(get.statusCode).toBe(200)
    expect(get.headers['access-control-allow-origin']).toBeUndefined()
  })

  it('lets a configured origin in, before authentication, and no other', async () => {
    const ok = await preflight(app, ALLOWED)
    expect(ok.statusCode).toBe(204)
    expect(ok.headers).toMatchObject({
      'access-control-allow-origin': ALLOWED,
      'access-control-allow-methods': 'GET, POST, PUT, PATCH, DELETE',
      'access-control-allow-headers': 'authorization, content-type, x-citysync-timestamp, x-citysync-signature',
      'access-control-max-age': '600',
      vary: 'Origin',
    })
    expect(error(await preflight(app, 'https://elsewhere.example.org'))).toEqual({ status: 403, code: 'CITYSYNC_ERR_API_CORS_ORIGIN' })
    const get = await app.inject({ url: '/api/v1/sources', headers: { origin: ALLOWED, ...ADMIN } })
    expect(get.statusCode).toBe(200)
    expect(get.headers['access-control-allow-origin']).toBe(ALLOWED)
    expect((await app.inject({ url: '/healthz', headers: { origin: 'https://elsewhere.example.org' } })).headers['access-control-allow-origin']).toBeUndefined()
  })

  it('reads its origins from CITYSYNC_CORS_ORIGINS and refuses what is not an origin', () => {
    expect(hygieneFromEnv({ CITYSYNC_CORS_ORIGINS: ' https://a.example.org/ ,http://10.1.2.3:8080', CITYSYNC_INGEST_RATE_LIMIT: '120' })).toEqual({
      corsOrigins: ['https://a.example.org', 'http://10.1.2.3:8080'],
      ingestPerMinute: 120,
    })
    expect(hygieneFromEnv({})).toEqual({ corsOrigins: [], ingestPerMinute: 600 })
    for (const env of [{ CITYSYNC_CORS_ORIGINS: '*' }, { CITYSYNC_CORS_ORIGINS: 'https://a.example.org/path' }, { CITYSYNC_INGEST_RATE_LIMIT: 'lots' }]) {
      expect(codeOf(() => hygieneFromEnv(env))).toBe('CITYSYNC_ERR_CONFIG_INVALID')
    }
  })
})

describe('limits and error shape', () => {
  const push = (sourceId: string, payload = '{"records":[]}', type = 'application/json') =>
    app.inject({ method: 'POST', url: `/api/v1/ingest/${sourceId}`, headers: { 'content-type': type }, payload })

  it('rate-limits pushes per source and address: 429 with a stable code after the limit', async () => {
    const first = [await push('rate-src-a'), await push('rate-src-a'), await push('rate-src-a')]
    expect(first.map((r) => r.statusCode)).not.toContain(429)
    expect(first[0]!.headers['x-ratelimit-limit']).toBe('3')
    const over = await push('rate-src-a')
    expect(error(over)).toEqual({ status: 429, code: 'CITYSYNC_ERR_API_RATE_LIMITED' })
    expect(over.json<{ message: string }>().message).toMatch(/^too many requests: the limit is 3 per minute; retry in /)
    expect(Number(over.headers['retry-after'])).toBeGreaterThan(0)
    expect((await push('rate-src-b')).statusCode).not.toBe(429)
  })

  it('answers 413, 415, 400 and 404 with stable codes', async () => {
    const big = JSON.stringify({ username: 'x'.repeat(1024 * 1024), password: 'y' })
    expect(error(await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'content-type': 'application/json' }, payload: big }))).toEqual({
      status: 413,
      code: 'CITYSYNC_ERR_API_BODY_TOO_LARGE',
    })
    expect(error(await push('big-src', JSON.stringify({ records: ['z'.repeat(1024 * 1024)] })))).toEqual({ status: 413, code: 'CITYSYNC_ERR_INGEST_TOO_LARGE' })
    expect(error(await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'content-type': 'text/xml' }, payload: '<login/>' }))).toEqual({
      status: 415,
      code: 'CITYSYNC_ERR_API_MEDIA_TYPE',
    })
    expect(error(await push('xml-src', '<records/>', 'application/xml'))).toEqual({ status: 415, code: 'CITYSYNC_ERR_API_MEDIA_TYPE' })
    expect(error(await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'content-type': 'application/json' }, payload: '{"username": ' }))).toEqual({
      status: 400,
      code: 'CITYSYNC_ERR_API_BODY_INVALID',
    })
    const missing = await app.inject('/api/v1/no-such-route')
    expect(error(missing)).toEqual({ status: 404, code: 'CITYSYNC_ERR_API_NOT_FOUND' })
    expect(missing.json()).toEqual({ code: 'CITYSYNC_ERR_API_NOT_FOUND', message: 'route GET /api/v1/no-such-route not found' })
  })
})

describe('answers', () => {
  const source = (id: string, name: string) => ({ id, kind: 'parking-push', name, config: { secret: 'hygiene-push-secret-0042' } })

  it('are paged the same way: limit, offset, total, next', async () => {
    for (const id of ['page-a', 'page-b', 'page-c']) {
      expect((await app.inject({ method: 'POST', url: '/api/v1/sources', headers: ADMIN, payload: source(id, `分页 ${id}`) })).statusCode).toBe(201)
    }
    const page = async (query: string) => (await app.inject({ url: `/api/v1/sources?${query}`, headers: ADMIN })).json<{ items: { id: string }[]; total: number; next: number | null }>()
    const first = await page('limit=2')
    expect([first.items.map((s) => s.id), first.total, first.next]).toEqual([['page-a', 'page-b'], 3, 2])
    const last = await page('limit=2&offset=2')
    expect([last.items.map((s) => s.id), last.total, last.next]).toEqual([['page-c'], 3, null])
    expect((await page('')).next).toBeNull()
    expect(error(await app.inject({ url: '/api/v1/sources?limit=5000', headers: ADMIN }))).toEqual({ status: 400, code: 'CITYSYNC_ERR_API_VALIDATION' })
    for (const url of ['/api/v1/alerts?limit=1', '/api/v1/silences?limit=1', '/api/v1/incidents?limit=1', '/api/v1/reports/archive?limit=1', '/api/v1/county/onboarding?limit=1']) {
      const res = await app.inject({ url, headers: ADMIN })
      expect([url, res.statusCode]).toEqual([url, 200])
      expect(res.json()).toMatchObject({ items: [], total: 0, next: null })
    }
  })

  it('mask plates wherever they come from', async () => {
    const added = await app.inject({ method: 'POST', url: '/api/v1/sources', headers: ADMIN, payload: source('named-after-a-car', '粤C12345 的停车场') })
    expect(added.statusCode).toBe(201)
    const got = await app.inject({ url: '/api/v1/sources/named-after-a-car', headers: ADMIN })
    expect(got.json()).toMatchObject({ name: '粤C·***45 的停车场' })
    expect(got.body).not.toContain('C12345')
  })
})
