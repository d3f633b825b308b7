import { type FastifyInstance } from 'fastify'
import { type AuditRecord } from '../../lib/auth/audit.ts'
import { PERMISSIONS, ROLES, type Role } from '../../lib/auth/permissions.ts'
import { accountReview, accountReviewCsv } from '../../lib/auth/review.ts'
import { type ApiToken, type AuthStore, LOCKED_UNTIL_LIFTED, type User } from '../../lib/auth/store.ts'
import { parseDuration } from '../../lib/duration.ts'
import { CitysyncError } from '../../lib/errors.ts'
import { actorOf } from '../auth.ts'

// Administration: users, API tokens, the audit log, the quarterly account
// review. Admins only (api/route-permissions.ts). Passwords and token secrets
// are never shown; a new token's secret is in the answer that creates it, once.

function curl(text: string): string {
  return `Example:\n\n\`\`\`sh\n${text}\n\`\`\``
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString()
}

export function userView(u: User): Record<string, unknown> {
  return {
    username: u.username,
    role: u.role,
    disabled: u.disabled,
    locked: u.lockedUntil !== null,
    lockedUntil: u.lockedUntil === null || u.lockedUntil >= LOCKED_UNTIL_LIFTED ? null : iso(u.lockedUntil),
    lockReason: u.lockReason,
    totpEnabled: u.totpEnabled,
    failedLogins: u.failedLogins,
    lastLoginAt: iso(u.lastLoginAt),
    lastLoginIp: u.lastLoginIp,
    passwordChangedAt: iso(u.passwordChangedAt),
    createdAt: iso(u.createdAt),
    createdBy: u.createdBy,
    updatedAt: iso(u.updatedAt),
  }
}

export function tokenView(t: ApiToken): Record<string, unknown> {
  return {
    id: t.id,
    name: t.name,
    role: t.role,
    scopes: t.scopes,
    expiresAt: iso(t.expiresAt),
    createdAt: iso(t.createdAt),
    createdBy: t.createdBy,
    lastUsedAt: iso(t.lastUsedAt),
    revokedAt: iso(t.revokedAt),
    revokedBy: t.revokedBy,
  }
}

function auditView(r: AuditRecord): Record<string, unknown> {
  return { ...r, at: iso(r.at) }
}

const E = { $ref: 'Error#' } as const
const ROLE = { type: 'string', enum: [...ROLES] } as const
const TIME = { type: ['string', 'null'], format: 'date-time' } as const

const USER_SCHEMA = {
  $id: 'User',
  type: 'object',
  required: ['username', 'role', 'disabled', 'locked', 'totpEnabled', 'lastLoginAt', 'createdAt'],
  properties: {
    username: { type: 'string' },
    role: ROLE,
    disabled: { type: 'boolean' },
    locked: { type: 'boolean' },
    lockedUntil: { ...TIME, description: 'null while unlocked, or locked until an admin unlocks' },
    lockReason: { type: ['string', 'null'] },
    totpEnabled: { type: 'boolean' },
    failedLogins: { type: 'integer' },
    lastLoginAt: TIME,
    lastLoginIp: { type: ['string', 'null'] },
    passwordChangedAt: TIME,
    createdAt: TIME,
    createdBy: { type: 'string' },
    updatedAt: TIME,
  },
  examples: [
    {
      username: 'li.gong', role: 'operator', disabled: false, locked: false, lockedUntil: null, lockReason: null, totpEnabled: true, failedLogins: 0,
      lastLoginAt: '2026-11-21T01:02:03.000Z', lastLoginIp: '10.0.4.17', passwordChangedAt: '2026-10-01T02:00:00.000Z', createdAt: '2026-10-01T02:00:00.000Z', createdBy: 'wang.admin', updatedAt: '2026-11-21T01:02:03.000Z',
    },
  ],
} as const

const TOKEN_SCHEMA = {
  $id: 'ApiToken',
  type: 'object',
  required: ['id', 'name', 'role', 'scopes', 'expiresAt', 'createdAt', 'createdBy', 'lastUsedAt', 'revokedAt'],
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    role: ROLE,
    scopes: { type: ['array', 'null'], items: { type: 'string' }, description: 'null: every permission of the role' },
    expiresAt: TIME,
    createdAt: TIME,
    createdBy: { type: 'string' },
    lastUsedAt: TIME,
    revokedAt: TIME,
    revokedBy: { type: ['string', 'null'] },
  },
  examples: [{ id: '9f2c4e1a7b3d5c60', name: 'grafana', role: 'viewer', scopes: ['health:read'], expiresAt: '2027-02-19T00:00:00.000Z', createdAt: '2026-11-21T00:00:00.000Z', createdBy: 'wang.admin', lastUsedAt: null, revokedAt: null, revokedBy: null }],
} as const

const USERNAME_PARAMS = { type: 'object', required: ['username'], properties: { username: { type: 'string', minLength: 1, maxLength: 64 } } } as const

export function userRoutes(app: FastifyInstance, { store }: { store: AuthStore }): Promise<void> {
  app.addSchema(USER_SCHEMA)
  app.addSchema(TOKEN_SCHEMA)

  app.get(
    '/api/v1/users',
    {
      schema: {
        summary: 'Users with their role, state (disabled, locked), second factor and last login',
        description: curl('curl -s -H "Authorization: Bearer $TOKEN" localhost:3000/api/v1/users'),
        tags: ['users'],
        response: { 200: { type: 'object', required: ['items', 'total'], properties: { items: { type: 'array', items: { $ref: 'User#' } }, total: { type: 'integer' } } } },
      },
    },
    async () => {
      const items = (await store.listUsers()).map(userView)
      return { items, total: items.length }
    },
  )

  app.post<{ Body: { username: string; role: Role; password: string } }>(
    '/api/v1/users',
    {
      schema: {
        summary: 'Add a user with a role and an initial password (at least 10 characters)',
        description: curl(`curl -s -X POST localhost:3000/api/v1/users -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \\\n  -d '{"username":"li.gong","role":"operator","password":"correct horse battery"}'`),
        tags: ['users'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['username', 'role', 'password'],
          properties: { username: { type: 'string', minLength: 1, maxLength: 64 }, role: ROLE, password: { type: 'string', minLength: 1, maxLength: 1024 } },
          examples: [{ username: 'li.gong', role: 'operator', password: 'correct horse battery' }],
        },
        response: { 201: { $ref: 'User#' }, 400: E, 409: E },
      },
    },
    async (req, reply) => {
      req.audit!.target = req.body.username
      const user = await store.createUser({ username: req.body.username, role: req.body.role, password: req.body.password, createdBy: actorOf(req) })
      req.audit!.detail = { after: userView(user) }
      return reply.status(201).send(userView(user))
    },
  )

  app.get<{ Params: { username: string } }>(
    '/api/v1/users/:username',
    {
      schema: { summary: 'One user', description: curl('curl -s -H "Authorization: Bearer $TOKEN" localhost:3000/api/v1/users/li.gong'), tags: ['users'], params: USERNAME_PARAMS, response: { 200: { $ref: 'User#' }, 404: E } },
    },
    async (req) => userView(await store.getUser(req.params.username)),
  )

  app.patch<{ Params: { username: string }; Body: { role?: Role; disabled?: boolean; locked?: boolean; unlock?: boolean; resetTotp?: boolean; password?: string } }>(
    '/api/v1/users/:username',
    {
      schema: {
        summary: "Change a user's role, disable or enable, lock or unlock, reset the second factor, set a new password",
        description:
          'A change that takes access away (disable, lock, new role, new password, reset second factor) ends the user\'s sessions. The last enabled admin cannot be demoted, disabled, locked or deleted (409).\n\n' +
          curl(`curl -s -X PATCH localhost:3000/api/v1/users/li.gong -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"unlock":true}'`),
        tags: ['users'],
        params: USERNAME_PARAMS,
        body: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          properties: {
            role: ROLE,
            disabled: { type: 'boolean' },
            locked: { type: 'boolean', description: 'true: locked until unlocked; false: unlocked' },
            unlock: { type: 'boolean', enum: [true], description: 'the same as locked: false' },
            resetTotp: { type: 'boolean', enum: [true], description: 'turn the second factor off (the user enrols again)' },
            password: { type: 'string', minLength: 1, maxLength: 1024 },
          },
          examples: [{ unlock: true }, { role: 'viewer' }, { disabled: true }, { resetTotp: true }],
        },
        response: { 200: { $ref: 'User#' }, 400: E, 404: E, 409: E },
      },
    },
    async (req) => {
      const b = req.body
      if (b.unlock === true && b.locked === true) throw new CitysyncError('CITYSYNC_ERR_USER_INVALID', [req.params.username, 'unlock and locked: true contradict each other'])
      const { before, after } = await store.updateUser(req.params.username, {
        role: b.role,
        disabled: b.disabled,
        locked: b.unlock === true ? false : b.locked,
        resetTotp: b.resetTotp,
        password: b.password,
      })
      req.audit!.detail = { before: userView(before), after: userView(after), ...(b.password !== undefined ? { passwordSet: true } : {}) }
      return userView(after)
    },
  )

  app.delete<{ Params: { username: string } }>(
    '/api/v1/users/:username',
    {
      schema: {
        summary: 'Remove a user (sessions end; the audit log keeps the name)',
        description: curl('curl -s -X DELETE -H "Authorization: Bearer $TOKEN" localhost:3000/api/v1/users/li.gong'),
        tags: ['users'],
        params: USERNAME_PARAMS,
        response: { 200: { type: 'object', required: ['username', 'deleted'], properties: { username: { type: 'string' }, deleted: { type: 'boolean' } } }, 404: E, 409: E },
      },
    },
    async (req) => {
      const before = await store.deleteUser(req.params.username)
      req.audit!.detail = { before: userView(before), after: null }
      return { username: before.username, deleted: true }
    },
  )

  app.get<{ Querystring: { includeRevoked: boolean } }>(
    '/api/v1/tokens',
    {
      schema: {
        summary: 'API tokens (never their secrets): role, scopes, expiry, last use',
        description: curl('curl -s -H "Authorization: Bearer $TOKEN" localhost:3000/api/v1/tokens'),
        tags: ['users'],
        querystring: { type: 'object', additionalProperties: false, properties: { includeRevoked: { type: 'boolean', default: false } } },
        response: { 200: { type: 'object', required: ['items', 'total'], properties: { items: { type: 'array', items: { $ref: 'ApiToken#' } }, total: { type: 'integer' } } } },
      },
    },
    async (req) => {
      const items = (await store.listTokens({ includeRevoked: req.query.includeRevoked })).map(tokenView)
      return { items, total: items.length }
    },
  )

  app.post<{ Body: { name: string; role: Role; scopes?: string[]; expiresAt?: string; expiresIn?: string } }>(
    '/api/v1/tokens',
    {
      schema: {
        summary: 'Create an API token for a machine: role, optional scopes (a subset of the role\'s permissions), expiry (default 90 days)',
        description:
          'The answer holds the token (`cst_…`) once; only its SHA-256 is stored. Use it as `Authorization: Bearer cst_…`.\n\n' +
          curl(`curl -s -X POST localhost:3000/api/v1/tokens -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \\\n  -d '{"name":"grafana","role":"viewer","scopes":["health:read"],"expiresIn":"90d"}'`),
        tags: ['users'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'role'],
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 64 },
            role: ROLE,
            scopes: { type: 'array', minItems: 1, items: { type: 'string', enum: [...PERMISSIONS] } },
            expiresAt: { type: 'string', format: 'date-time' },
            expiresIn: { type: 'string', description: 'instead of expiresAt: 30d, 90d, 12h', examples: ['90d'] },
          },
          examples: [{ name: 'grafana', role: 'viewer', scopes: ['health:read'], expiresIn: '90d' }],
        },
        response: {
          201: { type: 'object', required: ['token', 'id'], properties: { token: { type: 'string', description: 'shown once' }, ...TOKEN_SCHEMA.properties } },
          400: E,
        },
      },
    },
    async (req, reply) => {
      const b = req.body
      if (b.expiresAt !== undefined && b.expiresIn !== undefined) throw new CitysyncError('CITYSYNC_ERR_TOKEN_INVALID', ['give expiresAt or expiresIn, not both'])
      let expiresAt = store.clock.now() + 90 * 86_400_000
      if (b.expiresAt !== undefined) expiresAt = Date.parse(b.expiresAt)
      if (b.expiresIn !== undefined) {
        try {
          expiresAt = store.clock.now() + parseDuration(b.expiresIn)
        } catch {
          throw new CitysyncError('CITYSYNC_ERR_TOKEN_INVALID', [`expiresIn ${JSON.stringify(b.expiresIn)} is not a duration such as 90d`])
        }
      }
      const { token, record } = await store.createToken({ name: b.name, role: b.role, scopes: b.scopes, expiresAt, createdBy: actorOf(req) })
      req.audit!.target = record.id
      req.audit!.detail = { after: tokenView(record) }
      return reply.status(201).send({ token, ...tokenView(record) })
    },
  )

  app.delete<{ Params: { id: string } }>(
    '/api/v1/tokens/:id',
    {
      schema: {
        summary: 'Revoke an API token at once',
        description: curl('curl -s -X DELETE -H "Authorization: Bearer $TOKEN" localhost:3000/api/v1/tokens/9f2c4e1a7b3d5c60'),
        tags: ['users'],
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 32 } } },
        response: { 200: { $ref: 'ApiToken#' }, 404: E },
      },
    },
    async (req) => {
      const before = await store.getToken(req.params.id)
      const after = await store.revokeToken(req.params.id, actorOf(req))
      req.audit!.detail = { before: tokenView(before), after: tokenView(after) }
      return tokenView(after)
    },
  )

  app.get<{ Querystring: { actor?: string; action?: string; target?: string; from?: string; to?: string; limit: number; offset: number; verify: boolean } }>(
    '/api/v1/audit',
    {
      schema: {
        summary: 'The audit log, newest first: who changed what, when, from where; ?verify=true also checks its hash chain',
        description:
          'Every request under /api/v1 other than GET and HEAD is recorded (signed pushes excepted), with before and after for configuration changes; passwords, tokens and clear plates never are. ' +
          'Rows cannot be changed or deleted (database triggers), and each carries a SHA-256 hash chained to the previous row: `verify=true` walks the whole chain and reports the first row that does not fit. ' +
          '`action` is exact (`POST /api/v1/sources/:id/pause`) or a prefix ending in `*`.\n\n' +
          curl(`curl -s -H "Authorization: Bearer $TOKEN" 'localhost:3000/api/v1/audit?actor=li.gong&from=2026-11-01T00:00:00Z&verify=true'`),
        tags: ['audit'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            actor: { type: 'string', maxLength: 100 },
            action: { type: 'string', maxLength: 200 },
            target: { type: 'string', maxLength: 200 },
            from: { type: 'string', format: 'date-time' },
            to: { type: 'string', format: 'date-time' },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            offset: { type: 'integer', minimum: 0, default: 0 },
            verify: { type: 'boolean', default: false },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['items', 'total'],
            properties: {
              items: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    seq: { type: 'integer' },
                    at: { type: 'string', format: 'date-time' },
                    actor: { type: ['string', 'null'] },
                    actorKind: { type: ['string', 'null'] },
                    role: { type: ['string', 'null'] },
                    action: { type: 'string' },
                    method: { type: ['string', 'null'] },
                    route: { type: ['string', 'null'] },
                    target: { type: ['string', 'null'] },
                    status: { type: ['integer', 'null'] },
                    ip: { type: ['string', 'null'] },
                    userAgent: { type: ['string', 'null'] },
                    detail: {},
                    prevHash: { type: 'string' },
                    hash: { type: 'string' },
                  },
                },
              },
              total: { type: 'integer' },
              chain: {
                type: 'object',
                properties: {
                  ok: { type: 'boolean' },
                  rows: { type: 'integer' },
                  head: { type: ['object', 'null'], properties: { seq: { type: 'integer' }, hash: { type: 'string' } } },
                  broken: { type: 'object', properties: { seq: { type: 'integer' }, problem: { type: 'string' } } },
                },
              },
            },
            examples: [
              {
                total: 1,
                items: [
                  {
                    seq: 42, at: '2026-11-21T04:07:12.000Z', actor: 'li.gong', actorKind: 'user', role: 'operator', action: 'POST /api/v1/sources/:id/pause', method: 'POST', route: '/api/v1/sources/:id/pause',
                    target: 'hengqin-parking', status: 200, ip: '10.0.4.17', userAgent: 'Mozilla/5.0', detail: { before: { desiredState: 'deployed' }, after: { desiredState: 'paused' } },
                    prevHash: '5b1d…', hash: '0c9e…',
                  },
                ],
                chain: { ok: true, rows: 42, head: { seq: 42, hash: '0c9e…' } },
              },
            ],
          },
        },
      },
    },
    async (req) => {
      const q = req.query
      const { items, total } = await store.audit.list({
        actor: q.actor,
        action: q.action,
        target: q.target,
        from: q.from === undefined ? undefined : Date.parse(q.from),
        to: q.to === undefined ? undefined : Date.parse(q.to),
        limit: q.limit,
        offset: q.offset,
      })
      return { items: items.map(auditView), total, ...(q.verify ? { chain: await store.audit.verify() } : {}) }
    },
  )

  app.get<{ Querystring: { quarter: string; format: 'json' | 'csv'; tz: string } }>(
    '/api/v1/reports/account-review',
    {
      schema: {
        summary: 'The quarterly account review: privileged, inactive (no login for 90 days), locked and disabled accounts, missing second factors, tokens expiring within 30 days',
        description:
          'Also lists the account changes of the quarter (users and tokens added, changed, removed) from the audit log. Ages are measured at the end of the quarter, or now for the current one.\n\n' +
          curl(`curl -s -H "Authorization: Bearer $TOKEN" -o review.csv 'localhost:3000/api/v1/reports/account-review?quarter=2026Q4&format=csv'`),
        tags: ['users'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['quarter'],
          properties: {
            quarter: { type: 'string', pattern: '^\\d{4}-?[Qq][1-4]$', examples: ['2026Q4'] },
            format: { type: 'string', enum: ['json', 'csv'], default: 'json' },
            tz: { type: 'string', default: 'Asia/Shanghai' },
          },
        },
        response: { 200: { type: 'object', additionalProperties: true, description: 'JSON; with format=csv one row per finding' }, 400: E },
      },
    },
    async (req, reply) => {
      const review = await accountReview(store, { quarter: req.query.quarter, zone: req.query.tz })
      if (req.query.format === 'csv') {
        return reply
          .header('content-type', 'text/csv; charset=utf-8')
          .header('content-disposition', `attachment; filename="account-review-${review.quarter}.csv"`)
          .send(accountReviewCsv(review))
      }
      return review
    },
  )
  return Promise.resolve()
}
