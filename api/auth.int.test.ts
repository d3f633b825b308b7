import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyAuditChain } from '../lib/auth/audit.ts'
import { AuthStore } from '../lib/auth/store.ts'
import { totp } from '../lib/auth/totp.ts'
import { ManualClock } from '../lib/clock.ts'
import { type Metadata } from '../lib/metadata/db.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { type ApiDeps, buildApp } from './app.ts'
import { authSettingsFromEnv } from './auth.ts'
import { backends, KEYS } from './test-stack.ts'

// Users and access end to end, on SQLite and on PostgreSQL: the bootstrap
// token, password login with the session cookie, the second factor, the lock
// after five failures, session expiry, logout, API token expiry and scopes,
// the actor of changes, the append-only hash-chained audit log and the
// quarterly account review.

const START = Date.parse('2026-11-21T04:00:00Z')
const MIN = 60_000
const DAY = 86_400_000
const BOOT = 'bootstrap-token-for-the-auth-test-0123'
const PW = {
  admin: 'admin password of wang 1',
  li: 'li gong password 2026',
  zhao: 'viewer password 8 chars+',
  chen: 'analyst password 7 long',
  old: 'old viewer password 44',
}
const SOURCE_SECRET = 'vendor-app-key-S3cr3t-77'

let warehouse: Warehouse
let whDir: string

beforeAll(async () => {
  whDir = mkdtempSync(join(tmpdir(), 'citysync-api-auth-'))
  warehouse = await openWarehouse({ dataDir: whDir })
})

afterAll(async () => {
  await warehouse.close()
  rmSync(whDir, { recursive: true, force: true })
})

interface Call {
  token?: string
  cookie?: string
  body?: unknown
  headers?: Record<string, string>
}

function cookieOf(res: LightMyRequestResponse): string {
  const c = res.cookies.find((x) => x.name === 'citysync_session')
  if (c === undefined) throw new Error(`no session cookie in ${res.statusCode} ${res.body}`)
  return c.value
}

for (const backend of await backends()) {
  describe.runIf(backend.run)(`users and access (${backend.name})`, () => {
    const clock = new ManualClock(START)
    let metadata: Metadata
    let drop: () => Promise<void>
    let app: FastifyInstance
    let adminCookie: string
    const seenTokens: string[] = []
    let totpSecret = ''

    const deps = (auth: ApiDeps['auth']): ApiDeps =>
      ({ metadata, warehouse, logger: pino({ level: 'silent' }), version: 'test', analytics: { refreshIntervalMs: 0 }, auth }) as ApiDeps

    const call = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, c: Call = {}) =>
      app.inject({
        method,
        url,
        headers: { ...(c.token !== undefined ? { authorization: `Bearer ${c.token}` } : {}), ...c.headers },
        ...(c.cookie !== undefined ? { cookies: { citysync_session: c.cookie } } : {}),
        ...(c.body !== undefined ? { payload: c.body as object } : {}),
      })
    const login = (username: string, password: string, extra: Record<string, unknown> = {}) =>
      call('POST', '/api/v1/auth/login', { body: { username, password, ...extra } })
    const asAdmin = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, body?: unknown) => call(method, url, { cookie: adminCookie, ...(body !== undefined ? { body } : {}) })

    beforeAll(async () => {
      ;({ metadata, drop } = await backend.open(clock))
      app = await buildApp(deps({ encKey: KEYS.encKey, clock, bootstrapToken: BOOT, loginRateLimit: { max: 10_000, timeWindow: 60_000 } }))
    })

    afterAll(async () => {
      await app.close()
      await metadata.close()
      await drop()
    })

    it('takes the bootstrap token as an admin until an enabled admin user exists', async () => {
      expect((await call('GET', '/api/v1/auth/me', { token: BOOT })).json()).toMatchObject({ username: 'bootstrap', role: 'admin', kind: 'bootstrap' })
      expect((await call('GET', '/api/v1/auth/me', { token: BOOT + 'x' })).json()).toMatchObject({ code: 'CITYSYNC_ERR_AUTH_REQUIRED' })
      expect((await call('GET', '/api/v1/auth/me')).statusCode).toBe(401)

      const created = await call('POST', '/api/v1/users', { token: BOOT, body: { username: 'wang.admin', role: 'admin', password: PW.admin } })
      expect(created.statusCode).toBe(201)
      expect(created.json()).toMatchObject({ username: 'wang.admin', role: 'admin', createdBy: 'bootstrap', totpEnabled: false, locked: false })

      const after = await call('GET', '/api/v1/auth/me', { token: BOOT })
      expect(after.statusCode).toBe(401)
      expect(after.json<{ message: string }>().message).toContain('bootstrap token stops working once an enabled admin user exists')
      // The last enabled admin cannot be disabled, so the bootstrap token cannot come back by accident.
      const store = new AuthStore({ knex: metadata.knex, dialect: metadata.dialect, clock })
      await expect(store.updateUser('wang.admin', { disabled: true })).rejects.toThrow(/last enabled admin/)

      await expect(buildApp(deps({ bootstrapToken: 'too-short' }))).rejects.toThrow(/CITYSYNC_BOOTSTRAP_TOKEN must be at least 24 characters/)
    })

    it('logs in with a password into an HttpOnly, SameSite=Strict session cookie', async () => {
      const res = await login('wang.admin', PW.admin)
      expect(res.statusCode).toBe(200)
      expect(res.json()).toEqual({ user: { username: 'wang.admin', role: 'admin', totpEnabled: false }, expiresAt: new Date(START + 12 * 3600_000).toISOString() })
      const setCookie = String(res.headers['set-cookie'])
      expect(setCookie).toMatch(/^citysync_session=css_[0-9a-f]{16}_[A-Za-z0-9_-]{43};/)
      expect(setCookie).toContain('HttpOnly')
      expect(setCookie).toContain('SameSite=Strict')
      expect(setCookie).toContain('Path=/')
      adminCookie = cookieOf(res)
      seenTokens.push(adminCookie)
      expect((await asAdmin('GET', '/api/v1/auth/me')).json()).toMatchObject({ username: 'wang.admin', role: 'admin', kind: 'user', totpEnabled: false, permissions: expect.arrayContaining(['users:admin', 'plates:reveal']) as unknown })

      for (const [username, role, password] of [['li.gong', 'operator', PW.li], ['zhao', 'viewer', PW.zhao], ['chen', 'analyst', PW.chen]] as const) {
        expect((await asAdmin('POST', '/api/v1/users', { username, role, password })).statusCode).toBe(201)
      }
      expect((await asAdmin('POST', '/api/v1/users', { username: 'li.gong', role: 'viewer', password: PW.li })).json()).toMatchObject({ code: 'CITYSYNC_ERR_USER_EXISTS' })
      expect((await asAdmin('POST', '/api/v1/users', { username: 'weak', role: 'viewer', password: 'short' })).json()).toMatchObject({ code: 'CITYSYNC_ERR_AUTH_PASSWORD_POLICY' })

      const wrong = await login('li.gong', 'not the password at all')
      const unknown = await login('no.such.user', 'not the password at all')
      expect(wrong.statusCode).toBe(401)
      expect(unknown.statusCode).toBe(401)
      expect(wrong.json()).toEqual(unknown.json())
      expect(wrong.json()).toEqual({ code: 'CITYSYNC_ERR_AUTH_INVALID', message: 'wrong username, password or one-time code' })

      // As a bearer token instead of a cookie.
      const bearer = await login('zhao', PW.zhao, { bearer: true })
      expect(bearer.headers['set-cookie']).toBeUndefined()
      const sessionToken = bearer.json<{ token: string }>().token
      seenTokens.push(sessionToken)
      expect((await call('GET', '/api/v1/auth/me', { token: sessionToken })).json()).toMatchObject({ username: 'zhao', role: 'viewer' })
      expect((await call('GET', '/api/v1/users', { token: sessionToken })).json()).toMatchObject({ code: 'CITYSYNC_ERR_AUTH_FORBIDDEN' })

      // A changing request carrying the cookie from another site is refused; from the console's own origin it goes through.
      const evil = await call('POST', '/api/v1/silences', { cookie: adminCookie, headers: { origin: 'https://evil.example' }, body: { matchers: { sourceId: 'x' }, duration: '1h', reason: 'r' } })
      expect(evil.statusCode).toBe(403)
      const own = await call('POST', '/api/v1/silences', { cookie: adminCookie, headers: { origin: 'http://localhost:80' }, body: { matchers: { sourceId: 'x' }, duration: '1h', reason: 'r', createdBy: 'someone else' } })
      expect(own.statusCode).toBe(201)
      // The principal wins over what the body claims.
      expect(own.json()).toMatchObject({ createdBy: 'wang.admin' })
    })

    it('rate-limits logins per client address', async () => {
      const limited = await buildApp(deps({ encKey: KEYS.encKey, clock, loginRateLimit: { max: 3, timeWindow: 60_000 } }))
      try {
        const statuses: number[] = []
        for (let i = 0; i < 4; i++) {
          statuses.push((await limited.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'nobody.here', password: 'not the password at all' } })).statusCode)
        }
        expect(statuses).toEqual([401, 401, 401, 429])
      } finally {
        await limited.close()
      }
    })

    it('turns on the second factor (TOTP) and then wants a fresh code at every login', async () => {
      const li = cookieOf(await login('li.gong', PW.li))
      const start = await call('POST', '/api/v1/auth/totp', { cookie: li })
      expect(start.statusCode).toBe(200)
      const { secret, uri } = start.json<{ secret: string; uri: string }>()
      totpSecret = secret
      expect(secret).toMatch(/^[A-Z2-7]{32}$/)
      expect(uri).toBe(`otpauth://totp/citysync:li.gong?secret=${secret}&issuer=citysync&algorithm=SHA1&digits=6&period=30`)
      // The secret is sealed in the store, never in clear.
      const row = (await metadata.knex('users').where({ username: 'li.gong' }).first()) as { totp_pending: string; totp_enabled: unknown }
      expect(row.totp_pending).toMatch(/^01[0-9a-f]+$/)
      expect(row.totp_pending).not.toContain(secret)

      const good = totp(secret, clock.now())
      const bad = good === '000000' ? '111111' : '000000'
      expect((await call('POST', '/api/v1/auth/totp/confirm', { cookie: li, body: { code: bad } })).json()).toMatchObject({ code: 'CITYSYNC_ERR_AUTH_TOTP' })
      expect((await call('POST', '/api/v1/auth/totp/confirm', { cookie: li, body: { code: good } })).json()).toEqual({ totpEnabled: true })
      expect((await call('POST', '/api/v1/auth/totp', { cookie: li })).json()).toMatchObject({ code: 'CITYSYNC_ERR_AUTH_TOTP' })
      // API tokens have no second factor of their own.
      expect((await call('POST', '/api/v1/auth/totp', { token: BOOT })).statusCode).toBe(401)

      const noCode = await login('li.gong', PW.li)
      expect(noCode.statusCode).toBe(401)
      expect(noCode.json()).toMatchObject({ code: 'CITYSYNC_ERR_AUTH_TOTP_REQUIRED' })
      // The code that confirmed the enrolment is spent.
      expect((await login('li.gong', PW.li, { totp: good })).json()).toMatchObject({ code: 'CITYSYNC_ERR_AUTH_INVALID' })
      expect((await login('li.gong', 'wrong password here', { totp: good })).json()).toMatchObject({ code: 'CITYSYNC_ERR_AUTH_INVALID' })
      clock.advance(30_000)
      const next = totp(secret, clock.now())
      const ok = await login('li.gong', PW.li, { totp: next })
      expect(ok.statusCode).toBe(200)
      expect(ok.json()).toMatchObject({ user: { username: 'li.gong', totpEnabled: true } })
      expect((await login('li.gong', PW.li, { totp: next })).statusCode).toBe(401)
      expect((await asAdmin('GET', '/api/v1/users/li.gong')).json()).toMatchObject({ totpEnabled: true, failedLogins: 1, locked: false })
    })

    it('locks an account for 15 minutes after 5 failed logins within 15 minutes; an admin can unlock it', async () => {
      for (let i = 1; i <= 4; i++) expect((await login('zhao', `wrong password ${i}x`)).statusCode).toBe(401)
      const fifth = await login('zhao', 'wrong password 5x')
      expect(fifth.statusCode).toBe(423)
      expect(fifth.json()).toEqual({ code: 'CITYSYNC_ERR_AUTH_LOCKED', message: `account zhao is locked until ${new Date(clock.now() + 15 * MIN).toISOString()}` })
      expect((await login('zhao', PW.zhao)).statusCode).toBe(423)
      expect((await asAdmin('GET', '/api/v1/users/zhao')).json()).toMatchObject({ locked: true, lockedUntil: new Date(clock.now() + 15 * MIN).toISOString(), lockReason: '5 failed logins within 15 min' })
      // Its sessions ended with the lock.
      const failures = (await asAdmin('GET', `/api/v1/audit?target=zhao&action=${encodeURIComponent('POST /api/v1/auth/login')}&limit=10`)).json<{ items: { status: number; actor: string | null; detail: Record<string, unknown> }[] }>().items
      expect(failures.map((f) => f.status)).toEqual([423, 423, 401, 401, 401, 401, 200])
      expect(failures[1]!.detail).toMatchObject({ outcome: 'invalid', reason: 'wrong password', failedLogins: 5 })
      expect(failures[0]!.detail).toMatchObject({ outcome: 'locked' })
      expect(JSON.stringify(failures)).not.toContain('wrong password 5x')

      const unlocked = await asAdmin('PATCH', '/api/v1/users/zhao', { unlock: true })
      expect(unlocked.json()).toMatchObject({ locked: false, lockedUntil: null, failedLogins: 0 })
      expect((await login('zhao', PW.zhao)).statusCode).toBe(200)

      // Locked again, the lock runs out by itself after 15 minutes.
      for (let i = 1; i <= 5; i++) await login('zhao', `wrong password ${i}y`)
      expect((await login('zhao', PW.zhao)).statusCode).toBe(423)
      clock.advance(15 * MIN)
      expect((await login('zhao', PW.zhao)).statusCode).toBe(200)

      // Failures further apart than the window do not add up.
      for (let i = 1; i <= 4; i++) await login('zhao', `wrong password ${i}z`)
      clock.advance(16 * MIN)
      for (let i = 1; i <= 4; i++) expect((await login('zhao', `wrong password ${i}w`)).statusCode).toBe(401)
      expect((await login('zhao', PW.zhao)).statusCode).toBe(200)
    })

    it('ends a session after 30 minutes idle or 12 hours after login, and at logout', async () => {
      const idle = cookieOf(await login('chen', PW.chen))
      clock.advance(29 * MIN)
      expect((await call('GET', '/api/v1/auth/me', { cookie: idle })).statusCode).toBe(200)
      clock.advance(29 * MIN)
      expect((await call('GET', '/api/v1/auth/me', { cookie: idle })).statusCode).toBe(200)
      clock.advance(30 * MIN)
      expect((await call('GET', '/api/v1/auth/me', { cookie: idle })).json()).toMatchObject({ code: 'CITYSYNC_ERR_AUTH_REQUIRED' })

      const busy = cookieOf(await login('chen', PW.chen))
      for (let t = 25; t < 12 * 60; t += 25) {
        clock.advance(25 * MIN)
        expect((await call('GET', '/api/v1/auth/me', { cookie: busy })).statusCode, `after ${t} min`).toBe(200)
      }
      clock.advance(25 * MIN)
      expect((await call('GET', '/api/v1/auth/me', { cookie: busy })).statusCode).toBe(401)

      const out = cookieOf(await login('chen', PW.chen))
      const bye = await call('POST', '/api/v1/auth/logout', { cookie: out })
      expect(bye.json()).toEqual({ loggedOut: true })
      expect(String(bye.headers['set-cookie'])).toMatch(/citysync_session=;.*Expires=Thu, 01 Jan 1970/)
      expect((await call('GET', '/api/v1/auth/me', { cookie: out })).statusCode).toBe(401)

      // The limits come from the environment too.
      expect(authSettingsFromEnv({ CITYSYNC_SESSION_IDLE: '10m', CITYSYNC_SESSION_MAX: '8h' }).sessions).toEqual({ idleMs: 10 * MIN, absoluteMs: 8 * 3600_000 })
      expect(() => authSettingsFromEnv({ CITYSYNC_SESSION_IDLE: 'soon' })).toThrow(/CITYSYNC_SESSION_IDLE/)

      // Admin logs in again (the earlier session went idle).
      adminCookie = cookieOf(await login('wang.admin', PW.admin))
    })

    it('issues API tokens that are hashed at rest, scoped, expiring and revocable', async () => {
      const made = await asAdmin('POST', '/api/v1/tokens', { name: 'grafana', role: 'viewer', scopes: ['health:read'], expiresIn: '1d' })
      expect(made.statusCode).toBe(201)
      const grafana = made.json<{ token: string; id: string; expiresAt: string; createdBy: string }>()
      seenTokens.push(grafana.token)
      expect(grafana.token).toMatch(new RegExp(`^cst_${grafana.id}_`))
      expect(grafana).toMatchObject({ expiresAt: new Date(clock.now() + DAY).toISOString(), createdBy: 'wang.admin' })
      const row = (await metadata.knex('api_tokens').where({ id: grafana.id }).first()) as Record<string, unknown>
      expect(row.token_hash).toBe(createHash('sha256').update(grafana.token).digest('hex'))
      expect(JSON.stringify(row)).not.toContain(grafana.token.slice(21))
      expect(JSON.stringify((await asAdmin('GET', '/api/v1/tokens')).json())).not.toContain(grafana.token)

      expect((await call('GET', '/api/v1/alerts', { token: grafana.token })).statusCode).toBe(200)
      // sources:read is the role's, but not in the token's scopes.
      expect((await call('GET', '/api/v1/sources', { token: grafana.token })).json()).toMatchObject({ code: 'CITYSYNC_ERR_AUTH_FORBIDDEN' })
      expect((await call('POST', '/api/v1/sources/x/pause', { token: grafana.token })).statusCode).toBe(403)
      expect((await call('GET', '/api/v1/auth/me', { token: grafana.token })).json()).toMatchObject({ username: 'token:grafana', kind: 'token', role: 'viewer', permissions: ['health:read'], tokenId: grafana.id })

      const beyond = await asAdmin('POST', '/api/v1/tokens', { name: 'greedy', role: 'viewer', scopes: ['sources:write'] })
      expect(beyond.statusCode).toBe(400)
      expect(beyond.json()).toMatchObject({ code: 'CITYSYNC_ERR_TOKEN_INVALID', message: 'API token refused: scopes sources:write are not permissions of role viewer' })

      const ci = (await asAdmin('POST', '/api/v1/tokens', { name: 'ci', role: 'operator' })).json<{ token: string; id: string; expiresAt: string }>()
      seenTokens.push(ci.token)
      expect(ci.expiresAt).toBe(new Date(clock.now() + 90 * DAY).toISOString())
      const silence = await call('POST', '/api/v1/silences', { token: ci.token, body: { matchers: { sourceId: 'y' }, duration: '1h', reason: 'deploy window', createdBy: '值班员 李工' } })
      expect(silence.json()).toMatchObject({ createdBy: 'token:ci' })
      const revoked = await asAdmin('DELETE', `/api/v1/tokens/${ci.id}`)
      expect(revoked.json()).toMatchObject({ id: ci.id, revokedBy: 'wang.admin' })
      expect((await call('GET', '/api/v1/alerts', { token: ci.token })).statusCode).toBe(401)

      clock.advance(DAY)
      expect((await call('GET', '/api/v1/alerts', { token: grafana.token })).json()).toMatchObject({ code: 'CITYSYNC_ERR_AUTH_REQUIRED' })
      adminCookie = cookieOf(await login('wang.admin', PW.admin))
    })

    it('records every change with before and after, and never a password, token or secret', async () => {
      const definition = { id: `audited-${backend.name}`, kind: 'parking-lots', name: '横琴口岸停车场平台', config: { baseUrl: 'http://127.0.0.1:9/', appKey: SOURCE_SECRET } }
      expect((await asAdmin('POST', '/api/v1/sources', definition)).statusCode).toBe(201)
      expect((await asAdmin('PUT', `/api/v1/sources/${definition.id}`, { ...definition, config: { ...definition.config, appKey: '******', pageSize: 200 } })).statusCode).toBe(200)

      const put = (await asAdmin('GET', `/api/v1/audit?action=${encodeURIComponent('PUT /api/v1/sources/:id')}&actor=wang.admin`)).json<{ total: number; items: Record<string, unknown>[] }>()
      expect(put.total).toBe(1)
      expect(put.items[0]).toMatchObject({
        actor: 'wang.admin', actorKind: 'user', role: 'admin', method: 'PUT', route: '/api/v1/sources/:id', target: definition.id, status: 200,
        detail: { before: { version: 1, config: { appKey: '******' } }, after: { version: 2, config: { appKey: '******', pageSize: 200 } } },
      })
      expect(put.items[0]!.ip).toBe('127.0.0.1')
      const created = (await asAdmin('GET', `/api/v1/audit?action=${encodeURIComponent('POST /api/v1/users')}&target=li.gong`)).json<{ items: Record<string, unknown>[] }>()
      expect(created.items.map((i) => i.status)).toEqual([409, 201])
      expect(created.items[1]).toMatchObject({ actor: 'wang.admin', status: 201, detail: { after: { username: 'li.gong', role: 'operator' } } })
      const prefix = (await asAdmin('GET', `/api/v1/audit?action=${encodeURIComponent('POST /api/v1/auth/*')}&limit=1000`)).json<{ total: number; items: { action: string }[] }>()
      expect(prefix.total).toBeGreaterThan(20)
      expect(new Set(prefix.items.map((i) => i.action))).toEqual(new Set(['POST /api/v1/auth/login', 'POST /api/v1/auth/logout', 'POST /api/v1/auth/totp', 'POST /api/v1/auth/totp/confirm']))
      // Refused attempts are recorded too.
      const refused = (await asAdmin('GET', `/api/v1/audit?action=${encodeURIComponent('POST /api/v1/sources/:id/pause')}`)).json<{ items: Record<string, unknown>[] }>()
      expect(refused.items[0]).toMatchObject({ actor: 'token:grafana', status: 403, detail: { error: 'CITYSYNC_ERR_AUTH_FORBIDDEN' } })
      // GETs are not.
      expect((await asAdmin('GET', `/api/v1/audit?action=${encodeURIComponent('GET /api/v1/auth/me')}`)).json()).toMatchObject({ total: 0 })

      const everything = JSON.stringify(await metadata.knex('audit_log').select('*'))
      for (const secret of [...Object.values(PW), SOURCE_SECRET, totpSecret, BOOT, ...seenTokens, ...seenTokens.map((t) => t.slice(21))]) {
        expect(everything, 'a secret in the audit log').not.toContain(secret)
      }

      const verified = (await asAdmin('GET', '/api/v1/audit?verify=true&limit=1')).json<{ total: number; chain: { ok: boolean; rows: number; head: { seq: number } } }>()
      expect(verified.chain).toMatchObject({ ok: true })
      expect(verified.chain.rows).toBe(verified.total)
    })

    it('answers the quarterly account review', async () => {
      const now = clock.now()
      // An account nobody used for 200 days, one disabled, one locked by the admin.
      await new AuthStore({ knex: metadata.knex, dialect: metadata.dialect, clock: new ManualClock(now - 200 * DAY) }).createUser({ username: 'old.viewer', password: PW.old, role: 'viewer', createdBy: 'test' })
      expect((await asAdmin('PATCH', '/api/v1/users/chen', { disabled: true })).json()).toMatchObject({ disabled: true })
      expect((await asAdmin('PATCH', '/api/v1/users/zhao', { locked: true })).json()).toMatchObject({ locked: true, lockedUntil: null, lockReason: 'locked by an admin' })
      expect((await login('zhao', PW.zhao)).statusCode).toBe(423)
      expect((await login('chen', PW.chen)).statusCode).toBe(401)
      const last = await asAdmin('PATCH', '/api/v1/users/wang.admin', { role: 'viewer' })
      expect(last.json()).toMatchObject({ code: 'CITYSYNC_ERR_USER_LAST_ADMIN' })
      await asAdmin('POST', '/api/v1/tokens', { name: 'exporter', role: 'viewer', expiresIn: '20d' })
      await asAdmin('POST', '/api/v1/tokens', { name: 'backup', role: 'viewer', expiresIn: '60d' })

      const res = await asAdmin('GET', '/api/v1/reports/account-review?quarter=2026Q4')
      expect(res.statusCode).toBe(200)
      const review = res.json<Record<string, unknown> & { summary: Record<string, number>; privileged: { username: string; totpEnabled: boolean }[]; accountChanges: { action: string; target: string }[] }>()
      expect(review).toMatchObject({ quarter: '2026Q4', zone: 'Asia/Shanghai', from: '2026-10-01 00:00:00', to: '2027-01-01 00:00:00', asOf: new Date(now).toISOString() })
      expect(review.summary).toEqual({
        users: 5, enabledUsers: 4, privileged: 2, inactive: 1, locked: 1, disabled: 1, totpMissing: 1,
        tokens: 3, tokensExpiring: 1, tokensExpired: 1, accountChanges: review.accountChanges.length,
      })
      expect(review.privileged.map((u) => [u.username, u.totpEnabled])).toEqual([['li.gong', true], ['wang.admin', false]])
      expect(review).toMatchObject({
        inactive: [{ username: 'old.viewer', lastLoginAt: null, daysInactive: 200 }],
        locked: [{ username: 'zhao', lockedUntil: 'until unlocked' }],
        disabled: [{ username: 'chen' }],
        totpMissing: [{ username: 'wang.admin', role: 'admin' }],
        tokensExpiring: [{ name: 'exporter', daysLeft: 20 }],
        tokensExpired: [{ name: 'grafana', daysLeft: 0 }],
      })
      expect(review.accountChanges).toEqual(expect.arrayContaining([
        expect.objectContaining({ action: 'POST /api/v1/users', target: 'li.gong', actor: 'wang.admin', status: 201 }),
        expect.objectContaining({ action: 'PATCH /api/v1/users/:username', target: 'chen' }),
        expect.objectContaining({ action: 'DELETE /api/v1/tokens/:id' }),
      ]))

      const csv = await asAdmin('GET', '/api/v1/reports/account-review?quarter=2026Q4&format=csv')
      expect(csv.headers['content-type']).toBe('text/csv; charset=utf-8')
      expect(csv.headers['content-disposition']).toBe('attachment; filename="account-review-2026Q4.csv"')
      const lines = csv.body.replace(/^\uFEFF/, '').split('\r\n')
      expect(lines[0]).toBe('finding,kind,name,role,lastLoginOrUse,daysInactive,expiresAt,daysLeft,detail')
      expect(lines.filter((l) => l.startsWith('inactive,user,old.viewer,viewer,,200,'))).toHaveLength(1)
      expect(lines.filter((l) => l.startsWith('totp-missing,user,wang.admin,admin,'))).toHaveLength(1)
      expect(lines.filter((l) => /^token-expiring,token,exporter \([0-9a-f]{16}\),viewer,,,[^,]+,20,/.test(l))).toHaveLength(1)
      expect((await asAdmin('GET', '/api/v1/reports/account-review?quarter=2026Q5')).statusCode).toBe(400)
    })

    it('keeps the audit log append-only and shows tampering behind its back', async () => {
      await expect(metadata.knex('audit_log').where({ seq: 2 }).update({ actor: 'someone else' })).rejects.toThrow(/append-only/)
      await expect(metadata.knex('audit_log').where({ seq: 2 }).delete()).rejects.toThrow(/append-only/)
      if (backend.name === 'pg') await expect(metadata.knex.raw('TRUNCATE audit_log')).rejects.toThrow(/append-only/)
      const intact = await verifyAuditChain(metadata.knex)
      expect(intact.ok).toBe(true)

      // The database owner can drop the trigger; the chain still tells.
      if (backend.name === 'pg') await metadata.knex.raw('DROP TRIGGER audit_log_no_change ON audit_log')
      else await metadata.knex.raw('DROP TRIGGER audit_log_no_update')
      await metadata.knex('audit_log').where({ seq: 3 }).update({ actor: 'someone else' })
      const tampered = await verifyAuditChain(metadata.knex)
      expect(tampered).toMatchObject({ ok: false, broken: { seq: 3, problem: 'content does not match its hash (changed after it was written)' } })
      expect((await asAdmin('GET', '/api/v1/audit?verify=true&limit=1')).json()).toMatchObject({ chain: { ok: false, broken: { seq: 3 } } })

      // A row deleted from the middle is a gap.
      if (backend.name === 'pg') await metadata.knex.raw('DELETE FROM audit_log WHERE seq = 2')
      else {
        await metadata.knex.raw('DROP TRIGGER audit_log_no_delete')
        await metadata.knex('audit_log').where({ seq: 2 }).delete()
      }
      expect(await verifyAuditChain(metadata.knex)).toMatchObject({ ok: false, broken: { seq: 3, problem: 'row 2 is missing (next is 3)' } })
    })
  })
}
