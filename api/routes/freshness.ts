import { type FastifyInstance } from 'fastify'
import { CitysyncError } from '../../lib/errors.ts'
import { type EntityResult, FRESHNESS_STATES, type FreshnessState, isAlerting, type SourceResult } from '../../quality/evaluate.ts'
import { evaluateOnce, type QualityService, type Snapshot } from '../../quality/service.ts'
import { type SyncHealthStore } from '../../quality/store.ts'
import { type ApiDeps } from '../app.ts'
import { alertView, qualityClock, syncHealthStore } from './alerts.ts'

// Freshness of every source and entity (car park, station, terminal): the
// state now, the two clocks (event time, arrival time) and the delay clock
// that only runs while the calendar expects data. Where the quality service
// runs in this process its latest cycle answers; elsewhere (an API-only
// process) the API evaluates on the spot from the warehouse.

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString()
}

function seconds(ms: number | null): number | null {
  return ms === null ? null : Math.round(ms / 1000)
}

export function sourceView(r: SourceResult): Record<string, unknown> {
  const v = r.verdict
  const counts: Record<string, number> = { total: r.entities.length }
  for (const s of FRESHNESS_STATES) if (r.entityCounts[s] > 0) counts[s] = r.entityCounts[s]
  return {
    sourceId: r.ctx.id,
    name: r.ctx.name,
    kind: r.ctx.kind,
    operator: r.ctx.operator,
    district: r.ctx.district,
    state: v.state,
    alertState: r.tracked,
    since: iso(v.since),
    reason: v.reason,
    lastEventAt: iso(v.lastEventAt),
    lastArrivalAt: iso(v.lastArrivalAt),
    eventAgeSeconds: seconds(v.eventAgeMs),
    arrivalAgeSeconds: seconds(v.arrivalAgeMs),
    delaySeconds: seconds(v.delayMs),
    maxDelaySeconds: seconds(v.maxDelayMs),
    expectedMissing: r.expectedMissing,
    entities: counts,
  }
}

function entityView(e: EntityResult): Record<string, unknown> {
  const v = e.verdict
  return {
    id: e.id,
    kind: e.kind,
    state: v.state,
    alertState: e.tracked,
    since: iso(v.since),
    reason: v.reason,
    lastEventAt: iso(v.lastEventAt),
    lastArrivalAt: iso(v.lastArrivalAt),
    delaySeconds: seconds(v.delayMs),
    maxDelaySeconds: seconds(v.maxDelayMs),
  }
}

const STATE = { type: 'string', enum: [...FRESHNESS_STATES] } as const
const TIME = { type: ['string', 'null'], format: 'date-time' } as const

const SOURCE_EXAMPLE = {
  sourceId: 'hengqin-parking',
  name: '横琴口岸停车场平台',
  kind: 'parking-lots',
  operator: '横琴停车公司',
  district: '横琴',
  state: 'LATE',
  alertState: 'LATE',
  since: '2026-11-21T04:00:00.000Z',
  reason: 'no new data for 2h1m of expected time (limit 2h)',
  lastEventAt: '2026-11-21T02:00:00.000Z',
  lastArrivalAt: '2026-11-21T02:00:03.000Z',
  eventAgeSeconds: 7260,
  arrivalAgeSeconds: 7257,
  delaySeconds: 7260,
  maxDelaySeconds: 7200,
  expectedMissing: 412,
  entities: { total: 5, LATE: 5 },
}

const SOURCE_FRESHNESS_SCHEMA = {
  $id: 'SourceFreshness',
  type: 'object',
  required: ['sourceId', 'name', 'kind', 'state', 'alertState', 'since', 'reason', 'lastEventAt', 'lastArrivalAt', 'delaySeconds', 'maxDelaySeconds', 'entities'],
  properties: {
    sourceId: { type: 'string' },
    name: { type: 'string' },
    kind: { type: 'string' },
    operator: { type: ['string', 'null'] },
    district: { type: ['string', 'null'] },
    state: { ...STATE, description: 'the state now: OK, LATE, STALLED, STOPPED, SKEWED, QUIET (expected silence) or MAINTENANCE' },
    alertState: { ...STATE, description: 'the confirmed state alerts follow (after the openAfter / closeAfter hysteresis)' },
    since: { type: 'string', format: 'date-time', description: 'when the condition behind the state began' },
    reason: { type: 'string' },
    lastEventAt: { ...TIME, description: 'event clock: newest live (not backfilled) event time landed' },
    lastArrivalAt: { ...TIME, description: 'arrival clock: when the newest live rows landed' },
    eventAgeSeconds: { type: ['integer', 'null'] },
    arrivalAgeSeconds: { type: ['integer', 'null'] },
    delaySeconds: { type: 'integer', description: 'the delay clock: expected time (by the calendar) since the newest live event' },
    maxDelaySeconds: { type: 'integer' },
    expectedMissing: { type: ['integer', 'null'], description: 'estimated records missing while late (rate of the last day × time missing)' },
    entities: { type: 'object', additionalProperties: { type: 'integer' }, description: 'entities by state, and their total' },
  },
  examples: [SOURCE_EXAMPLE],
} as const

const ENTITY_SCHEMA = {
  $id: 'EntityFreshness',
  type: 'object',
  required: ['id', 'kind', 'state', 'alertState', 'since', 'reason', 'lastEventAt', 'lastArrivalAt', 'delaySeconds', 'maxDelaySeconds'],
  properties: {
    id: { type: 'string' },
    kind: { type: 'string', enum: ['car-park', 'station', 'terminal'] },
    state: STATE,
    alertState: STATE,
    since: { type: 'string', format: 'date-time' },
    reason: { type: 'string' },
    lastEventAt: TIME,
    lastArrivalAt: TIME,
    delaySeconds: { type: 'integer' },
    maxDelaySeconds: { type: 'integer' },
  },
  examples: [
    { id: 'P003', kind: 'car-park', state: 'QUIET', alertState: 'QUIET', since: '2026-11-21T14:00:00.000Z', reason: 'no data expected now', lastEventAt: '2026-11-21T13:52:10.000Z', lastArrivalAt: '2026-11-21T13:52:12.000Z', delaySeconds: 470, maxDelaySeconds: 7200 },
  ],
} as const

function curl(text: string): string {
  return `Example:\n\n\`\`\`sh\n${text}\n\`\`\``
}

/** The running service's latest cycle when it is recent, else an evaluation now. */
async function snapshot(deps: ApiDeps, store: SyncHealthStore, only?: string): Promise<Snapshot> {
  const now = qualityClock(deps).now()
  const q: QualityService | undefined = deps.quality
  const latest = q?.latest
  if (latest !== undefined && now - latest.at <= 3 * q!.intervalMs) {
    return only === undefined ? latest : { ...latest, results: latest.results.filter((r) => r.ctx.id === only) }
  }
  try {
    return await evaluateOnce(deps.metadata, deps.warehouse, store, now, only)
  } catch (err) {
    if (err instanceof CitysyncError && err.code === 'CITYSYNC_ERR_WAREHOUSE_QUERY') throw new CitysyncError('CITYSYNC_ERR_QUALITY_UNAVAILABLE', [err.message], { cause: err })
    throw err
  }
}

export function freshnessRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const store = syncHealthStore(deps)
  app.addSchema(SOURCE_FRESHNESS_SCHEMA)
  app.addSchema(ENTITY_SCHEMA)

  app.get<{ Querystring: { state?: FreshnessState; district?: string; operator?: string; kind?: string } }>(
    '/api/v1/freshness',
    {
      schema: {
        summary: 'Freshness of every source: state, event and arrival clocks, delay clock, entities by state',
        description:
          'States: OK, LATE (no new live data for longer than maxDelay of expected time), STALLED (the upstream answers but sends nothing new), STOPPED (connector not running or failing), SKEWED (event times in the future), QUIET (no data expected now), MAINTENANCE (paused or in a maintenance window).\n\n' +
          curl("curl -s 'localhost:3000/api/v1/freshness?state=LATE'"),
        tags: ['sync health'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { state: STATE, district: { type: 'string' }, operator: { type: 'string' }, kind: { type: 'string' } },
        },
        response: {
          200: {
            type: 'object',
            required: ['at', 'items', 'total', 'states'],
            properties: {
              at: { type: 'string', format: 'date-time', description: 'when the evaluation ran' },
              items: { type: 'array', items: { $ref: 'SourceFreshness#' } },
              total: { type: 'integer' },
              states: { type: 'object', additionalProperties: { type: 'integer' }, description: 'sources by state' },
            },
            examples: [{ at: '2026-11-21T04:01:00.000Z', items: [SOURCE_EXAMPLE], total: 1, states: { LATE: 1 } }],
          },
          503: { $ref: 'Error#' },
        },
      },
    },
    async (req) => {
      const snap = await snapshot(deps, store)
      const q = req.query
      const results = snap.results.filter(
        (r) =>
          (q.state === undefined || r.verdict.state === q.state) &&
          (q.district === undefined || r.ctx.district === q.district) &&
          (q.operator === undefined || r.ctx.operator === q.operator) &&
          (q.kind === undefined || r.ctx.kind === q.kind),
      )
      const states: Record<string, number> = {}
      for (const r of results) states[r.verdict.state] = (states[r.verdict.state] ?? 0) + 1
      return { at: new Date(snap.at).toISOString(), items: results.map(sourceView), total: results.length, states }
    },
  )

  app.get<{ Params: { sourceId: string }; Querystring: { entityState?: FreshnessState; alerting?: boolean; limit: number; offset: number } }>(
    '/api/v1/freshness/:sourceId',
    {
      schema: {
        summary: "One source's freshness with its entities (car parks, stations, terminals) and firing alerts",
        description: curl("curl -s 'localhost:3000/api/v1/freshness/hengqin-parking?entityState=LATE&limit=50'"),
        tags: ['sync health'],
        params: { type: 'object', required: ['sourceId'], properties: { sourceId: { type: 'string' } } },
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            entityState: STATE,
            alerting: { type: 'boolean', description: 'only entities in an alerting state' },
            limit: { type: 'integer', minimum: 0, maximum: 10000, default: 500 },
            offset: { type: 'integer', minimum: 0, default: 0 },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['at', 'source', 'entities', 'alerts'],
            properties: {
              at: { type: 'string', format: 'date-time' },
              source: { $ref: 'SourceFreshness#' },
              entities: {
                type: 'object',
                required: ['items', 'total'],
                properties: { items: { type: 'array', items: { $ref: 'EntityFreshness#' } }, total: { type: 'integer' } },
              },
              alerts: { type: 'array', items: { $ref: 'Alert#' } },
            },
            examples: [
              {
                at: '2026-11-21T04:01:00.000Z',
                source: SOURCE_EXAMPLE,
                entities: { items: [ENTITY_SCHEMA.examples[0]], total: 1 },
                alerts: [],
              },
            ],
          },
          404: { $ref: 'Error#' },
          503: { $ref: 'Error#' },
        },
      },
    },
    async (req) => {
      const { sourceId } = req.params
      await deps.metadata.sources.get(sourceId)
      const snap = await snapshot(deps, store, sourceId)
      const r = snap.results.find((x) => x.ctx.id === sourceId)
      if (r === undefined) throw new CitysyncError('CITYSYNC_ERR_SOURCE_NOT_FOUND', [sourceId])
      const q = req.query
      const entities = r.entities
        .filter((e) => (q.entityState === undefined || e.verdict.state === q.entityState) && (q.alerting !== true || isAlerting(e.verdict.state) || isAlerting(e.tracked)))
        .sort((a, b) => a.id.localeCompare(b.id))
      const { items } = await store.listAlerts({ sourceId, status: 'firing', limit: 1000 })
      return {
        at: new Date(snap.at).toISOString(),
        source: sourceView(r),
        entities: { items: entities.slice(q.offset, q.offset + q.limit).map(entityView), total: entities.length },
        alerts: items.map((a) => alertView(a, [])),
      }
    },
  )

  // The process's registry (embedded: sink, bus lag, freshness, alerts, backups, process), else the quality service's.
  const registry = deps.metrics ?? deps.quality?.metrics.registry
  if (registry !== undefined && !app.hasRoute({ method: 'GET', url: '/metrics' })) {
    app.get(
      '/metrics',
      {
        schema: {
          summary: 'Prometheus metrics: ingest per source, dead letters, batches and inserts, consumer lag, freshness, alerts and deliveries, backups',
          description: 'The metric reference is in docs/operations.md (Monitoring).\n\n' + curl("curl -s localhost:3000/metrics | grep -E 'citysync_(source_state|source_rows_landed_total|dead_letters_total)'"),
          tags: ['health'],
        },
      },
      async (_req, reply) => reply.header('content-type', registry.contentType).send(await registry.metrics()),
    )
  }
}
