import { type FastifyInstance } from 'fastify'
import { CitysyncError } from '../../lib/errors.ts'
import { landedFigures, composeStatus, SOURCE_STATES, type SourceStatus } from '../../quality/source-status.ts'
import { type ApiDeps } from '../app.ts'

const STATUS_SCHEMA = {
  $id: 'SourceStatus',
  type: 'object',
  required: ['state', 'rowsLanded', 'rowsRejected', 'lastEventAt', 'lastArrivalAt', 'lastCheckpointAt', 'lastError'],
  properties: {
    state: { type: 'string', enum: [...SOURCE_STATES], description: 'paused, or the connector run state when deployed' },
    rowsLanded: { type: 'integer', description: 'rows landed in ClickHouse (from the ingest log)' },
    rowsRejected: { type: 'integer', description: 'records in the dead-letter table' },
    lastEventAt: { type: ['string', 'null'], format: 'date-time', description: 'newest source event time landed' },
    lastArrivalAt: { type: ['string', 'null'], format: 'date-time', description: 'when the newest batch landed' },
    lastCheckpointAt: { type: ['string', 'null'], format: 'date-time' },
    lastError: { type: ['string', 'null'] },
  },
  examples: [
    {
      state: 'idle',
      rowsLanded: 18234,
      rowsRejected: 12,
      lastEventAt: '2026-11-21T09:41:07.000Z',
      lastArrivalAt: '2026-11-21T09:41:09.513Z',
      lastCheckpointAt: '2026-11-21T09:41:09.530Z',
      lastError: null,
    },
  ],
} as const

const SUMMARY_SCHEMA = {
  $id: 'SourceSummary',
  type: 'object',
  required: ['id', 'kind', 'name', 'operator', 'district', 'status'],
  properties: {
    id: { type: 'string' },
    kind: { type: 'string' },
    name: { type: 'string' },
    operator: { type: ['string', 'null'] },
    district: { type: ['string', 'null'] },
    status: { $ref: 'SourceStatus#' },
  },
} as const

const ID_PARAMS = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{1,62}$' } } } as const

export function sourceRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { metadata, warehouse } = deps
  app.addSchema(STATUS_SCHEMA)
  app.addSchema(SUMMARY_SCHEMA)

  async function statusOf(ids: string[]): Promise<Map<string, SourceStatus>> {
    const landed = await landedFigures(warehouse, ids)
    const out = new Map<string, SourceStatus>()
    for (const id of ids) {
      const src = await metadata.sources.get(id)
      const st = await metadata.connectorState.get(id)
      out.set(
        id,
        composeStatus(
          { desiredState: src.desiredState, runState: st?.runState ?? null, checkpointAt: st?.checkpointAt ?? null, lastError: st?.lastError ?? null },
          landed.get(id),
        ),
      )
    }
    return out
  }

  app.get<{ Querystring: { kind?: string; district?: string; operator?: string } }>(
    '/api/v1/sources',
    {
      schema: {
        summary: 'List data sources with their status',
        tags: ['sources'],
        querystring: {
          type: 'object',
          properties: { kind: { type: 'string' }, district: { type: 'string' }, operator: { type: 'string' } },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            required: ['items', 'total'],
            properties: { items: { type: 'array', items: { $ref: 'SourceSummary#' } }, total: { type: 'integer' } },
          },
        },
      },
    },
    async (req) => {
      const sources = await metadata.sources.list(req.query)
      const status = await statusOf(sources.map((s) => s.id))
      const items = sources.map((s) => ({
        id: s.id,
        kind: s.kind,
        name: s.name,
        operator: s.operator ?? null,
        district: s.district ?? null,
        status: status.get(s.id)!,
      }))
      return { items, total: items.length }
    },
  )

  app.get<{ Params: { id: string } }>(
    '/api/v1/sources/:id/status',
    {
      schema: {
        summary: "A source's status: run state, rows landed and rejected, newest event and arrival",
        tags: ['sources'],
        params: ID_PARAMS,
        response: { 200: { $ref: 'SourceStatus#' }, 404: { $ref: 'Error#' } },
      },
    },
    async (req) => (await statusOf([req.params.id])).get(req.params.id),
  )

  app.get<{ Params: { id: string } }>(
    '/api/v1/sources/:id/cursor',
    {
      schema: {
        summary: "The connector's saved cursor (where the next read resumes)",
        tags: ['sources'],
        params: ID_PARAMS,
        response: {
          200: {
            type: 'object',
            properties: { cursor: {}, checkpointAt: { type: ['string', 'null'], format: 'date-time' } },
          },
          404: { $ref: 'Error#' },
        },
      },
    },
    async (req) => {
      await metadata.sources.get(req.params.id)
      const st = await metadata.connectorState.get(req.params.id)
      return { cursor: st?.cursor ?? null, checkpointAt: st?.checkpointAt ? new Date(st.checkpointAt).toISOString() : null }
    },
  )

  for (const action of ['deploy', 'pause', 'resume', 'restart'] as const) {
    app.post<{ Params: { id: string } }>(
      `/api/v1/sources/:id/${action}`,
      {
        schema: {
          summary: `${action[0]!.toUpperCase()}${action.slice(1)} a source`,
          tags: ['sources'],
          params: ID_PARAMS,
          response: { 200: { $ref: 'SourceStatus#' }, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' } },
        },
      },
      async (req) => {
        const id = req.params.id
        const src = await metadata.sources.get(id)
        if (action === 'restart' && src.desiredState !== 'deployed') {
          throw new CitysyncError('CITYSYNC_ERR_SOURCE_STATE', [id, 'only a deployed source can be restarted'])
        }
        if (action !== 'restart') {
          await metadata.sources.setDesiredState(id, action === 'pause' ? 'paused' : 'deployed', 'api')
        }
        if (deps.manager) {
          if (action === 'restart') await deps.manager.restart(id)
          else await deps.manager.reconcile()
        }
        return (await statusOf([id])).get(id)
      },
    )
  }
}
