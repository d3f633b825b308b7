// A ferry-terminal ticketing system ("港航客运票务系统 开放接口") over real HTTP,
// for demos and tests. Deterministic from a seed and the clock.
//
// Wire contract (JSON; envelope { code, message, data }; code "0000" = success):
//   GET /ferry/open/v1/terminals                                   data: Terminal[]
//   GET /ferry/open/v1/sailings?updatedAfter=&afterId=&pageSize=   data: { records: Sailing[],  hasMore }
//   GET /ferry/open/v1/tickets?updatedAfter=&afterId=&pageSize=    data: { records: Ticket[],   hasMore }
//   GET /ferry/open/v1/checkins?updatedAfter=&afterId=&pageSize=   data: { records: CheckIn[],  hasMore }
//   GET /ferry/open/v1/tickets/query?ticketNos=a,b,...             data: Ticket[] (the ones that exist; at most 100 asked)
// Feeds return each record's current row, ordered by (updateTime, id) ascending,
// those after (updatedAfter, afterId): updateTime > updatedAfter, or equal with
// id > afterId (ids compare as strings). updatedAfter is a naive local
// `YYYY-MM-DD HH:mm:ss`; absent means from the beginning. pageSize is 1..500.
// With an API key configured, a missing or wrong X-Api-Key answers HTTP 401.
//
// Records (every time a naive local `YYYY-MM-DD HH:mm:ss` unless stated):
//   Sailing: sailingId, terminalCode, routeCode, routeName, sailDate "YYYY-MM-DD", sailTime "HH:mm",
//            vesselName|null, seats (number | "unknown"), sailStatus (0 计划 1 检票中 2 已开航 3 已到达
//            4 延误 5 取消; a number, or a numeric string from one terminal), actualDepartTime (epoch,
//            ms or s) | null, updateTime
//   Ticket:  ticketNo, orderNo, sailingId (current), origSailingId|null (before 改签), terminalCode,
//            ticketType, ticketPrice (yuan: "175.00" | 175 | "unknown"), saleChannel, ticketStatus
//            (1 已售 2 已退 3 已改签), saleTime, changeTime|null, refundTime|null, isResend 0|1, updateTime
//   CheckIn: checkinId, ticketNo, sailingId, terminalCode, gateNo, checkTime (epoch ms or s), isResend, updateTime
//
// The quirks a real terminal feed has, always on unless `quirks: false`:
// the system clock lags true time; some rows show up minutes after their
// updateTime (late); offline window sales and gate buffers are uploaded hours
// later (补传, isResend 1, old business time, fresh updateTime); one gate's
// clock runs 3 min fast; old turnstiles and one dispatch system write epoch
// seconds; seats and prices are sometimes "unknown"; later pages repeat the
// tail of the previous page. With `badRate` > 0, some rows are defective (see
// DEFECTS) and some check-ins name tickets that do not exist.
//
// Each service day is generated in one go, from the seed and the day, when
// the clock reaches its timetable's publication (18:00 the evening before);
// the API then serves each row version from the moment it became visible.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { type Clock, systemClock } from '../../lib/clock.ts'
import { formatLocal, parseLocal, zoneOffset } from '../../lib/local-time.ts'
import { type Draft, type SailingStatus, type TicketStatus } from '../../schemas/events.ts'
import { createRng, hash32 } from '../parking-lots/simulator-data.ts'
import {
  CHANNEL_MIX,
  HALL_CLOSE_HOUR,
  HALL_OPEN_HOUR,
  type SimChannel,
  type SimRoute,
  type SimTerminal,
  type SimTicketType,
  TERMINALS,
  TICKET_TYPE_MIX,
  demandByHour,
  pickWeighted,
} from './simulator-data.ts'

const SECOND = 1000
const MINUTE = 60_000
const HOUR = 3_600_000
const DAY = 86_400_000
export const MAX_PAGE_SIZE = 500
export const MAX_LOOKUP = 100
const API = '/ferry/open/v1'

export const SIM_ENDPOINTS = ['sailings', 'tickets', 'checkins'] as const
export type SimEndpoint = (typeof SIM_ENDPOINTS)[number]

/** Vendor sailStatus codes. */
export const SAIL_STATUS_CODES: Record<SailingStatus, number> = {
  scheduled: 0,
  boarding: 1,
  departed: 2,
  arrived: 3,
  delayed: 4,
  cancelled: 5,
}
/** Vendor ticketStatus codes. */
export const TICKET_STATUS_CODES: Record<TicketStatus, number> = { sold: 1, refunded: 2, changed: 3 }

/** Defective rows, by endpoint, and the item error a consumer should raise for each. */
export const DEFECTS = {
  sailing_missing_date: { endpoint: 'sailings', code: 'missing_field' },
  sailing_bad_status: { endpoint: 'sailings', code: 'invalid_value' },
  ticket_missing_sailing: { endpoint: 'tickets', code: 'missing_field' },
  ticket_negative_price: { endpoint: 'tickets', code: 'invalid_value' },
  ticket_future_sale: { endpoint: 'tickets', code: 'future_timestamp' },
  ticket_unknown_terminal: { endpoint: 'tickets', code: 'unknown_terminal' },
  checkin_unknown_ticket: { endpoint: 'checkins', code: 'unknown_ticket' },
  checkin_unknown_time: { endpoint: 'checkins', code: 'invalid_value' },
  checkin_future_time: { endpoint: 'checkins', code: 'future_timestamp' },
  checkin_missing_ticket: { endpoint: 'checkins', code: 'missing_field' },
} as const satisfies Record<string, { endpoint: SimEndpoint; code: string }>
export type Defect = keyof typeof DEFECTS

const SAILING_DEFECTS: readonly Defect[] = ['sailing_missing_date', 'sailing_bad_status']
const TICKET_DEFECTS: readonly Defect[] = ['ticket_missing_sailing', 'ticket_negative_price', 'ticket_future_sale', 'ticket_unknown_terminal']
const CHECKIN_DEFECTS: readonly Defect[] = ['checkin_unknown_time', 'checkin_future_time', 'checkin_missing_ticket']

export interface FerrySimulatorFaults {
  /** Fraction (0..1) of rows served with a defect, plus as many check-ins for tickets that do not exist. */
  badRate?: number
  /** Answer HTTP 503 to every call. */
  outage?: boolean
  /** Delay every response by this much. */
  slowMs?: number
}

export interface FerrySimulatorOptions {
  seed?: number
  /** Zone of the naive local times the system writes (default Asia/Shanghai). */
  timezone?: string
  clock?: Clock
  /** The first service day is the local date of this instant (default clock.now()). */
  startAt?: number
  /** Number of service days with a timetable (default unlimited). */
  serviceDays?: number
  /** Passenger volume as a fraction of a normal day (default 1: about 4500 tickets a day). */
  scale?: number
  /** Turn the feed's quirks (late and backfilled rows, skewed clocks, page overlap, ...) off with false. */
  quirks?: boolean
  /** How far the ticketing system's clock lags true time (default 45 s when quirks are on). */
  systemLagMs?: number
  /** Longest delay between a late row's updateTime and its appearance (default 10 min). */
  maxLateMs?: number
  cancelRate?: number
  delayRate?: number
  apiKey?: string
  faults?: FerrySimulatorFaults
}

/** What a consumer should make of one served row version. */
export type Outcome =
  | { kind: 'sailing'; draft: Draft<'FerrySailing'> }
  | { kind: 'ticket'; drafts: Draft<'FerryTicket'>[] }
  | { kind: 'checkin'; draft: Draft<'FerryCheckIn'> }
  | { kind: 'rejected'; defect: Defect; code: string }

export interface RowVersion {
  endpoint: SimEndpoint
  id: string
  /** updateTime as written, epoch ms (whole seconds). */
  updateTs: number
  /** When the API starts serving this version. */
  visibleAt: number
  /** When the next version of the same row replaces it (Infinity: never). */
  supersededAt: number
  item: Record<string, unknown>
  outcome: Outcome
  /** Late row: served some minutes after its updateTime. */
  late: boolean
  /** Backfilled (补传) row: isResend 1. */
  backfill: boolean
  /**
   * A row whose event time is wrongly ahead: rejected only while that time is
   * still in the future when the row is read; read later, it is what it lands as.
   */
  future?: { at: number; landsAs: Outcome }
}

export interface Expected {
  sailings: Draft<'FerrySailing'>[]
  tickets: Draft<'FerryTicket'>[]
  checkIns: Draft<'FerryCheckIn'>[]
  rejected: { endpoint: SimEndpoint; id: string; updateTs: number; defect: Defect; code: string }[]
}

export interface TerminalApiItem {
  terminalCode: string
  terminalName: string
  address: string
  routes: { routeCode: string; routeName: string }[]
}

/** A sailing as planned for one service day (internal; exported for tests). */
export interface PlannedSailing {
  sailingId: string
  terminal: SimTerminal
  route: SimRoute
  sailDate: string
  sailTime: string
  scheduled: number
  vessel: { name: string; seats: number }
  /** Vessel assignment is published later than the timetable. */
  vesselAssignedAt: number | null
  cancelledAt: number | null
  delayMs: number
  departedAt: number
  arrivedAt: number
}

interface PlannedTicket {
  ticketNo: string
  orderNo: string
  sailing: PlannedSailing
  type: SimTicketType
  channel: SimChannel
  priceCents: number
  priceUnknown: boolean
  /** True time of sale. */
  saleAt: number
  /** Upload time of a backfilled (补传) sale; null when live. */
  uploadAt: number | null
  lateMs: number
  change: { at: number; to: PlannedSailing } | null
  refundAt: number | null
  defect: Defect | null
  /** When the row first becomes visible (set when versions are built). */
  firstVisibleAt: number
}

// Sorted by (updateTs, id): the feed's order.
function compareVersions(a: RowVersion, b: RowVersion): number {
  return a.updateTs - b.updateTs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}

export class FerrySimulator {
  readonly timezone: string
  readonly seed: number
  readonly terminals: readonly SimTerminal[] = TERMINALS
  private readonly clock: Clock
  private readonly apiKey: string | undefined
  private readonly scale: number
  private readonly quirks: boolean
  private readonly lagMs: number
  private readonly maxLateMs: number
  private readonly cancelRate: number
  private readonly delayRate: number
  private readonly firstDay: number
  private readonly serviceDays: number
  private badRate: number
  private outageOn: boolean
  private outageAfterRequests: number | null = null
  private slowMs: number

  private generatedDays = 0
  private readonly versions: Record<SimEndpoint, RowVersion[]> = { sailings: [], tickets: [], checkins: [] }
  /** Ticket rows by ticketNo: their versions, oldest first. */
  private readonly ticketRows = new Map<string, RowVersion[]>()
  private readonly sailingsById = new Map<string, PlannedSailing>()

  private server: Server | null = null
  private baseUrl: string | null = null
  private readonly requestCounts = new Map<string, number>()
  private repeats = 0

  constructor(options: FerrySimulatorOptions = {}) {
    this.seed = options.seed ?? 1
    this.timezone = options.timezone ?? 'Asia/Shanghai'
    zoneOffset(0, this.timezone) // validates the zone before the first request
    this.clock = options.clock ?? systemClock
    this.apiKey = options.apiKey
    this.scale = options.scale ?? 1
    if (!(this.scale > 0 && this.scale <= 10)) throw new RangeError('scale must be in (0, 10]')
    this.quirks = options.quirks ?? true
    this.lagMs = options.systemLagMs ?? (this.quirks ? 45 * SECOND : 0)
    this.maxLateMs = options.maxLateMs ?? 10 * MINUTE
    if (!(this.maxLateMs >= MINUTE)) throw new RangeError('maxLateMs must be at least one minute')
    this.cancelRate = options.cancelRate ?? 0.04
    this.delayRate = options.delayRate ?? 0.12
    this.serviceDays = options.serviceDays ?? Infinity
    const faults = options.faults ?? {}
    this.badRate = faults.badRate ?? 0
    this.outageOn = faults.outage ?? false
    this.slowMs = faults.slowMs ?? 0
    const start = options.startAt ?? this.clock.now()
    this.firstDay = localDayNumber(start, this.timezone)
  }

  outage(on: boolean): void {
    this.outageOn = on
    this.outageAfterRequests = null
  }

  /** Answers `n` more requests normally, then goes down (HTTP 503) until outage(false). */
  outageAfter(n: number): void {
    this.outageAfterRequests = n
  }

  setSlowMs(ms: number): void {
    this.slowMs = ms
  }

  setBadRate(rate: number): void {
    this.badRate = rate
  }

  // ---------------------------------------------------------------- generation

  /** Generates every service day whose timetable is published by clock.now(). */
  advance(): void {
    this.advanceTo(this.clock.now())
  }

  private advanceTo(t: number): void {
    while (this.generatedDays < this.serviceDays) {
      const day = this.firstDay + this.generatedDays
      if (this.publishAt(day) > t) break
      this.generateDay(day)
      this.generatedDays++
    }
  }

  /** Local midnight of service day `day` (days since 1970-01-01 in local dates). */
  private dayStart(day: number): number {
    return parseLocal(`${dayText(day)} 00:00:00`, this.timezone)!
  }

  /** The timetable of a day is published at 18:00 local the evening before. */
  private publishAt(day: number): number {
    return this.dayStart(day) - 6 * HOUR
  }

  /** What the ticketing system's clock reads at true time t, to the second. */
  private stamp(t: number): number {
    return Math.floor((t - this.lagMs) / SECOND) * SECOND
  }

  private local(t: number): string {
    return formatLocal(t, this.timezone)
  }

  private localHour(t: number): number {
    return Number(this.local(t).slice(11, 13))
  }

  private generateDay(day: number): void {
    const rand = createRng(hash32(this.seed, day, 0xf3))
    const bad = (): boolean => this.badRate > 0 && rand() < this.badRate
    const date = dayText(day)
    const compact = date.replaceAll('-', '')
    const publish = this.publishAt(day)

    // Sailings ---------------------------------------------------------------
    const sailings: PlannedSailing[] = []
    let n = 0
    for (const terminal of this.terminals) {
      for (const route of terminal.routes) {
        route.departures.forEach((hhmm, i) => {
          const scheduled = parseLocal(`${date} ${hhmm}:00`, this.timezone)!
          const vessel = terminal.vessels[(i + day) % terminal.vessels.length]!
          const unassigned = this.quirks && rand() < 0.15
          const cancelled = rand() < this.cancelRate
          const delayMs = !cancelled && rand() < this.delayRate ? (15 + Math.floor(rand() * 36)) * MINUTE : 0
          const effective = scheduled + delayMs
          const departedAt = effective + Math.floor(rand() * 240) * SECOND
          const arrivedAt = departedAt + (route.crossingMinutes - 5 + Math.floor(rand() * 11)) * MINUTE
          const s: PlannedSailing = {
            sailingId: `${route.routeCode}-${compact}-${hhmm.replace(':', '')}`,
            terminal,
            route,
            sailDate: date,
            sailTime: hhmm,
            scheduled,
            vessel,
            vesselAssignedAt: unassigned ? scheduled - 3 * HOUR + Math.floor(rand() * 1200) * SECOND : null,
            cancelledAt: cancelled ? scheduled - 2 * HOUR - Math.floor(rand() * 3600) * SECOND : null,
            delayMs,
            departedAt,
            arrivedAt,
          }
          sailings.push(s)
          this.sailingsById.set(s.sailingId, s)
          this.addSailingVersions(s, publish + n++ * SECOND, rand, bad)
        })
      }
    }

    // Tickets ----------------------------------------------------------------
    const tickets: PlannedTicket[] = []
    for (const s of sailings) {
      const saleEnd = Math.min(s.scheduled - 10 * MINUTE, s.cancelledAt ?? Infinity)
      const demand = demandByHour(Number(s.sailTime.slice(0, 2))) * (0.45 + 0.5 * rand()) * this.scale
      const count = Math.min(s.vessel.seats - 2, Math.round(s.vessel.seats * demand))
      for (let k = 0; k < count; k++) {
        let saleAt = 0
        for (let attempt = 0; attempt < 6; attempt++) {
          saleAt = wholeSecond(saleEnd - (saleEnd - publish) * Math.pow(rand(), 2.2))
          const h = this.localHour(saleAt)
          if (h >= 6 || rand() < 0.15) break // few sales at night
        }
        const type = pickWeighted(
          Object.fromEntries(Object.entries(TICKET_TYPE_MIX).map(([t, m]) => [t, m.share])) as Record<SimTicketType, number>,
          rand(),
        )
        let channel = pickWeighted(CHANNEL_MIX, rand())
        const h = this.localHour(saleAt)
        const inHall = localDayNumber(saleAt, this.timezone) === day && h >= HALL_OPEN_HOUR && h < HALL_CLOSE_HOUR
        if ((channel === 'WINDOW' || channel === 'KIOSK') && !inHall) channel = 'MINIAPP'
        const backfill = this.quirks && channel === 'WINDOW' && rand() < 0.05
        tickets.push({
          ticketNo: '',
          orderNo: '',
          sailing: s,
          type,
          channel,
          priceCents: Math.round(s.route.fareCents * TICKET_TYPE_MIX[type].fareFactor),
          priceUnknown: this.quirks && channel === 'OTA' && rand() < 0.3,
          saleAt,
          uploadAt: backfill ? saleAt + HOUR + Math.floor(rand() * 3 * 3600) * SECOND : null,
          lateMs: this.quirks && !backfill && rand() < 0.06 ? MINUTE + Math.floor(rand() * ((this.maxLateMs - MINUTE) / SECOND)) * SECOND : 0,
          change: null,
          refundAt: null,
          defect: null,
          firstVisibleAt: 0,
        })
      }
    }
    // Ticket numbers follow sale order per terminal.
    tickets.sort((a, b) => a.saleAt - b.saleAt)
    const serial = new Map<string, number>()
    for (const t of tickets) {
      const code = t.sailing.terminal.terminalCode
      const k = (serial.get(code) ?? 0) + 1
      serial.set(code, k)
      t.ticketNo = `${code}${compact.slice(2)}${String(k).padStart(5, '0')}`
      t.orderNo = `O${compact}${String(hash32(this.seed, day, k, code.charCodeAt(0)) % 1e8).padStart(8, '0')}`
    }

    const laterSailing = (s: PlannedSailing): PlannedSailing | undefined =>
      sailings.find((o) => o.route === s.route && o.scheduled > s.scheduled && o.cancelledAt === null)

    for (const t of tickets) {
      const s = t.sailing
      if (s.cancelledAt !== null) {
        // Sales stopped at cancellation; what was sold is refunded or moved to a later sailing.
        const to = laterSailing(s)
        if (to !== undefined && rand() < 0.3) t.change = { at: s.cancelledAt + (1 + Math.floor(rand() * 60)) * MINUTE, to }
        else t.refundAt = s.cancelledAt + (1 + Math.floor(rand() * 90)) * MINUTE
        continue
      }
      if (t.uploadAt !== null || t.lateMs > 0) continue
      if (bad()) {
        t.defect = TICKET_DEFECTS[Math.floor(rand() * TICKET_DEFECTS.length)]!
        continue
      }
      const r = rand()
      const latest = s.scheduled - 30 * MINUTE
      if (r < 0.04 && latest - t.saleAt > 10 * MINUTE) {
        t.refundAt = t.saleAt + 5 * MINUTE + Math.floor(rand() * (latest - t.saleAt - 5 * MINUTE))
      } else if (r < 0.07) {
        const to = laterSailing(s)
        if (to !== undefined && latest - t.saleAt > 10 * MINUTE) {
          const at = wholeSecond(t.saleAt + 5 * MINUTE + rand() * (latest - t.saleAt - 5 * MINUTE))
          t.change = { at, to }
          const newLatest = to.scheduled - 30 * MINUTE
          if (rand() < 0.2 && newLatest - at > 10 * MINUTE) t.refundAt = wholeSecond(at + 5 * MINUTE + rand() * (newLatest - at - 5 * MINUTE))
        }
      }
    }
    for (const t of tickets) this.addTicketVersions(t)

    // Check-ins --------------------------------------------------------------
    let c = 0
    const checkinId = (terminal: SimTerminal): string => `CK${terminal.terminalCode}${compact.slice(2)}${String(++c).padStart(6, '0')}`
    const checkins: { t: PlannedTicket | null; s: PlannedSailing; at: number; gate: number; defect: Defect | null; ticketNo: string }[] = []
    for (const t of tickets) {
      const s = t.change?.to ?? t.sailing
      if (t.refundAt !== null || t.defect !== null || s.cancelledAt !== null) continue
      if (rand() >= 0.96) continue // no-show
      const boardFrom = s.scheduled + s.delayMs - 30 * MINUTE
      const boardTo = s.scheduled + s.delayMs - 3 * MINUTE
      const after = Math.max(t.saleAt, t.change?.at ?? 0) + MINUTE
      const at = wholeSecond(Math.max(after, boardFrom + rand() * (boardTo - boardFrom)))
      if (at > boardTo + MINUTE) continue // missed the boat
      const defect = bad() ? CHECKIN_DEFECTS[Math.floor(rand() * CHECKIN_DEFECTS.length)]! : null
      checkins.push({ t, s, at, gate: Math.floor(rand() * s.terminal.gates.length), defect, ticketNo: t.ticketNo })
    }
    // Scans of tickets this system never sold (partner-system or crew passes).
    if (this.badRate > 0) {
      for (const s of sailings) {
        if (s.cancelledAt !== null) continue
        for (let k = 0; k < (s.vessel.seats / 2) * this.scale; k++) {
          if (rand() >= this.badRate) continue
          const at = wholeSecond(s.scheduled + s.delayMs - 30 * MINUTE + rand() * 27 * MINUTE)
          const ticketNo = `${s.terminal.terminalCode}${compact.slice(2)}9${String(Math.floor(rand() * 10_000)).padStart(4, '0')}`
          checkins.push({ t: null, s, at, gate: Math.floor(rand() * s.terminal.gates.length), defect: 'checkin_unknown_ticket', ticketNo })
        }
      }
    }
    checkins.sort((a, b) => a.at - b.at)
    for (const ck of checkins) this.addCheckInVersion(ck, checkinId(ck.s.terminal), rand)

    for (const e of SIM_ENDPOINTS) this.versions[e].sort(compareVersions)
  }

  private addSailingVersions(s: PlannedSailing, publishedAt: number, rand: () => number, bad: () => boolean): void {
    const steps: { at: number; status: SailingStatus; vessel: boolean }[] = []
    const vesselAt = s.vesselAssignedAt
    steps.push({ at: publishedAt, status: 'scheduled', vessel: vesselAt === null })
    const effective = s.scheduled + s.delayMs
    if (vesselAt !== null && (s.cancelledAt === null || vesselAt < s.cancelledAt)) steps.push({ at: vesselAt, status: 'scheduled', vessel: true })
    if (s.cancelledAt !== null) {
      steps.push({ at: s.cancelledAt, status: 'cancelled', vessel: vesselAt === null || vesselAt < s.cancelledAt })
    } else {
      if (s.delayMs > 0) steps.push({ at: s.scheduled - 45 * MINUTE + Math.floor(rand() * 600) * SECOND, status: 'delayed', vessel: true })
      steps.push({ at: effective - 30 * MINUTE, status: 'boarding', vessel: true })
      steps.push({ at: s.departedAt, status: 'departed', vessel: true })
      steps.push({ at: s.arrivedAt, status: 'arrived', vessel: true })
    }
    steps.sort((a, b) => a.at - b.at)
    const rows: RowVersion[] = []
    let prevTs = -Infinity
    for (const step of steps) {
      let ts = this.stamp(step.at)
      if (ts <= prevTs) ts = prevTs + SECOND
      prevTs = ts
      const actual = step.status === 'departed' || step.status === 'arrived' ? wholeSecond(s.departedAt) : null
      const seats: number | 'unknown' = step.vessel ? s.vessel.seats : 'unknown'
      const item: Record<string, unknown> = {
        sailingId: s.sailingId,
        terminalCode: s.terminal.terminalCode,
        routeCode: s.route.routeCode,
        routeName: s.route.routeName,
        sailDate: s.sailDate,
        sailTime: s.sailTime,
        vesselName: step.vessel ? s.vessel.name : null,
        seats,
        sailStatus: this.quirks && s.terminal.departEpochSeconds ? String(SAIL_STATUS_CODES[step.status]) : SAIL_STATUS_CODES[step.status],
        actualDepartTime: actual === null ? null : s.terminal.departEpochSeconds && this.quirks ? actual / 1000 : actual,
        updateTime: this.local(ts),
      }
      let outcome: Outcome = {
        kind: 'sailing',
        draft: {
          occurredAt: ts,
          sailingId: s.sailingId,
          terminalId: s.terminal.terminalCode,
          route: s.route.routeCode,
          vesselName: step.vessel ? s.vessel.name : null,
          scheduledDeparture: s.scheduled,
          actualDeparture: actual,
          capacity: step.vessel ? s.vessel.seats : null,
          status: step.status,
        },
      }
      if (bad()) {
        const defect = SAILING_DEFECTS[Math.floor(rand() * SAILING_DEFECTS.length)]!
        if (defect === 'sailing_missing_date') delete item.sailDate
        else item.sailStatus = 9
        outcome = { kind: 'rejected', defect, code: DEFECTS[defect].code }
      }
      rows.push({ endpoint: 'sailings', id: s.sailingId, updateTs: ts, visibleAt: step.at, supersededAt: Infinity, item, outcome, late: false, backfill: false })
    }
    for (let i = 0; i + 1 < rows.length; i++) rows[i]!.supersededAt = rows[i + 1]!.visibleAt
    this.versions.sailings.push(...rows)
  }

  private addTicketVersions(t: PlannedTicket): void {
    const steps: { at: number; status: TicketStatus }[] = [{ at: t.uploadAt ?? t.saleAt, status: 'sold' }]
    if (t.change !== null) steps.push({ at: t.change.at, status: 'changed' })
    if (t.refundAt !== null) steps.push({ at: t.refundAt, status: 'refunded' })
    const rows: RowVersion[] = []
    let prevVisible = -Infinity
    let prevTs = -Infinity
    const saleTs = this.stamp(t.saleAt)
    let changeTs: number | null = null
    let refundTs: number | null = null
    for (const [i, step] of steps.entries()) {
      // A row cannot change before anyone could see it.
      const at = i === 0 ? step.at : Math.max(step.at, prevVisible + MINUTE)
      let ts = i === 0 && t.uploadAt === null ? saleTs : this.stamp(at)
      if (ts <= prevTs) ts = prevTs + SECOND
      if (step.status === 'changed') changeTs = ts
      if (step.status === 'refunded') refundTs = ts
      const visibleAt = i === 0 ? at + t.lateMs : at
      prevVisible = visibleAt
      prevTs = ts
      const current = t.change !== null && step.status !== 'sold' ? t.change.to : t.sailing
      const priceYuan = t.priceCents / 100
      const item: Record<string, unknown> = {
        ticketNo: t.ticketNo,
        orderNo: t.orderNo,
        sailingId: current.sailingId,
        origSailingId: current === t.sailing ? null : t.sailing.sailingId,
        terminalCode: t.sailing.terminal.terminalCode,
        ticketType: t.type,
        // The app channel's backend writes numbers, the others strings.
        ticketPrice: t.priceUnknown ? 'unknown' : t.channel === 'APP' && this.quirks ? priceYuan : priceYuan.toFixed(2),
        saleChannel: t.channel,
        ticketStatus: TICKET_STATUS_CODES[step.status],
        saleTime: this.local(saleTs),
        changeTime: changeTs === null ? null : this.local(changeTs),
        refundTime: refundTs === null ? null : this.local(refundTs),
        isResend: t.uploadAt === null ? 0 : 1,
        updateTime: this.local(ts),
      }
      const base = {
        ticketId: t.ticketNo,
        terminalId: t.sailing.terminal.terminalCode,
        ticketType: t.type.toLowerCase(),
        priceCents: t.priceUnknown ? null : t.priceCents,
        channel: channelName(t.channel),
      }
      const drafts: Draft<'FerryTicket'>[] = [{ occurredAt: saleTs, sailingId: t.sailing.sailingId, ...base, status: 'sold' }]
      if (changeTs !== null) drafts.push({ occurredAt: changeTs, sailingId: t.change!.to.sailingId, ...base, status: 'changed' })
      if (refundTs !== null) drafts.push({ occurredAt: refundTs, sailingId: current.sailingId, ...base, status: 'refunded' })
      let outcome: Outcome = { kind: 'ticket', drafts }
      let future: RowVersion['future']
      if (t.defect !== null) {
        switch (t.defect) {
          case 'ticket_missing_sailing':
            delete item.sailingId
            break
          case 'ticket_negative_price':
            item.ticketPrice = `-${priceYuan.toFixed(2)}`
            break
          case 'ticket_future_sale':
            // A self-service kiosk whose clock was set a day ahead.
            item.saleTime = this.local(saleTs + DAY)
            item.saleChannel = 'KIOSK'
            future = { at: saleTs + DAY, landsAs: { kind: 'ticket', drafts: [{ ...drafts[0]!, occurredAt: saleTs + DAY, channel: 'kiosk' }] } }
            break
          case 'ticket_unknown_terminal':
            item.terminalCode = 'ZHW'
            break
        }
        outcome = { kind: 'rejected', defect: t.defect, code: DEFECTS[t.defect].code }
      }
      rows.push({
        endpoint: 'tickets',
        id: t.ticketNo,
        updateTs: ts,
        visibleAt,
        supersededAt: Infinity,
        item,
        outcome,
        late: i === 0 && t.lateMs > 0,
        backfill: t.uploadAt !== null,
        ...(future === undefined ? {} : { future }),
      })
    }
    for (let i = 0; i + 1 < rows.length; i++) rows[i]!.supersededAt = rows[i + 1]!.visibleAt
    t.firstVisibleAt = rows[0]!.visibleAt
    this.versions.tickets.push(...rows)
    this.ticketRows.set(t.ticketNo, rows)
  }

  private addCheckInVersion(
    ck: { t: PlannedTicket | null; s: PlannedSailing; at: number; gate: number; defect: Defect | null; ticketNo: string },
    id: string,
    rand: () => number,
  ): void {
    const gate = ck.s.terminal.gates[ck.gate]!
    const deviceTime = ck.at + (this.quirks ? gate.clockAheadMs : 0)
    let visibleAt = ck.at
    let updateTs = this.stamp(ck.at)
    let backfill = false
    let late = false
    const r = rand()
    if (this.quirks && r < 0.03) {
      // Gate offline: its buffer is uploaded later (补传).
      backfill = true
      visibleAt = ck.at + HOUR + Math.floor(rand() * 2 * 3600) * SECOND
    } else if (this.quirks && r < 0.09) {
      late = true
      visibleAt = ck.at + MINUTE + Math.floor(rand() * ((this.maxLateMs - MINUTE) / SECOND)) * SECOND
    }
    // The gate validated the ticket online, so the check-in cannot be served
    // before its ticket; if it would be, it reaches the system with the ticket's upload.
    if (ck.t !== null && visibleAt < ck.t.firstVisibleAt + MINUTE && ck.t.uploadAt !== null) {
      backfill = true
      late = false
      visibleAt = ck.t.firstVisibleAt + MINUTE + Math.floor(rand() * 240) * SECOND
    } else if (ck.t !== null && visibleAt < ck.t.firstVisibleAt) {
      late = true
      visibleAt = ck.t.firstVisibleAt + SECOND
    }
    if (backfill) updateTs = this.stamp(visibleAt)
    const checkTime = gate.epochSeconds && this.quirks ? Math.floor(deviceTime / 1000) : deviceTime
    const item: Record<string, unknown> = {
      checkinId: id,
      ticketNo: ck.ticketNo,
      sailingId: ck.s.sailingId,
      terminalCode: ck.s.terminal.terminalCode,
      gateNo: gate.gateNo,
      checkTime,
      isResend: backfill ? 1 : 0,
      updateTime: this.local(updateTs),
    }
    let outcome: Outcome = {
      kind: 'checkin',
      draft: {
        occurredAt: deviceTime,
        checkInId: id,
        ticketId: ck.ticketNo,
        sailingId: ck.s.sailingId,
        terminalId: ck.s.terminal.terminalCode,
        gate: gate.gateNo,
      },
    }
    let future: RowVersion['future']
    if (ck.defect !== null) {
      switch (ck.defect) {
        case 'checkin_unknown_time':
          item.checkTime = 'unknown'
          break
        case 'checkin_future_time':
          // A gate whose date was set a day ahead after a power cut.
          item.checkTime = gate.epochSeconds && this.quirks ? Math.floor((deviceTime + DAY) / 1000) : deviceTime + DAY
          if (outcome.kind === 'checkin') future = { at: deviceTime + DAY, landsAs: { kind: 'checkin', draft: { ...outcome.draft, occurredAt: deviceTime + DAY } } }
          break
        case 'checkin_missing_ticket':
          delete item.ticketNo
          break
        case 'checkin_unknown_ticket':
          break
      }
      outcome = { kind: 'rejected', defect: ck.defect, code: DEFECTS[ck.defect].code }
    }
    this.versions.checkins.push({
      endpoint: 'checkins',
      id,
      updateTs,
      visibleAt,
      supersededAt: Infinity,
      item,
      outcome,
      late,
      backfill,
      ...(future === undefined ? {} : { future }),
    })
  }

  // ---------------------------------------------------------------- serving

  terminalList(): TerminalApiItem[] {
    return this.terminals.map((t) => ({
      terminalCode: t.terminalCode,
      terminalName: t.terminalName,
      address: t.address,
      routes: t.routes.map((r) => ({ routeCode: r.routeCode, routeName: r.routeName })),
    }))
  }

  /**
   * One page of a feed as the system serves it at clock.now(): rows after
   * (updatedAfter, afterId) in feed order. With quirks on, some pages after
   * the first also repeat up to three rows from the end of the previous page.
   */
  page(endpoint: SimEndpoint, updatedAfter: number | null, afterId: string, pageSize: number): { records: Record<string, unknown>[]; hasMore: boolean } {
    this.advance()
    const now = this.clock.now()
    const list = this.versions[endpoint]
    const served = (v: RowVersion): boolean => v.visibleAt <= now && now < v.supersededAt
    // First version after the position.
    let lo = 0
    let hi = list.length
    if (updatedAfter !== null) {
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        const v = list[mid]!
        if (v.updateTs < updatedAfter || (v.updateTs === updatedAfter && v.id <= afterId)) lo = mid + 1
        else hi = mid
      }
    }
    const out: RowVersion[] = []
    if (this.quirks && afterId !== '' && updatedAfter !== null) {
      const h = hash32(this.seed, updatedAfter / 1000, afterId.length, hashText(afterId + endpoint))
      if (h % 3 === 0) {
        const repeat = 1 + (h % 5 === 0 ? 2 : h % 2)
        for (let i = lo - 1; i >= 0 && out.length < repeat && out.length < pageSize - 1; i--) if (served(list[i]!)) out.unshift(list[i]!)
        this.repeats += out.length
      }
    }
    let i = lo
    for (; i < list.length && out.length < pageSize; i++) if (served(list[i]!)) out.push(list[i]!)
    let hasMore = false
    for (; i < list.length; i++) {
      if (served(list[i]!)) {
        hasMore = true
        break
      }
    }
    return { records: out.map((v) => v.item), hasMore }
  }

  /** Current rows of the given tickets, those that exist (GET /tickets/query). */
  lookupTickets(ticketNos: readonly string[]): Record<string, unknown>[] {
    this.advance()
    const now = this.clock.now()
    const out: Record<string, unknown>[] = []
    for (const no of ticketNos) {
      const v = this.ticketRows.get(no)?.find((r) => r.visibleAt <= now && now < r.supersededAt)
      if (v !== undefined) out.push(v.item)
    }
    return out
  }

  // ---------------------------------------------------------------- ground truth

  /** Every row version served at any of these instants (what a reader polling then sees). */
  served(polls: readonly number[]): RowVersion[] {
    if (polls.length === 0) return []
    this.advanceTo(Math.max(...polls))
    const sorted = [...polls].sort((a, b) => a - b)
    const out: RowVersion[] = []
    for (const e of SIM_ENDPOINTS) {
      for (const v of this.versions[e]) {
        // Served at some poll P with visibleAt <= P < supersededAt.
        const k = lowerBound(sorted, v.visibleAt)
        if (k < sorted.length && sorted[k]! < v.supersededAt) out.push(v)
      }
    }
    return out
  }

  /**
   * What a reader that polled at these instants (and read everything each
   * time) must have produced: canonical drafts, deduplicated the way event
   * ids dedupe them, and one rejection per defective row version it saw. A
   * time wrongly ahead is rejected if it was more than `futureToleranceMs`
   * ahead when the row was first read.
   */
  expected(polls: readonly number[], futureToleranceMs = 300_000): Expected {
    const sailings = new Map<string, Draft<'FerrySailing'>>()
    const tickets = new Map<string, Draft<'FerryTicket'>>()
    const checkIns = new Map<string, Draft<'FerryCheckIn'>>()
    const rejected: Expected['rejected'] = []
    const sorted = [...polls].sort((a, b) => a - b)
    for (const v of this.served(polls)) {
      const firstRead = sorted[lowerBound(sorted, v.visibleAt)]!
      const o = v.future !== undefined && v.future.at - firstRead <= futureToleranceMs ? v.future.landsAs : v.outcome
      switch (o.kind) {
        case 'sailing':
          sailings.set(`${o.draft.sailingId}|${o.draft.status}|${o.draft.occurredAt}`, o.draft)
          break
        case 'ticket':
          for (const d of o.drafts) tickets.set(`${d.ticketId}|${d.status}`, d)
          break
        case 'checkin':
          checkIns.set(o.draft.checkInId, o.draft)
          break
        case 'rejected':
          rejected.push({ endpoint: v.endpoint, id: v.id, updateTs: v.updateTs, defect: o.defect, code: o.code })
          break
      }
    }
    return { sailings: [...sailings.values()], tickets: [...tickets.values()], checkIns: [...checkIns.values()], rejected }
  }

  /** The planned sailings generated so far (timetable, delays, cancellations). */
  plannedSailings(): PlannedSailing[] {
    return [...this.sailingsById.values()]
  }

  /** Every row version generated so far, per feed, in feed order. */
  allVersions(endpoint: SimEndpoint): readonly RowVersion[] {
    return this.versions[endpoint]
  }

  // ---------------------------------------------------------------- HTTP

  get url(): string {
    if (this.baseUrl === null) throw new Error('simulator is not started')
    return this.baseUrl
  }

  /** Requests answered per path, for tests. */
  requests(path: string): number {
    return this.requestCounts.get(path) ?? 0
  }

  /** Rows served again at the start of a later page, so far. */
  get repeatedRows(): number {
    return this.repeats
  }

  async start(port = 0, host = '127.0.0.1'): Promise<string> {
    if (this.server !== null) return this.url
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, { code: '9500', message: String(err), data: null })
        else res.destroy()
      })
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.server = server
    this.baseUrl = `http://${host}:${(server.address() as AddressInfo).port}`
    return this.baseUrl
  }

  async stop(): Promise<void> {
    const server = this.server
    if (server === null) return
    this.server = null
    this.baseUrl = null
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://simulator')
    this.requestCounts.set(url.pathname, (this.requestCounts.get(url.pathname) ?? 0) + 1)
    if (this.slowMs > 0) await sleep(this.slowMs)
    if (this.outageAfterRequests !== null && this.outageAfterRequests-- <= 0) {
      this.outageOn = true
      this.outageAfterRequests = null
    }
    if (this.outageOn) return send(res, 503, { code: '9503', message: '系统维护中，请稍后再试', data: null })
    if (req.method !== 'GET') return send(res, 405, { code: '9405', message: 'method not allowed', data: null })
    if (this.apiKey !== undefined && req.headers['x-api-key'] !== this.apiKey) {
      return send(res, 401, { code: '4010', message: '无效的接口密钥', data: null })
    }
    switch (url.pathname) {
      case `${API}/terminals`:
        return send(res, 200, { code: '0000', message: 'success', data: this.terminalList() })
      case `${API}/sailings`:
        return this.sendPage(res, 'sailings', url)
      case `${API}/tickets`:
        return this.sendPage(res, 'tickets', url)
      case `${API}/checkins`:
        return this.sendPage(res, 'checkins', url)
      case `${API}/tickets/query`: {
        const nos = (url.searchParams.get('ticketNos') ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
        if (nos.length === 0 || nos.length > MAX_LOOKUP) {
          return send(res, 400, { code: '4001', message: `ticketNos must list 1..${MAX_LOOKUP} tickets`, data: null })
        }
        return send(res, 200, { code: '0000', message: 'success', data: this.lookupTickets(nos) })
      }
      default:
        return send(res, 404, { code: '4040', message: 'not found', data: null })
    }
  }

  private sendPage(res: ServerResponse, endpoint: SimEndpoint, url: URL): void {
    const afterText = url.searchParams.get('updatedAfter')
    let updatedAfter: number | null = null
    if (afterText !== null && afterText !== '') {
      updatedAfter = parseLocal(afterText, this.timezone)
      if (updatedAfter === null) return send(res, 400, { code: '4001', message: 'updatedAfter must be yyyy-MM-dd HH:mm:ss', data: null })
    }
    const afterId = url.searchParams.get('afterId') ?? ''
    const sizeText = url.searchParams.get('pageSize') ?? '100'
    const pageSize = /^\d{1,4}$/.test(sizeText) ? Number(sizeText) : NaN
    if (!(pageSize >= 1 && pageSize <= MAX_PAGE_SIZE)) {
      return send(res, 400, { code: '4001', message: `pageSize must be 1..${MAX_PAGE_SIZE}`, data: null })
    }
    send(res, 200, { code: '0000', message: 'success', data: this.page(endpoint, updatedAfter, afterId, pageSize) })
  }
}

/** Vendor saleChannel code -> canonical channel name. */
export function channelName(code: SimChannel): string {
  return code === 'MINIAPP' ? 'mini-program' : code.toLowerCase()
}

function wholeSecond(t: number): number {
  return Math.floor(t / SECOND) * SECOND
}

/** Days since 1970-01-01 of the local date of `t`. */
function localDayNumber(t: number, zone: string): number {
  return Math.floor(Date.parse(`${formatLocal(t, zone).slice(0, 10)}T00:00:00Z`) / DAY)
}

function dayText(day: number): string {
  return new Date(day * DAY).toISOString().slice(0, 10)
}

function hashText(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h >>> 0
}

function lowerBound(sorted: readonly number[], x: number): number {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (sorted[mid]! < x) lo = mid + 1
    else hi = mid
  }
  return lo
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}
