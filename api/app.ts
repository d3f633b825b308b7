import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { type Logger } from 'pino'
import { type SourceManager } from '../connectors/sdk/manager.ts'
import { type Metadata } from '../lib/metadata/db.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { type QualityService } from '../quality/service.ts'
import { ERROR_SCHEMA, installErrorHandler } from './errors.ts'
import { alertRoutes } from './routes/alerts.ts'
import { countyRoutes } from './routes/county.ts'
import { freshnessRoutes } from './routes/freshness.ts'
import { incidentRoutes } from './routes/incidents.ts'
import { reportRoutes } from './routes/reports.ts'
import { ingestRoutes, type IngestDeps } from './routes/ingest.ts'
import { sourceRoutes } from './routes/sources.ts'

export interface ApiDeps {
  metadata: Metadata
  warehouse: Warehouse
  /** Present where this process runs the connectors (embedded mode): actions take effect at once. */
  manager?: SourceManager
  logger: Logger
  version: string
  /** Where pushed batches are published (this process's bus); without it, POST /ingest answers 503. */
  ingest?: IngestDeps
  /** The quality service of this process (embedded mode): freshness from its latest cycle, GET /metrics from its registry. */
  quality?: QualityService
}

export async function buildApp(deps: ApiDeps): Promise<FastifyInstance> {
  // Typed as fastify's base logger so the instance has the default type everywhere.
  const logger: FastifyBaseLogger = deps.logger
  const app: FastifyInstance = Fastify({
    loggerInstance: logger,
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } },
  })
  installErrorHandler(app)
  app.addSchema(ERROR_SCHEMA)
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'citysync',
        version: deps.version,
        description:
          'Data integration and sync health for city parking and traffic data. Errors are `{code, message}` with stable `CITYSYNC_ERR_*` codes.',
      },
      tags: [{ name: 'sources', description: 'Data sources: deploy, pause, inspect' }, { name: 'health' }],
    },
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })

  app.get('/healthz', { schema: { summary: 'Liveness: the process answers', tags: ['health'] } }, () => ({ status: 'ok' }))
  app.get(
    '/readyz',
    { schema: { summary: 'Readiness: the warehouse and the metadata store answer', tags: ['health'] } },
    async (_req, reply) => {
      const checks: Record<string, string> = {}
      checks.warehouse = await deps.warehouse.ping().then(
        (ok) => (ok ? 'ok' : 'down'),
        (err: unknown) => `down: ${String(err)}`,
      )
      checks.metadata = await deps.metadata.knex.raw('select 1').then(
        () => 'ok',
        (err: unknown) => `down: ${String(err)}`,
      )
      const ready = Object.values(checks).every((c) => c === 'ok')
      return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', checks })
    },
  )
  sourceRoutes(app, deps)
  // Alerts first: the freshness and incident routes refer to its Alert schema.
  alertRoutes(app, deps)
  freshnessRoutes(app, deps)
  incidentRoutes(app, deps)
  reportRoutes(app, deps)
  await app.register(ingestRoutes, deps)
  await app.register(countyRoutes, deps)
  await app.register((await import('./routes/analytics.ts')).analyticsRoutes, deps)
  return app
}
