// The report archive in the metadata store (infra/db/migrations/004-report-archive.ts):
// each generation of a monthly report or quarterly list, newest revision current.

import { type Knex } from 'knex'
import { isUniqueViolation, requiredTimestamp, timestampToDb, type Dialect } from '../../lib/metadata/columns.ts'

export const ARCHIVE_KINDS = ['sync', 'onboarding'] as const
export type ArchiveKind = (typeof ARCHIVE_KINDS)[number]
export const TRIGGERS = ['schedule', 'manual', 'backfill'] as const
export type Trigger = (typeof TRIGGERS)[number]

export interface ArchivedReport<M = unknown> {
  id: number
  kind: ArchiveKind
  period: string
  zone: string
  trigger: Trigger
  reason: string | null
  generatedAt: number
  dataThrough: number
  revision: number
  summary: Record<string, unknown>
  model: M
}

export type ArchiveEntry = Omit<ArchivedReport, 'model'>

interface Row {
  id: number | string
  kind: ArchiveKind
  period: string
  zone: string
  trigger: Trigger
  reason: string | null
  generated_at: unknown
  data_through: unknown
  revision: number | string
  summary: string
  model?: string
}

function entry(r: Row): ArchiveEntry {
  return {
    id: Number(r.id),
    kind: r.kind,
    period: r.period,
    zone: r.zone,
    trigger: r.trigger,
    reason: r.reason,
    generatedAt: requiredTimestamp(r.generated_at),
    dataThrough: requiredTimestamp(r.data_through),
    revision: Number(r.revision),
    summary: JSON.parse(r.summary) as Record<string, unknown>,
  }
}

const LIST_COLUMNS = ['id', 'kind', 'period', 'zone', 'trigger', 'reason', 'generated_at', 'data_through', 'revision', 'summary']

export class ReportArchive {
  readonly #knex: Knex
  readonly #dialect: Dialect

  constructor(knex: Knex, dialect: Dialect) {
    this.#knex = knex
    this.#dialect = dialect
  }

  /** Stores a new revision of a report. */
  async save<M>(r: { kind: ArchiveKind; period: string; zone: string; trigger: Trigger; reason?: string | null; generatedAt: number; dataThrough: number; summary: Record<string, unknown>; model: M }): Promise<ArchivedReport<M>> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.latestEntry(r.kind, r.period, r.zone)
      const revision = (current?.revision ?? 0) + 1
      try {
        const inserted: Row[] = await this.#knex('report_archive')
          .insert({
            kind: r.kind,
            period: r.period,
            zone: r.zone,
            trigger: r.trigger,
            reason: r.reason ?? null,
            generated_at: timestampToDb(this.#dialect, r.generatedAt),
            data_through: timestampToDb(this.#dialect, r.dataThrough),
            revision,
            summary: JSON.stringify(r.summary),
            model: JSON.stringify(r.model),
          })
          .returning(LIST_COLUMNS)
        return { ...entry(inserted[0]!), model: r.model }
      } catch (err) {
        // Two processes archived the same report at once: take the next revision.
        if (!isUniqueViolation(err) || attempt >= 3) throw err
      }
    }
  }

  async latestEntry(kind: ArchiveKind, period: string, zone: string): Promise<ArchiveEntry | undefined> {
    const row = (await this.#knex('report_archive').select(LIST_COLUMNS).where({ kind, period, zone }).orderBy('revision', 'desc').first()) as Row | undefined
    return row === undefined ? undefined : entry(row)
  }

  async latest<M>(kind: ArchiveKind, period: string, zone: string): Promise<ArchivedReport<M> | undefined> {
    const row = (await this.#knex('report_archive').where({ kind, period, zone }).orderBy('revision', 'desc').first()) as Row | undefined
    return row === undefined ? undefined : { ...entry(row), model: JSON.parse(row.model!) as M }
  }

  /** Newest first. */
  async list(filter: { kind?: ArchiveKind; period?: string; limit?: number; offset?: number } = {}): Promise<ArchiveEntry[]> {
    const q = this.#knex('report_archive').select(LIST_COLUMNS).orderBy('id', 'desc').limit(filter.limit ?? 100).offset(filter.offset ?? 0)
    if (filter.kind !== undefined) q.where('kind', filter.kind)
    if (filter.period !== undefined) q.where('period', filter.period)
    return ((await q) as Row[]).map(entry)
  }

  /** How many entries list() would page through. */
  async count(filter: { kind?: ArchiveKind; period?: string } = {}): Promise<number> {
    const q = this.#knex('report_archive')
    if (filter.kind !== undefined) q.where('kind', filter.kind)
    if (filter.period !== undefined) q.where('period', filter.period)
    const row = (await q.count({ n: '*' }).first()) as { n: number | string } | undefined
    return Number(row?.n ?? 0)
  }

  /** The current (newest) revision of every archived period of a kind. */
  async current(kind: ArchiveKind): Promise<ArchiveEntry[]> {
    const rows = (await this.#knex('report_archive').select(LIST_COLUMNS).where({ kind }).orderBy('revision', 'desc')) as Row[]
    const seen = new Set<string>()
    const out: ArchiveEntry[] = []
    for (const r of rows) {
      const key = `${r.period}\x1f${r.zone}`
      if (seen.has(key)) continue
      seen.add(key)
      out.push(entry(r))
    }
    return out
  }
}
