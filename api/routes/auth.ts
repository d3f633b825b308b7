import { type FastifyInstance } from 'fastify'
import { PERMISSIONS } from '../../lib/auth/permissions.ts'
import { type AuthStore } from '../../lib/auth/store.ts'
import { CitysyncError } from '../../lib/errors.ts'
import { type AuthSettings, clearSessionCookie, principalCan, requirePrincipal, setSessionCookie } from '../auth.ts'

// Login, logout, one's own account: who am I, change my password, turn on
// the second factor (TOTP). The session travels as the HttpOnly cookie
// citysync_session (SameSite=Strict), or, asked for with `bearer: true`, as a
// token in the answer for `Authorization: Bearer` (then no cookie is set).

function curl(text: string): string {
  return `Example:\n\n\`\`\`sh\n${text}\n\`\`\``
}

const E = { $ref: 'Error#' } as const
const USER_BRIEF = {
  type: 'object',
  required: ['username', 'role', 'totpEnabled'],
  properties: { username: { type: 'string' }, role: { type: 'string' }, totpEnabled: { type: 'boolean' } },
} as const

export interface AuthRouteDeps {
  store: AuthStore
  settings: AuthSettings
}

export function authRoutes(app: FastifyInstance, { store, settings }: AuthRouteDeps): Promise<void> {
  const userOnly = (what: string, kind: string): CitysyncError => new CitysyncError('CITYSYNC_ERR_AUTH_NOT_USER', [what, kind === 'token' ? 'an API token' : 'the bootstrap token'])

  app.post<{ Body: { username: string; password: string; totp?: string; bearer?: boolean } }>(
    '/api/v1/auth/login',
    {
      config: { rateLimit: settings.loginRateLimit ?? { max: 10, timeWindow: 60_000 } },
      schema: {
        summary: 'Log in with username, password and, when it is on, the one-time code; starts a session',
        description:
          'Answers 401 `CITYSYNC_ERR_AUTH_INVALID` for a wrong username, password or code (never saying which), 401 `CITYSYNC_ERR_AUTH_TOTP_REQUIRED` when the password is right ' +
          'but the account needs a one-time code, 423 `CITYSYNC_ERR_AUTH_LOCKED` when the account is locked (5 failed logins within 15 minutes lock it for 15 minutes). ' +
          'The session ends after 30 minutes without use or 12 hours after login. It comes as the cookie `citysync_session`; with `"bearer": true` as `token` in the answer instead.\n\n' +
          curl(`curl -s -c cookies.txt -X POST localhost:3000/api/v1/auth/login -H 'content-type: application/json' \\\n  -d '{"username":"li.gong","password":"correct horse battery","totp":"492039"}'`),
        tags: ['auth'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['username', 'password'],
          properties: {
            username: { type: 'string', minLength: 1, maxLength: 64 },
            password: { type: 'string', minLength: 1, maxLength: 1024 },
            totp: { type: 'string', maxLength: 16, description: 'the current code of the authenticator app' },
            bearer: { type: 'boolean', description: 'answer with the session token instead of setting the cookie' },
          },
          examples: [{ username: 'li.gong', password: 'correct horse battery', totp: '492039' }],
        },
        response: {
          200: {
            type: 'object',
            required: ['user', 'expiresAt'],
            properties: {
              user: USER_BRIEF,
              expiresAt: { type: 'string', format: 'date-time', description: 'the latest the session can last (it ends sooner when idle)' },
              token: { type: 'string', description: 'with bearer: true only' },
            },
            examples: [{ user: { username: 'li.gong', role: 'operator', totpEnabled: true }, expiresAt: '2026-11-21T16:00:00.000Z' }],
          },
          401: E,
          423: E,
        },
      },
    },
    async (req, reply) => {
      const { username, password, totp, bearer } = req.body
      req.audit!.target = username
      const r = await store.login({ username, password, totp, ip: req.ip, userAgent: req.headers['user-agent'] })
      const detail: Record<string, unknown> = { outcome: r.outcome }
      if (r.outcome === 'invalid') detail.reason = r.reason
      if ((r.outcome === 'invalid' || r.outcome === 'locked') && r.lockedUntil !== undefined) detail.lockedUntil = new Date(r.lockedUntil).toISOString()
      if (r.outcome === 'invalid' && r.user !== undefined) detail.failedLogins = r.user.failedLogins
      req.audit!.detail = detail
      if (r.outcome === 'locked' || (r.outcome === 'invalid' && r.lockedUntil !== undefined)) {
        throw new CitysyncError('CITYSYNC_ERR_AUTH_LOCKED', [username, new Date(r.lockedUntil!).toISOString()])
      }
      if (r.outcome === 'invalid') throw new CitysyncError('CITYSYNC_ERR_AUTH_INVALID')
      if (r.outcome === 'totp-required') throw new CitysyncError('CITYSYNC_ERR_AUTH_TOTP_REQUIRED')
      const body = { user: { username: r.user.username, role: r.user.role, totpEnabled: r.user.totpEnabled }, expiresAt: new Date(r.session.expiresAt).toISOString() }
      if (bearer === true) return { ...body, token: r.session.token }
      setSessionCookie(reply, req, r.session.token, r.session.expiresAt, settings.secureCookie)
      return body
    },
  )

  app.post(
    '/api/v1/auth/logout',
    {
      schema: {
        summary: 'End this session (the cookie is cleared); an API token stays valid (revoke it with DELETE /api/v1/tokens/:id)',
        description: curl('curl -s -b cookies.txt -X POST localhost:3000/api/v1/auth/logout'),
        tags: ['auth'],
        response: { 200: { type: 'object', required: ['loggedOut'], properties: { loggedOut: { type: 'boolean' } }, examples: [{ loggedOut: true }] }, 401: E },
      },
    },
    async (req, reply) => {
      const p = requirePrincipal(req)
      if (p.sessionId !== undefined) await store.revokeSession(p.sessionId)
      clearSessionCookie(reply)
      return { loggedOut: p.sessionId !== undefined }
    },
  )

  app.get(
    '/api/v1/auth/me',
    {
      schema: {
        summary: 'Who the credential belongs to: name, role, second factor, what it may do',
        description: curl('curl -s -b cookies.txt localhost:3000/api/v1/auth/me'),
        tags: ['auth'],
        response: {
          200: {
            type: 'object',
            required: ['username', 'role', 'totpEnabled', 'kind', 'permissions'],
            properties: {
              username: { type: 'string' },
              role: { type: 'string' },
              totpEnabled: { type: 'boolean' },
              kind: { type: 'string', enum: ['user', 'token', 'bootstrap'] },
              permissions: { type: 'array', items: { type: 'string' } },
              tokenId: { type: 'string' },
            },
            examples: [{ username: 'li.gong', role: 'operator', totpEnabled: true, kind: 'user', permissions: ['sources:read', 'sources:write', 'health:read'] }],
          },
          401: E,
        },
      },
    },
    async (req) => {
      const p = requirePrincipal(req)
      const totpEnabled = p.kind === 'user' ? (await store.getUser(p.username)).totpEnabled : false
      return {
        username: p.username,
        role: p.role,
        totpEnabled,
        kind: p.kind,
        permissions: PERMISSIONS.filter((perm) => principalCan(p, perm)),
        ...(p.tokenId !== undefined ? { tokenId: p.tokenId } : {}),
      }
    },
  )

  app.post<{ Body: { currentPassword: string; newPassword: string } }>(
    '/api/v1/auth/password',
    {
      schema: {
        summary: "Change one's own password (at least 10 characters); other sessions of the user end",
        description: curl(`curl -s -b cookies.txt -X POST localhost:3000/api/v1/auth/password -H 'content-type: application/json' \\\n  -d '{"currentPassword":"correct horse battery","newPassword":"staple battery horse correct"}'`),
        tags: ['auth'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['currentPassword', 'newPassword'],
          properties: { currentPassword: { type: 'string', minLength: 1, maxLength: 1024 }, newPassword: { type: 'string', minLength: 1, maxLength: 1024 } },
        },
        response: { 200: { type: 'object', properties: { changed: { type: 'boolean' } }, examples: [{ changed: true }] }, 400: E, 401: E, 409: E },
      },
    },
    async (req) => {
      const p = requirePrincipal(req)
      if (p.kind !== 'user') throw userOnly('change a password', p.kind)
      req.audit!.target = p.username
      await store.changePassword(p.username, req.body.currentPassword, req.body.newPassword, p.sessionId)
      return { changed: true }
    },
  )

  app.post(
    '/api/v1/auth/totp',
    {
      schema: {
        summary: 'Start turning on the second factor: a new secret and its otpauth:// URI for the authenticator app',
        description:
          'Show the URI as a QR code (or type the secret in), then confirm with a code from the app: POST /api/v1/auth/totp/confirm. ' +
          'Codes are 6 digits, every 30 s (RFC 6238, SHA-1). Refused with 400 when the second factor is on already (an admin can reset it).\n\n' +
          curl('curl -s -b cookies.txt -X POST localhost:3000/api/v1/auth/totp'),
        tags: ['auth'],
        response: {
          200: {
            type: 'object',
            required: ['secret', 'uri'],
            properties: { secret: { type: 'string', description: 'base32' }, uri: { type: 'string' } },
            examples: [{ secret: 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', uri: 'otpauth://totp/citysync:li.gong?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=citysync&algorithm=SHA1&digits=6&period=30' }],
          },
          400: E,
          401: E,
          409: E,
        },
      },
    },
    async (req) => {
      const p = requirePrincipal(req)
      if (p.kind !== 'user') throw userOnly('turn on a second factor', p.kind)
      req.audit!.target = p.username
      if ((await store.getUser(p.username)).totpEnabled) throw new CitysyncError('CITYSYNC_ERR_AUTH_TOTP', ['the second factor is on already; an admin can reset it'])
      return store.startTotp(p.username)
    },
  )

  app.post<{ Body: { code: string } }>(
    '/api/v1/auth/totp/confirm',
    {
      schema: {
        summary: 'Confirm the second factor with a code from the authenticator app; from then on logins need a code',
        description: curl(`curl -s -b cookies.txt -X POST localhost:3000/api/v1/auth/totp/confirm -H 'content-type: application/json' -d '{"code":"492039"}'`),
        tags: ['auth'],
        body: { type: 'object', additionalProperties: false, required: ['code'], properties: { code: { type: 'string', minLength: 6, maxLength: 16 } }, examples: [{ code: '492039' }] },
        response: { 200: { type: 'object', required: ['totpEnabled'], properties: { totpEnabled: { type: 'boolean' } }, examples: [{ totpEnabled: true }] }, 400: E, 401: E, 409: E },
      },
    },
    async (req) => {
      const p = requirePrincipal(req)
      if (p.kind !== 'user') throw userOnly('turn on a second factor', p.kind)
      req.audit!.target = p.username
      const user = await store.confirmTotp(p.username, req.body.code)
      return { totpEnabled: user.totpEnabled }
    },
  )
  return Promise.resolve()
}
