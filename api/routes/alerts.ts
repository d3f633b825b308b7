import { type FastifyInstance } from 'fastify'
import { systemClock } from '../../lib/clock.ts'
import { CitysyncError } from '../../lib/errors.ts'
import { parseDuration } from '../../lib/duration.ts'
import { silenced } from '../../quality/notifier.ts'
import { ALERT_STATES, type AlertState, ALERT_STATUSES, type Alert, type AlertStatus, type Silence, SILENCE_MATCHERS, SyncHealthStore } from '../../quality/store.ts'
import { type ApiDeps } from '../app.ts'
import { actorOf } from '../auth.ts'
import { MAX_PAGE, PAGE_FIELDS, pageOf, pageQuery, slicePage } from '../pagination.ts'

// Alerts raised by the quality service, their acknowledgement, silences, and
// the log of notification deliveries.

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString()
}

export function qualityClock(deps: ApiDeps): { now(): number } {
  return deps.quality?.store.clock ?? systemClock
}

export function syncHealthStore(deps: ApiDeps): SyncHealthStore {
  return deps.quality?.store ?? new SyncHealthStore({ knex: deps.metadata.knex, dialect: deps.metadata.dialect, clock: systemClock })
}

export function alertView(a: Alert, silences: readonly Silence[]): Record<string, unknown> {
  return {
    id: a.id,
    fingerprint: a.fingerprint,
    sourceId: a.sourceId,
    entityId: a.entityId,
    entityKind: a.entityKind,
    state: a.state,
    status: a.status,
    labels: a.labels,
    annotations: a.annotations,
    startsAt: iso(a.startsAt),
    endsAt: iso(a.endsAt),
    acknowledged: a.ackedAt === null ? null : { by: a.ackedBy, at: iso(a.ackedAt), comment: a.ackComment },
    silencedBy: a.status === 'firing' ? (silenced(a, silences)?.id ?? null) : null,
    escalationLevel: a.escalationLevel,
    incidentId: a.incidentId,
  }
}

function silenceView(s: Silence): Record<string, unknown> {
  return { id: s.id, matchers: s.matchers, startsAt: iso(s.startsAt), endsAt: iso(s.endsAt), reason: s.reason, createdBy: s.createdBy, createdAt: iso(s.createdAt) }
}

const ALERT_EXAMPLE = {
  id: 17,
  fingerprint: '3f1c0c5d2a9b8e74',
  sourceId: 'hengqin-parking',
  entityId: null,
  entityKind: null,
  state: 'LATE',
  status: 'firing',
  labels: { alertname: 'SourceLate', sourceId: 'hengqin-parking', state: 'LATE', severity: 'critical', operator: '横琴停车公司', district: '横琴' },
  annotations: { summary: 'no new data for 2h1m of expected time (limit 2h)', source: '横琴口岸停车场平台', delay: '2h1m', maxDelay: '2h', incident: '5', lastEventAt: '2026-11-21T02:00:00.000Z' },
  startsAt: '2026-11-21T04:00:00.000Z',
  endsAt: null,
  acknowledged: { by: '值班员 李工', at: '2026-11-21T04:07:12.000Z', comment: '已电话联系厂商' },
  silencedBy: null,
  escalationLevel: 0,
  incidentId: 5,
}

const ALERT_SCHEMA = {
  $id: 'Alert',
  type: 'object',
  required: ['id', 'fingerprint', 'sourceId', 'entityId', 'state', 'status', 'labels', 'annotations', 'startsAt', 'endsAt', 'acknowledged', 'silencedBy', 'escalationLevel', 'incidentId'],
  properties: {
    id: { type: 'integer' },
    fingerprint: { type: 'string' },
    sourceId: { type: 'string' },
    entityId: { type: ['string', 'null'], description: 'car park, station or terminal; a bike-share area (`row:column` of the grid); null for the whole source' },
    entityKind: { type: ['string', 'null'], description: 'car-park, station, terminal, or area (bike-share balance)' },
    state: { type: 'string', enum: [...ALERT_STATES], description: 'LATE, STALLED, STOPPED, SKEWED (freshness); ACCUMULATION, SHORTAGE (a bike-share area out of balance)' },
    status: { type: 'string', enum: [...ALERT_STATUSES] },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    annotations: { type: 'object', additionalProperties: { type: 'string' } },
    startsAt: { type: 'string', format: 'date-time', description: 'when the condition began' },
    endsAt: { type: ['string', 'null'], format: 'date-time', description: 'when it ended (recovery began); null while firing' },
    acknowledged: {
      type: ['object', 'null'],
      properties: { by: { type: 'string' }, at: { type: 'string', format: 'date-time' }, comment: { type: ['string', 'null'] } },
    },
    silencedBy: { type: ['integer', 'null'], description: 'the silence muting it' },
    escalationLevel: { type: 'integer', description: 'escalation steps taken while unacknowledged' },
    incidentId: { type: ['integer', 'null'] },
  },
  examples: [ALERT_EXAMPLE],
} as const

const SILENCE_EXAMPLE = {
  id: 3,
  matchers: { sourceId: 'hengqin-parking' },
  startsAt: '2026-11-21T04:10:00.000Z',
  endsAt: '2026-11-21T08:00:00.000Z',
  reason: '厂商升级服务器，预计 16:00 恢复',
  createdBy: '值班员 李工',
  createdAt: '2026-11-21T04:10:00.000Z',
}

const SILENCE_SCHEMA = {
  $id: 'Silence',
  type: 'object',
  required: ['id', 'matchers', 'startsAt', 'endsAt', 'reason', 'createdBy', 'createdAt'],
  properties: {
    id: { type: 'integer' },
    matchers: { type: 'object', additionalProperties: { type: 'string' } },
    startsAt: { type: 'string', format: 'date-time' },
    endsAt: { type: 'string', format: 'date-time' },
    reason: { type: 'string' },
    createdBy: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
  },
  examples: [SILENCE_EXAMPLE],
} as const

function curl(text: string): string {
  return `Example:\n\n\`\`\`sh\n${text}\n\`\`\``
}

const ID = { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } } as const

export function alertRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const store = syncHealthStore(deps)
  app.addSchema(ALERT_SCHEMA)
  app.addSchema(SILENCE_SCHEMA)

  app.get<{ Querystring: { status?: AlertStatus; sourceId?: string; state?: AlertState; limit: number; offset: number } }>(
    '/api/v1/alerts',
    {
      schema: {
        summary: 'Sync-health and bike-share balance alerts, newest first (firing and resolved)',
        description: curl("curl -s 'localhost:3000/api/v1/alerts?status=firing'"),
        tags: ['sync health'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: { type: 'string', enum: [...ALERT_STATUSES] },
            sourceId: { type: 'string' },
            state: { type: 'string', enum: [...ALERT_STATES] },
            ...pageQuery(),
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['items', 'total', 'next'],
            properties: { items: { type: 'array', items: { $ref: 'Alert#' } }, ...PAGE_FIELDS },
            examples: [{ items: [ALERT_EXAMPLE], total: 1, next: null }],
          },
        },
      },
    },
    async (req) => {
      const { items, total } = await store.listAlerts(req.query)
      const silences = await store.listSilences(qualityClock(deps).now())
      return pageOf(items.map((a) => alertView(a, silences)), total, req.query)
    },
  )

  app.post<{ Params: { id: number }; Body: { by?: string; comment?: string } }>(
    '/api/v1/alerts/:id/ack',
    {
      schema: {
        summary: 'Acknowledge an alert: stops its escalation and reminders; the incident timeline records who and when',
        description: curl(`curl -s -X POST localhost:3000/api/v1/alerts/17/ack -H 'content-type: application/json' \\\n  -d '{"by":"值班员 李工","comment":"已电话联系厂商"}'`),
        tags: ['sync health'],
        params: ID,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            by: { type: 'string', minLength: 1, maxLength: 100, description: 'ignored when authenticated: the acknowledgement is recorded under the caller' },
            comment: { type: 'string', maxLength: 2000 },
          },
          examples: [{ by: '值班员 李工', comment: '已电话联系厂商' }],
        },
        response: { 200: { $ref: 'Alert#' }, 404: { $ref: 'Error#' } },
      },
    },
    async (req) => {
      const alert = await store.ackAlert(req.params.id, actorOf(req, req.body?.by), req.body?.comment ?? null)
      return alertView(alert, await store.listSilences(qualityClock(deps).now()))
    },
  )

  app.get<{ Querystring: { active?: boolean; limit: number; offset: number } }>(
    '/api/v1/silences',
    {
      schema: {
        summary: 'Silences (active ones with ?active=true)',
        description: curl("curl -s 'localhost:3000/api/v1/silences?active=true'"),
        tags: ['sync health'],
        querystring: { type: 'object', additionalProperties: false, properties: { active: { type: 'boolean' }, ...pageQuery(MAX_PAGE) } },
        response: {
          200: {
            type: 'object',
            required: ['items', 'total', 'next'],
            properties: { items: { type: 'array', items: { $ref: 'Silence#' } }, ...PAGE_FIELDS },
            examples: [{ items: [SILENCE_EXAMPLE], total: 1, next: null }],
          },
        },
      },
    },
    async (req) => slicePage((await store.listSilences(req.query.active === true ? qualityClock(deps).now() : undefined)).map(silenceView), req.query),
  )

  app.post<{ Body: { matchers: Record<string, string>; startsAt?: string; endsAt?: string; duration?: string; reason: string; createdBy?: string } }>(
    '/api/v1/silences',
    {
      schema: {
        summary: 'Silence alerts matching labels until an end time, with a reason (alerts and incidents are still recorded)',
        description:
          'Matchers are label equalities on `sourceId`, `entityId`, `state`, `operator`, `district`, `alertname`, `severity`. Give `endsAt` or `duration`.\n\n' +
          curl(
            `curl -s -X POST localhost:3000/api/v1/silences -H 'content-type: application/json' \\\n  -d '{"matchers":{"sourceId":"hengqin-parking"},"endsAt":"2026-11-21T08:00:00Z","reason":"厂商升级服务器，预计 16:00 恢复","createdBy":"值班员 李工"}'`,
          ),
        tags: ['sync health'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['matchers', 'reason'],
          properties: {
            matchers: {
              type: 'object',
              minProperties: 1,
              additionalProperties: false,
              properties: Object.fromEntries(SILENCE_MATCHERS.map((m) => [m, { type: 'string', minLength: 1 }])),
            },
            startsAt: { type: 'string', format: 'date-time' },
            endsAt: { type: 'string', format: 'date-time' },
            duration: { type: 'string', description: 'instead of endsAt: 30m, 4h, 1d' },
            reason: { type: 'string', minLength: 1, maxLength: 2000 },
            createdBy: { type: 'string', minLength: 1, maxLength: 100, description: 'ignored when authenticated: the silence is recorded under the caller' },
          },
          examples: [{ matchers: { sourceId: 'hengqin-parking' }, endsAt: '2026-11-21T08:00:00Z', reason: '厂商升级服务器，预计 16:00 恢复', createdBy: '值班员 李工' }],
        },
        response: { 201: { $ref: 'Silence#' }, 400: { $ref: 'Error#' } },
      },
    },
    async (req, reply) => {
      const b = req.body
      const now = qualityClock(deps).now()
      const startsAt = b.startsAt === undefined ? now : Date.parse(b.startsAt)
      let endsAt: number
      if (b.endsAt !== undefined) endsAt = Date.parse(b.endsAt)
      else if (b.duration !== undefined) {
        try {
          endsAt = startsAt + parseDuration(b.duration)
        } catch {
          throw new CitysyncError('CITYSYNC_ERR_API_VALIDATION', [`duration ${JSON.stringify(b.duration)} is not a duration such as 30m or 4h`])
        }
      } else throw new CitysyncError('CITYSYNC_ERR_API_VALIDATION', ['a silence needs endsAt or duration'])
      if (!(endsAt > startsAt) || !(endsAt > now)) throw new CitysyncError('CITYSYNC_ERR_API_VALIDATION', ['endsAt must be after startsAt and in the future'])
      const silence = await store.createSilence({ matchers: b.matchers, startsAt, endsAt, reason: b.reason, createdBy: actorOf(req, b.createdBy) })
      return reply.status(201).send(silenceView(silence))
    },
  )

  app.delete<{ Params: { id: number } }>(
    '/api/v1/silences/:id',
    {
      schema: {
        summary: 'End a silence now',
        description: curl('curl -s -X DELETE localhost:3000/api/v1/silences/3'),
        tags: ['sync health'],
        params: ID,
        response: { 200: { $ref: 'Silence#' }, 404: { $ref: 'Error#' } },
      },
    },
    async (req) => silenceView(await store.expireSilence(req.params.id)),
  )

  app.get<{ Querystring: { limit: number } }>(
    '/api/v1/alerts/deliveries',
    {
      schema: {
        summary: 'Notification deliveries, newest first: channel, outcome, attempts, last error',
        description: curl("curl -s 'localhost:3000/api/v1/alerts/deliveries?limit=20'"),
        tags: ['sync health'],
        querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } } },
        response: {
          200: {
            type: 'object',
            required: ['items'],
            properties: {
              items: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'integer' },
                    at: { type: 'string', format: 'date-time' },
                    receiver: { type: 'string' },
                    channel: { type: 'string' },
                    groupKey: { type: 'string' },
                    kind: { type: 'string', enum: ['notify', 'repeat', 'escalation'] },
                    status: { type: 'string', enum: [...ALERT_STATUSES] },
                    outcome: { type: 'string', enum: ['delivered', 'failed'] },
                    attempts: { type: 'integer' },
                    alerts: { type: 'integer' },
                    error: { type: ['string', 'null'] },
                  },
                },
              },
            },
            examples: [
              {
                items: [
                  { id: 9, at: '2026-11-21T04:01:02.000Z', receiver: 'hengqin-ops', channel: 'hengqin-ops/dingtalk', groupKey: '{}/0:{sourceId="hengqin-parking"}', kind: 'notify', status: 'firing', outcome: 'delivered', attempts: 2, alerts: 1, error: null },
                ],
              },
            ],
          },
        },
      },
    },
    async (req) => ({ items: (await store.deliveries(req.query.limit)).map((d) => ({ ...d, at: iso(d.at) })) }),
  )
}
