// Onboarding status of county car parks (接入状态) and its history.
//
// planned -> connecting -> onboarded, and suspended from anywhere; back from
// suspended to any other status; an onboarded car park may go back to
// connecting (e.g. a new vendor) but not to planned. Entering connecting,
// onboarded or suspended sets that status's date to the one given, or to
// today in the bureau's time zone when none is given; the planned date is a
// target and is only ever set explicitly. Every change (status, a date, the
// note, ...) is one history line: who, when, from which status to which, and
// the fields changed.

import { formatLocal } from '../local-time.ts'
import { CitysyncError } from '../errors.ts'
import { DEFAULT_TIMEZONE } from '../source-config.ts'
import { isForeignKeyViolation, isUniqueViolation, jsonFromDb, jsonToDb, requiredTimestamp, timestampToDb } from './columns.ts'
import { type RepoContext } from './sources.ts'

export const ONBOARDING_STATUSES = ['planned', 'connecting', 'onboarded', 'suspended'] as const
export type OnboardingStatus = (typeof ONBOARDING_STATUSES)[number]

const ALLOWED: Record<OnboardingStatus, readonly OnboardingStatus[]> = {
  planned: ['connecting', 'onboarded', 'suspended'],
  connecting: ['planned', 'onboarded', 'suspended'],
  onboarded: ['connecting', 'suspended'],
  suspended: ['planned', 'connecting', 'onboarded'],
}

export function canMove(from: OnboardingStatus, to: OnboardingStatus): boolean {
  return from === to || ALLOWED[from].includes(to)
}

export interface LotOnboarding {
  lotId: string
  county: string
  name: string | null
  sourceId: string | null
  status: OnboardingStatus
  /** 'YYYY-MM-DD' */
  plannedDate: string | null
  connectedDate: string | null
  onboardedDate: string | null
  suspendedDate: string | null
  note: string | null
  createdAt: number
  updatedAt: number
  updatedBy: string
  version: number
}

/** What a change sets. Absent: unchanged; null: cleared. `county` and `status` are needed to create. */
export interface OnboardingInput {
  county?: string
  name?: string | null
  sourceId?: string | null
  status?: OnboardingStatus
  plannedDate?: string | null
  connectedDate?: string | null
  onboardedDate?: string | null
  suspendedDate?: string | null
  note?: string | null
}

export interface OnboardingChange {
  id: number
  lotId: string
  at: number
  actor: string
  from: OnboardingStatus | null
  to: OnboardingStatus
  changes: Record<string, { from: unknown; to: unknown }>
}

export interface OnboardingFilter {
  county?: string | undefined
  status?: OnboardingStatus | undefined
}

const DATE_OF: Partial<Record<OnboardingStatus, 'connectedDate' | 'onboardedDate' | 'suspendedDate'>> = {
  connecting: 'connectedDate',
  onboarded: 'onboardedDate',
  suspended: 'suspendedDate',
}

const EDITABLE = ['county', 'name', 'sourceId', 'status', 'plannedDate', 'connectedDate', 'onboardedDate', 'suspendedDate', 'note'] as const
type Editable = (typeof EDITABLE)[number]

const COLUMN: Record<Editable, string> = {
  county: 'county',
  name: 'name',
  sourceId: 'source_id',
  status: 'status',
  plannedDate: 'planned_date',
  connectedDate: 'connected_date',
  onboardedDate: 'onboarded_date',
  suspendedDate: 'suspended_date',
  note: 'note',
}

interface Row {
  lot_id: string
  county: string
  name: string | null
  source_id: string | null
  status: OnboardingStatus
  planned_date: string | null
  connected_date: string | null
  onboarded_date: string | null
  suspended_date: string | null
  note: string | null
  created_at: unknown
  updated_at: unknown
  updated_by: string
  version: number | string
}

interface HistoryRow {
  id: number | string
  lot_id: string
  at: unknown
  actor: string
  from_status: OnboardingStatus | null
  to_status: OnboardingStatus
  changes: unknown
}

/** A real calendar date 'YYYY-MM-DD'. */
export function isCalendarDate(text: unknown): text is string {
  if (typeof text !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(text)) return false
  const d = new Date(`${text}T00:00:00Z`)
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === text
}

function fromRow(row: Row): LotOnboarding {
  return {
    lotId: row.lot_id,
    county: row.county,
    name: row.name,
    sourceId: row.source_id,
    status: row.status,
    plannedDate: row.planned_date,
    connectedDate: row.connected_date,
    onboardedDate: row.onboarded_date,
    suspendedDate: row.suspended_date,
    note: row.note,
    createdAt: requiredTimestamp(row.created_at),
    updatedAt: requiredTimestamp(row.updated_at),
    updatedBy: row.updated_by,
    version: Number(row.version),
  }
}

export class OnboardingRepo {
  readonly #ctx: RepoContext
  readonly #zone: string

  constructor(ctx: RepoContext, zone = DEFAULT_TIMEZONE) {
    this.#ctx = ctx
    this.#zone = zone
  }

  /** Ordered by county, then car park. */
  async list(filter: OnboardingFilter = {}): Promise<LotOnboarding[]> {
    const q = this.#ctx.knex('county_lot_onboarding').orderBy([{ column: 'county' }, { column: 'lot_id' }])
    if (filter.county !== undefined) q.where('county', filter.county)
    if (filter.status !== undefined) q.where('status', filter.status)
    return ((await q) as Row[]).map(fromRow)
  }

  async find(lotId: string): Promise<LotOnboarding | undefined> {
    const row = (await this.#ctx.knex('county_lot_onboarding').where({ lot_id: lotId }).first()) as Row | undefined
    return row === undefined ? undefined : fromRow(row)
  }

  /** Throws CITYSYNC_ERR_ONBOARDING_NOT_FOUND. */
  async get(lotId: string): Promise<LotOnboarding> {
    const found = await this.find(lotId)
    if (found === undefined) throw new CitysyncError('CITYSYNC_ERR_ONBOARDING_NOT_FOUND', [lotId])
    return found
  }

  /** Newest first. */
  async history(lotId: string, limit = 100): Promise<OnboardingChange[]> {
    const { knex, dialect } = this.#ctx
    const rows = (await knex('county_lot_onboarding_history').where({ lot_id: lotId }).orderBy('id', 'desc').limit(limit)) as HistoryRow[]
    return rows.map((r) => ({
      id: Number(r.id),
      lotId: r.lot_id,
      at: requiredTimestamp(r.at),
      actor: r.actor,
      from: r.from_status,
      to: r.to_status,
      changes: (jsonFromDb(dialect, r.changes) ?? {}) as OnboardingChange['changes'],
    }))
  }

  /** Today's date where the bureau is. */
  today(): string {
    return formatLocal(this.#ctx.clock.now(), this.#zone).slice(0, 10)
  }

  /**
   * Creates or changes a car park's record (one history line per call that
   * changes anything). With expectedVersion, throws
   * CITYSYNC_ERR_ONBOARDING_CONFLICT when the record is at another version.
   * Throws CITYSYNC_ERR_ONBOARDING_TRANSITION for a move that is not allowed,
   * CITYSYNC_ERR_API_VALIDATION for bad values.
   */
  async put(lotId: string, input: OnboardingInput, actor: string, expectedVersion?: number): Promise<{ record: LotOnboarding; created: boolean; changed: boolean }> {
    validate(lotId, input)
    for (let attempt = 1; ; attempt++) {
      const current = await this.find(lotId)
      if (expectedVersion !== undefined && (current?.version ?? 0) !== expectedVersion) {
        throw new CitysyncError('CITYSYNC_ERR_ONBOARDING_CONFLICT', [lotId, expectedVersion, current?.version ?? 'none'])
      }
      const outcome = current === undefined ? await this.#create(lotId, input, actor) : await this.#change(current, input, actor)
      if (outcome !== 'raced') return outcome
      // Someone else wrote between our read and our write.
      if (expectedVersion !== undefined || attempt >= 3) {
        const now = await this.find(lotId)
        throw new CitysyncError('CITYSYNC_ERR_ONBOARDING_CONFLICT', [lotId, expectedVersion ?? current?.version ?? 'none', now?.version ?? 'none'])
      }
    }
  }

  /**
   * connecting -> onboarded, only if the car park is still connecting (the
   * automatic move on first good data). Returns whether it moved.
   */
  async promote(lotId: string, onboardedDate: string, actor: string, note: string): Promise<boolean> {
    const { knex, dialect, clock } = this.#ctx
    const now = clock.now()
    return knex.transaction(async (trx) => {
      const before = (await trx('county_lot_onboarding').where({ lot_id: lotId }).first()) as Row | undefined
      const count = await trx('county_lot_onboarding')
        .where({ lot_id: lotId, status: 'connecting' })
        .update({ status: 'onboarded', onboarded_date: onboardedDate, updated_at: timestampToDb(dialect, now), updated_by: actor, version: trx.raw('version + 1') })
      if (count === 0) return false
      await trx('county_lot_onboarding_history').insert({
        lot_id: lotId,
        at: timestampToDb(dialect, now),
        actor,
        from_status: 'connecting',
        to_status: 'onboarded',
        changes: jsonToDb({
          status: { from: 'connecting', to: 'onboarded' },
          onboardedDate: { from: before?.onboarded_date ?? null, to: onboardedDate },
          reason: { from: null, to: note },
        }),
      })
      return true
    })
  }

  async #create(lotId: string, input: OnboardingInput, actor: string): Promise<{ record: LotOnboarding; created: true; changed: true } | 'raced'> {
    if (input.county === undefined || input.status === undefined) {
      throw new CitysyncError('CITYSYNC_ERR_API_VALIDATION', [`car park ${lotId} has no onboarding record yet: county and status are needed to create one`])
    }
    const values: Record<Editable, unknown> = {
      county: input.county,
      name: input.name ?? null,
      sourceId: input.sourceId ?? null,
      status: input.status,
      plannedDate: input.plannedDate ?? null,
      connectedDate: input.connectedDate ?? null,
      onboardedDate: input.onboardedDate ?? null,
      suspendedDate: input.suspendedDate ?? null,
      note: input.note ?? null,
    }
    const dateField = DATE_OF[input.status]
    if (dateField !== undefined && values[dateField] === null) values[dateField] = this.today()
    const { knex, dialect, clock } = this.#ctx
    const now = clock.now()
    const changes: OnboardingChange['changes'] = {}
    for (const k of EDITABLE) if (values[k] !== null) changes[k] = { from: null, to: values[k] }
    try {
      await knex.transaction(async (trx) => {
        await trx('county_lot_onboarding').insert({
          lot_id: lotId,
          ...columnsOf(values),
          created_at: timestampToDb(dialect, now),
          updated_at: timestampToDb(dialect, now),
          updated_by: actor,
          version: 1,
        })
        await trx('county_lot_onboarding_history').insert({
          lot_id: lotId,
          at: timestampToDb(dialect, now),
          actor,
          from_status: null,
          to_status: input.status,
          changes: jsonToDb(changes),
        })
      })
    } catch (err) {
      if (isUniqueViolation(err)) return 'raced'
      if (isForeignKeyViolation(err)) throw new CitysyncError('CITYSYNC_ERR_SOURCE_NOT_FOUND', [String(input.sourceId)], { cause: err })
      throw err
    }
    return { record: await this.get(lotId), created: true, changed: true }
  }

  async #change(current: LotOnboarding, input: OnboardingInput, actor: string): Promise<{ record: LotOnboarding; created: false; changed: boolean } | 'raced'> {
    const to = input.status ?? current.status
    if (!canMove(current.status, to)) {
      throw new CitysyncError('CITYSYNC_ERR_ONBOARDING_TRANSITION', [current.lotId, current.status, to])
    }
    const next: Record<Editable, unknown> = { ...current }
    for (const k of EDITABLE) if (input[k] !== undefined) next[k] = input[k]
    const dateField = DATE_OF[to]
    if (to !== current.status && dateField !== undefined && input[dateField] === undefined) next[dateField] = this.today()
    const changes: OnboardingChange['changes'] = {}
    for (const k of EDITABLE) if (next[k] !== current[k]) changes[k] = { from: current[k], to: next[k] }
    if (Object.keys(changes).length === 0) return { record: current, created: false, changed: false }

    const { knex, dialect, clock } = this.#ctx
    const now = clock.now()
    const set: Record<string, unknown> = {}
    for (const k of Object.keys(changes) as Editable[]) set[COLUMN[k]] = next[k]
    try {
      const done = await knex.transaction(async (trx) => {
        const count = await trx('county_lot_onboarding')
          .where({ lot_id: current.lotId, version: current.version })
          .update({ ...set, updated_at: timestampToDb(dialect, now), updated_by: actor, version: current.version + 1 })
        if (count === 0) return false
        await trx('county_lot_onboarding_history').insert({
          lot_id: current.lotId,
          at: timestampToDb(dialect, now),
          actor,
          from_status: current.status,
          to_status: to,
          changes: jsonToDb(changes),
        })
        return true
      })
      if (!done) return 'raced'
    } catch (err) {
      if (isForeignKeyViolation(err)) throw new CitysyncError('CITYSYNC_ERR_SOURCE_NOT_FOUND', [String(input.sourceId)], { cause: err })
      throw err
    }
    return { record: await this.get(current.lotId), created: false, changed: true }
  }
}

function columnsOf(values: Record<Editable, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of EDITABLE) out[COLUMN[k]] = values[k]
  return out
}

function validate(lotId: string, input: OnboardingInput): void {
  const problems: string[] = []
  if (!/^[^\s/]{1,64}$/.test(lotId)) problems.push('lotId must be 1 to 64 characters without spaces or slashes')
  if (input.status !== undefined && !ONBOARDING_STATUSES.includes(input.status)) {
    problems.push(`status must be one of ${ONBOARDING_STATUSES.join(', ')}`)
  }
  if (input.county !== undefined && (typeof input.county !== 'string' || input.county.trim() === '')) problems.push('county must not be empty')
  for (const k of ['plannedDate', 'connectedDate', 'onboardedDate', 'suspendedDate'] as const) {
    const v = input[k]
    if (v !== undefined && v !== null && !isCalendarDate(v)) problems.push(`${k} must be a date YYYY-MM-DD, got ${JSON.stringify(v)}`)
  }
  if (problems.length > 0) throw new CitysyncError('CITYSYNC_ERR_API_VALIDATION', [problems.join('; ')])
}
