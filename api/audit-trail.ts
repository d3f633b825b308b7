import { type FastifyRequest } from 'fastify'
import { configSchemaFor } from '../connectors/registry.ts'
import { isCitysyncError } from '../lib/errors.ts'
import { redactSecrets } from '../lib/source-config.ts'
import { type ApiDeps } from './app.ts'
import { syncHealthStore } from './routes/alerts.ts'

// Before and after of the routes that change configuration, for the audit
// log. `before` is read once the request is allowed and validated, `after`
// once the route has answered successfully; both leave through the audit
// log's redaction (lib/auth/audit.ts), and source configs lose their
// x-secret values here already.

export interface ChangeSnapshot {
  /** The object the change is about, when the URL does not name it. */
  target?(req: FastifyRequest, response: unknown): string | undefined
  before?(req: FastifyRequest): Promise<unknown>
  after?(req: FastifyRequest, response: unknown): Promise<unknown>
}

type Params = Record<string, string | undefined>

function params(req: FastifyRequest): Params {
  return (req.params ?? {}) as Params
}

function body(req: FastifyRequest): Record<string, unknown> {
  const b = req.body
  return b !== null && typeof b === 'object' && !Buffer.isBuffer(b) ? (b as Record<string, unknown>) : {}
}

function responseId(response: unknown): string | undefined {
  const id = (response as { id?: unknown } | null)?.id
  return typeof id === 'string' || typeof id === 'number' ? String(id) : undefined
}

async function orNull<T>(read: () => Promise<T>): Promise<T | null> {
  try {
    return await read()
  } catch (err) {
    if (isCitysyncError(err) && err.status === 404) return null
    throw err
  }
}

export function changeSnapshots(deps: ApiDeps): Readonly<Record<string, ChangeSnapshot>> {
  const { metadata } = deps
  let health: ReturnType<typeof syncHealthStore> | undefined
  const store = (): ReturnType<typeof syncHealthStore> => (health ??= syncHealthStore(deps))

  const source = (id: string | undefined): Promise<unknown> =>
    id === undefined
      ? Promise.resolve(null)
      : orNull(async () => {
          const s = await metadata.sources.get(id)
          const schema = configSchemaFor(s.kind)
          return {
            id: s.id, kind: s.kind, name: s.name, operator: s.operator, district: s.district, timezone: s.timezone,
            schedule: s.schedule, freshness: s.freshness, config: schema === undefined ? null : redactSecrets(s.config, schema),
            desiredState: s.desiredState, version: s.version,
          }
        })
  const bySourceParam = (req: FastifyRequest): Promise<unknown> => source(params(req).id)
  const sourceChange: ChangeSnapshot = { before: bySourceParam, after: bySourceParam }

  const cursor = (req: FastifyRequest): Promise<unknown> =>
    orNull(async () => {
      const st = await metadata.connectorState.get(params(req).id ?? '')
      return { cursor: st.cursor ?? null, checkpointAt: st.checkpointAt === null ? null : new Date(st.checkpointAt).toISOString() }
    })
  const incident = (req: FastifyRequest): Promise<unknown> => orNull(() => store().getIncident(Number(params(req).id)))
  const silence = async (req: FastifyRequest): Promise<unknown> => (await store().listSilences()).find((s) => s.id === Number(params(req).id)) ?? null
  const onboarding = (req: FastifyRequest): Promise<unknown> => orNull(() => metadata.onboarding.get(params(req).lotId ?? ''))

  return {
    'POST /api/v1/sources': {
      target: (req) => (typeof body(req).id === 'string' ? (body(req).id as string) : undefined),
      after: (req) => source(typeof body(req).id === 'string' ? (body(req).id as string) : undefined),
    },
    'PUT /api/v1/sources/:id': sourceChange,
    'DELETE /api/v1/sources/:id': { before: bySourceParam, after: () => Promise.resolve(null) },
    'POST /api/v1/sources/:id/deploy': sourceChange,
    'POST /api/v1/sources/:id/pause': sourceChange,
    'POST /api/v1/sources/:id/resume': sourceChange,
    'POST /api/v1/sources/:id/restart': sourceChange,
    'DELETE /api/v1/sources/:id/cursor': { before: cursor, after: cursor },
    'POST /api/v1/silences': { target: (_req, response) => responseId(response), after: (_req, response) => Promise.resolve(response) },
    'DELETE /api/v1/silences/:id': { before: silence, after: silence },
    'PATCH /api/v1/incidents/:id': { before: incident, after: incident },
    'PUT /api/v1/county/onboarding/:lotId': { before: onboarding, after: onboarding },
  }
}
