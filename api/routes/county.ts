import { type FastifyError, type FastifyInstance, type FastifyRequest } from 'fastify'
import { type CountyFilesConfig, type CountyFilesCursor, COUNTY_FILE_DEFAULTS, storeUpload } from '../../connectors/county-feeds/files.ts'
import { promoteOnFirstData } from '../../connectors/county-feeds/onboarding.ts'
import { systemClock } from '../../lib/clock.ts'
import { CitysyncError } from '../../lib/errors.ts'
import { ONBOARDING_STATUSES, type LotOnboarding, type OnboardingChange, type OnboardingInput, type OnboardingStatus } from '../../lib/metadata/onboarding.ts'
import { type ApiDeps } from '../app.ts'
import { actorOf } from '../auth.ts'
import { MAX_PAGE, PAGE_FIELDS, pageQuery, slicePage } from '../pagination.ts'

// County feeds: file upload into a county source's drop folder, and the
// onboarding status of county car parks.
//
// Upload: POST /api/v1/county/:sourceId/files?name=FILE.csv with the file's
// bytes as the body (any of the content types below). The file is checked
// (readable, fits a dataset, not landed before) and stored in the source's
// drop folder; the source's next run lands it. Largest body: UPLOAD_LIMIT.

/** Largest upload; a source's own maxFileBytes, when smaller, applies too. */
export const UPLOAD_LIMIT = 50 * 1024 * 1024

const UPLOAD_TYPES = [
  'application/octet-stream',
  'text/csv',
  'application/csv',
  'application/vnd.ms-excel',
  'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
]

const DATE = { type: ['string', 'null'], format: 'date', description: 'YYYY-MM-DD' } as const

const ONBOARDING_SCHEMA = {
  $id: 'LotOnboarding',
  type: 'object',
  required: ['lotId', 'county', 'name', 'sourceId', 'status', 'plannedDate', 'connectedDate', 'onboardedDate', 'suspendedDate', 'note', 'updatedAt', 'updatedBy', 'version'],
  properties: {
    lotId: { type: 'string' },
    county: { type: 'string' },
    name: { type: ['string', 'null'] },
    sourceId: { type: ['string', 'null'], description: 'the source that delivers the car park’s data' },
    status: { type: 'string', enum: [...ONBOARDING_STATUSES] },
    plannedDate: DATE,
    connectedDate: DATE,
    onboardedDate: DATE,
    suspendedDate: DATE,
    note: { type: ['string', 'null'] },
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
    updatedBy: { type: 'string' },
    version: { type: 'integer' },
  },
  examples: [
    {
      lotId: 'RD-P003', county: '如东县', name: '如东县人民医院停车场', sourceId: 'nantong-rudong-files', status: 'onboarded',
      plannedDate: '2026-10-31', connectedDate: '2026-10-20', onboardedDate: '2026-11-02', suspendedDate: null,
      note: '数据每日 02:00 报送', createdAt: '2026-09-15T01:20:00.000Z', updatedAt: '2026-11-02T03:05:41.000Z', updatedBy: 'citysync', version: 3,
    },
  ],
} as const

const CHANGE_SCHEMA = {
  $id: 'OnboardingChange',
  type: 'object',
  required: ['at', 'actor', 'from', 'to', 'changes'],
  properties: {
    at: { type: 'string', format: 'date-time' },
    actor: { type: 'string' },
    from: { type: ['string', 'null'], enum: [...ONBOARDING_STATUSES, null], description: 'null when the record was created' },
    to: { type: 'string', enum: [...ONBOARDING_STATUSES] },
    changes: { type: 'object', additionalProperties: { type: 'object', properties: { from: {}, to: {} } } },
  },
} as const

const PUT_BODY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    county: { type: 'string', minLength: 1, description: 'needed to create a record' },
    name: { type: ['string', 'null'] },
    sourceId: { type: ['string', 'null'] },
    status: { type: 'string', enum: [...ONBOARDING_STATUSES], description: 'needed to create a record' },
    plannedDate: DATE,
    connectedDate: DATE,
    onboardedDate: DATE,
    suspendedDate: DATE,
    note: { type: ['string', 'null'], maxLength: 2000 },
    changedBy: { type: 'string', minLength: 1, maxLength: 100, description: 'ignored when authenticated: the history records the caller' },
    version: { type: 'integer', minimum: 0, description: 'the version this change is based on (0: create only); refused with 409 when the record moved on' },
  },
  examples: [
    { county: '如东县', name: '如东县人民医院停车场', sourceId: 'nantong-rudong-files', status: 'connecting', plannedDate: '2026-10-31', note: '厂商已开通数据库只读账号', changedBy: '南通市交通运输局 王工' },
  ],
} as const

const UPLOAD_RESULT = {
  type: 'object',
  required: ['sourceId', 'file', 'bytes', 'sha256', 'format', 'encoding', 'delimiter', 'dataset', 'rows'],
  properties: {
    sourceId: { type: 'string' },
    file: { type: 'string', description: 'name in the drop folder' },
    bytes: { type: 'integer' },
    sha256: { type: 'string', description: 'first 32 hex digits' },
    format: { type: 'string', enum: ['csv', 'xlsx'] },
    encoding: { type: ['string', 'null'], enum: ['utf-8', 'utf-8-bom', 'gb18030', null] },
    delimiter: { type: ['string', 'null'], enum: [',', ';', null] },
    dataset: { type: 'string' },
    rows: { type: 'integer', description: 'data rows in the file (good and bad)' },
  },
  examples: [
    { sourceId: 'nantong-rudong-files', file: '2026-11-21_停车记录.csv', bytes: 48211, sha256: '4be0c1f3a8a14c6e9d0b2f75e61c3a90', format: 'csv', encoding: 'gb18030', delimiter: ',', dataset: 'passages', rows: 412 },
  ],
} as const

function iso(ms: number): string {
  return new Date(ms).toISOString()
}

function present(r: LotOnboarding): Record<string, unknown> {
  return { ...r, createdAt: iso(r.createdAt), updatedAt: iso(r.updatedAt) }
}

function presentChange(c: OnboardingChange): Record<string, unknown> {
  return { at: iso(c.at), actor: c.actor, from: c.from, to: c.to, changes: c.changes }
}

async function readBody(req: FastifyRequest, limit: number): Promise<Buffer> {
  const body = req.body as AsyncIterable<Buffer> | undefined
  if (body === undefined || body === null) throw new CitysyncError('CITYSYNC_ERR_COUNTY_FILE', [String((req.query as { name?: string }).name), `send the file as the body with Content-Type ${UPLOAD_TYPES.join(', ')}`])
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) throw new CitysyncError('CITYSYNC_ERR_COUNTY_FILE_TOO_LARGE', [limit])
  const chunks: Buffer[] = []
  let size = 0
  for await (const b of body) {
    size += b.length
    if (size > limit) throw new CitysyncError('CITYSYNC_ERR_COUNTY_FILE_TOO_LARGE', [limit])
    chunks.push(b)
  }
  return Buffer.concat(chunks)
}

/** Registered as a plugin: its upload parser and error mapping are for these routes only. */
export function countyRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const { metadata, warehouse } = deps
  app.addSchema(ONBOARDING_SCHEMA)
  app.addSchema(CHANGE_SCHEMA)
  // The body stays a stream until the route has found the source and its limit.
  app.addContentTypeParser(UPLOAD_TYPES, (_req, payload, done) => done(null, payload))
  app.setErrorHandler((err: FastifyError) => {
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') throw new CitysyncError('CITYSYNC_ERR_COUNTY_FILE_TOO_LARGE', [UPLOAD_LIMIT])
    throw err
  })

  app.post<{ Params: { sourceId: string }; Querystring: { name: string } }>(
    '/api/v1/county/:sourceId/files',
    {
      schema: {
        summary: "Upload a county file (CSV or XLSX) into a county-files source's drop folder",
        description:
          'The body is the file itself (`Content-Type: text/csv`, `application/octet-stream` or the XLSX type). ' +
          'CSV may be UTF-8 (with or without BOM) or GB18030, comma- or semicolon-separated. ' +
          'The file is refused with 400 `CITYSYNC_ERR_COUNTY_FILE` when it cannot be read or its header fits no dataset, ' +
          '409 `CITYSYNC_ERR_COUNTY_FILE_DUPLICATE` when the same content was already landed, 413 when it is too large. ' +
          'Otherwise it is stored and the source’s next run lands it: bad rows go to the dead-letter store with their reason, the rest lands.\n\n' +
          'Example: `curl -X POST --data-binary @2026-11-21_停车记录.csv -H "Content-Type: text/csv" ' +
          '"http://127.0.0.1:3000/api/v1/county/nantong-rudong-files/files?name=2026-11-21_停车记录.csv"`',
        tags: ['county'],
        params: { type: 'object', required: ['sourceId'], properties: { sourceId: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{1,62}$' } } },
        querystring: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string', minLength: 5, maxLength: 200 } } },
        response: { 201: UPLOAD_RESULT, 400: { $ref: 'Error#' }, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' }, 413: { $ref: 'Error#' } },
      },
    },
    async (req, reply) => {
      const source = await metadata.sources.get(req.params.sourceId)
      if (source.kind !== 'county-files') {
        throw new CitysyncError('CITYSYNC_ERR_SOURCE_STATE', [source.id, `it is a ${source.kind} source; files go to county-files sources`])
      }
      const config = source.config as unknown as CountyFilesConfig
      const limit = Math.min(UPLOAD_LIMIT, config.maxFileBytes ?? COUNTY_FILE_DEFAULTS.maxFileBytes)
      const bytes = await readBody(req, limit)
      const state = await metadata.connectorState.get(source.id)
      const stored = await storeUpload(config, (state.cursor ?? undefined) as CountyFilesCursor | undefined, req.query.name, bytes, systemClock.now())
      req.log.info({ sourceId: source.id, file: stored.file, bytes: stored.bytes, dataset: stored.dataset }, 'county file uploaded')
      return reply.status(201).send({ sourceId: source.id, ...stored })
    },
  )

  app.get<{ Querystring: { county?: string; status?: OnboardingStatus; limit: number; offset: number } }>(
    '/api/v1/county/onboarding',
    {
      schema: {
        summary: 'Onboarding status of county car parks',
        description:
          'Before answering, car parks that are `connecting` and whose source has landed good data for them since their connected date ' +
          'are moved to `onboarded` (actor `citysync`, dated the day the first row arrived); `promoted` lists them.',
        tags: ['county'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { county: { type: 'string', minLength: 1 }, status: { type: 'string', enum: [...ONBOARDING_STATUSES] }, ...pageQuery(MAX_PAGE) },
        },
        response: {
          200: {
            type: 'object',
            required: ['items', 'total', 'next', 'promoted'],
            properties: {
              items: { type: 'array', items: { $ref: 'LotOnboarding#' } },
              ...PAGE_FIELDS,
              promoted: { type: 'array', items: { type: 'string' }, description: 'car parks moved to onboarded by this call' },
            },
          },
        },
      },
    },
    async (req) => {
      const promoted = await promoteOnFirstData(metadata, warehouse, { county: req.query.county })
      const items = await metadata.onboarding.list({ county: req.query.county, status: req.query.status })
      return { ...slicePage(items.map(present), req.query), promoted: promoted.map((p) => p.lotId) }
    },
  )

  const LOT_PARAMS = { type: 'object', required: ['lotId'], properties: { lotId: { type: 'string', pattern: '^[^\\s/]{1,64}$' } } } as const

  app.get<{ Params: { lotId: string } }>(
    '/api/v1/county/onboarding/:lotId',
    {
      schema: {
        summary: "A county car park's onboarding record and its history (newest first)",
        tags: ['county'],
        params: LOT_PARAMS,
        response: {
          200: { type: 'object', required: ['record', 'history'], properties: { record: { $ref: 'LotOnboarding#' }, history: { type: 'array', items: { $ref: 'OnboardingChange#' } } } },
          404: { $ref: 'Error#' },
        },
      },
    },
    async (req) => {
      const record = await metadata.onboarding.get(req.params.lotId)
      const history = await metadata.onboarding.history(req.params.lotId)
      return { record: present(record), history: history.map(presentChange) }
    },
  )

  app.put<{ Params: { lotId: string }; Body: OnboardingInput & { changedBy?: string; version?: number } }>(
    '/api/v1/county/onboarding/:lotId',
    {
      schema: {
        summary: "Create or change a county car park's onboarding record",
        description:
          'Statuses: planned → connecting → onboarded, suspended from any status and back. An onboarded car park cannot go back to planned (409 ' +
          '`CITYSYNC_ERR_ONBOARDING_TRANSITION`). Entering connecting, onboarded or suspended sets that date to the one given, or to today (Asia/Shanghai). ' +
          'Fields left out stay as they are; null clears one. Every change is kept in the history with who, when, from and to. ' +
          'Answers 201 when the record was created, 200 otherwise.\n\n' +
          'Example: `curl -X PUT -H "Content-Type: application/json" http://127.0.0.1:3000/api/v1/county/onboarding/RD-P003 ' +
          '-d \'{"county":"如东县","name":"如东县人民医院停车场","sourceId":"nantong-rudong-files","status":"connecting","changedBy":"王工"}\'`',
        tags: ['county'],
        params: LOT_PARAMS,
        body: PUT_BODY,
        response: { 200: { $ref: 'LotOnboarding#' }, 201: { $ref: 'LotOnboarding#' }, 400: { $ref: 'Error#' }, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' } },
      },
    },
    async (req, reply) => {
      const { changedBy, version, ...input } = req.body
      const result = await metadata.onboarding.put(req.params.lotId, input, actorOf(req, changedBy), version)
      return reply.status(result.created ? 201 : 200).send(present(result.record))
    },
  )
  return Promise.resolve()
}
