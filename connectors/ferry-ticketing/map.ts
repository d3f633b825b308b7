// Ticketing-system rows -> canonical drafts. Pure: no I/O, no clock (the caller passes now).
//
// Row contract (港航客运票务系统 open API; naive local times `YYYY-MM-DD HH:mm:ss`
// in the source's zone; "epoch" fields carry milliseconds or seconds):
//   sailing: { sailingId, terminalCode, routeCode, routeName, sailDate "YYYY-MM-DD", sailTime "HH:mm",
//              vesselName, seats (number | numeric string | "unknown"), sailStatus 0..5 (number or
//              numeric string), actualDepartTime (epoch | null), updateTime }
//   ticket:  { ticketNo, sailingId, origSailingId, terminalCode, ticketType, ticketPrice (yuan: "175.00",
//              175, "unknown"), saleChannel, ticketStatus 1 sold | 2 refunded | 3 changed,
//              saleTime, changeTime, refundTime, isResend, updateTime }
//   checkin: { checkinId, ticketNo, sailingId, terminalCode, gateNo, checkTime (epoch), isResend, updateTime }
//
// A ticket row is the ticket's current state with its history: one row yields
// a `sold` event, plus `changed` (改签) and `refunded` when their times are set,
// so a reader that missed an intermediate state still gets every event, and
// reading the row again yields the same events (same ids, same content).

import { formatLocal, parseLocal } from '../../lib/local-time.ts'
import {
  type ItemFault as SdkItemFault,
  type Mapped as SdkMapped,
  type Obj,
  checkNotFuture,
  Fault,
  kindOf,
  optionalString,
  optionalTime,
  requireString,
  requireTime,
  run as runItem,
  show,
} from '../sdk/fields.ts'
import { type Draft, type SailingStatus, type TicketStatus } from '../../schemas/events.ts'

export const ITEM_ERROR_CODES = [
  'missing_field',
  'wrong_type',
  'invalid_value',
  'unknown_terminal',
  'unknown_ticket',
  'future_timestamp',
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
  /** terminalCodes listed by /terminals in this read. */
  knownTerminals: ReadonlySet<string>
}

export const FEEDS = ['sailings', 'tickets', 'checkins'] as const
export type Feed = (typeof FEEDS)[number]

/** The field that identifies a row in each feed (the feed's tie-breaker after updateTime). */
export const ID_FIELD: Record<Feed, string> = { sailings: 'sailingId', tickets: 'ticketNo', checkins: 'checkinId' }

/** sailStatus code -> canonical status. */
export const SAILING_STATUS_BY_CODE: readonly SailingStatus[] = ['scheduled', 'boarding', 'departed', 'arrived', 'delayed', 'cancelled']
/** ticketStatus code (1..3) -> canonical status. */
export const TICKET_STATUS_BY_CODE: Readonly<Record<number, TicketStatus>> = { 1: 'sold', 2: 'refunded', 3: 'changed' }

const CHANNEL_NAMES: Readonly<Record<string, string>> = {
  WINDOW: 'window',
  KIOSK: 'kiosk',
  APP: 'app',
  MINIAPP: 'mini-program',
  OTA: 'ota',
}

// Avro int bound (priceCents, capacity).
const MAX_INT = 2_147_483_647
// Epochs below this are seconds: 1e11 s is the year 5138, 1e11 ms is 1973.
const SECONDS_BELOW = 1e11
// Plausible event times: 2000-01-01 .. 2100-01-01 UTC.
const MIN_TIME = 946_684_800_000
const MAX_TIME = 4_102_444_800_000

/** "unknown", "", null or absent: the vendor's ways of saying it has no value. */
function isNoValue(v: unknown): boolean {
  return v === undefined || v === null || (typeof v === 'string' && (v.trim() === '' || v.trim().toLowerCase() === 'unknown'))
}

/** A whole number sent as a number or a numeric string. */
function toInteger(v: unknown, field: string): number {
  let n: number
  if (typeof v === 'number') n = v
  else if (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v)) n = Number(v)
  else if (typeof v === 'string') throw new Fault('invalid_value', field, `${field} is not a number: ${show(v)}`)
  else throw new Fault('wrong_type', field, `${field} must be a number, got ${kindOf(v)}`)
  if (!Number.isSafeInteger(n)) throw new Fault('invalid_value', field, `${field} is not a whole number: ${show(v)}`)
  return n
}

/** Seats and the like: null when the vendor says "unknown". */
function optionalCount(o: Obj, field: string): number | null {
  const v = o[field]
  if (isNoValue(v)) return null
  const n = toInteger(v, field)
  if (n < 0) throw new Fault('invalid_value', field, `${field} must not be negative: ${n}`)
  if (n > MAX_INT) throw new Fault('invalid_value', field, `${field} is implausibly large: ${n}`)
  return n
}

/**
 * Epoch milliseconds from an epoch in milliseconds or seconds (number or
 * numeric string): devices of different makes write either.
 */
export function epochToMs(v: unknown, field: string): number {
  let n: number
  if (typeof v === 'number') n = v
  else if (typeof v === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(v)) n = Number(v)
  else if (typeof v === 'string') throw new Fault('invalid_value', field, `${field} is not an epoch time: ${show(v)}`)
  else throw new Fault('wrong_type', field, `${field} must be an epoch time, got ${kindOf(v)}`)
  if (!Number.isFinite(n) || n <= 0) throw new Fault('invalid_value', field, `${field} is not an epoch time: ${show(v)}`)
  const ms = Math.round(n < SECONDS_BELOW ? n * 1000 : n)
  if (ms < MIN_TIME || ms > MAX_TIME) throw new Fault('invalid_value', field, `${field} is out of range: ${show(v)}`)
  return ms
}

function requireEpoch(o: Obj, field: string): number {
  const v = o[field]
  if (v === undefined || v === null || v === '') throw new Fault('missing_field', field, `missing field ${field}`)
  return epochToMs(v, field)
}

function optionalEpoch(o: Obj, field: string): number | null {
  return isNoValue(o[field]) ? null : epochToMs(o[field], field)
}

/** Price in yuan ("175.00", 175, 87.5) -> fen; null when the vendor says "unknown". */
export function yuanToCents(v: unknown, field = 'ticketPrice'): number | null {
  if (isNoValue(v)) return null
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
  if (cents > MAX_INT) throw new Fault('invalid_value', field, `${field} is implausibly large: ${show(v)}`)
  return cents
}

function checkTerminal(code: string, ctx: MapContext): void {
  if (!ctx.knownTerminals.has(code)) {
    throw new Fault('unknown_terminal', 'terminalCode', `terminalCode ${show(code)} is not among the terminals of this source`)
  }
}

function run<T>(raw: unknown, body: (o: Obj) => T): Mapped<T> {
  return runItem<T, ItemErrorCode>(raw, body, 'row')
}

export interface Position {
  id: string
  /** updateTime, epoch ms. */
  ts: number
  /** updateTime normalised to `YYYY-MM-DD HH:mm:ss` local (what the API takes as updatedAfter). */
  local: string
}

export function comparePositions(a: Pick<Position, 'ts' | 'id'>, b: Pick<Position, 'ts' | 'id'>): number {
  return a.ts - b.ts || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}

/** The row's (updateTime, id), or the fault that makes it unplaceable. */
export function itemPosition(raw: unknown, feed: Feed, zone: string): Mapped<Position> {
  return run(raw, (o) => {
    const id = requireString(o, ID_FIELD[feed])
    const ts = requireTime(o, 'updateTime', zone)
    return { id, ts, local: formatLocal(ts, zone) }
  })
}

function readSailingStatus(o: Obj): SailingStatus {
  if (o.sailStatus === undefined || o.sailStatus === null || o.sailStatus === '') throw new Fault('missing_field', 'sailStatus', 'missing field sailStatus')
  const code = toInteger(o.sailStatus, 'sailStatus')
  const status = SAILING_STATUS_BY_CODE[code]
  if (status === undefined) throw new Fault('invalid_value', 'sailStatus', `sailStatus is not a known status code (0..5): ${show(o.sailStatus)}`)
  return status
}

function readScheduled(o: Obj, zone: string): number {
  const date = requireString(o, 'sailDate')
  const time = requireString(o, 'sailTime')
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) throw new Fault('invalid_value', 'sailDate', `sailDate is not YYYY-MM-DD: ${show(date)}`)
  if (!/^\d{2}:\d{2}(:\d{2})?$/.test(time)) throw new Fault('invalid_value', 'sailTime', `sailTime is not HH:mm: ${show(time)}`)
  const t = parseLocal(`${date} ${time.length === 5 ? `${time}:00` : time}`, zone)
  if (t === null) throw new Fault('invalid_value', 'sailDate', `sailDate and sailTime are not a valid local time: ${show(`${date} ${time}`)}`)
  return t
}

/** A sailings row -> FerrySailing draft; occurredAt is the row's updateTime, so each status change is its own version. */
export function mapSailing(raw: unknown, ctx: MapContext): Mapped<Draft<'FerrySailing'>> {
  return run(raw, (o) => {
    const sailingId = requireString(o, 'sailingId')
    const terminalId = requireString(o, 'terminalCode')
    const route = requireString(o, 'routeCode')
    const scheduledDeparture = readScheduled(o, ctx.timezone)
    const status = readSailingStatus(o)
    const vesselName = optionalString(o, 'vesselName')
    const capacity = optionalCount(o, 'seats')
    const actualDeparture = optionalEpoch(o, 'actualDepartTime')
    const occurredAt = requireTime(o, 'updateTime', ctx.timezone)
    checkTerminal(terminalId, ctx)
    checkNotFuture(occurredAt, 'updateTime', ctx)
    return { occurredAt, sailingId, terminalId, route, vesselName, scheduledDeparture, actualDeparture, capacity, status }
  })
}

function readTicketStatus(o: Obj): TicketStatus {
  if (o.ticketStatus === undefined || o.ticketStatus === null || o.ticketStatus === '') {
    throw new Fault('missing_field', 'ticketStatus', 'missing field ticketStatus')
  }
  const status = TICKET_STATUS_BY_CODE[toInteger(o.ticketStatus, 'ticketStatus')]
  if (status === undefined) throw new Fault('invalid_value', 'ticketStatus', `ticketStatus is not a known status code (1..3): ${show(o.ticketStatus)}`)
  return status
}

/** Vendor saleChannel code -> channel name; codes not in the table are passed on lower-cased. */
export function channelOf(code: string | null): string | null {
  if (code === null) return null
  return CHANNEL_NAMES[code.toUpperCase()] ?? code.toLowerCase()
}

/** A tickets row -> its FerryTicket drafts: sold, then changed and refunded when they happened. */
export function mapTicket(raw: unknown, ctx: MapContext): Mapped<Draft<'FerryTicket'>[]> {
  return run(raw, (o) => {
    const ticketId = requireString(o, 'ticketNo')
    const sailingId = requireString(o, 'sailingId')
    const origSailingId = optionalString(o, 'origSailingId')
    const terminalId = requireString(o, 'terminalCode')
    const ticketType = requireString(o, 'ticketType').toLowerCase()
    const priceCents = yuanToCents(o.ticketPrice)
    const channel = channelOf(optionalString(o, 'saleChannel'))
    const status = readTicketStatus(o)
    const soldAt = requireTime(o, 'saleTime', ctx.timezone)
    const changedAt = optionalTime(o, 'changeTime', ctx.timezone)
    const refundedAt = optionalTime(o, 'refundTime', ctx.timezone)
    checkTerminal(terminalId, ctx)

    if (status === 'sold' && (changedAt !== null || refundedAt !== null)) {
      throw new Fault('invalid_value', 'ticketStatus', `ticketStatus is 1 (sold) but the row has a ${changedAt !== null ? 'changeTime' : 'refundTime'}`)
    }
    if (status === 'changed' && changedAt === null) throw new Fault('missing_field', 'changeTime', 'ticketStatus is 3 (changed) but changeTime is missing')
    if (status === 'changed' && refundedAt !== null) throw new Fault('invalid_value', 'ticketStatus', 'ticketStatus is 3 (changed) but the row has a refundTime')
    if (status === 'refunded' && refundedAt === null) throw new Fault('missing_field', 'refundTime', 'ticketStatus is 2 (refunded) but refundTime is missing')
    if (changedAt !== null && origSailingId === null) throw new Fault('missing_field', 'origSailingId', 'a changed ticket must name its origSailingId')
    if (changedAt !== null && changedAt < soldAt) throw new Fault('invalid_value', 'changeTime', 'changeTime is before saleTime')
    if (refundedAt !== null && refundedAt < (changedAt ?? soldAt)) {
      throw new Fault('invalid_value', 'refundTime', `refundTime is before ${changedAt !== null ? 'changeTime' : 'saleTime'}`)
    }
    checkNotFuture(soldAt, 'saleTime', ctx)
    if (changedAt !== null) checkNotFuture(changedAt, 'changeTime', ctx)
    if (refundedAt !== null) checkNotFuture(refundedAt, 'refundTime', ctx)

    // Built field by field in one order, so that the same event read from a
    // later row has the same content fingerprint.
    const event = (s: TicketStatus, occurredAt: number, sailing: string): Draft<'FerryTicket'> => ({
      occurredAt,
      ticketId,
      sailingId: sailing,
      terminalId,
      ticketType,
      priceCents,
      channel,
      status: s,
    })
    const drafts = [event('sold', soldAt, changedAt !== null ? origSailingId! : sailingId)]
    if (changedAt !== null) drafts.push(event('changed', changedAt, sailingId))
    if (refundedAt !== null) drafts.push(event('refunded', refundedAt, sailingId))
    return drafts
  })
}

/** A checkins row -> FerryCheckIn draft. Whether the ticket exists is the caller's to check (it needs the API). */
export function mapCheckIn(raw: unknown, ctx: MapContext): Mapped<Draft<'FerryCheckIn'>> {
  return run(raw, (o) => {
    const checkInId = requireString(o, 'checkinId')
    const ticketId = requireString(o, 'ticketNo')
    const sailingId = requireString(o, 'sailingId')
    const terminalId = requireString(o, 'terminalCode')
    const gate = optionalString(o, 'gateNo')
    const occurredAt = requireEpoch(o, 'checkTime')
    checkTerminal(terminalId, ctx)
    checkNotFuture(occurredAt, 'checkTime', ctx)
    return { occurredAt, checkInId, ticketId, sailingId, terminalId, gate }
  })
}

/** The fault for a check-in whose ticket the ticketing system does not know. */
export function unknownTicket(ticketId: string): ItemFault {
  return { code: 'unknown_ticket', field: 'ticketNo', reason: `ticketNo ${show(ticketId)} is not a ticket of this source` }
}
