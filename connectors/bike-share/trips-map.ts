// Operator trip (order) items -> BikeTrip drafts. Pure: no I/O, no clock.
//
// Item contract (operator open API, see trips-client.ts):
//   { orderNo, bikeNo, startTime, endTime, startLng?, startLat?, endLng?, endLat?,
//     rideSeconds?, distance? (metres), fee? (yuan, "1.50" or 1.5), isReupload?: 0|1 }
// Times are naive local "YYYY-MM-DD HH:mm:ss" in the source's zone. A position
// of 0,0 is how operator platforms say "no fix".

import { type CoordSystem, type Draft } from '../../schemas/events.ts'
import {
  checkNotFuture,
  Fault,
  type Mapped,
  mapItem,
  type Obj,
  readCoordinate,
  readCount,
  readFlag,
  readLocalTime,
  readYuan,
  requireId,
} from './fields.ts'

export interface TripMapContext {
  operatorId: string
  timezone: string
  /** Datum of the operator's coordinates. */
  coordSystem: CoordSystem
  /** Current time, epoch ms. */
  now: number
  futureToleranceMs: number
}

function position(o: Obj, lngField: string, latField: string): { lat: number; lon: number } | null {
  const lon = readCoordinate(o, lngField, 180, false)
  const lat = readCoordinate(o, latField, 90, false)
  if ((lon === null) !== (lat === null)) {
    throw new Fault('missing_field', lon === null ? lngField : latField, `${lngField} and ${latField} must both be given or both be absent`)
  }
  if (lon === null || lat === null || (lon === 0 && lat === 0)) return null
  return { lat, lon }
}

/** `orderNo` of a trips item, for reasons; null when it has none usable. */
export function tripIdOf(raw: unknown): string | null {
  if (typeof raw !== 'object' || raw === null) return null
  const v = (raw as Obj).orderNo
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : typeof v === 'number' ? String(v) : null
}

export function mapTrip(raw: unknown, ctx: TripMapContext): Mapped<Draft<'BikeTrip'>> {
  return mapItem(raw, (o) => {
    const tripId = requireId(o, 'orderNo')
    const vehicleId = requireId(o, 'bikeNo')
    const startedAt = readLocalTime(o, 'startTime', ctx.timezone)
    const endedAt = readLocalTime(o, 'endTime', ctx.timezone)
    if (endedAt < startedAt) throw new Fault('invalid_value', 'endTime', 'endTime is before startTime')
    const start = position(o, 'startLng', 'startLat')
    const end = position(o, 'endLng', 'endLat')
    const durationS = readCount(o, 'rideSeconds', false) ?? Math.round((endedAt - startedAt) / 1000)
    const distanceM = readCount(o, 'distance', false)
    const feeCents = readYuan(o, 'fee')
    const isBackfill = readFlag(o, 'isReupload', false) ?? false
    checkNotFuture(endedAt, 'endTime', ctx.now, ctx.futureToleranceMs)
    return {
      occurredAt: endedAt,
      operatorId: ctx.operatorId,
      tripId,
      vehicleId,
      startedAt,
      endedAt,
      startLat: start?.lat ?? null,
      startLon: start?.lon ?? null,
      endLat: end?.lat ?? null,
      endLon: end?.lon ?? null,
      coordSystem: start === null && end === null ? null : ctx.coordSystem,
      durationS,
      distanceM,
      feeCents,
      isBackfill,
    }
  })
}
