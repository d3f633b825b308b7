// Vendor items -> canonical drafts. Pure: no I/O, no clock (the caller passes now).
//
// Vendor item contract (停车场管理平台 open API):
//   park:  { parkCode, parkName, totalSpace, lng, lat, coordType, address, openTime: "HH:mm-HH:mm" }
//   entry: { seq, recordNo, parkCode, gateNo, plateNo, plateColor, inTime, isReupload: 0|1 }
//   exit:  entry fields + { outTime, fee: "12.50" (yuan) }, inTime being the matching entry's
//   space: { seq, parkCode, freeSpace, totalSpace, reportTime }
// Times are naive local "YYYY-MM-DD HH:mm:ss" in the source's zone.
//
// Plates stay in clear in drafts (the pipeline protects them) but never appear
// in a reason; raw payloads are passed through redactPlates before they leave.

import { maskPlate } from '../../lib/crypto.ts'
import {
  type ItemFault as SdkItemFault,
  type Mapped as SdkMapped,
  type Obj,
  checkNotFuture,
  Fault,
  isObj,
  kindOf,
  optionalString,
  optionalTime,
  requireString,
  requireTime,
  run as runItem,
  show,
} from '../sdk/fields.ts'
import { COORD_SYSTEMS, type CoordSystem, type Direction, type Draft } from '../../schemas/events.ts'

export const ITEM_ERROR_CODES = [
  'missing_field',
  'wrong_type',
  'invalid_value',
  'unknown_lot',
  'future_timestamp',
  'malformed_json',
  'duplicate_record',
] as const
export type ItemErrorCode = (typeof ITEM_ERROR_CODES)[number]

export type ItemFault = SdkItemFault<ItemErrorCode>
export type Mapped<T> = SdkMapped<T, ItemErrorCode>

export interface MapContext {
  /** IANA zone of the source's naive times. */
  timezone: string
  /** Current time, epoch ms. */
  now: number
  /** How far after `now` an event time may be before it is rejected. */
  futureToleranceMs: number
  /** parkCodes returned by /parks in this read. */
  knownLots: ReadonlySet<string>
}

// Fee in fen must fit the Avro int.
const MAX_CENTS = 2_147_483_647

/** A non-negative integer; vendors send numbers or numeric strings, and "unknown" when they have none. */
function readCount(o: Obj, field: string, required: boolean): number | null {
  const v = o[field]
  if (v === undefined || (v === null && !required)) {
    if (required) throw new Fault('missing_field', field, `missing field ${field}`)
    return null
  }
  let n: number
  if (typeof v === 'number') n = v
  else if (typeof v === 'string') {
    const s = v.trim()
    if (!/^-?\d+$/.test(s)) throw new Fault('invalid_value', field, `${field} is not a number: ${show(v)}`)
    n = Number(s)
  } else throw new Fault('wrong_type', field, `${field} must be a number, got ${kindOf(v)}`)
  if (!Number.isSafeInteger(n)) throw new Fault('invalid_value', field, `${field} is not a whole number: ${show(v)}`)
  if (n < 0) throw new Fault('invalid_value', field, `${field} must not be negative: ${n}`)
  return n
}

function readCoordinate(o: Obj, field: string, limit: number): number | null {
  const v = o[field]
  if (v === undefined || v === null || v === '') return null
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : Number.NaN
  if (typeof v !== 'number' && typeof v !== 'string') throw new Fault('wrong_type', field, `${field} must be a number, got ${kindOf(v)}`)
  if (!Number.isFinite(n) || Math.abs(n) > limit) throw new Fault('invalid_value', field, `${field} is not a coordinate: ${show(v)}`)
  return n
}

/** Fee in yuan ("12.50", 12.5) -> fen (1250). */
export function feeToCents(v: unknown, field = 'fee'): number {
  let cents: number
  if (typeof v === 'string') {
    const m = /^(\d{1,10})(?:\.(\d{1,2}))?$/.exec(v.trim())
    if (m === null) {
      const reason = /^\s*-/.test(v) ? 'must not be negative' : 'is not an amount in yuan'
      throw new Fault('invalid_value', field, `${field} ${reason}: ${show(v)}`)
    }
    cents = Number(m[1]) * 100 + Number((m[2] ?? '').padEnd(2, '0'))
  } else if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Fault('invalid_value', field, `${field} is not an amount in yuan: ${show(v)}`)
    if (v < 0) throw new Fault('invalid_value', field, `${field} must not be negative: ${v}`)
    cents = Math.round(v * 100)
    if (Math.abs(cents - v * 100) > 1e-6) throw new Fault('invalid_value', field, `${field} has more than two decimals: ${v}`)
  } else {
    throw new Fault('wrong_type', field, `${field} must be a string or number, got ${kindOf(v)}`)
  }
  if (cents > MAX_CENTS) throw new Fault('invalid_value', field, `${field} is implausibly large: ${show(v)}`)
  return cents
}

function readFlag(o: Obj, field: string): boolean {
  const v = o[field]
  if (v === undefined || v === null) return false
  if (v === 0 || v === '0' || v === false) return false
  if (v === 1 || v === '1' || v === true) return true
  if (typeof v === 'number' || typeof v === 'string') throw new Fault('invalid_value', field, `${field} must be 0 or 1: ${show(v)}`)
  throw new Fault('wrong_type', field, `${field} must be 0 or 1, got ${kindOf(v)}`)
}

function readPlate(o: Obj): string | null {
  const v = o.plateNo
  if (v === undefined || v === null) return null
  // The value is personal data: the reason names the type only.
  if (typeof v !== 'string') throw new Fault('wrong_type', 'plateNo', `plateNo must be a string, got ${kindOf(v)}`)
  const s = v.trim()
  return s === '' ? null : s
}

function checkLot(parkCode: string, ctx: MapContext): void {
  if (!ctx.knownLots.has(parkCode)) {
    throw new Fault('unknown_lot', 'parkCode', `parkCode ${show(parkCode)} is not among the lots of this source`)
  }
}

function run<T>(raw: unknown, body: (o: Obj) => T): Mapped<T> {
  return runItem<T, ItemErrorCode>(raw, body, 'item')
}

export function itemSeq(raw: unknown): number | null {
  if (!isObj(raw)) return null
  const v = raw.seq
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d{1,15}$/.test(v) ? Number(v) : Number.NaN
  return Number.isSafeInteger(n) && n >= 1 ? n : null
}

/** Vendor openTime "HH:mm-HH:mm" -> OSM opening_hours; null when it is not in that form. */
export function toOpeningHours(openTime: string): string | null {
  const m = /^(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})$/.exec(openTime.trim())
  if (m === null) return null
  const [h1, m1, h2, m2] = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])]
  if (h1 > 23 || m1 > 59 || h2 > 24 || m2 > 59 || (h2 === 24 && m2 !== 0)) return null
  const from = h1 * 60 + m1
  const to = h2 * 60 + m2
  if ((from === 0 && to === 24 * 60) || from === to) return '24/7'
  return `Mo-Su ${m[1]}:${m[2]}-${m[3]}:${m[4]}`
}

function toCoordSystem(v: unknown): CoordSystem {
  if (v === undefined || v === null || v === '') return 'GCJ02' // the vendor's documented default
  if (typeof v !== 'string') throw new Fault('wrong_type', 'coordType', `coordType must be a string, got ${kindOf(v)}`)
  const norm = v.trim().toUpperCase().replace(/[-_\s]/g, '')
  const found = COORD_SYSTEMS.find((c) => c === norm)
  if (found === undefined) throw new Fault('invalid_value', 'coordType', `coordType is not one of ${COORD_SYSTEMS.join(', ')}: ${show(v)}`)
  return found
}

/** A /parks item -> ParkingLot draft. `occurredAt` is chosen by the caller (deterministic per refresh interval). */
export function mapLot(raw: unknown, occurredAt: number): Mapped<Draft<'ParkingLot'>> {
  return run(raw, (o) => {
    const lotId = requireString(o, 'parkCode')
    const name = requireString(o, 'parkName')
    const capacity = readCount(o, 'totalSpace', true)!
    let lon = readCoordinate(o, 'lng', 180)
    let lat = readCoordinate(o, 'lat', 90)
    if ((lon === null) !== (lat === null)) {
      throw new Fault('invalid_value', lon === null ? 'lng' : 'lat', 'lng and lat must both be given or both be absent')
    }
    // 0,0 is how vendor platforms say "not surveyed".
    if (lon === 0 && lat === 0) lon = lat = null
    const coordSystem = lon === null ? null : toCoordSystem(o.coordType)
    const address = optionalString(o, 'address')
    const openTime = optionalString(o, 'openTime')
    let openingHours: string | null = null
    if (openTime !== null) {
      openingHours = toOpeningHours(openTime)
      if (openingHours === null) throw new Fault('invalid_value', 'openTime', `openTime is not HH:mm-HH:mm: ${show(openTime)}`)
    }
    return { occurredAt, lotId, name, capacity, lat, lon, coordSystem, district: null, address, openingHours }
  })
}

/** An entry (`direction` 'entry') or exit item -> ParkingPassage draft. */
export function mapPassage(raw: unknown, direction: Direction, ctx: MapContext): Mapped<Draft<'ParkingPassage'>> {
  return run(raw, (o) => {
    const recordNo = requireString(o, 'recordNo')
    const lotId = requireString(o, 'parkCode')
    const timeField = direction === 'entry' ? 'inTime' : 'outTime'
    const occurredAt = requireTime(o, timeField, ctx.timezone)
    const entryAt = direction === 'exit' ? optionalTime(o, 'inTime', ctx.timezone) : null
    const gateId = optionalString(o, 'gateNo')
    const plate = readPlate(o)
    const color = optionalString(o, 'plateColor')
    const isBackfill = readFlag(o, 'isReupload')
    const fee = direction === 'exit' && o.fee !== undefined && o.fee !== null ? feeToCents(o.fee) : null
    checkLot(lotId, ctx)
    checkNotFuture(occurredAt, timeField, ctx)
    if (entryAt !== null && entryAt > occurredAt) {
      throw new Fault('invalid_value', 'inTime', 'inTime is after outTime')
    }
    return {
      occurredAt,
      lotId,
      recordNo,
      direction,
      gateId,
      plate,
      plateType: color === null ? null : color.toLowerCase(),
      isBackfill,
      feeCents: fee,
      entryAt,
    }
  })
}

/** A free-space report -> ParkingOccupancy draft. */
export function mapOccupancy(raw: unknown, ctx: MapContext): Mapped<Draft<'ParkingOccupancy'>> {
  return run(raw, (o) => {
    const lotId = requireString(o, 'parkCode')
    const free = readCount(o, 'freeSpace', true)!
    const capacity = readCount(o, 'totalSpace', false)
    const occurredAt = requireTime(o, 'reportTime', ctx.timezone)
    checkLot(lotId, ctx)
    if (capacity !== null && free > capacity) {
      throw new Fault('invalid_value', 'freeSpace', `freeSpace ${free} is above totalSpace ${capacity}`)
    }
    checkNotFuture(occurredAt, 'reportTime', ctx)
    return { occurredAt, lotId, free, capacity, status: free === 0 ? 'full' : 'open' }
  })
}

const PLATE_IN_JSON = /("plateNo"\s*:\s*")((?:[^"\\]|\\.)*\\?)("|$)/g

/**
 * Masks every plateNo string value in a JSON text, also one cut off at the end
 * of a truncated body, so raw payloads sent to the dead-letter store carry no
 * plate in clear.
 */
export function redactPlates(text: string): string {
  return text.replace(PLATE_IN_JSON, (_all, open: string, value: string, close: string) => {
    let plain = value
    try {
      plain = JSON.parse(`"${value}"`) as string
    } catch {
      // keep the escaped form
    }
    return `${open}${JSON.stringify(maskPlate(plain)).slice(1, -1)}${close}`
  })
}
