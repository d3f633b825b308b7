// Bike-share systems: a GBFS feed (1.x/2.x or 3.0, found from its gbfs.json)
// for stations and vehicles, and optionally the operator's own trips (orders)
// API, read incrementally.
//
// Each GBFS file is fetched only when its ttl has run out (see schedule.ts),
// whatever the source's schedule; a snapshot already taken is recognised by
// its last_updated and skipped. A file that cannot be fetched or parsed does
// not hold back the others: the read goes on, then fails naming every such
// file, and the runtime retries.

import { createHash } from 'node:crypto'
import { CitysyncError, errorMessage } from '../../lib/errors.ts'
import { COORD_SYSTEMS, type CoordSystem, type EventName } from '../../schemas/events.ts'
import {
  type CheckResult,
  type Connector,
  type Ctx,
  type JsonSchema,
  type SourceMessage,
  checkpoint,
  itemError,
  record,
} from '../sdk/connector.ts'
import { type BikeShareClient, createClient } from './client.ts'
import { type ItemFault } from './fields.ts'
import {
  type Discovery,
  type GbfsFeed,
  type GbfsFile,
  type GbfsMapContext,
  itemId,
  listOf,
  mapStationInformation,
  mapStationStatus,
  mapVehicle,
  parseDiscovery,
  parseEnvelope,
  systemIdOf,
  vehicleTypeIds,
} from './gbfs-map.ts'
import {
  type BikeShareCursor,
  emptyCursor,
  freshness,
  isDue,
  nextFetchAt,
  operatorStatusDue,
  snapshotCursor,
  startCursor,
} from './schedule.ts'
import { mapTrip, tripIdOf } from './trips-map.ts'

export interface BikeShareTripsConfig {
  /** Base URL of the operator's open API, without /openapi/v1. */
  baseUrl: string
  appKey?: string
  /** Orders per request, 1..1000 (default 500). */
  pageSize?: number
  /** Datum of the operator's trip coordinates (default GCJ02, what Chinese operators use). */
  coordSystem?: CoordSystem
}

export interface BikeShareConfig {
  /** The system's GBFS discovery file (gbfs.json). */
  gbfsUrl?: string
  /**
   * Fetch each file from `<feedBaseUrl>/<feed name>.json` instead of the URL
   * gbfs.json publishes: for mirrors, and for discovery files that list
   * internal or file: URLs.
   */
  feedBaseUrl?: string
  /** Extra HTTP headers for GBFS requests (e.g. an API token). */
  headers?: Record<string, string>
  /** Preferred language: the 2.x feed block and 3.0 localised names. */
  language?: string
  /** Operator id on every event; default the GBFS system_id. */
  operatorId?: string
  /** Registered fleet, the denominator of the online rate; default the most vehicles seen reporting at once. */
  fleetSize?: number
  /** Datum of GBFS coordinates (default WGS84, which GBFS prescribes). */
  coordSystem?: CoordSystem
  trips?: BikeShareTripsConfig
  /** How far after now a trip's end time may be before it is rejected (default 5 min). */
  futureToleranceMs?: number
}

export type { BikeShareCursor } from './schedule.ts'

const DEFAULTS = { pageSize: 500, futureToleranceMs: 300_000 } as const

// Dead-letter payloads are capped: an item can be large.
const MAX_RAW_CHARS = 64 * 1024

const httpUrl = { type: 'string', format: 'uri', pattern: '^https?://' } as const

const configSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  anyOf: [{ required: ['gbfsUrl'] }, { required: ['trips', 'operatorId'] }],
  properties: {
    gbfsUrl: { ...httpUrl, description: 'URL of the GBFS discovery file (gbfs.json)' },
    feedBaseUrl: { ...httpUrl, description: 'Fetch each GBFS file from <feedBaseUrl>/<name>.json instead of the published URL' },
    headers: { type: 'object', additionalProperties: { type: 'string', 'x-secret': true }, description: 'Extra headers for GBFS requests' },
    language: { type: 'string', minLength: 1, maxLength: 35 },
    operatorId: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$', description: 'Default: the GBFS system_id' },
    fleetSize: { type: 'integer', minimum: 1, description: 'Registered fleet; default the most vehicles seen reporting at once' },
    coordSystem: { enum: [...COORD_SYSTEMS], default: 'WGS84' },
    trips: {
      type: 'object',
      additionalProperties: false,
      required: ['baseUrl'],
      properties: {
        baseUrl: { ...httpUrl, description: 'Base URL of the operator open API, without /openapi/v1' },
        appKey: { type: 'string', minLength: 1, 'x-secret': true, description: 'Sent as X-App-Key' },
        pageSize: { type: 'integer', minimum: 1, maximum: 1000, default: DEFAULTS.pageSize },
        coordSystem: { enum: [...COORD_SYSTEMS], default: 'GCJ02' },
      },
    },
    futureToleranceMs: { type: 'integer', minimum: 0, default: DEFAULTS.futureToleranceMs },
  },
}

interface Resolved {
  gbfsUrl: string | undefined
  feedBaseUrl: string | undefined
  headers: Record<string, string>
  language: string | null
  operatorId: string | undefined
  fleetSize: number | undefined
  coordSystem: CoordSystem
  trips: { baseUrl: string; appKey: string | undefined; pageSize: number; coordSystem: CoordSystem } | undefined
  futureToleranceMs: number
}

// The runtime validates config against configSchema; defaults are applied
// again here so that direct callers (tests, scripts) get the same behaviour.
function resolve(config: BikeShareConfig): Resolved {
  if (config.gbfsUrl === undefined && (config.trips === undefined || config.operatorId === undefined)) {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_MISSING', ['gbfsUrl, or trips and operatorId'])
  }
  return {
    gbfsUrl: config.gbfsUrl,
    feedBaseUrl: config.feedBaseUrl,
    headers: config.headers ?? {},
    language: config.language ?? null,
    operatorId: config.operatorId,
    fleetSize: config.fleetSize,
    coordSystem: config.coordSystem ?? 'WGS84',
    trips:
      config.trips === undefined
        ? undefined
        : {
            baseUrl: config.trips.baseUrl,
            appKey: config.trips.appKey,
            pageSize: config.trips.pageSize ?? DEFAULTS.pageSize,
            coordSystem: config.trips.coordSystem ?? 'GCJ02',
          },
    futureToleranceMs: config.futureToleranceMs ?? DEFAULTS.futureToleranceMs,
  }
}

type Msg = SourceMessage<BikeShareCursor>

function rawOf(raw: unknown): string {
  const text = JSON.stringify(raw) ?? 'null'
  return text.length <= MAX_RAW_CHARS ? text : text.slice(0, MAX_RAW_CHARS)
}

function contentHash(data: unknown): string {
  return createHash('sha256').update(JSON.stringify(data)).digest('hex').slice(0, 32)
}

const iso = (ms: number): string => new Date(ms).toISOString()

/** Where to fetch a file: the mirror when configured, else the published URL (http(s) only). */
export function feedUrl(feed: GbfsFeed, discovery: Discovery & { url: string }, feedBaseUrl: string | undefined): string {
  if (feedBaseUrl !== undefined) return new URL(`${feed}.json`, feedBaseUrl.replace(/\/*$/, '/')).href
  const published = discovery.feeds[feed]!
  let url: URL
  try {
    url = new URL(published, discovery.url)
  } catch {
    throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`gbfs: ${feed} has an unusable URL ${JSON.stringify(published)}`])
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [
      `gbfs: ${feed} is published at ${published}, which is not an http(s) URL; set feedBaseUrl to read the files from a mirror`,
    ])
  }
  return url.href
}

/** What one read of the GBFS side needs to share. */
interface GbfsRead {
  cfg: Resolved
  cur: BikeShareCursor
  client: BikeShareClient
  ctx: Ctx
  /** File-level failures: the read carries on and reports them at the end. */
  failures: Error[]
}

interface Taken {
  file: GbfsFile
  /** data[listKey] for files that carry a list. */
  items: unknown[]
}

/**
 * Fetches and parses one file if it is due, and restarts its ttl; null when
 * there is nothing new to map. A file that cannot be fetched or has the wrong
 * shape is a failure of the read, and is fetched again on the next one.
 */
async function* takeFile(r: GbfsRead, feed: GbfsFeed, opts: { static: boolean; list: readonly string[] | null; check?: (file: GbfsFile) => void }): AsyncGenerator<Msg, Taken | null> {
  const disc = r.cur.discovery!
  if (disc.feeds[feed] === undefined || !isDue(r.cur.files[feed], r.ctx.clock.now())) return null
  let file: GbfsFile
  let items: unknown[]
  try {
    const url = feedUrl(feed, disc, r.cfg.feedBaseUrl)
    file = parseEnvelope(feed, await r.client.gbfsFile(url, feed), r.ctx.timezone)
    items = opts.list === null ? [] : listOf(feed, file, opts.list)
    opts.check?.(file)
  } catch (err) {
    if (r.ctx.signal.aborted) throw err
    r.failures.push(err instanceof Error ? err : new Error(String(err)))
    return null
  }
  const fetchedAt = r.ctx.clock.now()
  const previous = r.cur.files[feed]
  const seen = freshness(previous, file.lastUpdated)
  const hash = opts.static ? contentHash(file.data) : undefined
  if (!file.ttlValid) yield { type: 'status', level: 'warn', message: `${feed}: ttl missing or invalid; fetched on every read` }
  if (file.lastUpdatedUnit === 'milliseconds') {
    yield { type: 'status', level: 'info', message: `${feed}: last_updated is in epoch milliseconds, not seconds; read as such` }
  }
  if (seen !== 'new') {
    yield {
      type: 'status',
      level: seen === 'older' ? 'warn' : 'info',
      message:
        seen === 'older'
          ? `${feed}: snapshot of ${iso(file.lastUpdated)} is older than the one taken (${iso(previous!.lastUpdated)}); skipped`
          : `${feed}: same snapshot as before (last_updated ${iso(file.lastUpdated)}); skipped`,
    }
  }
  const unchanged = seen !== 'new' || (hash !== undefined && hash === previous?.contentHash)
  // The ttl restarts either way; last_updated only moves forward.
  r.cur.files[feed] = {
    lastUpdated: Math.max(file.lastUpdated, previous?.lastUpdated ?? file.lastUpdated),
    nextFetchAt: nextFetchAt(fetchedAt, file.ttl),
    ...(hash !== undefined ? { contentHash: hash } : {}),
  }
  if (unchanged) {
    yield checkpoint(snapshotCursor(r.cur))
    return null
  }
  return { file, items }
}

function mapCtx(r: GbfsRead, operatorId: string, file: GbfsFile): GbfsMapContext {
  return { operatorId, timezone: r.ctx.timezone, lastUpdated: file.lastUpdated, language: r.cfg.language, coordSystem: r.cfg.coordSystem }
}

function reject(event: EventName, label: string, fault: ItemFault, raw: unknown): Msg {
  return itemError(event, fault.code, `${label}: ${fault.reason}`, rawOf(raw))
}

async function* discover(r: GbfsRead, gbfsUrl: string): AsyncGenerator<Msg, boolean> {
  const cached = r.cur.discovery !== null && r.cur.discovery.url === gbfsUrl ? r.cur.discovery : null
  if (cached !== null && !isDue(cached, r.ctx.clock.now())) return true
  try {
    const file = parseEnvelope('gbfs', await r.client.gbfsFile(gbfsUrl, 'gbfs'), r.ctx.timezone)
    const found = parseDiscovery(file, r.cfg.language)
    if (found.feeds.station_status === undefined && found.feeds.free_bike_status === undefined && found.feeds.vehicle_status === undefined) {
      throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', ['gbfs: lists neither station_status nor free_bike_status nor vehicle_status'])
    }
    if (cached === null) {
      // Another system, or the first read: nothing of the GBFS state before applies.
      const { trips } = r.cur
      Object.assign(r.cur, emptyCursor(), { trips })
    }
    r.cur.discovery = { ...found, url: gbfsUrl, lastUpdated: file.lastUpdated, nextFetchAt: nextFetchAt(r.ctx.clock.now(), file.ttl) }
    yield checkpoint(snapshotCursor(r.cur))
    return true
  } catch (err) {
    if (r.ctx.signal.aborted) throw err
    r.failures.push(err instanceof Error ? err : new Error(String(err)))
    // The feeds found before still serve while gbfs.json is unavailable.
    if (cached !== null) r.cur.discovery = cached
    return cached !== null
  }
}

async function* readGbfs(r: GbfsRead, gbfsUrl: string): AsyncGenerator<Msg> {
  if (!(yield* discover(r, gbfsUrl))) return
  const disc = r.cur.discovery!

  const info = yield* takeFile(r, 'system_information', { static: true, list: null, check: systemIdOf })
  if (info !== null) {
    r.cur.systemId = systemIdOf(info.file)
    yield checkpoint(snapshotCursor(r.cur))
  }
  const operatorId = r.cfg.operatorId ?? r.cur.systemId
  if (operatorId === null) {
    if (disc.feeds.system_information === undefined) {
      r.failures.push(new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', ['gbfs: lists no system_information to take the operator id from; set operatorId']))
    }
    return
  }

  const types = yield* takeFile(r, 'vehicle_types', { static: true, list: ['vehicle_types'] })
  if (types !== null) {
    r.cur.vehicleTypes = vehicleTypeIds(types.items)
    yield checkpoint(snapshotCursor(r.cur))
  }
  yield* readStationInformation(r, operatorId)
  yield* readStationStatus(r, operatorId)
  // 3.0 names the file vehicle_status; 2.x free_bike_status.
  yield* readVehicles(r, operatorId, disc.feeds.vehicle_status !== undefined ? 'vehicle_status' : 'free_bike_status')
  yield* emitOperatorStatus(r, operatorId)
}

async function* readStationInformation(r: GbfsRead, operatorId: string): AsyncGenerator<Msg> {
  const taken = yield* takeFile(r, 'station_information', { static: true, list: ['stations'] })
  if (taken === null) return
  const ctx = mapCtx(r, operatorId, taken.file)
  for (const raw of taken.items) {
    const m = mapStationInformation(raw, ctx)
    yield m.ok ? record('BikeStation', m.value) : reject('BikeStation', `station_information station ${itemId(raw, ['station_id']) ?? '?'}`, m.fault, raw)
  }
  yield checkpoint(snapshotCursor(r.cur))
}

async function* readStationStatus(r: GbfsRead, operatorId: string): AsyncGenerator<Msg> {
  const taken = yield* takeFile(r, 'station_status', { static: false, list: ['stations'] })
  if (taken === null) return
  const ctx = mapCtx(r, operatorId, taken.file)
  // Vehicles at stations, once per station however often it is listed.
  const atStations = new Map<string, number>()
  for (const raw of taken.items) {
    const m = mapStationStatus(raw, ctx)
    if (!m.ok) {
      yield reject('BikeStationStatus', `station_status station ${itemId(raw, ['station_id']) ?? '?'}`, m.fault, raw)
      continue
    }
    const { draft, disabled } = m.value
    if (!atStations.has(draft.stationId)) atStations.set(draft.stationId, draft.vehiclesAvailable + disabled)
    yield record('BikeStationStatus', draft)
  }
  let count = 0
  for (const n of atStations.values()) count += n
  r.cur.stationVehicles = { at: taken.file.lastUpdated, count }
  yield checkpoint(snapshotCursor(r.cur))
}

async function* readVehicles(r: GbfsRead, operatorId: string, feed: GbfsFeed): AsyncGenerator<Msg> {
  const taken = yield* takeFile(r, feed, { static: false, list: ['vehicles', 'bikes'] })
  if (taken === null) return
  const ctx = mapCtx(r, operatorId, taken.file)
  const knownTypes = r.cur.vehicleTypes === null ? null : new Set(r.cur.vehicleTypes)
  const unknownTypes = new Set<string>()
  // Ids rotate between snapshots, but within one they are unique: a vehicle
  // listed twice is one vehicle.
  const free = new Set<string>()
  for (const raw of taken.items) {
    const m = mapVehicle(raw, ctx)
    if (!m.ok) {
      yield reject('BikeVehicleStatus', `${feed} vehicle ${itemId(raw, ['vehicle_id', 'bike_id']) ?? '?'}`, m.fault, raw)
      continue
    }
    const v = m.value
    if (v.stationId === null) free.add(v.vehicleId)
    if (knownTypes !== null && v.vehicleTypeId !== null && !knownTypes.has(v.vehicleTypeId)) unknownTypes.add(v.vehicleTypeId)
    yield record('BikeVehicleStatus', v)
  }
  r.cur.freeVehicles = { at: taken.file.lastUpdated, count: free.size }
  if (unknownTypes.size > 0) {
    yield { type: 'status', level: 'warn', message: `${feed}: vehicle_type_id not in vehicle_types: ${[...unknownTypes].slice(0, 10).join(', ')}` }
  }
  yield checkpoint(snapshotCursor(r.cur))
}

/** Fleet size: the configured one, else the most vehicles seen reporting at once (ids rotate, so they cannot be counted). */
function* emitOperatorStatus(r: GbfsRead, operatorId: string): Generator<Msg> {
  const due = operatorStatusDue(r.cur)
  if (due === null) return
  const peak = Math.max(r.cur.operator?.peak ?? 0, due.vehiclesReporting)
  const fleetSize = r.cfg.fleetSize ?? peak
  if (r.cfg.fleetSize !== undefined && due.vehiclesReporting > r.cfg.fleetSize) {
    yield { type: 'status', level: 'warn', message: `${due.vehiclesReporting} vehicles reporting, more than the configured fleet of ${r.cfg.fleetSize}` }
  }
  yield record('BikeOperatorStatus', { occurredAt: due.at, operatorId, fleetSize, vehiclesReporting: due.vehiclesReporting })
  r.cur.operator = { at: due.at, peak }
  yield checkpoint(snapshotCursor(r.cur))
}

/**
 * Pages through the trips API from the saved position until hasMore is false,
 * with a checkpoint after every page. The position is the API's own cursor,
 * which follows the order trips reached the operator's platform, so a trip
 * uploaded hours late is read when it arrives and is not skipped.
 */
async function* readTrips(cfg: Resolved, cur: BikeShareCursor, client: BikeShareClient, ctx: Ctx, operatorId: string): AsyncGenerator<Msg> {
  const trips = cfg.trips!
  let position = cur.trips?.cursor ?? null
  for (;;) {
    if (ctx.signal.aborted) return
    const page = await client.tripsPage(position, trips.pageSize)
    const tripCtx = { operatorId, timezone: ctx.timezone, coordSystem: trips.coordSystem, now: ctx.clock.now(), futureToleranceMs: cfg.futureToleranceMs }
    for (const raw of page.list) {
      const m = mapTrip(raw, tripCtx)
      yield m.ok ? record('BikeTrip', m.value) : reject('BikeTrip', `trip ${tripIdOf(raw) ?? '?'}`, m.fault, raw)
    }
    if (page.list.length === 0) {
      if (page.hasMore) throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`trips page after cursor ${String(position)} is empty but hasMore is true`])
      return
    }
    if (page.nextCursor === position) {
      throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`trips page after cursor ${String(position)} did not move the cursor`])
    }
    position = page.nextCursor
    cur.trips = { cursor: position }
    yield checkpoint(snapshotCursor(cur))
    if (!page.hasMore) return
  }
}

function failureOf(failures: readonly Error[]): Error {
  if (failures.length === 1) return failures[0]!
  return new CitysyncError('CITYSYNC_ERR_CONNECTOR_PARTIAL', [failures.length, failures.map((f) => errorMessage(f)).join('; ')], { cause: failures })
}

export const bikeShareConnector: Connector<BikeShareConfig, BikeShareCursor> = {
  kind: 'bike-share',
  title: 'Bike share (GBFS 1.x-3.0 and operator trips API)',
  configSchema,

  async check(config: BikeShareConfig, ctx: Ctx): Promise<CheckResult> {
    try {
      const cfg = resolve(config)
      const client = createClient({ headers: cfg.headers, trips: cfg.trips }, ctx)
      const details: Record<string, unknown> = {}
      const parts: string[] = []
      if (cfg.gbfsUrl !== undefined) {
        const file = parseEnvelope('gbfs', await client.gbfsFile(cfg.gbfsUrl, 'gbfs'), ctx.timezone)
        const disc = parseDiscovery(file, cfg.language)
        details.gbfsVersion = disc.version
        details.language = disc.language
        details.feeds = Object.keys(disc.feeds)
        if (disc.feeds.system_information !== undefined) {
          const url = feedUrl('system_information', { ...disc, url: cfg.gbfsUrl }, cfg.feedBaseUrl)
          details.systemId = systemIdOf(parseEnvelope('system_information', await client.gbfsFile(url, 'system_information'), ctx.timezone))
        }
        parts.push(`GBFS ${disc.version} with ${Object.keys(disc.feeds).join(', ')}`)
      }
      if (cfg.trips !== undefined) {
        const page = await client.tripsPage(null, 1)
        details.tripsReachable = true
        parts.push(`trips API answers (${page.hasMore || page.list.length > 0 ? 'has orders' : 'no orders yet'})`)
      }
      return { ok: true, message: parts.join('; '), details }
    } catch (err) {
      return { ok: false, message: errorMessage(err) }
    }
  },

  async *read(config: BikeShareConfig, cursor: BikeShareCursor | undefined, ctx: Ctx) {
    const cfg = resolve(config)
    const cur = startCursor(cursor)
    const client = createClient({ headers: cfg.headers, trips: cfg.trips }, ctx)
    const r: GbfsRead = { cfg, cur, client, ctx, failures: [] }
    try {
      if (cfg.gbfsUrl !== undefined) yield* readGbfs(r, cfg.gbfsUrl)
      if (cfg.trips !== undefined) {
        const operatorId = cfg.operatorId ?? cur.systemId
        if (operatorId === null) {
          r.failures.push(new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', ['trips not read: no operator id yet (system_information not read)']))
        } else {
          try {
            yield* readTrips(cfg, cur, client, ctx, operatorId)
          } catch (err) {
            if (ctx.signal.aborted) throw err
            r.failures.push(err instanceof Error ? err : new Error(String(err)))
          }
        }
      }
    } catch (err) {
      // Stopped from outside (pause, shutdown): end quietly, the last checkpoint stands.
      if (ctx.signal.aborted) return
      throw err
    }
    if (ctx.signal.aborted) return
    if (r.failures.length > 0) throw failureOf(r.failures)
  },
}
