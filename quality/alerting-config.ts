// Where alerts go: receivers (each a list of channels) and routes that pick
// receivers by operator, district, source, state or severity, with grouping,
// repeat interval, resolved notices and escalation. Read from a YAML or JSON
// file (CITYSYNC_ALERTING_FILE, or `citysync quality --alerting FILE`);
// `${NAME}` in it is replaced by the environment variable NAME, so robot
// secrets and SMTP passwords stay out of the file.

import { readFileSync } from 'node:fs'
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js'
import { parse as parseYaml } from 'yaml'
import { isDuration, parseDuration } from '../lib/duration.ts'
import { CitysyncError } from '../lib/errors.ts'
import { FRESHNESS_STATES } from './evaluate.ts'
import { BALANCE_STATES } from './store.ts'

/** States a route may match: freshness, and bike-share balance (ACCUMULATION, SHORTAGE). */
const ROUTE_STATES: readonly string[] = [...FRESHNESS_STATES, ...BALANCE_STATES]

export const CHANNEL_TYPES = ['webhook', 'dingtalk', 'wecom', 'feishu', 'email'] as const
export type ChannelType = (typeof CHANNEL_TYPES)[number]

export interface WebhookChannel {
  type: 'webhook'
  name: string
  url: string
  headers?: Record<string, string>
}
export interface DingTalkChannel {
  type: 'dingtalk'
  name: string
  /** The robot's webhook URL with its access_token. */
  url: string
  /** The robot's signing secret (SEC…), when it has 加签 enabled. */
  secret?: string
  atMobiles?: string[]
  atAll?: boolean
}
export interface WeComChannel {
  type: 'wecom'
  name: string
  /** The robot's webhook URL with its key. */
  url: string
}
export interface FeishuChannel {
  type: 'feishu'
  name: string
  url: string
  /** The bot's signing secret, when signature verification is on. */
  secret?: string
}
export interface EmailChannel {
  type: 'email'
  name: string
  smtp: { host: string; port: number; secure?: boolean; user?: string; pass?: string; requireTLS?: boolean; rejectUnauthorized?: boolean }
  from: string
  to: string[]
}
export type ChannelConfig = WebhookChannel | DingTalkChannel | WeComChannel | FeishuChannel | EmailChannel

export interface Receiver {
  name: string
  channels: ChannelConfig[]
}

export const MATCH_LABELS = ['operator', 'district', 'sourceId', 'state', 'severity', 'entityKind'] as const
export type MatchLabel = (typeof MATCH_LABELS)[number]

export interface Route {
  /** Every named label must equal one of the values; an empty match takes everything. */
  match: Partial<Record<MatchLabel, string[]>>
  receivers: string[]
  groupBy: string[]
  groupIntervalMs: number
  repeatIntervalMs: number
  sendResolved: boolean
  /** Unacknowledged firing alerts also go to these receivers once they have fired this long. */
  escalate: { afterMs: number; receivers: string[] }[]
  /** Keep looking for further matching routes. */
  continue: boolean
}

export interface AlertingConfig {
  /** Base URL of the API, for links in notifications. */
  externalUrl: string
  /** Zone in which notifications write times. */
  timezone: string
  receivers: Map<string, Receiver>
  routes: Route[]
  /** An alert that comes back within this time of its incident's recovery reopens the incident. */
  reopenWindowMs: number
  delivery: { attempts: number; backoffMs: number; timeoutMs: number; concurrency: number }
}

const DURATION = { type: 'string', format: 'citysync-duration' } as const
const STRINGS = { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] } as const
const NAME = { type: 'string', minLength: 1, maxLength: 100 } as const
const URL_FIELD = { type: 'string', pattern: '^https?://' } as const

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    externalUrl: URL_FIELD,
    timezone: { type: 'string' },
    reopenWindow: DURATION,
    delivery: {
      type: 'object',
      additionalProperties: false,
      properties: {
        attempts: { type: 'integer', minimum: 1, maximum: 20 },
        backoff: DURATION,
        timeout: DURATION,
        concurrency: { type: 'integer', minimum: 1, maximum: 64 },
      },
    },
    receivers: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'channels'],
        properties: {
          name: NAME,
          channels: {
            type: 'array',
            minItems: 1,
            items: {
              type: 'object',
              required: ['type'],
              properties: { type: { enum: [...CHANNEL_TYPES] } },
              allOf: [
                {
                  if: { properties: { type: { const: 'webhook' } } },
                  then: { additionalProperties: false, required: ['url'], properties: { type: {}, name: NAME, url: URL_FIELD, headers: { type: 'object', additionalProperties: { type: 'string' } } } },
                },
                {
                  if: { properties: { type: { const: 'dingtalk' } } },
                  then: {
                    additionalProperties: false,
                    required: ['url'],
                    properties: { type: {}, name: NAME, url: URL_FIELD, secret: { type: 'string' }, atMobiles: { type: 'array', items: { type: 'string' } }, atAll: { type: 'boolean' } },
                  },
                },
                {
                  if: { properties: { type: { const: 'wecom' } } },
                  then: { additionalProperties: false, required: ['url'], properties: { type: {}, name: NAME, url: URL_FIELD } },
                },
                {
                  if: { properties: { type: { const: 'feishu' } } },
                  then: { additionalProperties: false, required: ['url'], properties: { type: {}, name: NAME, url: URL_FIELD, secret: { type: 'string' } } },
                },
                {
                  if: { properties: { type: { const: 'email' } } },
                  then: {
                    additionalProperties: false,
                    required: ['smtp', 'from', 'to'],
                    properties: {
                      type: {},
                      name: NAME,
                      from: { type: 'string', minLength: 3 },
                      to: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^[^\\s@]+@[^\\s@]+$' } },
                      smtp: {
                        type: 'object',
                        additionalProperties: false,
                        required: ['host', 'port'],
                        properties: {
                          host: { type: 'string', minLength: 1 },
                          port: { type: 'integer', minimum: 1, maximum: 65535 },
                          secure: { type: 'boolean' },
                          user: { type: 'string' },
                          pass: { type: 'string' },
                          requireTLS: { type: 'boolean' },
                          rejectUnauthorized: { type: 'boolean' },
                        },
                      },
                    },
                  },
                },
              ],
            },
          },
        },
      },
    },
    routes: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['receivers'],
        properties: {
          match: {
            type: 'object',
            additionalProperties: false,
            properties: Object.fromEntries(MATCH_LABELS.map((l) => [l, STRINGS])),
          },
          receivers: { type: 'array', minItems: 1, items: NAME },
          groupBy: { type: 'array', items: { type: 'string' } },
          groupInterval: DURATION,
          repeatInterval: DURATION,
          sendResolved: { type: 'boolean' },
          continue: { type: 'boolean' },
          escalate: {
            type: 'array',
            items: { type: 'object', additionalProperties: false, required: ['after', 'receivers'], properties: { after: DURATION, receivers: { type: 'array', minItems: 1, items: NAME } } },
          },
        },
      },
    },
  },
} as const

const ajv = new Ajv2020({ allErrors: true, strict: false, formats: { 'citysync-duration': (s: string) => isDuration(s) } })
const validate = ajv.compile(SCHEMA)

export const ALERTING_DEFAULTS = {
  groupBy: ['sourceId'],
  groupInterval: '1m',
  repeatInterval: '4h',
  reopenWindow: '1h',
  attempts: 5,
  backoff: '2s',
  timeout: '10s',
  concurrency: 4,
} as const

/** No receivers: alerts and incidents are recorded, nothing is sent. */
export function emptyAlertingConfig(): AlertingConfig {
  return parseAlertingConfig({})
}

/** Replaces `${NAME}` with the environment variable; a missing one is a configuration error. */
export function interpolateEnv(text: string, env: NodeJS.ProcessEnv): string {
  const missing: string[] = []
  const out = text.replace(/\$\{([A-Z_][A-Z0-9_]*)\}/g, (_m, name: string) => {
    const v = env[name]
    if (v === undefined) missing.push(name)
    return v ?? ''
  })
  if (missing.length > 0) throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`alerting: environment variable(s) ${[...new Set(missing)].join(', ')} not set`])
  return out
}

export function loadAlertingConfig(path: string, env: NodeJS.ProcessEnv = process.env): AlertingConfig {
  let raw: unknown
  try {
    raw = parseYaml(interpolateEnv(readFileSync(path, 'utf8'), env), { uniqueKeys: true })
  } catch (err) {
    if (err instanceof CitysyncError) throw err
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${path}: ${(err as Error).message}`], { cause: err })
  }
  return parseAlertingConfig(raw ?? {}, path)
}

function describe(errors: readonly ErrorObject[]): string {
  const seen = new Set<string>()
  for (const e of errors) {
    if (e.keyword === 'if') continue
    const path = e.instancePath.replace(/^\//, '').replace(/\/(\d+)/g, '[$1]').replace(/\//g, '.') || '(root)'
    const params = e.params as Record<string, unknown>
    if (e.keyword === 'additionalProperties') seen.add(`${path}.${String(params.additionalProperty)}: is not an allowed property`)
    else if (e.keyword === 'required') seen.add(`${path}.${String(params.missingProperty)}: is required`)
    else seen.add(`${path}: ${e.message ?? 'is invalid'}`)
  }
  return [...seen].join('; ')
}

function list(v: string | string[] | undefined): string[] | undefined {
  return v === undefined ? undefined : Array.isArray(v) ? v : [v]
}

type RawRoute = {
  match?: Partial<Record<MatchLabel, string | string[]>>
  receivers: string[]
  groupBy?: string[]
  groupInterval?: string
  repeatInterval?: string
  sendResolved?: boolean
  continue?: boolean
  escalate?: { after: string; receivers: string[] }[]
}

export function parseAlertingConfig(raw: unknown, origin = 'alerting'): AlertingConfig {
  if (!validate(raw)) throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${origin}: ${describe(validate.errors ?? [])}`])
  const cfg = raw as {
    externalUrl?: string
    timezone?: string
    reopenWindow?: string
    delivery?: { attempts?: number; backoff?: string; timeout?: string; concurrency?: number }
    receivers?: { name: string; channels: (Omit<ChannelConfig, 'name'> & { name?: string })[] }[]
    routes?: RawRoute[]
  }
  const receivers = new Map<string, Receiver>()
  const problems: string[] = []
  for (const r of cfg.receivers ?? []) {
    if (receivers.has(r.name)) problems.push(`receiver ${r.name} is defined twice`)
    receivers.set(r.name, { name: r.name, channels: r.channels.map((c, i) => ({ ...c, name: c.name ?? `${r.name}/${c.type}${i > 0 ? `-${i}` : ''}` }) as ChannelConfig) })
  }
  const routes: Route[] = (cfg.routes ?? []).map((r, i) => {
    for (const name of [...r.receivers, ...(r.escalate ?? []).flatMap((e) => e.receivers)]) {
      if (!receivers.has(name)) problems.push(`routes[${i}]: unknown receiver ${name}`)
    }
    const states = list(r.match?.state)
    for (const s of states ?? []) if (!ROUTE_STATES.includes(s)) problems.push(`routes[${i}].match.state: unknown state ${s}`)
    const match: Route['match'] = {}
    for (const l of MATCH_LABELS) {
      const v = list(r.match?.[l])
      if (v !== undefined) match[l] = v
    }
    return {
      match,
      receivers: r.receivers,
      groupBy: r.groupBy ?? [...ALERTING_DEFAULTS.groupBy],
      groupIntervalMs: parseDuration(r.groupInterval ?? ALERTING_DEFAULTS.groupInterval),
      repeatIntervalMs: parseDuration(r.repeatInterval ?? ALERTING_DEFAULTS.repeatInterval),
      sendResolved: r.sendResolved !== false,
      escalate: (r.escalate ?? []).map((e) => ({ afterMs: parseDuration(e.after), receivers: e.receivers })).sort((a, b) => a.afterMs - b.afterMs),
      continue: r.continue === true,
    }
  })
  if (problems.length > 0) throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`${origin}: ${problems.join('; ')}`])
  return {
    externalUrl: (cfg.externalUrl ?? 'http://127.0.0.1:3000').replace(/\/+$/, ''),
    timezone: cfg.timezone ?? 'Asia/Shanghai',
    receivers,
    routes,
    reopenWindowMs: parseDuration(cfg.reopenWindow ?? ALERTING_DEFAULTS.reopenWindow),
    delivery: {
      attempts: cfg.delivery?.attempts ?? ALERTING_DEFAULTS.attempts,
      backoffMs: parseDuration(cfg.delivery?.backoff ?? ALERTING_DEFAULTS.backoff),
      timeoutMs: parseDuration(cfg.delivery?.timeout ?? ALERTING_DEFAULTS.timeout),
      concurrency: cfg.delivery?.concurrency ?? ALERTING_DEFAULTS.concurrency,
    },
  }
}

/** The routes an alert's labels match, in order (first match, then `continue`). */
export function matchRoutes(config: AlertingConfig, labels: Record<string, string>): Route[] {
  const out: Route[] = []
  for (const r of config.routes) {
    const ok = MATCH_LABELS.every((l) => r.match[l]?.includes(labels[l] ?? '') !== false)
    if (!ok) continue
    out.push(r)
    if (!r.continue) break
  }
  return out
}

/** The alerting file named by CITYSYNC_ALERTING_FILE (or `path`), else no receivers. */
export function alertingFromEnv(env: NodeJS.ProcessEnv = process.env, path?: string): AlertingConfig {
  const file = path ?? (env.CITYSYNC_ALERTING_FILE?.trim() || undefined)
  return file === undefined ? emptyAlertingConfig() : loadAlertingConfig(file, env)
}
