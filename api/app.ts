import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { type Logger } from 'pino'
import { type Registry } from 'prom-client'
import { type SourceManager } from '../connectors/sdk/manager.ts'
import { type Metadata } from '../lib/metadata/db.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { type QualityService } from '../quality/service.ts'
import { type AuthSettings, installAuth } from './auth.ts'
import { consoleRoutes } from './console.ts'
import { ERROR_SCHEMA, installErrorHandler } from './errors.ts'
import { DOCS_UI_OPTIONS, hygiene, hygieneFromEnv, type HygieneOptions } from './hygiene.ts'
import { alertRoutes } from './routes/alerts.ts'
import { authRoutes } from './routes/auth.ts'
import { countyRoutes } from './routes/county.ts'
import { freshnessRoutes } from './routes/freshness.ts'
import { incidentRoutes } from './routes/incidents.ts'
import { reportRoutes } from './routes/reports.ts'
import { ingestRoutes, type IngestDeps } from './routes/ingest.ts'
import { plateRoutes, type PlateRevealDeps } from './routes/plates.ts'
import { sourceRoutes } from './routes/sources.ts'
import { userRoutes } from './routes/users.ts'

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
  /** The keys that open sealed plates (POST /api/v1/plates/reveal); without them that route answers 503. */
  plates?: PlateRevealDeps
  /** CORS origins and push rate limit; default from the environment (CITYSYNC_CORS_ORIGINS, CITYSYNC_INGEST_RATE_LIMIT). */
  hygiene?: HygieneOptions
  /** This process's Prometheus registry, served at GET /metrics (else the quality service's, if any). */
  metrics?: Registry
  /** Where KAFKA_BROKERS is set: a metadata request to the brokers, for /readyz. */
  kafka?: { ping(timeoutMs: number): Promise<void> }
  /** Users and access (api/auth.ts): the key sealing TOTP secrets, the bootstrap token, session limits; the rest from the environment. */
  auth?: AuthSettings
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
  await app.register(hygiene, deps.hygiene ?? hygieneFromEnv())
  // Before any route: every route must have an entry in api/route-permissions.ts.
  const auth = await installAuth(app, deps)
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
  await app.register(swaggerUi, { routePrefix: '/docs', ...DOCS_UI_OPTIONS })

  app.get('/healthz', { schema: { summary: 'Liveness: the process answers', tags: ['health'] } }, () => ({ status: 'ok' }))
  app.get(
    '/readyz',
    { schema: { summary: 'Readiness: the warehouse, the metadata store and (with KAFKA_BROKERS) Kafka answer', tags: ['health'] } },
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
      if (deps.kafka !== undefined) {
        checks.kafka = await deps.kafka.ping(3_000).then(
          () => 'ok',
          (err: unknown) => `down: ${err instanceof Error ? err.message : String(err)}`,
        )
      }
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
  await app.register(plateRoutes, deps)
  await app.register(countyRoutes, deps)
  await app.register((await import('./routes/analytics.ts')).analyticsRoutes, deps)
  await app.register(consoleRoutes)
  await app.register(authRoutes, auth)
  await app.register(userRoutes, auth)
  return app
}
