import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'

/**
 * What the warehouse says about a source: read from the ingest log and the
 * dead-letter table, never from a connector's memory. Heartbeats say the
 * connector ran, not that the source sent data, so they do not count here.
 */
export interface LandedFigures {
  rowsLanded: number
  rowsRejected: number
  lastEventAt: number | null
  lastArrivalAt: number | null
}

const EMPTY: LandedFigures = { rowsLanded: 0, rowsRejected: 0, lastEventAt: null, lastArrivalAt: null }

export async function landedFigures(wh: Warehouse, sourceIds?: readonly string[]): Promise<Map<string, LandedFigures>> {
  const filter = sourceIds ? 'WHERE sourceId IN {ids:Array(String)}' : ''
  const dataFilter = `${filter ? filter + ' AND' : 'WHERE'} tableName != 'source_heartbeat'`
  const params = sourceIds ? { ids: sourceIds } : undefined
  const [landed, rejected] = await Promise.all([
    wh.query<{ sourceId: string; rows: number; lastEventAt: number; lastArrivalAt: number }>(
      `SELECT sourceId, sum(rows) AS rows,
              toUnixTimestamp64Milli(max(maxEventTime)) AS lastEventAt,
              toUnixTimestamp64Milli(max(arrivedAt)) AS lastArrivalAt
       FROM ingest_log ${dataFilter} GROUP BY sourceId`,
      params,
    ),
    wh.query<{ sourceId: string; rejected: number }>(
      `SELECT sourceId, count() AS rejected FROM dead_letter ${filter} GROUP BY sourceId`,
      params,
    ),
  ])
  const out = new Map<string, LandedFigures>()
  for (const id of sourceIds ?? []) out.set(id, { ...EMPTY })
  for (const r of landed) {
    out.set(r.sourceId, { ...(out.get(r.sourceId) ?? EMPTY), rowsLanded: Number(r.rows), lastEventAt: Number(r.lastEventAt), lastArrivalAt: Number(r.lastArrivalAt) })
  }
  for (const r of rejected) out.set(r.sourceId, { ...(out.get(r.sourceId) ?? EMPTY), rowsRejected: Number(r.rejected) })
  return out
}

export const SOURCE_STATES = ['paused', 'idle', 'running', 'backoff', 'failed', 'stopped'] as const
export type SourceState = (typeof SOURCE_STATES)[number]

/** The public status of a source (REST `GET /sources/:id/status`). Times are ISO 8601 UTC. */
export interface SourceStatus {
  state: SourceState
  rowsLanded: number
  rowsRejected: number
  lastEventAt: string | null
  lastArrivalAt: string | null
  lastCheckpointAt: string | null
  lastError: string | null
}

export interface OperationalState {
  desiredState: 'deployed' | 'paused'
  runState: string | null
  checkpointAt: number | null
  lastError: string | null
}

export function composeStatus(op: OperationalState, landed: LandedFigures | undefined): SourceStatus {
  const l = landed ?? EMPTY
  const state: SourceState =
    op.desiredState === 'paused' ? 'paused' : ((SOURCE_STATES as readonly string[]).includes(op.runState ?? '') ? (op.runState as SourceState) : 'stopped')
  return {
    state,
    rowsLanded: l.rowsLanded,
    rowsRejected: l.rowsRejected,
    lastEventAt: iso(l.lastEventAt),
    lastArrivalAt: iso(l.lastArrivalAt),
    lastCheckpointAt: iso(op.checkpointAt),
    lastError: op.lastError,
  }
}

function iso(ms: number | null): string | null {
  return ms === null || !Number.isFinite(ms) || ms <= 0 ? null : new Date(ms).toISOString()
}
