import { Ajv2020 } from 'ajv/dist/2020.js'
import { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifySchemaCompiler } from 'fastify'
import { type Logger } from 'pino'
import { configSchemaFor, connectorFor } from '../../connectors/registry.ts'
import { type CheckResult, type Ctx, type JsonSchema } from '../../connectors/sdk/connector.ts'
import { type SourceManager } from '../../connectors/sdk/manager.ts'
import { systemClock } from '../../lib/clock.ts'
import { CitysyncError, errorMessage, isCitysyncError } from '../../lib/errors.ts'
import { type Metadata } from '../../lib/metadata/db.ts'
import { type SourceRecord } from '../../lib/metadata/sources.ts'
import { REDACTED, compileConnectorSchema, redactSecrets, validateSourceConfig } from '../../lib/source-config.ts'
import { type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { composeStatus, landedFigures, SOURCE_STATES, type SourceStatus } from '../../quality/source-status.ts'
import { type ApiDeps } from '../app.ts'
import { actorOf } from '../auth.ts'
import { MAX_PAGE, PAGE_FIELDS, nextOffset, pageQuery, slicePage } from '../pagination.ts'

// Data sources over REST. The operations below the schemas are shared with
// the CLI (cli/sources.ts), so that `citysync sources …` and the API refuse
// and allow the same things with the same error codes.

// ---------------------------------------------------------------------------
// Status

/** `provisioned`: added and never deployed; otherwise as quality/source-status.ts says. */
export const API_SOURCE_STATES = ['provisioned', ...SOURCE_STATES] as const
export type ApiSourceState = (typeof API_SOURCE_STATES)[number]
export type ApiSourceStatus = Omit<SourceStatus, 'state'> & { state: ApiSourceState }

/**
 * Status of each source: run state from the metadata store, landed and
 * rejected rows from the warehouse (left at zero without one).
 */
export async function sourceStatuses(
  metadata: Metadata,
  warehouse: Warehouse | undefined,
  sources: readonly SourceRecord[],
): Promise<Map<string, ApiSourceStatus>> {
  const ids = sources.map((s) => s.id)
  const out = new Map<string, ApiSourceStatus>()
  if (ids.length === 0) return out
  const [landed, deployedOnce] = await Promise.all([
    warehouse ? landedFigures(warehouse, ids) : Promise.resolve(undefined),
    everDeployed(metadata, ids),
  ])
  for (const s of sources) {
    const st = await metadata.connectorState.get(s.id)
    const status = composeStatus(
      { desiredState: s.desiredState, runState: st.runState, checkpointAt: st.checkpointAt, lastError: st.lastError },
      landed?.get(s.id),
    )
    out.set(s.id, { ...status, state: status.state === 'paused' && !deployedOnce.has(s.id) ? 'provisioned' : status.state })
  }
  return out
}

async function everDeployed(metadata: Metadata, ids: readonly string[]): Promise<Set<string>> {
  // The first deploy of a source is always recorded as 'deployed' (later ones as 'resumed').
  const rows = (await metadata.knex('source_events').distinct('source_id').whereIn('source_id', ids).where('kind', 'deployed')) as {
    source_id: string
  }[]
  return new Set(rows.map((r) => r.source_id))
}

// ---------------------------------------------------------------------------
// Views: what leaves the process. Secrets never do.

export interface SourceView {
  id: string
  kind: string
  name: string
  operator: string | null
  district: string | null
  timezone: string
  schedule: SourceRecord['schedule']
  freshness: SourceRecord['freshness']
  /** With every x-secret value replaced by '******'; null when the kind is unknown (nothing is known to be safe). */
  config: Record<string, unknown> | null
  desiredState: SourceRecord['desiredState']
  version: number
  createdAt: string
  updatedAt: string
  status: ApiSourceStatus
}

export function sourceView(source: SourceRecord, status: ApiSourceStatus): SourceView {
  const schema = configSchemaFor(source.kind)
  return {
    id: source.id,
    kind: source.kind,
    name: source.name,
    operator: source.operator,
    district: source.district,
    timezone: source.timezone,
    schedule: source.schedule,
    freshness: source.freshness,
    config: schema === undefined ? null : redactSecrets(source.config, schema),
    desiredState: source.desiredState,
    version: source.version,
    createdAt: new Date(source.createdAt).toISOString(),
    updatedAt: new Date(source.updatedAt).toISOString(),
    status,
  }
}

// ---------------------------------------------------------------------------
// Field-level errors

export interface FieldError {
  /** Dotted path into the submitted document: `config.baseUrl`, `config.streams[0]`, `(root)`. */
  path: string
  message: string
}

/** A 400 whose problems are known field by field. */
export class FieldValidationError extends CitysyncError {
  readonly errors: readonly FieldError[]

  constructor(code: 'CITYSYNC_ERR_CONFIG_INVALID' | 'CITYSYNC_ERR_SOURCE_CURSOR_INVALID', args: readonly string[], errors: readonly FieldError[]) {
    super(code, args)
    this.errors = errors
  }
}

// validateSourceConfig reports "invalid configuration: <path>: <message>; <path>: <message>".
const CONFIG_PREFIX = 'invalid configuration: '
const PROBLEM_SEPARATOR = /; (?=(?:\(root\)|[A-Za-z_$][\w$-]*(?:\.[\w$-]+|\[\d+\])*): )/

/** The field errors behind a validation error (one entry with path '(root)' when it names none). */
export function fieldErrors(err: CitysyncError): FieldError[] {
  if (err instanceof FieldValidationError) return [...err.errors]
  if (err.code === 'CITYSYNC_ERR_SOURCE_KIND_UNKNOWN') return [{ path: 'kind', message: err.message }]
  const text = err.message.startsWith(CONFIG_PREFIX) ? err.message.slice(CONFIG_PREFIX.length) : err.message
  return text.split(PROBLEM_SEPARATOR).map((problem) => {
    const at = problem.indexOf(': ')
    return at > 0 ? { path: problem.slice(0, at), message: problem.slice(at + 2) } : { path: '(root)', message: problem }
  })
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

// ---------------------------------------------------------------------------
// Operations shared by the REST routes and the CLI

export interface SourceOps {
  metadata: Metadata
  /** Present where this process runs the connectors: changes take effect at once. */
  manager?: SourceManager | undefined
  log: Logger
  /** Who is recorded in the source's history. */
  actor: string
  /** A connector check that takes longer fails (default 15 s). */
  checkTimeoutMs?: number
}

/** Validates (connector schema included) and adds the source, paused. */
export async function addSource(ops: SourceOps, raw: unknown): Promise<SourceRecord> {
  return ops.metadata.sources.add(validateSourceConfig(raw, configSchemaFor), ops.actor)
}

/**
 * Replaces a source's definition and bumps its version; a deployed source's
 * connector restarts on the new configuration. A secret sent back as
 * '******' (as GET shows it) keeps its stored value. The id may be left out.
 */
export async function updateSource(ops: SourceOps, id: string, raw: unknown, expectedVersion?: number): Promise<SourceRecord> {
  const current = await ops.metadata.sources.get(id)
  let body = raw
  if (isPlainObject(raw)) {
    if (raw.id !== undefined && raw.id !== id) {
      throw new FieldValidationError('CITYSYNC_ERR_CONFIG_INVALID', [`id: cannot change (${id})`], [{ path: 'id', message: `cannot change (${id})` }])
    }
    const schema = configSchemaFor(current.kind)
    const config = isPlainObject(raw.config) && schema !== undefined ? keepMaskedSecrets(raw.config, current.config, schema, 'config') : raw.config
    body = { ...raw, id, ...(config === undefined ? {} : { config }) }
  }
  const updated = await ops.metadata.sources.update(id, validateSourceConfig(body, configSchemaFor), expectedVersion, ops.actor)
  await ops.manager?.reconcile()
  return updated
}

// Walks declared properties (nested objects too) and puts the stored value
// back wherever the client sent the mask.
function keepMaskedSecrets(next: Record<string, unknown>, stored: Record<string, unknown>, schema: JsonSchema, path: string): Record<string, unknown> {
  const properties = isPlainObject(schema.properties) ? schema.properties : {}
  const out: Record<string, unknown> = { ...next }
  for (const [key, value] of Object.entries(next)) {
    const sub = properties[key]
    if (!isPlainObject(sub)) continue
    if (sub['x-secret'] === true && value === REDACTED) {
      if (stored[key] === undefined) {
        const message = `is "${REDACTED}" but no value is stored: send the secret itself`
        throw new FieldValidationError('CITYSYNC_ERR_CONFIG_INVALID', [`${path}.${key}: ${message}`], [{ path: `${path}.${key}`, message }])
      }
      out[key] = stored[key]
    } else if (isPlainObject(value) && isPlainObject(stored[key])) {
      out[key] = keepMaskedSecrets(value, stored[key], sub, `${path}.${key}`)
    }
  }
  return out
}

/**
 * Runs the connector's check against the stored configuration. Never throws
 * for what the upstream does: a failure is `{ ok: false, message }`.
 */
export async function checkSource(ops: SourceOps, source: SourceRecord): Promise<CheckResult> {
  const connector = connectorFor(source.kind)
  if (connector === undefined) throw new CitysyncError('CITYSYNC_ERR_SOURCE_KIND_UNKNOWN', [source.kind])
  const timeoutMs = ops.checkTimeoutMs ?? 15_000
  const stop = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const ctx: Ctx = {
    sourceId: source.id,
    timezone: source.timezone,
    clock: systemClock,
    log: ops.log.child({ sourceId: source.id, op: 'check' }),
    signal: stop.signal,
    async fetch(url, init = {}) {
      const { timeoutMs: callMs, ...rest } = init
      const ms = Math.min(callMs ?? timeoutMs, timeoutMs)
      try {
        return await fetch(url, { ...rest, signal: AbortSignal.any([stop.signal, AbortSignal.timeout(ms)]) })
      } catch (err) {
        if (err instanceof DOMException && err.name === 'TimeoutError') throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_TIMEOUT', [ms], { cause: err })
        throw err
      }
    },
  }
  try {
    return await Promise.race([
      connector.check(source.config, ctx),
      new Promise<CheckResult>((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, message: `no answer within ${timeoutMs} ms` }), timeoutMs)
      }),
    ])
  } catch (err) {
    return { ok: false, message: errorMessage(err) }
  } finally {
    clearTimeout(timer)
    stop.abort()
  }
}

/** Checks the source (unless forced), then deploys it. Returns the check that let it through. */
export async function deploySource(ops: SourceOps, id: string, force: boolean): Promise<CheckResult | null> {
  const source = await ops.metadata.sources.get(id)
  let check: CheckResult | null = null
  if (!force) {
    check = await checkSource(ops, source)
    if (!check.ok) throw new CitysyncError('CITYSYNC_ERR_SOURCE_CHECK_FAILED', [id, `${check.message} (deploy anyway with force)`])
  }
  await ops.metadata.sources.setDesiredState(id, 'deployed', ops.actor)
  await ops.manager?.reconcile()
  return check
}

export async function pauseSource(ops: SourceOps, id: string): Promise<void> {
  await ops.metadata.sources.setDesiredState(id, 'paused', ops.actor)
  await ops.manager?.reconcile()
}

/** Resuming a paused source does not run the check again: it was deployed before. */
export async function resumeSource(ops: SourceOps, id: string): Promise<void> {
  await ops.metadata.sources.setDesiredState(id, 'deployed', ops.actor)
  await ops.manager?.reconcile()
}

/** Bumps the version: every process running the source restarts its connector. */
export async function restartSource(ops: SourceOps, id: string): Promise<void> {
  const source = await ops.metadata.sources.get(id)
  if (source.desiredState !== 'deployed') throw new CitysyncError('CITYSYNC_ERR_SOURCE_STATE', [id, 'only a deployed source can be restarted'])
  await ops.metadata.sources.restart(id, ops.actor)
  await ops.manager?.reconcile()
}

/** Removes a paused source; a deployed one only with force (it is paused and stopped first). */
export async function removeSource(ops: SourceOps, id: string, force: boolean): Promise<void> {
  const source = await ops.metadata.sources.get(id)
  if (source.desiredState === 'deployed') {
    if (!force) throw new CitysyncError('CITYSYNC_ERR_SOURCE_NOT_PAUSED', [id, 'pause it before removing it, or force the removal'])
    await pauseSource(ops, id)
  }
  await ops.metadata.sources.remove(id)
}

export interface CursorChange {
  previousCursor: unknown
  cursor: unknown
}

/**
 * Resets a paused source's cursor (its next read starts from the beginning)
 * or, with `cursor`, sets it to that value, validated against the
 * connector's cursorSchema where it declares one. The history keeps the
 * cursor it replaced.
 */
export async function resetSourceCursor(ops: SourceOps, id: string, options: { cursor?: unknown; force?: boolean } = {}): Promise<CursorChange> {
  const source = await ops.metadata.sources.get(id)
  if (source.desiredState === 'deployed') {
    throw new CitysyncError('CITYSYNC_ERR_SOURCE_NOT_PAUSED', [id, 'its cursor can only be changed while it is paused'])
  }
  const before = await ops.metadata.connectorState.get(id)
  // A runner that was paused a moment ago may still be landing its last page
  // and would then save a checkpoint over the new cursor.
  if (before.runState === 'running' && options.force !== true) {
    throw new CitysyncError('CITYSYNC_ERR_SOURCE_NOT_PAUSED', [id, 'its connector is still finishing a read; try again in a few seconds (force only if no process runs it)'])
  }
  if (options.cursor === undefined || options.cursor === null) {
    await ops.metadata.connectorState.resetCursor(id, ops.actor)
    return { previousCursor: before.cursor, cursor: null }
  }
  validateCursor(source, options.cursor)
  await ops.metadata.connectorState.saveCheckpoint(id, options.cursor, systemClock.now())
  await ops.metadata.sources.recordEvent(id, 'cursor_reset', ops.actor, {
    previousCursor: before.cursor,
    previousCheckpointAt: before.checkpointAt,
    cursor: options.cursor,
  })
  return { previousCursor: before.cursor, cursor: options.cursor }
}

function validateCursor(source: SourceRecord, cursor: unknown): void {
  const invalid = (errors: FieldError[]): FieldValidationError =>
    new FieldValidationError('CITYSYNC_ERR_SOURCE_CURSOR_INVALID', [source.id, errors.map((e) => `${e.path}: ${e.message}`).join('; ')], errors)
  // Cursors are opaque to all but their connector, but always a JSON object.
  if (!isPlainObject(cursor)) throw invalid([{ path: 'cursor', message: 'must be an object' }])
  const schema = (connectorFor(source.kind) as { cursorSchema?: unknown } | undefined)?.cursorSchema
  if (!isPlainObject(schema)) return
  const validate = compileConnectorSchema(schema)
  if (validate(structuredClone(cursor))) return
  throw invalid(
    (validate.errors ?? []).map((e) => {
      const field = e.keyword === 'required' ? `/${String((e.params as { missingProperty?: unknown }).missingProperty)}` : e.instancePath
      return { path: `cursor${field.replace(/\//g, '.')}`, message: e.keyword === 'required' ? 'is required' : (e.message ?? 'is invalid') }
    }),
  )
}

// ---------------------------------------------------------------------------
// Schemas (OpenAPI at /docs)

const STATUS_EXAMPLE = {
  state: 'idle',
  rowsLanded: 18234,
  rowsRejected: 12,
  lastEventAt: '2026-11-21T09:41:07.000Z',
  lastArrivalAt: '2026-11-21T09:41:09.513Z',
  lastCheckpointAt: '2026-11-21T09:41:09.530Z',
  lastError: null,
}

const STATUS_SCHEMA = {
  $id: 'SourceStatus',
  type: 'object',
  required: ['state', 'rowsLanded', 'rowsRejected', 'lastEventAt', 'lastArrivalAt', 'lastCheckpointAt', 'lastError'],
  properties: {
    state: {
      type: 'string',
      enum: [...API_SOURCE_STATES],
      description: 'provisioned (added, never deployed), paused, or the connector run state when deployed (failed: see lastError)',
    },
    rowsLanded: { type: 'integer', description: 'rows landed in ClickHouse (records out, from the ingest log)' },
    rowsRejected: { type: 'integer', description: 'records in the dead-letter table' },
    lastEventAt: { type: ['string', 'null'], format: 'date-time', description: 'newest source event time landed' },
    lastArrivalAt: { type: ['string', 'null'], format: 'date-time', description: 'when the newest batch landed' },
    lastCheckpointAt: { type: ['string', 'null'], format: 'date-time', description: 'when the cursor last moved (push sources: the last acknowledged push)' },
    lastError: { type: ['string', 'null'] },
  },
  examples: [STATUS_EXAMPLE],
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

const DEFINITION_EXAMPLE = {
  id: 'hengqin-parking',
  kind: 'parking-lots',
  name: '横琴口岸停车场平台',
  operator: '横琴停车公司',
  district: '横琴',
  timezone: 'Asia/Shanghai',
  schedule: { every: '30s' },
  freshness: { maxDelay: '2h' },
  config: { baseUrl: 'http://127.0.0.1:4100/', appKey: 's3cr3t-app-key', pageSize: 500 },
}

const SOURCE_EXAMPLE = {
  ...DEFINITION_EXAMPLE,
  config: { ...DEFINITION_EXAMPLE.config, appKey: REDACTED, streams: ['entries', 'exits', 'spaces'], futureToleranceMs: 300000, lotsRefreshMs: 3600000 },
  desiredState: 'deployed',
  version: 2,
  createdAt: '2026-11-20T08:00:00.000Z',
  updatedAt: '2026-11-21T09:00:00.000Z',
  status: STATUS_EXAMPLE,
}

// Documents the body; it is validated by validateSourceConfig (the one gate
// for source definitions, with field-level errors), not by fastify.
const DEFINITION_SCHEMA = {
  $id: 'SourceDefinition',
  type: 'object',
  required: ['id', 'kind', 'name'],
  properties: {
    id: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{1,62}$' },
    kind: { type: 'string', description: 'connector kind, e.g. parking-lots, parking-push' },
    name: { type: 'string' },
    operator: { type: ['string', 'null'] },
    district: { type: ['string', 'null'] },
    timezone: { type: 'string', default: 'Asia/Shanghai', description: 'IANA zone of the naive times the source writes' },
    schedule: { type: 'object', description: '{"every": "30s"} or {"cron": "*/5 * * * *"}', additionalProperties: true },
    freshness: { type: 'object', description: '{"maxDelay": "2h", "calendar": {...}}', additionalProperties: true },
    config: { type: 'object', description: "validated against the connector's JSON schema; secrets are encrypted at rest and shown as ******", additionalProperties: true },
  },
  examples: [DEFINITION_EXAMPLE],
} as const

const SOURCE_SCHEMA = {
  $id: 'Source',
  type: 'object',
  required: ['id', 'kind', 'name', 'operator', 'district', 'timezone', 'schedule', 'freshness', 'config', 'desiredState', 'version', 'createdAt', 'updatedAt', 'status'],
  properties: {
    id: { type: 'string' },
    kind: { type: 'string' },
    name: { type: 'string' },
    operator: { type: ['string', 'null'] },
    district: { type: ['string', 'null'] },
    timezone: { type: 'string' },
    schedule: { type: 'object', additionalProperties: true },
    freshness: { type: 'object', additionalProperties: true },
    config: { type: ['object', 'null'], additionalProperties: true, description: 'secrets shown as ******' },
    desiredState: { type: 'string', enum: ['deployed', 'paused'] },
    version: { type: 'integer', description: 'bumped by every change and restart; send it back as ?version= to update safely' },
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
    status: { $ref: 'SourceStatus#' },
  },
  examples: [SOURCE_EXAMPLE],
} as const

const VALIDATION_ERROR_SCHEMA = {
  $id: 'ValidationError',
  type: 'object',
  // `errors` is there when the body was read; a malformed request line or JSON text has none.
  required: ['code', 'message'],
  properties: {
    code: { type: 'string' },
    message: { type: 'string' },
    errors: {
      type: 'array',
      items: { type: 'object', required: ['path', 'message'], properties: { path: { type: 'string' }, message: { type: 'string' } } },
    },
  },
  examples: [
    {
      code: 'CITYSYNC_ERR_CONFIG_INVALID',
      message: 'invalid configuration: config.baseUrl: must match format "uri"; config.pageSize: must be <= 1000',
      errors: [
        { path: 'config.baseUrl', message: 'must match format "uri"' },
        { path: 'config.pageSize', message: 'must be <= 1000' },
      ],
    },
  ],
} as const

const CHECK_SCHEMA = {
  $id: 'CheckResult',
  type: 'object',
  required: ['ok', 'message'],
  properties: { ok: { type: 'boolean' }, message: { type: 'string' }, details: { type: 'object', additionalProperties: true } },
  examples: [{ ok: true, message: '5 car parks found', details: { lots: 5, parkCodes: ['P001', 'P002', 'P003', 'P004', 'P005'] } }],
} as const

const ID_PARAMS = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{1,62}$' } } } as const
const FORCE_QUERY = {
  type: 'object',
  properties: { force: { type: 'boolean', default: false } },
  additionalProperties: false,
} as const

// Fastify validates params and query strings; a source definition's body is
// left to validateSourceConfig, whose errors name every failing field.
const ajv = new Ajv2020({ coerceTypes: 'array', useDefaults: true, allErrors: false, strict: false })
const bodyLeftToRoute: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) =>
  httpPart === 'body' ? () => true : ajv.compile(schema as JsonSchema)

const E = (ref: string) => ({ $ref: `${ref}#` }) as const

function curl(text: string): string {
  return `Example:\n\n\`\`\`sh\n${text}\n\`\`\``
}

// ---------------------------------------------------------------------------
// Routes

export function sourceRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { metadata, warehouse } = deps
  const ops: SourceOps = { metadata, manager: deps.manager, log: deps.logger, actor: 'api' }
  // The source's history names whoever is authenticated.
  const opsFor = (req: FastifyRequest): SourceOps => ({ ...ops, actor: actorOf(req) })
  for (const schema of [STATUS_SCHEMA, SUMMARY_SCHEMA, DEFINITION_SCHEMA, SOURCE_SCHEMA, VALIDATION_ERROR_SCHEMA, CHECK_SCHEMA]) app.addSchema(schema)

  async function statusOf(id: string): Promise<ApiSourceStatus> {
    const source = await metadata.sources.get(id)
    return (await sourceStatuses(metadata, warehouse, [source])).get(id)!
  }

  async function viewOf(source: SourceRecord): Promise<SourceView> {
    return sourceView(source, (await sourceStatuses(metadata, warehouse, [source])).get(source.id)!)
  }

  /** Validation errors leave with their fields: `{code, message, errors: [{path, message}]}`. */
  async function withFieldErrors<T>(reply: FastifyReply, fn: () => Promise<T>): Promise<T | FastifyReply> {
    try {
      return await fn()
    } catch (err) {
      if (
        isCitysyncError(err) &&
        (err.code === 'CITYSYNC_ERR_CONFIG_INVALID' || err.code === 'CITYSYNC_ERR_SOURCE_KIND_UNKNOWN' || err.code === 'CITYSYNC_ERR_SOURCE_CURSOR_INVALID')
      ) {
        return reply.status(400).send({ code: err.code, message: err.message, errors: fieldErrors(err) })
      }
      throw err
    }
  }

  app.get<{ Querystring: { kind?: string; district?: string; operator?: string; limit: number; offset: number } }>(
    '/api/v1/sources',
    {
      schema: {
        summary: 'List data sources with their status',
        description: curl("curl -s 'localhost:3000/api/v1/sources?district=横琴'"),
        tags: ['sources'],
        querystring: {
          type: 'object',
          properties: { kind: { type: 'string' }, district: { type: 'string' }, operator: { type: 'string' }, ...pageQuery(MAX_PAGE) },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            required: ['items', 'total', 'next'],
            properties: { items: { type: 'array', items: { $ref: 'SourceSummary#' } }, ...PAGE_FIELDS },
            examples: [
              {
                total: 1,
                next: null,
                items: [{ id: 'hengqin-parking', kind: 'parking-lots', name: '横琴口岸停车场平台', operator: '横琴停车公司', district: '横琴', status: STATUS_EXAMPLE }],
              },
            ],
          },
        },
      },
    },
    async (req) => {
      const { kind, district, operator } = req.query
      const page = slicePage(await metadata.sources.list({ kind, district, operator }), req.query)
      const status = await sourceStatuses(metadata, warehouse, page.items)
      return { ...page, items: page.items.map((s) => ({ id: s.id, kind: s.kind, name: s.name, operator: s.operator, district: s.district, status: status.get(s.id)! })) }
    },
  )

  app.post<{ Body: unknown }>(
    '/api/v1/sources',
    {
      validatorCompiler: bodyLeftToRoute,
      schema: {
        summary: "Add a source (paused); its config is validated against the connector's schema",
        description: curl(
          `curl -s -X POST localhost:3000/api/v1/sources -H 'content-type: application/json' \\\n  -d '${JSON.stringify(DEFINITION_EXAMPLE)}'`,
        ),
        tags: ['sources'],
        body: E('SourceDefinition'),
        response: { 201: E('Source'), 400: E('ValidationError'), 409: E('Error') },
      },
    },
    (req, reply) =>
      withFieldErrors(reply, async () => {
        const added = await addSource(opsFor(req), req.body)
        return reply.status(201).send(await viewOf(added))
      }),
  )

  app.get<{ Params: { id: string } }>(
    '/api/v1/sources/:id',
    {
      schema: {
        summary: "A source's definition (secrets shown as ******), version and status",
        description: curl('curl -s localhost:3000/api/v1/sources/hengqin-parking'),
        tags: ['sources'],
        params: ID_PARAMS,
        response: { 200: E('Source'), 404: E('Error') },
      },
    },
    async (req) => viewOf(await metadata.sources.get(req.params.id)),
  )

  app.put<{ Params: { id: string }; Querystring: { version?: number }; Body: unknown }>(
    '/api/v1/sources/:id',
    {
      validatorCompiler: bodyLeftToRoute,
      schema: {
        summary: 'Replace a source\'s definition; bumps its version and restarts a running connector on it',
        description:
          'Secrets sent back as `******` keep their stored value. With `?version=N` the update is refused (409) if someone changed the source since version N.\n\n' +
          curl(
            `curl -s -X PUT 'localhost:3000/api/v1/sources/hengqin-parking?version=1' -H 'content-type: application/json' \\\n  -d '${JSON.stringify({ ...DEFINITION_EXAMPLE, config: { ...DEFINITION_EXAMPLE.config, appKey: REDACTED, pageSize: 200 } })}'`,
          ),
        tags: ['sources'],
        params: ID_PARAMS,
        querystring: { type: 'object', properties: { version: { type: 'integer', minimum: 1 } }, additionalProperties: false },
        body: E('SourceDefinition'),
        response: { 200: E('Source'), 400: E('ValidationError'), 404: E('Error'), 409: E('Error') },
      },
    },
    (req, reply) =>
      withFieldErrors(reply, async () => viewOf(await updateSource(opsFor(req), req.params.id, req.body, req.query.version))),
  )

  app.delete<{ Params: { id: string }; Querystring: { force: boolean } }>(
    '/api/v1/sources/:id',
    {
      schema: {
        summary: 'Remove a source with its cursor and history (landed data stays); refused while deployed unless ?force=true',
        description: curl('curl -s -X DELETE localhost:3000/api/v1/sources/hengqin-parking'),
        tags: ['sources'],
        params: ID_PARAMS,
        querystring: FORCE_QUERY,
        response: {
          200: {
            type: 'object',
            required: ['id', 'removed'],
            properties: { id: { type: 'string' }, removed: { type: 'boolean' } },
            examples: [{ id: 'hengqin-parking', removed: true }],
          },
          404: E('Error'),
          409: E('Error'),
        },
      },
    },
    async (req) => {
      await removeSource(opsFor(req), req.params.id, req.query.force)
      return { id: req.params.id, removed: true }
    },
  )

  app.post<{ Params: { id: string } }>(
    '/api/v1/sources/:id/check',
    {
      schema: {
        summary: "Run the connector's check against the stored config (reach the upstream, credentials, lots found)",
        description: curl('curl -s -X POST localhost:3000/api/v1/sources/hengqin-parking/check'),
        tags: ['sources'],
        params: ID_PARAMS,
        response: { 200: E('CheckResult'), 404: E('Error') },
      },
    },
    async (req) => checkSource(opsFor(req), await metadata.sources.get(req.params.id)),
  )

  app.post<{ Params: { id: string }; Querystring: { force: boolean } }>(
    '/api/v1/sources/:id/deploy',
    {
      schema: {
        summary: "Deploy a source: runs the connector's check first and refuses (422) if it fails, unless ?force=true",
        description: curl('curl -s -X POST localhost:3000/api/v1/sources/hengqin-parking/deploy'),
        tags: ['sources'],
        params: ID_PARAMS,
        querystring: FORCE_QUERY,
        response: { 200: E('SourceStatus'), 404: E('Error'), 422: E('Error') },
      },
    },
    async (req) => {
      await deploySource(opsFor(req), req.params.id, req.query.force)
      return statusOf(req.params.id)
    },
  )

  const actions = {
    pause: { summary: 'Pause a source: its connector stops after landing what it read', run: pauseSource },
    resume: { summary: 'Resume a paused source from its saved cursor', run: resumeSource },
    restart: { summary: "Restart a deployed source's connector (from its saved cursor)", run: restartSource },
  } as const
  for (const [action, { summary, run }] of Object.entries(actions)) {
    app.post<{ Params: { id: string } }>(
      `/api/v1/sources/:id/${action}`,
      {
        schema: {
          summary,
          description: curl(`curl -s -X POST localhost:3000/api/v1/sources/hengqin-parking/${action}`),
          tags: ['sources'],
          params: ID_PARAMS,
          response: { 200: E('SourceStatus'), 404: E('Error'), 409: E('Error') },
        },
      },
      async (req) => {
        await run(opsFor(req), req.params.id)
        return statusOf(req.params.id)
      },
    )
  }

  app.get<{ Params: { id: string } }>(
    '/api/v1/sources/:id/status',
    {
      schema: {
        summary: "A source's status: state, rows landed and rejected, newest event and arrival, last checkpoint and error",
        description: curl('curl -s localhost:3000/api/v1/sources/hengqin-parking/status'),
        tags: ['sources'],
        params: ID_PARAMS,
        response: { 200: E('SourceStatus'), 404: E('Error') },
      },
    },
    async (req) => statusOf(req.params.id),
  )

  app.get<{ Params: { id: string } }>(
    '/api/v1/sources/:id/cursor',
    {
      schema: {
        summary: "The connector's saved cursor (where the next read resumes)",
        description: curl('curl -s localhost:3000/api/v1/sources/hengqin-parking/cursor'),
        tags: ['sources'],
        params: ID_PARAMS,
        response: {
          200: {
            type: 'object',
            required: ['cursor', 'checkpointAt'],
            properties: { cursor: {}, checkpointAt: { type: ['string', 'null'], format: 'date-time' } },
            examples: [{ cursor: { in: 18234, out: 17990, space: 5120 }, checkpointAt: '2026-11-21T09:41:09.530Z' }],
          },
          404: E('Error'),
        },
      },
    },
    async (req) => {
      const st = await metadata.connectorState.get(req.params.id)
      return { cursor: st.cursor ?? null, checkpointAt: st.checkpointAt === null ? null : new Date(st.checkpointAt).toISOString() }
    },
  )

  app.get<{ Params: { id: string }; Querystring: { code?: string; limit: number; offset: number } }>(
    '/api/v1/sources/:id/errors',
    {
      schema: {
        summary: "A source's recent rejected records, newest first: stage, code, reason and the payload as received (plates masked)",
        description: curl('curl -s "localhost:3000/api/v1/sources/hengqin-parking/errors?limit=20&code=future_timestamp"'),
        tags: ['sources'],
        params: ID_PARAMS,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { code: { type: 'string', minLength: 1, description: 'only this rejection code' }, ...pageQuery(50) },
        },
        response: {
          200: {
            type: 'object',
            required: ['items', 'total', 'next'],
            properties: {
              items: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['eventId', 'occurredAt', 'receivedAt', 'stage', 'code', 'reason', 'family', 'raw'],
                  properties: {
                    eventId: { type: 'string' },
                    occurredAt: { type: 'string', format: 'date-time' },
                    receivedAt: { type: 'string', format: 'date-time' },
                    stage: { type: 'string', examples: ['connector', 'normalise', 'sink'] },
                    code: { type: 'string', examples: ['future_timestamp'] },
                    reason: { type: 'string' },
                    family: { type: ['string', 'null'] },
                    raw: { type: 'string', description: 'the record as received, personal data protected' },
                  },
                },
              },
              ...PAGE_FIELDS,
            },
          },
          404: E('Error'),
        },
      },
    },
    async (req) => {
      await metadata.sources.get(req.params.id) // 404 for an unknown source
      const { code, limit, offset } = req.query
      const where = `sourceId = {source:String}${code === undefined ? '' : ' AND code = {code:String}'}`
      const params = { source: req.params.id, limit, offset, ...(code === undefined ? {} : { code }) }
      const [rows, counted] = await Promise.all([
        warehouse.query<{ eventId: string; occurredAt: number; receivedAt: number; stage: string; code: string; reason: string; family: string | null; raw: string }>(
          `SELECT eventId, toUnixTimestamp64Milli(occurredAt) AS occurredAt, toUnixTimestamp64Milli(receivedAt) AS receivedAt, stage, code, reason, family, raw
             FROM dead_letter FINAL WHERE ${where} ORDER BY receivedAt DESC, eventId LIMIT {limit:UInt32} OFFSET {offset:UInt32}`,
          params,
        ),
        warehouse.query<{ n: number }>(`SELECT count() AS n FROM dead_letter FINAL WHERE ${where}`, params),
      ])
      const total = Number(counted[0]?.n ?? 0)
      const items = rows.map((r) => ({ ...r, occurredAt: new Date(Number(r.occurredAt)).toISOString(), receivedAt: new Date(Number(r.receivedAt)).toISOString() }))
      return { items, total, next: nextOffset({ limit, offset }, items.length, total) }
    },
  )

  app.delete<{ Params: { id: string }; Querystring: { force: boolean; cursor?: string }; Body: unknown }>(
    '/api/v1/sources/:id/cursor',
    {
      validatorCompiler: bodyLeftToRoute,
      schema: {
        summary: "Reset a paused source's cursor, or set it to a given value to read a stretch again",
        description:
          'Only while the source is paused (else 409 `CITYSYNC_ERR_SOURCE_NOT_PAUSED`). Without a value the next read starts from the beginning ' +
          '(what already landed is deduplicated). A value comes as the body `{"cursor": {...}}` or as `?cursor=<JSON>` and is validated.\n\n' +
          curl(
            "curl -s -X DELETE localhost:3000/api/v1/sources/hengqin-parking/cursor\n" +
              "curl -s -X DELETE localhost:3000/api/v1/sources/hengqin-parking/cursor -H 'content-type: application/json' \\\n" +
              "  -d '{\"cursor\": {\"in\": 17000, \"out\": 16800, \"space\": 5000}}'",
          ),
        tags: ['sources'],
        params: ID_PARAMS,
        querystring: {
          type: 'object',
          properties: { force: { type: 'boolean', default: false }, cursor: { type: 'string', description: 'the new cursor as JSON text' } },
          additionalProperties: false,
        },
        body: {
          type: 'object',
          properties: { cursor: { description: 'the new cursor, in the shape GET /cursor shows' } },
          examples: [{ cursor: { in: 17000, out: 16800, space: 5000 } }],
        },
        response: {
          200: {
            type: 'object',
            required: ['cursor', 'previousCursor'],
            properties: { cursor: {}, previousCursor: {} },
            examples: [{ cursor: null, previousCursor: { in: 18234, out: 17990, space: 5120 } }],
          },
          400: E('ValidationError'),
          404: E('Error'),
          409: E('Error'),
        },
      },
    },
    (req, reply) =>
      withFieldErrors(reply, async () => {
        const fromBody = isPlainObject(req.body) ? req.body.cursor : undefined
        if (req.body !== undefined && req.body !== null && !isPlainObject(req.body)) {
          throw new FieldValidationError('CITYSYNC_ERR_SOURCE_CURSOR_INVALID', [req.params.id, 'the body must be {"cursor": ...}'], [{ path: '(root)', message: 'must be an object {"cursor": ...}' }])
        }
        let fromQuery: unknown
        if (req.query.cursor !== undefined) {
          try {
            fromQuery = JSON.parse(req.query.cursor) as unknown
          } catch {
            throw new FieldValidationError('CITYSYNC_ERR_SOURCE_CURSOR_INVALID', [req.params.id, 'cursor: is not JSON'], [{ path: 'cursor', message: 'is not JSON' }])
          }
        }
        if (fromBody !== undefined && fromQuery !== undefined) {
          throw new FieldValidationError('CITYSYNC_ERR_SOURCE_CURSOR_INVALID', [req.params.id, 'give the cursor in the body or the query, not both'], [{ path: 'cursor', message: 'given twice' }])
        }
        return resetSourceCursor(opsFor(req), req.params.id, { cursor: fromBody ?? fromQuery, force: req.query.force })
      }),
  )
}
