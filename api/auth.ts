import cookie from '@fastify/cookie'
import { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { type ActorKind } from '../lib/auth/audit.ts'
import { checkBootstrapToken } from '../lib/auth/bootstrap.ts'
import { can, type Permission, type Role, tokenCan } from '../lib/auth/permissions.ts'
import { AuthStore, type LockoutPolicy, type SessionLimits } from '../lib/auth/store.ts'
import { parseCredential, sameSecret } from '../lib/auth/tokens.ts'
import { type Clock } from '../lib/clock.ts'
import { parseDuration } from '../lib/duration.ts'
import { CitysyncError, errorMessage } from '../lib/errors.ts'
import { type ApiDeps } from './app.ts'
import { changeSnapshots } from './audit-trail.ts'
import { type RouteAccess, routeAccess } from './route-permissions.ts'

// Who is calling, and may they? Every route's need is declared in
// api/route-permissions.ts; this plugin
//   - refuses to register a route without an entry (onRoute),
//   - finds the principal behind the request: an API token or a session
//     token as `Authorization: Bearer …`, the session cookie, or the
//     bootstrap token while no enabled admin exists (onRequest, before the
//     body is read: an unauthenticated caller learns nothing about its body),
//   - answers 401 CITYSYNC_ERR_AUTH_REQUIRED or 403 CITYSYNC_ERR_AUTH_FORBIDDEN,
//   - writes one audit row for every request under /api/v1 that is not a GET
//     or HEAD (signed pushes excepted: they are data, logged by the ingest
//     path), with before/after for configuration changes (api/audit-trail.ts).
//     A route that writes its own row (so that it can refuse to answer when
//     the row cannot be written) sets `req.audit = null`.

export const SESSION_COOKIE = 'citysync_session'

export interface Principal {
  kind: 'user' | 'token' | 'bootstrap'
  /** A user's name; `token:<name>` for an API token; `bootstrap`. Recorded as the actor of changes. */
  username: string
  role: Role
  tokenId?: string
  sessionId?: string
  /** An API token's scopes (null: all of its role's permissions). */
  scopes?: readonly Permission[] | null
  via: 'bearer' | 'cookie'
}

/** What a route adds to its audit row. */
export interface AuditContext {
  target?: string
  detail?: Record<string, unknown>
  before?: unknown
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null
    audit: AuditContext | null
  }
}

export interface AuthSettings {
  /** The master key's encryption key: seals TOTP secrets. */
  encKey?: Buffer | undefined
  /** CITYSYNC_BOOTSTRAP_TOKEN: an admin credential while no enabled admin user exists. */
  bootstrapToken?: string | undefined
  clock?: Clock | undefined
  sessions?: Partial<SessionLimits> | undefined
  lockout?: Partial<LockoutPolicy> | undefined
  /** Logins per address and window (the rate limiter applies it to POST /api/v1/auth/login). */
  loginRateLimit?: { max: number; timeWindow: number | string } | undefined
  /** Set the Secure attribute on the session cookie (CITYSYNC_COOKIE_SECURE; default: when the request came over HTTPS). */
  secureCookie?: boolean | undefined
}

function blank(v: string | undefined): string | undefined {
  return v !== undefined && v.trim() !== '' ? v.trim() : undefined
}

function envDuration(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = blank(env[name])
  if (raw === undefined) return undefined
  try {
    const ms = parseDuration(raw)
    if (ms < 60_000) throw new Error('too short')
    return ms
  } catch {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${name}: a duration of at least 1m such as 30m or 12h, got ${JSON.stringify(raw)}`])
  }
}

/** CITYSYNC_BOOTSTRAP_TOKEN, CITYSYNC_SESSION_IDLE, CITYSYNC_SESSION_MAX, CITYSYNC_COOKIE_SECURE. */
export function authSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): AuthSettings {
  const idleMs = envDuration(env, 'CITYSYNC_SESSION_IDLE')
  const absoluteMs = envDuration(env, 'CITYSYNC_SESSION_MAX')
  const secure = blank(env.CITYSYNC_COOKIE_SECURE)?.toLowerCase()
  return {
    bootstrapToken: checkBootstrapToken(blank(env.CITYSYNC_BOOTSTRAP_TOKEN)),
    sessions: { ...(idleMs !== undefined ? { idleMs } : {}), ...(absoluteMs !== undefined ? { absoluteMs } : {}) },
    ...(secure !== undefined ? { secureCookie: secure === 'on' || secure === 'true' || secure === '1' } : {}),
  }
}

export function principalCan(p: Principal, permission: Permission): boolean {
  return p.kind === 'token' ? tokenCan(p.role, p.scopes ?? null, permission) : can(p.role, permission)
}

/** Who did it: the authenticated principal; what the body claims only where no one is authenticated. */
export function actorOf(req: FastifyRequest, claimed?: string | null): string {
  return req.principal?.username ?? claimed ?? 'api'
}

export function requirePrincipal(req: FastifyRequest): Principal {
  if (req.principal === null) throw new CitysyncError('CITYSYNC_ERR_AUTH_REQUIRED', ['no credential'])
  return req.principal
}

export interface DeclaredRoute {
  method: string
  url: string
  access: RouteAccess
}

const DECLARED = new WeakMap<FastifyInstance, DeclaredRoute[]>()

/** Every route registered on `app` since installAuth, with the access it was given. */
export function declaredRoutes(app: FastifyInstance): readonly DeclaredRoute[] {
  return DECLARED.get(app) ?? []
}

function accessOf(req: FastifyRequest): RouteAccess | undefined {
  const url = req.routeOptions.url
  return url === undefined ? undefined : routeAccess(req.method, url)
}

function credentialOf(req: FastifyRequest): { text: string; via: 'bearer' | 'cookie' } | undefined {
  const header = req.headers.authorization
  if (header !== undefined && header !== '') {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
    if (m === null) throw new CitysyncError('CITYSYNC_ERR_AUTH_REQUIRED', ['the Authorization header must be "Bearer <token>"'])
    return { text: m[1]!, via: 'bearer' }
  }
  const fromCookie = req.cookies?.[SESSION_COOKIE]
  return fromCookie !== undefined && fromCookie !== '' ? { text: fromCookie, via: 'cookie' } : undefined
}

// A browser sends the session cookie by itself; SameSite=Strict keeps it off
// cross-site requests, and a changing request whose Origin is another site is
// refused here too.
function crossSite(req: FastifyRequest): boolean {
  if (req.headers['sec-fetch-site'] === 'cross-site') return true
  const origin = req.headers.origin
  if (origin === undefined || origin === 'null') return origin === 'null'
  try {
    const o = new URL(origin)
    return o.host !== new URL(`${o.protocol}//${req.headers.host ?? ''}`).host
  } catch {
    return true
  }
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS'])

export function setSessionCookie(reply: FastifyReply, req: FastifyRequest, token: string, expiresAt: number, secure: boolean | undefined): void {
  void reply.setCookie(SESSION_COOKIE, token, {
    httpOnly: true,
    sameSite: 'strict',
    path: '/',
    secure: secure ?? req.protocol === 'https',
    expires: new Date(expiresAt),
  })
}

export function clearSessionCookie(reply: FastifyReply): void {
  void reply.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'strict' })
}

function actorKind(p: Principal | null): ActorKind | null {
  return p === null ? null : p.kind
}

function jsonOf(payload: unknown, contentType: unknown): unknown {
  if (typeof payload !== 'string' || typeof contentType !== 'string' || !contentType.includes('json')) return undefined
  try {
    return JSON.parse(payload) as unknown
  } catch {
    return undefined
  }
}

/**
 * Installs the auth hooks on the root instance; call before any route is
 * registered (the onRoute check only sees routes added after it).
 */
export async function installAuth(app: FastifyInstance, deps: ApiDeps): Promise<{ store: AuthStore; settings: AuthSettings }> {
  const given = Object.fromEntries(Object.entries(deps.auth ?? {}).filter(([, v]) => v !== undefined)) as AuthSettings
  const settings: AuthSettings = { ...authSettingsFromEnv(), ...given }
  checkBootstrapToken(settings.bootstrapToken)
  const store = new AuthStore({
    knex: deps.metadata.knex,
    dialect: deps.metadata.dialect,
    clock: settings.clock,
    encKey: settings.encKey,
    sessions: settings.sessions,
    lockout: settings.lockout,
  })
  const log = deps.logger.child({ role: 'auth' })
  const snapshots = changeSnapshots(deps)

  if (!app.hasRequestDecorator('cookies')) await app.register(cookie)
  app.decorateRequest('principal', null)
  app.decorateRequest('audit', null)

  const declared: DeclaredRoute[] = []
  DECLARED.set(app, declared)
  app.addHook('onRoute', (route) => {
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) {
      if (method === 'OPTIONS') continue
      const access = routeAccess(method, route.url)
      if (access === undefined) throw new CitysyncError('CITYSYNC_ERR_AUTH_ROUTE_UNDECLARED', [`${method} ${route.url}`])
      declared.push({ method, url: route.url, access })
    }
  })

  async function resolve(req: FastifyRequest): Promise<Principal> {
    const cred = credentialOf(req)
    if (cred === undefined) throw new CitysyncError('CITYSYNC_ERR_AUTH_REQUIRED', ['send Authorization: Bearer <API token>, or log in (POST /api/v1/auth/login)'])
    const parsed = parseCredential(cred.text)
    if (parsed?.kind === 'api' && cred.via === 'bearer') {
      const t = await store.resolveToken(parsed)
      if (t !== undefined) return { kind: 'token', username: `token:${t.name}`, role: t.role, tokenId: t.id, scopes: t.scopes, via: cred.via }
    } else if (parsed?.kind === 'session') {
      const s = await store.resolveSession(parsed)
      if (s !== undefined) return { kind: 'user', username: s.username, role: s.role, sessionId: s.id, via: cred.via }
    } else if (parsed === undefined && cred.via === 'bearer' && settings.bootstrapToken !== undefined && sameSecret(cred.text, settings.bootstrapToken)) {
      if (await store.hasEnabledAdmin()) {
        throw new CitysyncError('CITYSYNC_ERR_AUTH_REQUIRED', ['the bootstrap token stops working once an enabled admin user exists; log in as that user'])
      }
      return { kind: 'bootstrap', username: 'bootstrap', role: 'admin', via: cred.via }
    }
    throw new CitysyncError('CITYSYNC_ERR_AUTH_REQUIRED', ['the credential is unknown, expired or revoked'])
  }

  app.addHook('onRequest', async (req) => {
    req.audit = {}
    const access = accessOf(req)
    if (access === undefined || access === 'public' || access === 'signed') return
    const principal = await resolve(req)
    req.principal = principal
    if (principal.via === 'cookie' && !SAFE.has(req.method) && crossSite(req)) {
      throw new CitysyncError('CITYSYNC_ERR_AUTH_FORBIDDEN', [principal.username, principal.role, 'same-site requests (a cross-site request carried the session cookie)'])
    }
    if (access === 'authenticated') return
    if (!principalCan(principal, access)) throw new CitysyncError('CITYSYNC_ERR_AUTH_FORBIDDEN', [principal.username, principal.role, access])
  })

  const audited = (req: FastifyRequest): boolean =>
    !SAFE.has(req.method) && req.url.startsWith('/api/v1/') && accessOf(req) !== 'signed' && req.audit !== null

  app.addHook('preHandler', async (req) => {
    if (!audited(req)) return
    const snap = snapshots[`${req.method} ${req.routeOptions.url ?? ''}`]
    if (snap?.before !== undefined) req.audit!.before = await snap.before(req)
  })

  app.addHook('onSend', async (req, reply, payload) => {
    if (!audited(req)) return payload
    try {
      const route = req.routeOptions.url ?? null
      const ctx = req.audit!
      const snap = route === null ? undefined : snapshots[`${req.method} ${route}`]
      const ok = reply.statusCode < 400
      const response = snap !== undefined && ok ? jsonOf(payload, reply.getHeader('content-type')) : undefined
      const detail: Record<string, unknown> = { ...ctx.detail }
      if (snap !== undefined && ok) {
        if (snap.before !== undefined) detail.before = ctx.before ?? null
        if (snap.after !== undefined) detail.after = await snap.after(req, response)
      }
      if (!ok) {
        const error = jsonOf(payload, reply.getHeader('content-type')) as { code?: unknown } | undefined
        if (typeof error?.code === 'string') detail.error = error.code
      }
      const params = Object.values((req.params ?? {}) as Record<string, string>).filter((v) => typeof v === 'string' && v !== '')
      const target = ctx.target ?? snap?.target?.(req, response) ?? (params.length > 0 ? params.join('/') : null)
      const p = req.principal
      await store.audit.append({
        actor: p?.username ?? null,
        actorKind: actorKind(p),
        role: p?.role ?? null,
        action: `${req.method} ${route ?? req.url.split('?')[0]}`,
        method: req.method,
        route,
        target,
        status: reply.statusCode,
        ip: req.ip,
        userAgent: req.headers['user-agent'] ?? null,
        detail: Object.keys(detail).length > 0 ? detail : null,
      })
    } catch (err) {
      // The change is made; losing its audit row is an operational alarm, not a reason to hide the answer.
      log.error({ err: errorMessage(err), method: req.method, url: req.routeOptions.url }, 'audit row not written')
    }
    return payload
  })

  return { store, settings }
}
