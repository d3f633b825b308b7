import { type FastifyInstance, type FastifyReply } from 'fastify'
import { parseDuration } from '../../lib/duration.ts'
import { CitysyncError } from '../../lib/errors.ts'
import { ARCHIVE_KINDS, type ArchiveEntry, type ArchiveKind } from '../../quality/report/archive.ts'
import { LANGS } from '../../quality/report/labels.ts'
import { FORMATS } from '../../quality/report/render.ts'
import { checkFormat, checkLang, contentDisposition, type RenderedReport, Reports } from '../../quality/report/reports.ts'
import { type ApiDeps } from '../app.ts'
import { PAGE_FIELDS, pageOf, pageQuery } from '../pagination.ts'
import { qualityClock } from './alerts.ts'

// Reports for the bureau: the monthly data-synchronisation report
// (数据同步监控报告) and the quarterly county onboarding list
// (县市区停车场接入进展清单), as JSON, HTML, XLSX, CSV or PDF, and the archive of
// generated reports.

function curl(text: string): string {
  return `Example:\n\n\`\`\`sh\n${text}\n\`\`\``
}

function send(reply: FastifyReply, r: RenderedReport, inline: boolean): FastifyReply {
  void reply.header('content-type', r.contentType)
  if (!inline) void reply.header('content-disposition', contentDisposition(r.filename))
  return reply.send(r.body)
}

function entryView(e: ArchiveEntry): Record<string, unknown> {
  return { ...e, generatedAt: new Date(e.generatedAt).toISOString(), dataThrough: new Date(e.dataThrough).toISOString() }
}

const FORMAT = { type: 'string', enum: [...FORMATS], default: 'json', description: 'pdf needs Chromium on the server (503 `CITYSYNC_ERR_REPORT_PDF_UNAVAILABLE` otherwise)' } as const
const LANG = { type: 'string', enum: [...LANGS], default: 'zh', description: 'labels: Chinese (default) or English' } as const
const TZ = { type: 'string', default: 'Asia/Shanghai', description: 'zone in which the month or quarter is read' } as const
const BINARY = { description: 'the report in the format asked for (HTML, XLSX, CSV or PDF); JSON as below', type: 'object', additionalProperties: true } as const

export function reportRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const reports = new Reports({ metadata: deps.metadata, warehouse: deps.warehouse, clock: qualityClock(deps), log: deps.logger })

  app.get<{ Querystring: { month: string; format: string; lang: string; tz: string; bucket?: string; refresh: boolean } }>(
    '/api/v1/reports/sync',
    {
      schema: {
        summary: 'The monthly data-synchronisation report (数据同步监控报告)',
        description:
          'Summary (sources and car parks covered, completeness, sources with interruptions, hours late, change against the previous month) and one row per source and car park: ' +
          'records, days active, completeness (good ÷ expected buckets; bad and missing apart; maintenance and quiet time left out), delays over maxDelay (count and time late), ' +
          'longest gap, incidents with their root causes, abnormal states; a day × hour completeness strip and daily volumes per source. ' +
          'A finished month is served from the archive (generated and archived when missing; generated again when backfilled rows for it landed after the archived revision). ' +
          '`refresh=true` generates it again. `bucket` (default 5m, a multiple of 5 minutes) changes the completeness bucket; such reports are not archived.\n\n' +
          curl("curl -s 'localhost:3000/api/v1/reports/sync?month=2026-11' | jq .summary\ncurl -s -o 2026-11.xlsx 'localhost:3000/api/v1/reports/sync?month=2026-11&format=xlsx'\ncurl -s -o 2026-11.pdf 'localhost:3000/api/v1/reports/sync?month=2026-11&format=pdf&lang=en'"),
        tags: ['reports'],
        querystring: {
          type: 'object',
          required: ['month'],
          additionalProperties: false,
          properties: {
            month: { type: 'string', description: 'YYYY-MM', examples: ['2026-11'] },
            format: FORMAT,
            lang: LANG,
            tz: TZ,
            bucket: { type: 'string', description: 'completeness bucket, e.g. 5m, 15m, 1h' },
            refresh: { type: 'boolean', default: false },
          },
        },
        response: { 200: BINARY, 400: { $ref: 'Error#' }, 503: { $ref: 'Error#' } },
      },
    },
    async (req, reply) => {
      const q = req.query
      const format = checkFormat(q.format)
      const lang = checkLang(q.lang)
      let bucketMs: number | undefined
      if (q.bucket !== undefined) {
        try {
          bucketMs = parseDuration(q.bucket)
        } catch {
          throw new CitysyncError('CITYSYNC_ERR_REPORT_OPTION', ['bucket', `${JSON.stringify(q.bucket)} is not a duration like 5m or 1h`])
        }
      }
      const { report, archived } = await reports.sync({ month: q.month, zone: q.tz, refresh: q.refresh, ...(bucketMs !== undefined ? { bucketMs } : {}) })
      if (archived !== null) void reply.header('x-citysync-report-revision', String(archived.revision))
      return send(reply, await reports.renderSync(report, format, lang), format === 'json' || format === 'html')
    },
  )

  app.get<{ Querystring: { quarter: string; format: string; lang: string; tz: string } }>(
    '/api/v1/reports/onboarding',
    {
      schema: {
        summary: 'The quarterly county onboarding progress list (县市区停车场接入进展清单)',
        description:
          'Per county: car parks by onboarding status with their dates and notes as they stood at the end of the quarter (or now, for the quarter under way), ' +
          'and every change made during the quarter. Car parks whose source has landed good data are moved to onboarded first (see GET /api/v1/county/onboarding).\n\n' +
          curl("curl -s 'localhost:3000/api/v1/reports/onboarding?quarter=2026Q4' | jq .totals\ncurl -s -o 2026Q4.xlsx 'localhost:3000/api/v1/reports/onboarding?quarter=2026Q4&format=xlsx'"),
        tags: ['reports'],
        querystring: {
          type: 'object',
          required: ['quarter'],
          additionalProperties: false,
          properties: { quarter: { type: 'string', description: 'YYYYQn', examples: ['2026Q4'] }, format: FORMAT, lang: LANG, tz: TZ },
        },
        response: { 200: BINARY, 400: { $ref: 'Error#' }, 503: { $ref: 'Error#' } },
      },
    },
    async (req, reply) => {
      const q = req.query
      const format = checkFormat(q.format)
      const lang = checkLang(q.lang)
      const list = await reports.onboarding(q.quarter, q.tz)
      return send(reply, await reports.renderOnboarding(list, format, lang), format === 'json' || format === 'html')
    },
  )

  app.get<{ Querystring: { kind?: ArchiveKind; period?: string; limit: number; offset: number } }>(
    '/api/v1/reports/archive',
    {
      schema: {
        summary: 'Archived reports, newest first: when each was generated, by what (schedule, manual, backfill) and its headline figures',
        description: curl("curl -s 'localhost:3000/api/v1/reports/archive?kind=sync'"),
        tags: ['reports'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { kind: { type: 'string', enum: [...ARCHIVE_KINDS] }, period: { type: 'string' }, ...pageQuery() },
        },
        response: {
          200: {
            type: 'object',
            required: ['items', 'total', 'next'],
            properties: {
              ...PAGE_FIELDS,
              items: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'integer' },
                    kind: { type: 'string' },
                    period: { type: 'string' },
                    zone: { type: 'string' },
                    trigger: { type: 'string', enum: ['schedule', 'manual', 'backfill'] },
                    reason: { type: ['string', 'null'] },
                    generatedAt: { type: 'string', format: 'date-time' },
                    dataThrough: { type: 'string', format: 'date-time' },
                    revision: { type: 'integer' },
                    summary: { type: 'object', additionalProperties: true },
                  },
                },
              },
            },
          },
        },
      },
    },
    async (req) => {
      const filter = { ...(req.query.kind ? { kind: req.query.kind } : {}), ...(req.query.period ? { period: req.query.period } : {}) }
      const [items, total] = await Promise.all([reports.archive.list({ ...filter, limit: req.query.limit, offset: req.query.offset }), reports.archive.count(filter)])
      return pageOf(items.map(entryView), total, req.query)
    },
  )
}
