import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AuthStore } from '../lib/auth/store.ts'
import { openMetadata } from '../lib/metadata/db.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { declaredRoutes, installAuth } from './auth.ts'
import { backends, type Stack, startStack } from './test-stack.ts'

// The permission matrix: every registered route, called with no credential
// and with an API token of each role, answers exactly what the matrix below
// allows. The matrix is written out here, not read from
// api/route-permissions.ts, so a wrong entry there fails this test; a route
// that exists but is missing here fails it too.
//
//   public         never 401 or 403, whoever calls
//   signed         the route checks its own signature: no 401/403 of ours, the same answer for everyone
//   authenticated  401 without a credential; any role gets through
//   [roles]        401 without a credential, 403 for other roles, through for these
// "Through" means neither 401 nor 403: 400, 404, 409 or 422 from the handler are fine.

const ROLES = ['viewer', 'analyst', 'operator', 'admin'] as const
type Role = (typeof ROLES)[number]
type Expect = 'public' | 'signed' | 'authenticated' | readonly Role[]

const EVERYONE: readonly Role[] = ['viewer', 'analyst', 'operator', 'admin']
const ANALYTICS: readonly Role[] = ['analyst', 'operator', 'admin']
const SQL: readonly Role[] = ['analyst', 'admin']
const OPERATORS: readonly Role[] = ['operator', 'admin']
const ADMINS: readonly Role[] = ['admin']

// Keys ending in '*' cover every route whose URL starts with what precedes it.
const MATRIX: Record<string, Expect> = {
  'GET /healthz': 'public',
  'GET /readyz': 'public',
  'GET /metrics': 'public',
  'GET /docs*': 'public',
  'GET /': 'public',
  'GET /console': 'public',
  'GET /console/*': 'public',

  'POST /api/v1/auth/login': 'public',
  'POST /api/v1/auth/logout': 'authenticated',
  'GET /api/v1/auth/me': 'authenticated',
  'POST /api/v1/auth/password': 'authenticated',
  'POST /api/v1/auth/totp': 'authenticated',
  'POST /api/v1/auth/totp/confirm': 'authenticated',

  'GET /api/v1/users': ADMINS,
  'POST /api/v1/users': ADMINS,
  'GET /api/v1/users/:username': ADMINS,
  'PATCH /api/v1/users/:username': ADMINS,
  'DELETE /api/v1/users/:username': ADMINS,
  'GET /api/v1/tokens': ADMINS,
  'POST /api/v1/tokens': ADMINS,
  'DELETE /api/v1/tokens/:id': ADMINS,
  'GET /api/v1/audit': ADMINS,
  'GET /api/v1/reports/account-review': ADMINS,

  'GET /api/v1/sources': EVERYONE,
  'GET /api/v1/sources/:id': EVERYONE,
  'GET /api/v1/sources/:id/status': EVERYONE,
  'GET /api/v1/sources/:id/cursor': EVERYONE,
  'GET /api/v1/sources/:id/errors': EVERYONE,
  'POST /api/v1/sources/:id/check': OPERATORS,
  'POST /api/v1/sources/:id/deploy': OPERATORS,
  'POST /api/v1/sources/:id/pause': OPERATORS,
  'POST /api/v1/sources/:id/resume': OPERATORS,
  'POST /api/v1/sources/:id/restart': OPERATORS,
  'DELETE /api/v1/sources/:id/cursor': OPERATORS,
  'POST /api/v1/sources': ADMINS,
  'PUT /api/v1/sources/:id': ADMINS,
  'DELETE /api/v1/sources/:id': ADMINS,

  'POST /api/v1/ingest/:sourceId': 'signed',

  'GET /api/v1/freshness': EVERYONE,
  'GET /api/v1/freshness/:sourceId': EVERYONE,
  'GET /api/v1/alerts': EVERYONE,
  'GET /api/v1/alerts/deliveries': EVERYONE,
  'POST /api/v1/alerts/:id/ack': OPERATORS,
  'GET /api/v1/silences': EVERYONE,
  'POST /api/v1/silences': OPERATORS,
  'DELETE /api/v1/silences/:id': OPERATORS,
  'GET /api/v1/incidents': EVERYONE,
  'GET /api/v1/incidents/:id': EVERYONE,
  'PATCH /api/v1/incidents/:id': OPERATORS,

  'GET /api/v1/reports/sync': EVERYONE,
  'GET /api/v1/reports/onboarding': EVERYONE,
  'GET /api/v1/reports/archive': EVERYONE,

  'GET /api/v1/county/onboarding': EVERYONE,
  'GET /api/v1/county/onboarding/:lotId': EVERYONE,
  'PUT /api/v1/county/onboarding/:lotId': OPERATORS,
  'POST /api/v1/county/:sourceId/files': OPERATORS,

  'GET /api/v1/analytics/*': ANALYTICS,
  'POST /api/v1/analytics/sql': SQL,

  'POST /api/v1/plates/reveal': ADMINS,
}

function expectationOf(method: string, url: string): Expect | undefined {
  const m = method === 'HEAD' ? 'GET' : method
  const exact = MATRIX[`${m} ${url}`]
  if (exact !== undefined) return exact
  const families = Object.keys(MATRIX)
    .filter((k) => k.endsWith('*') && k.startsWith(`${m} `) && url.startsWith(k.slice(m.length + 1, -1)))
    .sort((a, b) => b.length - a.length)
  return families[0] === undefined ? undefined : MATRIX[families[0]]
}

const SOURCE = 'matrix-src'
const LOGIN_PASSWORD = 'matrix login password 1'
const definition = (id: string) => ({ id, kind: 'parking-lots', name: 'Matrix car parks', config: { baseUrl: 'http://127.0.0.1:9/' } })

// URL parameters and bodies that let an allowed call reach its handler.
const PARAMS: Record<string, string> = { id: SOURCE, sourceId: SOURCE, lotId: 'LOT-1', username: 'nobody', '*': 'index.html' }
const PARAMS_BY_ROUTE: Record<string, Record<string, string>> = {
  'DELETE /api/v1/sources/:id': { id: 'matrix-gone' },
  'POST /api/v1/alerts/:id/ack': { id: '999999' },
  'DELETE /api/v1/silences/:id': { id: '999999' },
  'GET /api/v1/incidents/:id': { id: '999999' },
  'PATCH /api/v1/incidents/:id': { id: '999999' },
  'DELETE /api/v1/tokens/:id': { id: '0000000000000000' },
}
const QUERY: Record<string, string> = {
  'GET /api/v1/reports/sync': 'month=2026-11',
  'GET /api/v1/reports/onboarding': 'quarter=2026Q4',
  'GET /api/v1/reports/account-review': 'quarter=2026Q4',
  'POST /api/v1/county/:sourceId/files': 'name=matrix.csv',
  'GET /api/v1/audit': 'limit=5',
}
const ANALYTICS_QUERY = 'from=2026-11-01&to=2026-11-02'
const BODY: Record<string, { payload: unknown; type?: string }> = {
  'POST /api/v1/auth/login': { payload: { username: 'matrix-login', password: LOGIN_PASSWORD } },
  'POST /api/v1/auth/password': { payload: { currentPassword: 'not it at all', newPassword: 'another long password' } },
  'POST /api/v1/auth/totp/confirm': { payload: { code: '123456' } },
  'POST /api/v1/users': { payload: { username: 'matrix-user', role: 'viewer', password: 'correct horse battery' } },
  'PATCH /api/v1/users/:username': { payload: { role: 'viewer' } },
  'POST /api/v1/tokens': { payload: { name: 'matrix', role: 'viewer', expiresIn: '1d' } },
  'POST /api/v1/sources': { payload: definition('matrix-new') },
  'PUT /api/v1/sources/:id': { payload: definition(SOURCE) },
  'DELETE /api/v1/sources/:id/cursor': { payload: {} },
  'POST /api/v1/ingest/:sourceId': { payload: { records: [] } },
  'POST /api/v1/alerts/:id/ack': { payload: { comment: 'matrix' } },
  'POST /api/v1/silences': { payload: { matchers: { sourceId: SOURCE }, duration: '1h', reason: 'matrix' } },
  'PATCH /api/v1/incidents/:id': { payload: { note: 'matrix' } },
  'PUT /api/v1/county/onboarding/:lotId': { payload: { county: '如东县', status: 'planned' } },
  'POST /api/v1/county/:sourceId/files': { payload: 'lotId,name\nLOT-1,x\n', type: 'text/csv' },
  'POST /api/v1/analytics/sql': { payload: { sql: 'SELECT 1' } },
  'POST /api/v1/plates/reveal': { payload: { eventId: '0'.repeat(32), reason: 'permission matrix test' } },
}

function requestFor(method: string, url: string): { url: string; payload?: unknown; headers: Record<string, string> } {
  const key = `${method === 'HEAD' ? 'GET' : method} ${url}`
  const params = { ...PARAMS, ...PARAMS_BY_ROUTE[key] }
  const path = url
    .split('/')
    .map((seg) => (seg.startsWith(':') ? encodeURIComponent(params[seg.slice(1)]!) : seg === '*' ? params['*']! : seg))
    .join('/')
  const query = QUERY[key] ?? (url.startsWith('/api/v1/analytics/') ? ANALYTICS_QUERY : undefined)
  const body = BODY[key]
  return {
    url: query === undefined ? path : `${path}?${query}`,
    ...(body !== undefined ? { payload: typeof body.payload === 'string' ? body.payload : JSON.stringify(body.payload) } : {}),
    headers: body !== undefined ? { 'content-type': body.type ?? 'application/json' } : {},
  }
}

let warehouse: Warehouse
let dir: string

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'citysync-api-matrix-'))
  warehouse = await openWarehouse({ dataDir: dir })
})

afterAll(async () => {
  await warehouse.close()
  rmSync(dir, { recursive: true, force: true })
})

const [sqlite] = await backends()

describe('the permission matrix: every route × no credential, viewer, analyst, operator, admin', () => {
  let stack: Stack
  const tokens: Partial<Record<Role, string>> = {}

  beforeAll(async () => {
    stack = await startStack(sqlite!, warehouse, undefined, { quality: { intervalMs: 3_600_000 } })
    const store = new AuthStore({ knex: stack.metadata.knex, dialect: stack.metadata.dialect })
    for (const role of ROLES) {
      tokens[role] = (await store.createToken({ name: `matrix-${role}`, role, expiresAt: Date.now() + 86_400_000, createdBy: 'test' })).token
    }
    await store.createUser({ username: 'matrix-login', password: LOGIN_PASSWORD, role: 'viewer', createdBy: 'test' })
    const added = await stack.app.inject({ method: 'POST', url: '/api/v1/sources', payload: definition(SOURCE), headers: { authorization: `Bearer ${stack.token}` } })
    expect(added.statusCode).toBe(201)
  })

  afterAll(async () => {
    await stack.close()
  })

  it('knows every registered route', () => {
    const routes = declaredRoutes(stack.app)
    // The app's own routes are all there (a sample from each area).
    const keys = new Set(routes.map((r) => `${r.method} ${r.url}`))
    for (const k of ['GET /healthz', 'POST /api/v1/sources/:id/deploy', 'POST /api/v1/ingest/:sourceId', 'PATCH /api/v1/incidents/:id', 'POST /api/v1/auth/login', 'GET /api/v1/audit', 'GET /metrics']) {
      expect(keys, k).toContain(k)
    }
    const missing = routes.filter((r) => expectationOf(r.method, r.url) === undefined).map((r) => `${r.method} ${r.url}`)
    expect(missing, 'routes without an expectation in this test').toEqual([])
    expect(routes.length).toBeGreaterThan(60)
  })

  it('answers every route with exactly the allowed status class', { timeout: 600_000 }, async () => {
    const failures: string[] = []
    let calls = 0
    for (const route of declaredRoutes(stack.app)) {
      const expected = expectationOf(route.method, route.url)!
      const req = requestFor(route.method, route.url)
      const answers: { who: string; status: number; code: string | undefined }[] = []
      for (const who of ['nobody', ...ROLES] as const) {
        const auth: Record<string, string> = who === 'nobody' ? { authorization: '' } : { authorization: `Bearer ${tokens[who]}` }
        const res = await stack.app.inject({ method: route.method as 'GET', url: req.url, payload: req.payload as string | undefined, headers: { ...req.headers, ...auth } })
        calls++
        let code: string | undefined
        try {
          code = (res.json<{ code?: string }>()).code
        } catch {
          code = undefined
        }
        answers.push({ who, status: res.statusCode, code })
        const label = `${route.method} ${req.url} as ${who}: ${res.statusCode} ${code ?? ''}`
        const authRefusal = code?.startsWith('CITYSYNC_ERR_AUTH_') === true
        // A HEAD answer has no body to carry the code.
        if (route.method === 'HEAD') code ??= res.statusCode === 401 ? 'CITYSYNC_ERR_AUTH_REQUIRED' : res.statusCode === 403 ? 'CITYSYNC_ERR_AUTH_FORBIDDEN' : undefined
        if (expected === 'public') {
          if (res.statusCode === 401 || res.statusCode === 403) failures.push(`${label} (public)`)
        } else if (expected === 'signed') {
          if (authRefusal) failures.push(`${label} (signed: no user credential involved)`)
        } else if (who === 'nobody') {
          if (res.statusCode !== 401 || code !== 'CITYSYNC_ERR_AUTH_REQUIRED') failures.push(`${label} (expected 401 CITYSYNC_ERR_AUTH_REQUIRED)`)
        } else if (expected === 'authenticated' || expected.includes(who)) {
          if (res.statusCode === 401 || res.statusCode === 403) failures.push(`${label} (allowed)`)
        } else if (res.statusCode !== 403 || code !== 'CITYSYNC_ERR_AUTH_FORBIDDEN') {
          failures.push(`${label} (expected 403 CITYSYNC_ERR_AUTH_FORBIDDEN)`)
        }
      }
      if (expected === 'signed' && new Set(answers.map((a) => `${a.status} ${a.code}`)).size !== 1) {
        failures.push(`${route.method} ${req.url}: signed, but answers differ by caller: ${JSON.stringify(answers)}`)
      }
    }
    expect(failures).toEqual([])
    expect(calls).toBe(declaredRoutes(stack.app).length * 5)
  })

  it('holds for session cookies as for tokens (a viewer logged in)', async () => {
    const login = await stack.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'matrix-login', password: LOGIN_PASSWORD }, headers: { authorization: '' } })
    expect(login.statusCode).toBe(200)
    const cookie = login.cookies.find((c) => c.name === 'citysync_session')!
    const as = (method: 'GET' | 'POST', url: string) => stack.app.inject({ method, url, cookies: { citysync_session: cookie.value }, headers: { authorization: '' } })
    expect((await as('GET', '/api/v1/sources')).statusCode).toBe(200)
    expect((await as('POST', `/api/v1/sources/${SOURCE}/pause`)).statusCode).toBe(403)
    expect((await as('GET', '/api/v1/users')).statusCode).toBe(403)
    expect((await as('GET', '/api/v1/auth/me')).json()).toMatchObject({ username: 'matrix-login', role: 'viewer', kind: 'user' })
  })
})

describe('routes without an entry in api/route-permissions.ts', () => {
  it('stop the app at startup', async () => {
    const mdir = mkdtempSync(join(tmpdir(), 'citysync-api-undeclared-'))
    const metadata = await openMetadata({ dataDir: mdir })
    const app = Fastify()
    try {
      await installAuth(app, { metadata, warehouse, logger: pino({ level: 'silent' }), version: 'test' })
      expect(() => app.get('/api/v1/undeclared', () => 'x')).toThrow(/CITYSYNC_ERR_AUTH_ROUTE_UNDECLARED|route GET \/api\/v1\/undeclared has no entry/)
      expect(() => app.post('/api/v1/sources/:id/explode', () => 'x')).toThrow(/has no entry/)
      // Declared ones register.
      expect(() => app.get('/healthz', () => 'ok')).not.toThrow()
    } finally {
      await app.close()
      await metadata.close()
      rmSync(mdir, { recursive: true, force: true })
    }
  })
})
