import { type FastifyInstance } from 'fastify'
import { isTimeZone } from '../../lib/local-time.ts'
import { CitysyncError } from '../../lib/errors.ts'
import { ledgerCsv, ledgerRows, ledgerXlsx } from '../../quality/incident-export.ts'
import { type Alert, type Incident, type IncidentEvent, INCIDENT_STATUSES, type IncidentStatus } from '../../quality/store.ts'
import { type ApiDeps } from '../app.ts'
import { actorOf } from '../auth.ts'
import { PAGE_FIELDS, pageOf, pageQuery } from '../pagination.ts'
import { alertView, qualityClock, syncHealthStore } from './alerts.ts'

// The incident ledger (故障台账): every fault with its occurrence time, scope,
// handling timeline, recovery time and root cause; opened and updated by the
// quality service, handled and closed by people. Exports as CSV or XLSX.

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString()
}

function incidentView(i: Incident): Record<string, unknown> {
  return {
    id: i.id,
    sourceId: i.sourceId,
    sourceName: i.sourceName,
    operator: i.operator,
    district: i.district,
    status: i.status,
    title: i.title,
    occurredAt: iso(i.occurredAt),
    recoveredAt: iso(i.recoveredAt),
    closedAt: iso(i.closedAt),
    durationSeconds: i.recoveredAt === null ? null : Math.round((i.recoveredAt - i.occurredAt) / 1000),
    scope: i.scope,
    rootCause: i.rootCause,
    assignee: i.assignee,
    updatedAt: iso(i.updatedAt),
    version: i.version,
  }
}

function eventView(e: IncidentEvent): Record<string, unknown> {
  return { at: iso(e.at), actor: e.actor, kind: e.kind, message: e.message, detail: e.detail }
}

const INCIDENT_EXAMPLE = {
  id: 5,
  sourceId: 'hengqin-parking',
  sourceName: '横琴口岸停车场平台',
  operator: '横琴停车公司',
  district: '横琴',
  status: 'recovered',
  title: '横琴口岸停车场平台: LATE',
  occurredAt: '2026-11-21T04:00:00.000Z',
  recoveredAt: '2026-11-21T05:00:00.000Z',
  closedAt: null,
  durationSeconds: 3600,
  scope: { entities: ['P001', 'P002'], entityCount: 2, states: ['LATE'], expectedMissing: 412 },
  rootCause: null,
  assignee: '李工',
  updatedAt: '2026-11-21T05:15:00.000Z',
  version: 4,
}

const INCIDENT_SCHEMA = {
  $id: 'Incident',
  type: 'object',
  required: ['id', 'sourceId', 'status', 'title', 'occurredAt', 'recoveredAt', 'closedAt', 'scope', 'rootCause', 'version'],
  properties: {
    id: { type: 'integer' },
    sourceId: { type: 'string' },
    sourceName: { type: ['string', 'null'] },
    operator: { type: ['string', 'null'] },
    district: { type: ['string', 'null'] },
    status: { type: 'string', enum: [...INCIDENT_STATUSES], description: 'open (alerts firing), recovered (data back), closed (root cause recorded)' },
    title: { type: 'string' },
    occurredAt: { type: 'string', format: 'date-time', description: 'when the fault began' },
    recoveredAt: { type: ['string', 'null'], format: 'date-time', description: 'when data came back' },
    closedAt: { type: ['string', 'null'], format: 'date-time' },
    durationSeconds: { type: ['integer', 'null'] },
    scope: {
      type: 'object',
      required: ['entities', 'entityCount', 'states', 'expectedMissing'],
      properties: {
        entities: { type: 'array', items: { type: 'string' }, description: 'entities affected (at most 200 listed); empty: the whole source' },
        entityCount: { type: 'integer' },
        states: { type: 'array', items: { type: 'string' } },
        expectedMissing: { type: ['integer', 'null'], description: 'estimated records missing' },
      },
    },
    rootCause: { type: ['string', 'null'] },
    assignee: { type: ['string', 'null'] },
    updatedAt: { type: 'string', format: 'date-time' },
    version: { type: 'integer', description: 'send it back in PATCH to refuse concurrent edits' },
  },
  examples: [INCIDENT_EXAMPLE],
} as const

const TIMELINE_EXAMPLE = [
  { at: '2026-11-21T04:01:00.000Z', actor: 'citysync', kind: 'opened', message: '横琴口岸停车场平台: LATE — no new data for 2h1m of expected time (limit 2h)', detail: { state: 'LATE' } },
  { at: '2026-11-21T04:01:01.000Z', actor: 'citysync', kind: 'notified', message: 'alert to hengqin-ops via hengqin-ops/dingtalk: delivered', detail: null },
  { at: '2026-11-21T04:07:12.000Z', actor: '值班员 李工', kind: 'acknowledged', message: 'alert #17 (hengqin-parking LATE) acknowledged: 已电话联系厂商', detail: { alertId: 17 } },
  { at: '2026-11-21T05:15:00.000Z', actor: 'citysync', kind: 'recovered', message: 'recovered at 2026-11-21T05:00:00.000Z after 1h', detail: null },
]

function curl(text: string): string {
  return `Example:\n\n\`\`\`sh\n${text}\n\`\`\``
}

const MAX_EXPORT = 10_000

export function incidentRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const store = syncHealthStore(deps)
  app.addSchema(INCIDENT_SCHEMA)

  const DETAIL = {
    type: 'object',
    required: ['incident', 'timeline', 'alerts'],
    properties: {
      incident: { $ref: 'Incident#' },
      timeline: {
        type: 'array',
        description: 'handling: who did what, when (oldest first)',
        items: {
          type: 'object',
          properties: { at: { type: 'string', format: 'date-time' }, actor: { type: 'string' }, kind: { type: 'string' }, message: { type: 'string' }, detail: { type: ['object', 'null'], additionalProperties: true } },
        },
      },
      alerts: { type: 'array', items: { $ref: 'Alert#' } },
    },
    examples: [{ incident: INCIDENT_EXAMPLE, timeline: TIMELINE_EXAMPLE, alerts: [] }],
  } as const

  async function detail(id: number): Promise<Record<string, unknown>> {
    const incident = await store.getIncident(id)
    const [events, alerts, silences] = await Promise.all([store.incidentEvents(id), store.listAlerts({ incidentId: id, limit: 1000 }), store.listSilences(qualityClock(deps).now())])
    return { incident: incidentView(incident), timeline: events.map(eventView), alerts: alerts.items.map((a) => alertView(a, silences)) }
  }

  app.get<{ Querystring: { status?: IncidentStatus; sourceId?: string; operator?: string; district?: string; from?: string; to?: string; format: 'json' | 'csv' | 'xlsx'; tz: string; limit: number; offset: number } }>(
    '/api/v1/incidents',
    {
      schema: {
        summary: 'The incident ledger, newest first; ?format=csv or xlsx exports it',
        description:
          'The export has one row per incident: occurrence time, scope, estimated records missing, handling timeline, recovery time, duration, root cause, status and linked alerts, with times in `tz` (default Asia/Shanghai).\n\n' +
          curl("curl -s 'localhost:3000/api/v1/incidents?status=open'\ncurl -s -o ledger.xlsx 'localhost:3000/api/v1/incidents?from=2026-11-01T00:00:00%2B08:00&to=2026-12-01T00:00:00%2B08:00&format=xlsx'"),
        tags: ['sync health'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: { type: 'string', enum: [...INCIDENT_STATUSES] },
            sourceId: { type: 'string' },
            operator: { type: 'string' },
            district: { type: 'string' },
            from: { type: 'string', format: 'date-time', description: 'occurred at or after' },
            to: { type: 'string', format: 'date-time', description: 'occurred before' },
            format: { type: 'string', enum: ['json', 'csv', 'xlsx'], default: 'json' },
            tz: { type: 'string', default: 'Asia/Shanghai', description: 'zone of the times in CSV and XLSX' },
            ...pageQuery(),
            limit: { ...pageQuery().limit, description: 'JSON only (at most 1000); exports hold up to 10000 incidents' },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['items', 'total', 'next'],
            properties: { items: { type: 'array', items: { $ref: 'Incident#' } }, ...PAGE_FIELDS },
            examples: [{ items: [INCIDENT_EXAMPLE], total: 1, next: null }],
          },
          400: { $ref: 'Error#' },
        },
      },
    },
    async (req, reply) => {
      const q = req.query
      const filter = {
        ...(q.status !== undefined ? { status: q.status } : {}),
        ...(q.sourceId !== undefined ? { sourceId: q.sourceId } : {}),
        ...(q.operator !== undefined ? { operator: q.operator } : {}),
        ...(q.district !== undefined ? { district: q.district } : {}),
        ...(q.from !== undefined ? { from: Date.parse(q.from) } : {}),
        ...(q.to !== undefined ? { to: Date.parse(q.to) } : {}),
      }
      if (q.format === 'json') {
        const { items, total } = await store.listIncidents({ ...filter, limit: q.limit, offset: q.offset })
        return pageOf(items.map(incidentView), total, q)
      }
      if (!isTimeZone(q.tz)) throw new CitysyncError('CITYSYNC_ERR_API_VALIDATION', [`tz ${JSON.stringify(q.tz)} is not an IANA time zone`])
      const { items } = await store.listIncidents({ ...filter, limit: MAX_EXPORT })
      const events = await store.eventsOf(items.map((i) => i.id))
      const alerts = new Map<number, Alert[]>()
      for (const i of items) alerts.set(i.id, (await store.listAlerts({ incidentId: i.id, limit: 1000 })).items.reverse())
      const rows = ledgerRows(items, events, alerts, q.tz)
      const stamp = new Date(qualityClock(deps).now()).toISOString().slice(0, 10)
      if (q.format === 'csv') {
        return reply
          .header('content-type', 'text/csv; charset=utf-8')
          .header('content-disposition', `attachment; filename="incidents-${stamp}.csv"`)
          .send(ledgerCsv(rows))
      }
      return reply
        .header('content-type', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet')
        .header('content-disposition', `attachment; filename="incidents-${stamp}.xlsx"`)
        .send(await ledgerXlsx(rows))
    },
  )

  app.get<{ Params: { id: number } }>(
    '/api/v1/incidents/:id',
    {
      schema: {
        summary: 'One incident with its handling timeline and linked alerts',
        description: curl('curl -s localhost:3000/api/v1/incidents/5'),
        tags: ['sync health'],
        params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
        response: { 200: DETAIL, 404: { $ref: 'Error#' } },
      },
    },
    async (req) => detail(req.params.id),
  )

  app.patch<{ Params: { id: number }; Body: { by?: string; note?: string; rootCause?: string; assignee?: string | null; status?: 'closed'; version?: number } }>(
    '/api/v1/incidents/:id',
    {
      schema: {
        summary: 'Handle an incident: add a note to its timeline, assign it, record the root cause, close it (needs a root cause)',
        description:
          'Closing without a root cause (given now or before) is refused with 422 `CITYSYNC_ERR_INCIDENT_ROOT_CAUSE`. With `version`, a change based on an older version is refused with 409.\n\n' +
          curl(
            `curl -s -X PATCH localhost:3000/api/v1/incidents/5 -H 'content-type: application/json' \\\n  -d '{"by":"值班员 李工","rootCause":"厂商数据库磁盘写满，推送服务停止","note":"厂商已扩容并补传 12:00-13:00 数据","status":"closed"}'`,
          ),
        tags: ['sync health'],
        params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            by: { type: 'string', minLength: 1, maxLength: 100, description: 'ignored when authenticated: the timeline records the caller' },
            note: { type: 'string', maxLength: 4000, description: 'what was done' },
            rootCause: { type: 'string', minLength: 1, maxLength: 4000 },
            assignee: { type: ['string', 'null'], maxLength: 100 },
            status: { type: 'string', enum: ['closed'] },
            version: { type: 'integer', minimum: 1 },
          },
          examples: [{ by: '值班员 李工', rootCause: '厂商数据库磁盘写满，推送服务停止', note: '厂商已扩容并补传 12:00-13:00 数据', status: 'closed' }],
        },
        response: { 200: DETAIL, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' }, 422: { $ref: 'Error#' } },
      },
    },
    async (req) => {
      await store.patchIncident(req.params.id, { ...req.body, by: actorOf(req, req.body.by) })
      return detail(req.params.id)
    },
  )
}
