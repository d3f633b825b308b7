import { type Permission } from '../lib/auth/permissions.ts'

// What every route needs, in one place. buildApp refuses to start when a
// route is registered without an entry here (api/auth.ts, onRoute), so a new
// route is closed until someone decides who may call it.
//
//   'public'         no credential needed
//   'signed'         verifies its own signature (push ingest); no user credential
//   'authenticated'  any valid credential (one's own session, password, second factor)
//   <permission>     a credential whose role (and token scopes) grant it (lib/auth/permissions.ts)
//
// Keys are `METHOD URL` exactly as the route is declared; a key ending in '*'
// covers every URL starting with what precedes it. HEAD follows GET.

export type RouteAccess = 'public' | 'signed' | 'authenticated' | Permission

export const ROUTE_PERMISSIONS: Readonly<Record<string, RouteAccess>> = {
  // Health, metrics, OpenAPI, the console's static files
  'GET /healthz': 'public',
  'GET /readyz': 'public',
  'GET /metrics': 'public',
  'GET /docs*': 'public',
  'GET /': 'public',
  'GET /console': 'public',
  'GET /console/*': 'public',

  // Login and one's own account
  'POST /api/v1/auth/login': 'public',
  'POST /api/v1/auth/logout': 'authenticated',
  'GET /api/v1/auth/me': 'authenticated',
  'POST /api/v1/auth/password': 'authenticated',
  'POST /api/v1/auth/totp': 'authenticated',
  'POST /api/v1/auth/totp/confirm': 'authenticated',

  // Users, API tokens, audit log, account review
  'GET /api/v1/users': 'users:admin',
  'POST /api/v1/users': 'users:admin',
  'GET /api/v1/users/:username': 'users:admin',
  'PATCH /api/v1/users/:username': 'users:admin',
  'DELETE /api/v1/users/:username': 'users:admin',
  'GET /api/v1/tokens': 'users:admin',
  'POST /api/v1/tokens': 'users:admin',
  'DELETE /api/v1/tokens/:id': 'users:admin',
  'GET /api/v1/audit': 'audit:read',
  'GET /api/v1/reports/account-review': 'users:admin',

  // Data sources: reading; operating (check, deploy, pause, resume, restart,
  // cursor); defining (add, replace, remove: configurations with credentials)
  'GET /api/v1/sources': 'sources:read',
  'GET /api/v1/sources/:id': 'sources:read',
  'GET /api/v1/sources/:id/status': 'sources:read',
  'GET /api/v1/sources/:id/cursor': 'sources:read',
  'GET /api/v1/sources/:id/errors': 'sources:read',
  'POST /api/v1/sources/:id/check': 'sources:write',
  'POST /api/v1/sources/:id/deploy': 'sources:write',
  'POST /api/v1/sources/:id/pause': 'sources:write',
  'POST /api/v1/sources/:id/resume': 'sources:write',
  'POST /api/v1/sources/:id/restart': 'sources:write',
  'DELETE /api/v1/sources/:id/cursor': 'sources:write',
  'POST /api/v1/sources': 'sources:admin',
  'PUT /api/v1/sources/:id': 'sources:admin',
  'DELETE /api/v1/sources/:id': 'sources:admin',

  // Push ingest checks the source's own HMAC signature
  'POST /api/v1/ingest/:sourceId': 'signed',

  // Sync health
  'GET /api/v1/freshness': 'health:read',
  'GET /api/v1/freshness/:sourceId': 'health:read',
  'GET /api/v1/alerts': 'health:read',
  'GET /api/v1/alerts/deliveries': 'health:read',
  'POST /api/v1/alerts/:id/ack': 'alerts:write',
  'GET /api/v1/silences': 'health:read',
  'POST /api/v1/silences': 'alerts:write',
  'DELETE /api/v1/silences/:id': 'alerts:write',
  'GET /api/v1/incidents': 'health:read',
  'GET /api/v1/incidents/:id': 'health:read',
  'PATCH /api/v1/incidents/:id': 'incidents:write',

  // Reports
  'GET /api/v1/reports/sync': 'reports:read',
  'GET /api/v1/reports/onboarding': 'reports:read',
  'GET /api/v1/reports/archive': 'reports:read',

  // County feeds
  'GET /api/v1/county/onboarding': 'sources:read',
  'GET /api/v1/county/onboarding/:lotId': 'sources:read',
  'PUT /api/v1/county/onboarding/:lotId': 'county:write',
  'POST /api/v1/county/:sourceId/files': 'county:write',

  // Analytics and analyst SQL
  'GET /api/v1/analytics/*': 'analytics:read',
  'POST /api/v1/analytics/sql': 'analytics:sql',

  // Personal data: the clear plate behind a masked one (admins; every call audited)
  'POST /api/v1/plates/reveal': 'plates:reveal',
}

const exact = new Map<string, RouteAccess>()
const prefixes: [method: string, prefix: string, access: RouteAccess][] = []
for (const [key, access] of Object.entries(ROUTE_PERMISSIONS)) {
  const space = key.indexOf(' ')
  const method = key.slice(0, space)
  const url = key.slice(space + 1)
  if (url.endsWith('*')) prefixes.push([method, url.slice(0, -1), access])
  else exact.set(key, access)
}
// Longest prefix first, so a narrower family can override a wider one.
prefixes.sort((a, b) => b[1].length - a[1].length)

/** The access a route needs, or undefined when the table has no entry for it. */
export function routeAccess(method: string, url: string): RouteAccess | undefined {
  const m = method.toUpperCase() === 'HEAD' ? 'GET' : method.toUpperCase()
  const hit = exact.get(`${m} ${url}`)
  if (hit !== undefined) return hit
  for (const [pm, prefix, access] of prefixes) if (pm === m && url.startsWith(prefix)) return access
  return undefined
}
