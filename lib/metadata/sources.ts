import { type Knex } from 'knex'
import { type Clock } from '../clock.ts'
import { CitysyncError } from '../errors.ts'
import { type Freshness, type Schedule, type SecretCodec, type SourceConfig } from '../source-config.ts'
import {
  isForeignKeyViolation,
  isUniqueViolation,
  jsonFromDb,
  jsonToDb,
  requiredTimestamp,
  timestampToDb,
  type Dialect,
} from './columns.ts'

export const DESIRED_STATES = ['deployed', 'paused'] as const
export type DesiredState = (typeof DESIRED_STATES)[number]

/** The operator-visible history of a source (not every checkpoint: those live in connector_state). */
export const SOURCE_EVENT_KINDS = [
  'added',
  'updated',
  'deployed',
  'paused',
  'resumed',
  'restarted',
  'cursor_reset',
  'error',
  'recovered',
] as const
export type SourceEventKind = (typeof SOURCE_EVENT_KINDS)[number]

export interface SourceRecord extends SourceConfig {
  desiredState: DesiredState
  /** Starts at 1; bumped by every update and restart. */
  version: number
  createdAt: number
  updatedAt: number
}

export interface SourceEvent {
  id: number
  sourceId: string
  at: number
  kind: SourceEventKind
  actor: string
  detail: Record<string, unknown> | null
}

export interface SourceFilter {
  kind?: string | undefined
  district?: string | undefined
  operator?: string | undefined
}

export interface RepoContext {
  knex: Knex
  dialect: Dialect
  clock: Clock
  secrets: SecretCodec
}

interface SourceRow {
  id: string
  kind: string
  name: string
  operator: string | null
  district: string | null
  timezone: string
  schedule: unknown
  freshness: unknown
  config: unknown
  desired_state: DesiredState
  created_at: unknown
  updated_at: unknown
  version: number
}

interface EventRow {
  id: number | string
  source_id: string
  at: unknown
  kind: SourceEventKind
  actor: string
  detail: unknown
}

// SQLite note: every write transaction here starts with a write statement, so
// that it takes the write lock first and busy_timeout applies (a transaction
// that reads first and writes later can fail at once with SQLITE_BUSY when
// another process wrote in between).

export class SourceRepo {
  readonly #ctx: RepoContext

  constructor(ctx: RepoContext) {
    this.#ctx = ctx
  }

  /** Adds a source, paused. Throws CITYSYNC_ERR_SOURCE_EXISTS. */
  async add(cfg: SourceConfig, actor = 'system'): Promise<SourceRecord> {
    const { knex, dialect, clock } = this.#ctx
    const now = clock.now()
    const stored = this.#ctx.secrets.seal(cfg)
    try {
      await knex.transaction(async (trx) => {
        await trx('sources').insert({
          ...configColumns(stored),
          id: stored.id,
          desired_state: 'paused',
          created_at: timestampToDb(dialect, now),
          updated_at: timestampToDb(dialect, now),
          version: 1,
        })
        await trx('connector_state').insert({ source_id: stored.id })
        await insertEvent(trx, dialect, stored.id, now, 'added', actor, null)
      })
    } catch (err) {
      if (isUniqueViolation(err)) throw new CitysyncError('CITYSYNC_ERR_SOURCE_EXISTS', [cfg.id], { cause: err })
      throw err
    }
    return this.get(cfg.id)
  }

  /** Throws CITYSYNC_ERR_SOURCE_NOT_FOUND. */
  async get(id: string): Promise<SourceRecord> {
    const found = await this.find(id)
    if (found === undefined) throw notFound(id)
    return found
  }

  async find(id: string): Promise<SourceRecord | undefined> {
    const row = (await this.#ctx.knex('sources').where({ id }).first()) as SourceRow | undefined
    return row === undefined ? undefined : this.#fromRow(row)
  }

  /** Ordered by id. */
  async list(filter: SourceFilter = {}): Promise<SourceRecord[]> {
    const query = this.#ctx.knex('sources').orderBy('id')
    if (filter.kind !== undefined) query.where('kind', filter.kind)
    if (filter.district !== undefined) query.where('district', filter.district)
    if (filter.operator !== undefined) query.where('operator', filter.operator)
    const rows = (await query) as SourceRow[]
    return rows.map((row) => this.#fromRow(row))
  }

  /**
   * Replaces the configuration and bumps the version. With expectedVersion,
   * throws CITYSYNC_ERR_SOURCE_VERSION_CONFLICT when someone else changed it
   * first. The id and the kind cannot change (the cursor belongs to the kind).
   */
  async update(id: string, cfg: SourceConfig, expectedVersion?: number, actor = 'system'): Promise<SourceRecord> {
    if (cfg.id !== id) {
      throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`id cannot change (${id} to ${cfg.id})`])
    }
    const { knex, dialect, clock } = this.#ctx
    const now = clock.now()
    const stored = this.#ctx.secrets.seal(cfg)
    const updated = await knex.transaction(async (trx) => {
      const query = trx('sources')
        .where({ id, kind: stored.kind })
        .update({
          ...configColumns(stored),
          updated_at: timestampToDb(dialect, now),
          version: trx.raw('version + 1'),
        })
      if (expectedVersion !== undefined) query.andWhere('version', expectedVersion)
      const count = await query
      if (count === 0) return false
      const row = await trx('sources').where({ id }).first<{ version: number }>('version')
      await insertEvent(trx, dialect, id, now, 'updated', actor, { version: row.version })
      return true
    })
    if (!updated) {
      const current = await this.get(id)
      if (current.kind !== cfg.kind) {
        throw new CitysyncError('CITYSYNC_ERR_SOURCE_STATE', [id, `its kind cannot change (${current.kind}); remove it and add it again`])
      }
      throw new CitysyncError('CITYSYNC_ERR_SOURCE_VERSION_CONFLICT', [id, expectedVersion ?? '', current.version])
    }
    return this.get(id)
  }

  /** Removes the source with its connector state and history. */
  async remove(id: string): Promise<void> {
    const count = await this.#ctx.knex('sources').where({ id }).delete()
    if (count === 0) throw notFound(id)
  }

  /**
   * Deploys or pauses. Idempotent: no event when nothing changes. Deploying a
   * source that was deployed before is recorded as 'resumed'.
   */
  async setDesiredState(id: string, state: DesiredState, actor: string): Promise<SourceRecord> {
    const { knex, dialect, clock } = this.#ctx
    const now = clock.now()
    await knex.transaction(async (trx) => {
      const count = await trx('sources').where({ id }).whereNot('desired_state', state).update({ desired_state: state })
      if (count === 0) return
      let kind: SourceEventKind = state
      if (state === 'deployed') {
        const before: unknown = await trx('source_events').where({ source_id: id }).whereIn('kind', ['deployed', 'resumed']).first('id')
        if (before !== undefined) kind = 'resumed'
      }
      await insertEvent(trx, dialect, id, now, kind, actor, null)
    })
    return this.get(id)
  }

  /** Asks running processes to restart the source's connector (they watch the version). */
  async restart(id: string, actor: string): Promise<SourceRecord> {
    const { knex, dialect, clock } = this.#ctx
    const now = clock.now()
    const found = await knex.transaction(async (trx) => {
      const count = await trx('sources').where({ id }).update({ version: trx.raw('version + 1') })
      if (count === 0) return false
      await insertEvent(trx, dialect, id, now, 'restarted', actor, null)
      return true
    })
    if (!found) throw notFound(id)
    return this.get(id)
  }

  /** Adds a line to the source's history. */
  async recordEvent(id: string, kind: SourceEventKind, actor: string, detail: Record<string, unknown> | null = null): Promise<void> {
    try {
      await insertEvent(this.#ctx.knex, this.#ctx.dialect, id, this.#ctx.clock.now(), kind, actor, detail)
    } catch (err) {
      if (isForeignKeyViolation(err)) throw notFound(id)
      throw err
    }
  }

  /** Newest first. Throws CITYSYNC_ERR_SOURCE_NOT_FOUND. */
  async history(id: string, limit = 50): Promise<SourceEvent[]> {
    const { knex, dialect } = this.#ctx
    const rows = (await knex('source_events').where({ source_id: id }).orderBy('id', 'desc').limit(limit)) as EventRow[]
    if (rows.length === 0 && (await this.find(id)) === undefined) throw notFound(id)
    return rows.map((row) => ({
      id: Number(row.id),
      sourceId: row.source_id,
      at: requiredTimestamp(row.at),
      kind: row.kind,
      actor: row.actor,
      detail: jsonFromDb(dialect, row.detail) as Record<string, unknown> | null,
    }))
  }

  #fromRow(row: SourceRow): SourceRecord {
    const { dialect } = this.#ctx
    const cfg: SourceConfig = {
      id: row.id,
      kind: row.kind,
      name: row.name,
      operator: row.operator,
      district: row.district,
      timezone: row.timezone,
      schedule: jsonFromDb(dialect, row.schedule) as Schedule,
      freshness: jsonFromDb(dialect, row.freshness) as Freshness,
      config: jsonFromDb(dialect, row.config) as Record<string, unknown>,
    }
    return {
      ...this.#ctx.secrets.open(cfg),
      desiredState: row.desired_state,
      version: Number(row.version),
      createdAt: requiredTimestamp(row.created_at),
      updatedAt: requiredTimestamp(row.updated_at),
    }
  }
}

function configColumns(cfg: SourceConfig): Record<string, unknown> {
  return {
    kind: cfg.kind,
    name: cfg.name,
    operator: cfg.operator,
    district: cfg.district,
    timezone: cfg.timezone,
    schedule: jsonToDb(cfg.schedule),
    freshness: jsonToDb(cfg.freshness),
    config: jsonToDb(cfg.config),
  }
}

export async function insertEvent(
  db: Knex | Knex.Transaction,
  dialect: Dialect,
  sourceId: string,
  at: number,
  kind: SourceEventKind,
  actor: string,
  detail: Record<string, unknown> | null,
): Promise<void> {
  await db('source_events').insert({
    source_id: sourceId,
    at: timestampToDb(dialect, at),
    kind,
    actor,
    detail: jsonToDb(detail),
  })
}

function notFound(id: string): CitysyncError {
  return new CitysyncError('CITYSYNC_ERR_SOURCE_NOT_FOUND', [id])
}
