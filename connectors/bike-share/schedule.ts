// The bike-share cursor and the ttl rules. Pure: the caller passes the time.
//
// GBFS says how long each file stays valid (`ttl`, seconds). The runtime calls
// read() on the source's own schedule, which may be more frequent; each file
// is fetched only once its ttl has run out since it was last fetched. So the
// cursor keeps, per file, when it may be fetched next and the last_updated of
// the newest snapshot taken (a producer that serves the same snapshot again, or
// an older one from a lagging replica, is recognised and skipped).

import { CitysyncError } from '../../lib/errors.ts'
import { type Discovery, GBFS_FEEDS, type GbfsFeed } from './gbfs-map.ts'

export interface FileState {
  /** last_updated of the newest snapshot taken, epoch ms. */
  lastUpdated: number
  /** The file is not fetched again before this, epoch ms. */
  nextFetchAt: number
  /** Static files only: fingerprint of `data`, to skip content that has not changed. */
  contentHash?: string
}

/** A count from one snapshot, with that snapshot's last_updated. */
export interface Counted {
  at: number
  count: number
}

export interface BikeShareCursor {
  discovery: (Discovery & { url: string; lastUpdated: number; nextFetchAt: number }) | null
  files: Partial<Record<GbfsFeed, FileState>>
  /** system_information.system_id, the operator id unless one is configured. */
  systemId: string | null
  /** Vehicle type ids from vehicle_types, when the system publishes them. */
  vehicleTypes: string[] | null
  /** Vehicles at stations (available + disabled) in the newest station_status taken. */
  stationVehicles: Counted | null
  /** Vehicles not at a station in the newest vehicle file taken. */
  freeVehicles: Counted | null
  /** The newest operator status emitted, and the most vehicles ever seen reporting at once. */
  operator: { at: number; peak: number } | null
  /** The operator trips API's own cursor; null before the first page. */
  trips: { cursor: string | null } | null
}

export function emptyCursor(): BikeShareCursor {
  return { discovery: null, files: {}, systemId: null, vehicleTypes: null, stationVehicles: null, freeVehicles: null, operator: null, trips: null }
}

/** Whether a file is due: never fetched, or its ttl has run out. */
export function isDue(state: FileState | { nextFetchAt: number } | null | undefined, now: number): boolean {
  return state === undefined || state === null || now >= state.nextFetchAt
}

/**
 * When a file fetched at `fetchedAt` with `ttlS` may be fetched again. The ttl
 * counts from our fetch, not from last_updated: a producer whose clock is off,
 * or whose snapshot is stale, must not make us fetch on every read.
 */
export function nextFetchAt(fetchedAt: number, ttlS: number): number {
  return fetchedAt + Math.max(0, ttlS) * 1000
}

export type Freshness = 'new' | 'same' | 'older'

/** Is a snapshot with this last_updated newer than the one last taken? */
export function freshness(state: FileState | undefined, lastUpdated: number): Freshness {
  if (state === undefined) return 'new'
  if (lastUpdated > state.lastUpdated) return 'new'
  return lastUpdated === state.lastUpdated ? 'same' : 'older'
}

/**
 * The operator status to emit, if any: vehicles reporting is the vehicles at
 * stations plus those not at a station, from the newest snapshots taken; it is
 * stamped with the later of their last_updated and emitted only when that is
 * newer than the last one emitted, so the same snapshots never give two
 * different statuses for one instant.
 */
export function operatorStatusDue(c: BikeShareCursor): { at: number; vehiclesReporting: number } | null {
  if (c.stationVehicles === null && c.freeVehicles === null) return null
  const at = Math.max(c.stationVehicles?.at ?? 0, c.freeVehicles?.at ?? 0)
  if (c.operator !== null && at <= c.operator.at) return null
  return { at, vehiclesReporting: (c.stationVehicles?.count ?? 0) + (c.freeVehicles?.count ?? 0) }
}

function invalidCursor(what: string): CitysyncError {
  return new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`bike-share cursor: ${what} (clear it with DELETE /api/v1/sources/:id/cursor)`])
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v)
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** A saved cursor, checked; undefined or null starts from scratch. */
export function startCursor(saved: unknown): BikeShareCursor {
  const c = emptyCursor()
  if (saved === undefined || saved === null) return c
  if (!isRecord(saved)) throw invalidCursor('not an object')
  if (saved.discovery !== undefined && saved.discovery !== null) {
    const d = saved.discovery
    if (!isRecord(d) || typeof d.url !== 'string' || typeof d.version !== 'string' || !isNum(d.nextFetchAt) || !isNum(d.lastUpdated) || !isRecord(d.feeds)) {
      throw invalidCursor('discovery is malformed')
    }
    const feeds: Partial<Record<GbfsFeed, string>> = {}
    for (const [k, v] of Object.entries(d.feeds)) {
      if ((GBFS_FEEDS as readonly string[]).includes(k) && typeof v === 'string') feeds[k as GbfsFeed] = v
    }
    c.discovery = {
      url: d.url,
      version: d.version,
      language: typeof d.language === 'string' ? d.language : null,
      feeds,
      lastUpdated: d.lastUpdated,
      nextFetchAt: d.nextFetchAt,
    }
  }
  if (saved.files !== undefined) {
    if (!isRecord(saved.files)) throw invalidCursor('files is not an object')
    for (const [k, v] of Object.entries(saved.files)) {
      if (!(GBFS_FEEDS as readonly string[]).includes(k)) continue
      if (!isRecord(v) || !isNum(v.lastUpdated) || !isNum(v.nextFetchAt)) throw invalidCursor(`files.${k} is malformed`)
      c.files[k as GbfsFeed] = {
        lastUpdated: v.lastUpdated,
        nextFetchAt: v.nextFetchAt,
        ...(typeof v.contentHash === 'string' ? { contentHash: v.contentHash } : {}),
      }
    }
  }
  if (typeof saved.systemId === 'string') c.systemId = saved.systemId
  if (Array.isArray(saved.vehicleTypes)) c.vehicleTypes = saved.vehicleTypes.filter((t): t is string => typeof t === 'string')
  for (const key of ['stationVehicles', 'freeVehicles'] as const) {
    const v = saved[key]
    if (v === undefined || v === null) continue
    if (!isRecord(v) || !isNum(v.at) || !isNum(v.count)) throw invalidCursor(`${key} is malformed`)
    c[key] = { at: v.at, count: v.count }
  }
  if (saved.operator !== undefined && saved.operator !== null) {
    const o = saved.operator
    if (!isRecord(o) || !isNum(o.at) || !isNum(o.peak)) throw invalidCursor('operator is malformed')
    c.operator = { at: o.at, peak: o.peak }
  }
  if (saved.trips !== undefined && saved.trips !== null) {
    const t = saved.trips
    if (!isRecord(t) || !(t.cursor === null || typeof t.cursor === 'string')) throw invalidCursor('trips is malformed')
    c.trips = { cursor: t.cursor }
  }
  return c
}

/** A deep copy to hand to the runtime, so later changes do not alter a checkpoint already yielded. */
export function snapshotCursor(c: BikeShareCursor): BikeShareCursor {
  return structuredClone(c)
}
