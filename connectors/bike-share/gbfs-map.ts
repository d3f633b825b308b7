// GBFS files -> canonical drafts. Pure: no I/O, no clock.
//
// Wire contract (GBFS 1.x/2.x and 3.0, https://gbfs.org):
//   every file:  { last_updated, ttl, version?, data }
//                last_updated: POSIX seconds (1.x, 2.x) or RFC 3339 (3.0); producers
//                also write epoch milliseconds, which parseTimestamp detects.
//   gbfs.json:   2.x data: { <lang>: { feeds: [{ name, url }] } };  3.0 data: { feeds: [{ name, url }] }
//   system_information.data:  { system_id, name (2.x string | 3.0 [{ language, text }]), timezone, ... }
//   station_information.data: { stations: [{ station_id, name, lat, lon, capacity? }] }
//   station_status.data:      { stations: [{ station_id, num_bikes_available (2.x) | num_vehicles_available (3.0),
//                               num_bikes_disabled | num_vehicles_disabled ?, num_docks_available ?,
//                               is_installed, is_renting, is_returning, last_reported }] }
//   free_bike_status.data (2.x): { bikes: [{ bike_id, lat, lon, station_id?, vehicle_type_id?,
//                               is_reserved, is_disabled, last_reported? }] }
//   vehicle_status.data (3.0): { vehicles: [ same, with vehicle_id ] }
//   vehicle_types.data:       { vehicle_types: [{ vehicle_type_id, form_factor, ... }] }
//
// Vehicle ids in free_bike_status / vehicle_status rotate after every trip
// (GBFS 2.0+ privacy rule): they identify a vehicle within one snapshot only.
// Nothing here keys state on them; a vehicle status is identified by
// (vehicle id, last_reported or, without it, the file's last_updated).

import { CitysyncError } from '../../lib/errors.ts'
import { type CoordSystem, type Draft } from '../../schemas/events.ts'
import {
  Fault,
  isObj,
  kindOf,
  type Mapped,
  mapItem,
  type Obj,
  optionalId,
  parseTimestamp,
  readCoordinate,
  readCount,
  readTime,
  requireCount,
  requireFlag,
  requireId,
  show,
  type TimeUnit,
} from './fields.ts'

/** The files this connector reads; the rest of a system's feeds are ignored. */
export const GBFS_FEEDS = [
  'system_information',
  'vehicle_types',
  'station_information',
  'station_status',
  'free_bike_status',
  'vehicle_status',
] as const
export type GbfsFeed = (typeof GBFS_FEEDS)[number]

export interface Discovery {
  /** "1.0" when gbfs.json does not say. */
  version: string
  /** The 2.x language block the feeds were taken from; null for 3.0. */
  language: string | null
  /** URL of each file this connector reads, as published. */
  feeds: Partial<Record<GbfsFeed, string>>
}

export interface GbfsFile {
  lastUpdated: number
  lastUpdatedUnit: TimeUnit
  /** Seconds; 0 when the file gives none or an unusable one (see ttlValid). */
  ttl: number
  ttlValid: boolean
  version: string | null
  data: Obj
}

export interface GbfsMapContext {
  operatorId: string
  /** IANA zone for timestamps written without an offset. */
  timezone: string
  /** The file's last_updated, epoch ms: stands in for a missing last_reported. */
  lastUpdated: number
  /** Preferred language for 3.0 localised strings. */
  language: string | null
  coordSystem: CoordSystem
}

function payload(what: string): CitysyncError {
  return new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [what])
}

/** The common wrapper of every GBFS file. Throws when the file as a whole is unusable. */
export function parseEnvelope(feed: string, json: unknown, timezone: string): GbfsFile {
  if (!isObj(json)) throw payload(`${feed}: body is not a JSON object (got ${kindOf(json)})`)
  if (json.last_updated === undefined) throw payload(`${feed}: no last_updated`)
  const t = parseTimestamp(json.last_updated, timezone)
  if (t === null) throw payload(`${feed}: last_updated is not a timestamp: ${show(json.last_updated)}`)
  if (!isObj(json.data)) throw payload(`${feed}: data is not an object (got ${kindOf(json.data)})`)
  const ttlValid = typeof json.ttl === 'number' && Number.isSafeInteger(json.ttl) && json.ttl >= 0
  return {
    lastUpdated: t.ms,
    lastUpdatedUnit: t.unit,
    ttl: ttlValid ? (json.ttl as number) : 0,
    ttlValid,
    version: typeof json.version === 'string' ? json.version : null,
    data: json.data,
  }
}

/**
 * Feed URLs from gbfs.json, in either layout. For 2.x, the block of
 * `language` when the system publishes it, else the first one.
 */
export function parseDiscovery(file: GbfsFile, language: string | null): Discovery {
  const version = file.version ?? '1.0'
  let list: unknown
  let chosen: string | null = null
  if (Array.isArray(file.data.feeds)) {
    list = file.data.feeds
  } else {
    const langs = Object.keys(file.data).filter((k) => isObj(file.data[k]))
    if (langs.length === 0) throw payload('gbfs: data has neither feeds nor a language block')
    chosen = language !== null && langs.includes(language) ? language : langs[0]!
    list = (file.data[chosen] as Obj).feeds
  }
  if (!Array.isArray(list)) throw payload(`gbfs: feeds${chosen === null ? '' : ` of language ${chosen}`} is not a list`)
  const feeds: Partial<Record<GbfsFeed, string>> = {}
  for (const entry of list) {
    if (!isObj(entry) || typeof entry.name !== 'string' || typeof entry.url !== 'string') continue
    if ((GBFS_FEEDS as readonly string[]).includes(entry.name)) feeds[entry.name as GbfsFeed] = entry.url
  }
  return { version, language: chosen, feeds }
}

/** data[key] as a list; throws when the file does not carry it. */
export function listOf(feed: string, file: GbfsFile, keys: readonly string[]): unknown[] {
  for (const key of keys) {
    const v = file.data[key]
    if (v === undefined) continue
    if (!Array.isArray(v)) throw payload(`${feed}: data.${key} is not a list (got ${kindOf(v)})`)
    return v as unknown[]
  }
  throw payload(`${feed}: data has no ${keys.join(' or ')} list`)
}

/** A 2.x plain string or a 3.0 list of { language, text }, in the preferred language when offered. */
export function localizedText(v: unknown, language: string | null): string | null {
  if (typeof v === 'string') return v.trim() === '' ? null : v.trim()
  if (!Array.isArray(v)) return null
  const entries = v.filter((e): e is { language: unknown; text: string } => isObj(e) && typeof e.text === 'string' && e.text.trim() !== '')
  const pick = entries.find((e) => e.language === language) ?? entries[0]
  return pick === undefined ? null : pick.text.trim()
}

/** system_information: the system id, which names the operator unless configured. */
export function systemIdOf(file: GbfsFile): string {
  const id = file.data.system_id
  if (typeof id !== 'string' || id.trim() === '') throw payload(`system_information: no system_id (got ${show(id)})`)
  return id.trim()
}

/** Vehicle type ids listed in vehicle_types' data.vehicle_types. */
export function vehicleTypeIds(items: readonly unknown[]): string[] {
  const ids: string[] = []
  for (const t of items) {
    if (isObj(t) && (typeof t.vehicle_type_id === 'string' || typeof t.vehicle_type_id === 'number')) ids.push(String(t.vehicle_type_id))
  }
  return ids
}

/** The id an item carries, for reasons and counts, or null. */
export function itemId(raw: unknown, fields: readonly string[]): string | null {
  if (!isObj(raw)) return null
  for (const f of fields) {
    const v = raw[f]
    if (typeof v === 'string' && v.trim() !== '') return v.trim()
    if (typeof v === 'number' && Number.isFinite(v)) return String(v)
  }
  return null
}

/** station_information item -> BikeStation. */
export function mapStationInformation(raw: unknown, ctx: GbfsMapContext): Mapped<Draft<'BikeStation'>> {
  return mapItem(raw, (o) => {
    const stationId = requireId(o, 'station_id')
    if (o.name === undefined || o.name === null) throw new Fault('missing_field', 'name', 'missing field name')
    const name = localizedText(o.name, ctx.language)
    if (name === null) throw new Fault('invalid_value', 'name', `name is neither a text nor a list of localised texts: ${show(JSON.stringify(o.name))}`)
    const lat = readCoordinate(o, 'lat', 90, true)!
    const lon = readCoordinate(o, 'lon', 180, true)!
    const capacity = readCount(o, 'capacity', false)
    return { occurredAt: ctx.lastUpdated, operatorId: ctx.operatorId, stationId, name, lat, lon, capacity, coordSystem: ctx.coordSystem }
  })
}

export interface StationStatus {
  draft: Draft<'BikeStationStatus'>
  /** Vehicles at the station that are out of service (not in vehiclesAvailable). */
  disabled: number
}

/**
 * station_status item -> BikeStationStatus. Vehicles above the station's
 * capacity are kept as published: GBFS allows it (valet and overflow parking,
 * virtual stations) and real feeds do it.
 */
export function mapStationStatus(raw: unknown, ctx: GbfsMapContext): Mapped<StationStatus> {
  return mapItem(raw, (o) => {
    const stationId = requireId(o, 'station_id')
    // 3.0 renamed bikes to vehicles; producers mid-migration write either.
    const availableField = o.num_vehicles_available !== undefined ? 'num_vehicles_available' : 'num_bikes_available'
    const vehiclesAvailable = requireCount(o, availableField)
    const disabledField = o.num_vehicles_disabled !== undefined ? 'num_vehicles_disabled' : 'num_bikes_disabled'
    const disabled = readCount(o, disabledField, false) ?? 0
    const docksAvailable = readCount(o, 'num_docks_available', false)
    const isInstalled = requireFlag(o, 'is_installed')
    const isRenting = requireFlag(o, 'is_renting')
    const isReturning = requireFlag(o, 'is_returning')
    const occurredAt = readTime(o, 'last_reported', ctx.timezone, false) ?? ctx.lastUpdated
    return {
      draft: { occurredAt, operatorId: ctx.operatorId, stationId, vehiclesAvailable, docksAvailable, isInstalled, isRenting, isReturning },
      disabled,
    }
  })
}

/** free_bike_status (2.x) or vehicle_status (3.0) item -> BikeVehicleStatus. */
export function mapVehicle(raw: unknown, ctx: GbfsMapContext): Mapped<Draft<'BikeVehicleStatus'>> {
  return mapItem(raw, (o) => {
    const idField = o.vehicle_id !== undefined ? 'vehicle_id' : 'bike_id'
    const vehicleId = requireId(o, idField)
    const stationId = optionalId(o, 'station_id')
    // Position is required of a vehicle that is not at a station.
    const lat = readCoordinate(o, 'lat', 90, stationId === null)
    const lon = readCoordinate(o, 'lon', 180, stationId === null)
    if ((lat === null) !== (lon === null)) {
      throw new Fault('missing_field', lat === null ? 'lat' : 'lon', 'lat and lon must both be given or both be absent')
    }
    const vehicleTypeId = optionalId(o, 'vehicle_type_id')
    const isReserved = requireFlag(o, 'is_reserved')
    const isDisabled = requireFlag(o, 'is_disabled')
    const occurredAt = readTime(o, 'last_reported', ctx.timezone, false) ?? ctx.lastUpdated
    return { occurredAt, operatorId: ctx.operatorId, vehicleId, lat, lon, stationId, vehicleTypeId, isReserved, isDisabled }
  })
}
