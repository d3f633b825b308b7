// Reports as the API and the CLI ask for them: the monthly sync report and
// the quarterly onboarding list, from the archive when a current revision is
// there, generated (and, for a finished period, archived) otherwise, and
// rendered in the format asked for.

import { type Logger } from 'pino'
import { type Clock } from '../../lib/clock.ts'
import { CitysyncError } from '../../lib/errors.ts'
import { type Metadata } from '../../lib/metadata/db.ts'
import { DEFAULT_TIMEZONE } from '../../lib/source-config.ts'
import { type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { backfillSince } from './activity.ts'
import { type ArchiveEntry, ReportArchive, type Trigger } from './archive.ts'
import { isLang, type Lang, labels } from './labels.ts'
import { buildSyncReport, DEFAULT_BUCKET_MS, type SummaryFigures, type SyncReport } from './model.ts'
import { buildOnboardingList, onboardingCsv, onboardingHtml, type OnboardingList, onboardingXlsx } from './onboarding-list.ts'
import { htmlToPdf } from './pdf.ts'
import { parseMonth, parseQuarter, previousMonth } from './period.ts'
import { CONTENT_TYPES, FORMATS, type ReportFormat, reportCsv, reportHtml, reportJson, reportXlsx } from './render.ts'

export interface RenderedReport {
  body: Buffer
  contentType: string
  filename: string
}

export interface ReportsDeps {
  metadata: Metadata
  warehouse: Warehouse
  clock: Clock
  log?: Logger
}

export interface SyncRequest {
  month: string
  zone?: string
  /** Bucket length in ms (default 5 min); reports with other buckets are generated, never archived. */
  bucketMs?: number
  /** Generate again even when a current archived revision exists. */
  refresh?: boolean
}

export function checkFormat(format: unknown): ReportFormat {
  if (typeof format === 'string' && (FORMATS as readonly string[]).includes(format)) return format as ReportFormat
  throw new CitysyncError('CITYSYNC_ERR_REPORT_OPTION', ['format', `${JSON.stringify(format)}: use one of ${FORMATS.join(', ')}`])
}

export function checkLang(lang: unknown): Lang {
  if (lang === undefined) return 'zh'
  if (isLang(lang)) return lang
  throw new CitysyncError('CITYSYNC_ERR_REPORT_OPTION', ['lang', `${JSON.stringify(lang)}: use zh or en`])
}

export class Reports {
  readonly archive: ReportArchive
  readonly #d: ReportsDeps

  constructor(d: ReportsDeps) {
    this.#d = d
    this.archive = new ReportArchive(d.metadata.knex, d.metadata.dialect)
  }

  /**
   * The monthly report: the current archived revision when there is one and
   * no backfill has landed for the month since, else generated now. A
   * finished month generated here is archived (trigger `manual`, or
   * `backfill` when it replaces a revision that backfilled rows outdated).
   */
  async sync(r: SyncRequest): Promise<{ report: SyncReport; archived: ArchiveEntry | null }> {
    const zone = r.zone ?? DEFAULT_TIMEZONE
    const period = parseMonth(r.month, zone)
    const bucketMs = r.bucketMs ?? DEFAULT_BUCKET_MS
    const archivable = bucketMs === DEFAULT_BUCKET_MS
    if (archivable && r.refresh !== true) {
      const entry = await this.archive.latestEntry('sync', period.id, zone)
      if (entry !== undefined) {
        const stale = await backfillSince(this.#d.warehouse, entry.dataThrough, period.from, period.to)
        if (stale.rows === 0) {
          const full = await this.archive.latest<SyncReport>('sync', period.id, zone)
          return { report: full!.model, archived: entry }
        }
        return this.generateSync(period.id, 'backfill', `${stale.rows} backfilled rows for the month landed after revision ${entry.revision}`, zone)
      }
    }
    const now = this.#d.clock.now()
    if (!archivable || now < period.to) {
      return { report: await buildSyncReport(this.#d, { month: period.id, now, zone, bucketMs, previous: await this.#previousSummary(period.id, zone) }), archived: null }
    }
    return this.generateSync(period.id, 'manual', null, zone)
  }

  /** Generates a month's report and archives it as a new revision. */
  async generateSync(month: string, trigger: Trigger, reason: string | null, zone = DEFAULT_TIMEZONE): Promise<{ report: SyncReport; archived: ArchiveEntry }> {
    const now = this.#d.clock.now()
    const period = parseMonth(month, zone)
    const report = await buildSyncReport(this.#d, { month: period.id, now, zone, previous: await this.#previousSummary(period.id, zone) })
    const saved = await this.archive.save({ kind: 'sync', period: period.id, zone, trigger, reason, generatedAt: now, dataThrough: now, summary: { ...report.summary }, model: report })
    this.#d.log?.info({ month: period.id, trigger, revision: saved.revision, completeness: report.summary.completeness }, 'monthly sync report archived')
    const { model: _model, ...entry } = saved
    return { report, archived: entry }
  }

  async #previousSummary(month: string, zone: string): Promise<SummaryFigures | undefined> {
    const prev = previousMonth(parseMonth(month, zone))
    const entry = await this.archive.latestEntry('sync', prev.id, zone)
    return entry === undefined ? undefined : (entry.summary as unknown as SummaryFigures)
  }

  /** Archived months whose data changed by backfill after their current revision was made. */
  async staleMonths(zone = DEFAULT_TIMEZONE): Promise<{ entry: ArchiveEntry; rows: number }[]> {
    const out: { entry: ArchiveEntry; rows: number }[] = []
    for (const entry of await this.archive.current('sync')) {
      if (entry.zone !== zone) continue
      const p = parseMonth(entry.period, zone)
      const stale = await backfillSince(this.#d.warehouse, entry.dataThrough, p.from, p.to)
      if (stale.rows > 0) out.push({ entry, rows: stale.rows })
    }
    return out
  }

  /** The quarterly onboarding list, as things stand (a finished quarter as it stood at its end). */
  async onboarding(quarter: string, zone = DEFAULT_TIMEZONE): Promise<OnboardingList> {
    const q = parseQuarter(quarter, zone)
    const now = this.#d.clock.now()
    if (now < q.from) throw new CitysyncError('CITYSYNC_ERR_REPORT_PERIOD', [q.id, 'it has not begun yet'])
    const list = await buildOnboardingList(this.#d, { quarter: q.id, now, zone })
    if (now >= q.to) {
      const last = await this.archive.latest<OnboardingList>('onboarding', q.id, zone)
      if (last === undefined || JSON.stringify({ ...last.model, generatedAt: '', promoted: [] }) !== JSON.stringify({ ...list, generatedAt: '', promoted: [] })) {
        await this.archive.save({ kind: 'onboarding', period: q.id, zone, trigger: 'manual', generatedAt: now, dataThrough: now, summary: { ...list.totals }, model: list })
      }
    }
    return list
  }

  async renderSync(report: SyncReport, format: ReportFormat, lang: Lang): Promise<RenderedReport> {
    const base = `citysync-sync-${report.month}${lang === 'en' ? '-en' : ''}`
    let body: Buffer
    switch (format) {
      case 'json':
        body = reportJson(report)
        break
      case 'csv':
        body = reportCsv(report, lang)
        break
      case 'xlsx':
        body = await reportXlsx(report, lang)
        break
      case 'html':
        body = Buffer.from(reportHtml(report, lang), 'utf8')
        break
      case 'pdf':
        body = await htmlToPdf(reportHtml(report, lang))
        break
    }
    return { body, contentType: CONTENT_TYPES[format], filename: `${base}.${format}` }
  }

  async renderOnboarding(list: OnboardingList, format: ReportFormat, lang: Lang): Promise<RenderedReport> {
    const base = `citysync-onboarding-${list.quarter}${lang === 'en' ? '-en' : ''}`
    let body: Buffer
    switch (format) {
      case 'json':
        body = Buffer.from(JSON.stringify(list, null, 2) + '\n', 'utf8')
        break
      case 'csv':
        body = onboardingCsv(list, lang)
        break
      case 'xlsx':
        body = await onboardingXlsx(list, lang)
        break
      case 'html':
        body = Buffer.from(onboardingHtml(list, lang), 'utf8')
        break
      case 'pdf':
        body = await htmlToPdf(onboardingHtml(list, lang))
        break
    }
    return { body, contentType: CONTENT_TYPES[format], filename: `${base}.${format}` }
  }
}

/** RFC 6266 Content-Disposition with a UTF-8 filename. */
export function contentDisposition(filename: string): string {
  return `attachment; filename="${filename.replace(/[^\x20-\x7e]|"/g, '_')}"; filename*=UTF-8''${encodeURIComponent(filename)}`
}

export { labels }
