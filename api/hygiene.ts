import helmet from '@fastify/helmet'
import rateLimit, { type RateLimitOptions } from '@fastify/rate-limit'
import { type FastifyInstance, type FastifyRequest } from 'fastify'
import { CitysyncError } from '../lib/errors.ts'
import { scrubPlates } from '../lib/plate-redaction.ts'

// What every answer of the API gets, registered before any route:
//   - security headers (helmet), with a strict Content Security Policy for the
//     console (plain static JS and CSS under /console/) and its own policy for
//     the Swagger UI at /docs;
//   - CORS: off unless CITYSYNC_CORS_ORIGINS lists origins; preflights from
//     other origins are refused with 403 CITYSYNC_ERR_API_CORS_ORIGIN;
//   - rate limits, per route (`config.rateLimit`): none is global;
//   - plates masked in every JSON, CSV or text answer, except the one route
//     marked `config.clearPlates` (POST /api/v1/plates/reveal) and the
//     OpenAPI document (whose examples are written in the code).

declare module 'fastify' {
  interface FastifyContextConfig {
    /** This route's answer may carry clear plates (only the audited reveal). */
    clearPlates?: boolean
  }
}

export interface HygieneOptions {
  /** Origins (scheme://host[:port]) allowed to call the API from a browser; none by default. */
  corsOrigins?: readonly string[]
  /** Pushes accepted per minute from one client address to one source (default 600). */
  ingestPerMinute?: number
}

export const DEFAULT_INGEST_PER_MINUTE = 600

/** From CITYSYNC_CORS_ORIGINS (comma list) and CITYSYNC_INGEST_RATE_LIMIT (pushes per minute). */
export function hygieneFromEnv(env: Record<string, string | undefined> = process.env): HygieneOptions {
  const origins = (env.CITYSYNC_CORS_ORIGINS ?? '')
    .split(',')
    .map((o) => o.trim().replace(/\/+$/, ''))
    .filter((o) => o !== '')
  for (const o of origins) {
    if (!/^https?:\/\/[^/\s]+$/.test(o)) {
      throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`CITYSYNC_CORS_ORIGINS: ${JSON.stringify(o)} is not an origin like https://console.example.org`])
    }
  }
  const text = env.CITYSYNC_INGEST_RATE_LIMIT?.trim()
  const perMinute = text === undefined || text === '' ? DEFAULT_INGEST_PER_MINUTE : Number(text)
  if (!Number.isSafeInteger(perMinute) || perMinute < 1) {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`CITYSYNC_INGEST_RATE_LIMIT must be a whole number of pushes per minute, got ${JSON.stringify(text)}`])
  }
  return { corsOrigins: origins, ingestPerMinute: perMinute }
}

const CSP_BASE = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:', 'blob:'],
  connectSrc: ["'self'"],
  fontSrc: ["'self'"],
  objectSrc: ["'none'"],
  baseUri: ["'self'"],
  formAction: ["'self'"],
  frameAncestors: ["'none'"],
}

/** The Content-Security-Policy header of every answer but /docs (as helmet writes it). */
export const CONSOLE_CSP = cspText(CSP_BASE)

/**
 * /docs: Swagger UI loads external scripts and styles only, but applies an
 * inline style as it renders, which `style-src 'self'` blocks (seen in Chromium).
 */
export const DOCS_CSP = cspText({ ...CSP_BASE, styleSrc: ["'self'", "'unsafe-inline'"] })

function cspText(directives: Record<string, string[]>): string {
  return Object.entries(directives)
    .map(([name, values]) => `${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} ${values.join(' ')}`)
    .join(';')
}

/** Options for @fastify/swagger-ui: its pages get DOCS_CSP instead of the console's policy. */
export const DOCS_UI_OPTIONS = { transformStaticCSP: (): string => DOCS_CSP }

/** `config.rateLimit` of POST /api/v1/ingest/:sourceId: per source and client address. */
export function ingestRateLimit(options: HygieneOptions | undefined): RateLimitOptions {
  return {
    max: options?.ingestPerMinute ?? DEFAULT_INGEST_PER_MINUTE,
    timeWindow: 60_000,
    keyGenerator: (req: FastifyRequest) => `ingest|${(req.params as { sourceId?: string }).sourceId ?? ''}|${req.ip}`,
  }
}

function windowText(ms: number): string {
  if (ms % 60_000 === 0) return ms === 60_000 ? 'minute' : `${ms / 60_000} minutes`
  return `${Math.round(ms / 1000)} s`
}

const PREFLIGHT_METHODS = 'GET, POST, PUT, PATCH, DELETE'
const PREFLIGHT_HEADERS = 'authorization, content-type, x-citysync-timestamp, x-citysync-signature'
const SCRUBBED_TYPES = /json|csv|text\/plain/

async function hygienePlugin(app: FastifyInstance, options: HygieneOptions): Promise<void> {
  await app.register(helmet, {
    contentSecurityPolicy: { useDefaults: false, directives: CSP_BASE },
    frameguard: { action: 'deny' },
    // Not includeSubDomains: other services may share the parent domain over plain HTTP.
    hsts: { maxAge: 15_552_000, includeSubDomains: false },
  })

  await app.register(rateLimit, {
    global: false,
    errorResponseBuilder: (req, ctx) => {
      const limit = req.routeOptions.config.rateLimit
      const span = typeof limit === 'object' ? limit.timeWindow : undefined
      const window = typeof span === 'number' ? windowText(span) : typeof span === 'string' ? span : 'window'
      return new CitysyncError('CITYSYNC_ERR_API_RATE_LIMITED', [`${ctx.max} per ${window}`, ctx.after])
    },
  })

  const allowed = new Set(options.corsOrigins ?? [])
  app.addHook('onRequest', async (req, reply) => {
    const origin = req.headers.origin
    if (allowed.size > 0) void reply.header('vary', 'Origin')
    if (origin === undefined) return
    const ok = allowed.has(origin)
    if (ok) void reply.header('access-control-allow-origin', origin)
    if (req.method !== 'OPTIONS' || req.headers['access-control-request-method'] === undefined) return
    // A preflight: answered here, before authentication (browsers send no credentials with it).
    if (!ok) throw new CitysyncError('CITYSYNC_ERR_API_CORS_ORIGIN', [origin])
    return reply
      .header('access-control-allow-methods', PREFLIGHT_METHODS)
      .header('access-control-allow-headers', PREFLIGHT_HEADERS)
      .header('access-control-max-age', '600')
      .status(204)
      .send()
  })

  app.addHook('onSend', async (req, reply, payload) => {
    if (typeof payload !== 'string' || req.routeOptions.config?.clearPlates === true) return payload
    if (req.routeOptions.url?.startsWith('/docs') === true) return payload
    if (!SCRUBBED_TYPES.test(String(reply.getHeader('content-type') ?? ''))) return payload
    return scrubPlates(payload)
  })
}

// Registered at the root, not encapsulated: its hooks reach every route (what fastify-plugin does).
Object.assign(hygienePlugin, { [Symbol.for('skip-override')]: true, [Symbol.for('fastify.display-name')]: 'citysync-hygiene' })

export const hygiene = hygienePlugin
