import { CitysyncError } from '../errors.ts'
import { scrubPlates } from '../plate-redaction.ts'
import {
  isForeignKeyViolation,
  jsonFromDb,
  jsonToDb,
  timestampFromDb,
  timestampToDb,
} from './columns.ts'
import { insertEvent, type RepoContext } from './sources.ts'

export const RUN_STATES = ['idle', 'running', 'backoff', 'failed', 'stopped'] as const
export type RunState = (typeof RUN_STATES)[number]

export interface ConnectorState {
  /** What the connector last checkpointed; null: read from the beginning. */
  cursor: unknown
  checkpointAt: number | null
  runState: RunState
  lastError: string | null
  lastErrorAt: number | null
  lastRunAt: number | null
  consecutiveFailures: number
}

interface StateRow {
  cursor: unknown
  checkpoint_at: unknown
  run_state: RunState
  last_error: string | null
  last_error_at: unknown
  last_run_at: unknown
  consecutive_failures: number | string
}

const INITIAL: ConnectorState = {
  cursor: null,
  checkpointAt: null,
  runState: 'idle',
  lastError: null,
  lastErrorAt: null,
  lastRunAt: null,
  consecutiveFailures: 0,
}

// Every write is one upsert on the source's row (plus, rarely, a history line
// in the same transaction), so concurrent writers cannot leave a torn row.
// A missing source surfaces as a foreign-key violation: CITYSYNC_ERR_SOURCE_NOT_FOUND.

export class ConnectorStateRepo {
  readonly #ctx: RepoContext

  constructor(ctx: RepoContext) {
    this.#ctx = ctx
  }

  /** Throws CITYSYNC_ERR_SOURCE_NOT_FOUND. */
  async get(sourceId: string): Promise<ConnectorState> {
    const { knex, dialect } = this.#ctx
    const row = (await knex('connector_state').where({ source_id: sourceId }).first()) as StateRow | undefined
    if (row === undefined) {
      const source: unknown = await knex('sources').where({ id: sourceId }).first('id')
      if (source === undefined) throw notFound(sourceId)
      return { ...INITIAL }
    }
    return {
      cursor: jsonFromDb(dialect, row.cursor),
      checkpointAt: timestampFromDb(row.checkpoint_at),
      runState: row.run_state,
      lastError: row.last_error,
      lastErrorAt: timestampFromDb(row.last_error_at),
      lastRunAt: timestampFromDb(row.last_run_at),
      consecutiveFailures: Number(row.consecutive_failures),
    }
  }

  /** Called after every landed page: one statement. */
  async saveCheckpoint(sourceId: string, cursor: unknown, at: number): Promise<void> {
    const { dialect } = this.#ctx
    await this.#upsert(sourceId, { cursor: jsonToDb(cursor), checkpoint_at: timestampToDb(dialect, at) })
  }

  /** The next read starts from the beginning; the history keeps the cursor it replaced. */
  async resetCursor(sourceId: string, actor: string): Promise<void> {
    const { knex, dialect, clock } = this.#ctx
    const before = await this.get(sourceId)
    const now = clock.now()
    await knex.transaction(async (trx) => {
      await trx('connector_state')
        .insert({ source_id: sourceId, cursor: null, checkpoint_at: null })
        .onConflict('source_id')
        .merge(['cursor', 'checkpoint_at'])
      await insertEvent(trx, dialect, sourceId, now, 'cursor_reset', actor, {
        previousCursor: before.cursor,
        previousCheckpointAt: before.checkpointAt,
      })
    }).catch(mapMissing(sourceId))
  }

  /** With an error, also records it as the last error (at the clock's now). */
  async setRunState(sourceId: string, runState: RunState, error?: string): Promise<void> {
    const { dialect, clock } = this.#ctx
    const columns: Record<string, unknown> = { run_state: runState }
    if (error !== undefined) {
      columns.last_error = scrubPlates(error)
      columns.last_error_at = timestampToDb(dialect, clock.now())
    }
    await this.#upsert(sourceId, columns)
  }

  /** A failed run. The first failure of a streak goes into the history as 'error'. */
  async recordFailure(sourceId: string, message: string, at: number): Promise<void> {
    const { knex, dialect } = this.#ctx
    const when = timestampToDb(dialect, at)
    // Error texts quote upstream answers at times; a plate in one is masked here.
    const error = scrubPlates(message)
    await knex.transaction(async (trx) => {
      const rows = await trx('connector_state')
        .insert({ source_id: sourceId, last_error: error, last_error_at: when, last_run_at: when, consecutive_failures: 1 })
        .onConflict('source_id')
        .merge({
          last_error: error,
          last_error_at: when,
          last_run_at: when,
          consecutive_failures: trx.raw('?? + 1', ['connector_state.consecutive_failures']),
        })
        .returning<{ consecutive_failures: number | string }[]>(['consecutive_failures'])
      if (Number(rows[0]?.consecutive_failures) === 1) {
        await insertEvent(trx, dialect, sourceId, at, 'error', 'runtime', { error })
      }
    }).catch(mapMissing(sourceId))
  }

  /** A successful run: ends a failure streak (recorded as 'recovered'). */
  async recordSuccess(sourceId: string, at: number): Promise<void> {
    const { knex, dialect } = this.#ctx
    const when = timestampToDb(dialect, at)
    await knex.transaction(async (trx) => {
      const recovered = (await trx('connector_state')
        .where({ source_id: sourceId })
        .where('consecutive_failures', '>', 0)
        .update({ consecutive_failures: 0, last_run_at: when })
        .returning(['source_id'])) as unknown[]
      if (recovered.length > 0) {
        await insertEvent(trx, dialect, sourceId, at, 'recovered', 'runtime', null)
        return
      }
      await trx('connector_state')
        .insert({ source_id: sourceId, last_run_at: when })
        .onConflict('source_id')
        .merge(['last_run_at'])
    }).catch(mapMissing(sourceId))
  }

  async #upsert(sourceId: string, columns: Record<string, unknown>): Promise<void> {
    await this.#ctx
      .knex('connector_state')
      .insert({ source_id: sourceId, ...columns })
      .onConflict('source_id')
      .merge(Object.keys(columns))
      .catch(mapMissing(sourceId))
  }
}

function mapMissing(sourceId: string): (err: unknown) => never {
  return (err) => {
    if (isForeignKeyViolation(err)) throw notFound(sourceId)
    throw err
  }
}

function notFound(sourceId: string): CitysyncError {
  return new CitysyncError('CITYSYNC_ERR_SOURCE_NOT_FOUND', [sourceId])
}
