// The freshness state machine: pure functions over what the warehouse says
// (quality/reader.ts), the source's settings and calendar, the previous
// tracker state and the time. No I/O, so every rule is unit-tested with a
// ManualClock.
//
// Two clocks per source and entity: event time (newest live occurredAt) and
// arrival time (when the newest live rows landed). The delay is measured on
// the event clock, counting only time in which the calendar expects data;
// backfilled rows never move either clock.

import { type Calendar } from './calendar.ts'
import { calendarFor, type FreshnessSettings } from './freshness-config.ts'

export const FRESHNESS_STATES = ['OK', 'LATE', 'STALLED', 'STOPPED', 'SKEWED', 'QUIET', 'MAINTENANCE'] as const
export type FreshnessState = (typeof FRESHNESS_STATES)[number]

/** States that open an alert once they have held for openAfter. */
export const ALERTING_STATES: ReadonlySet<FreshnessState> = new Set(['LATE', 'STALLED', 'STOPPED', 'SKEWED'])

export function isAlerting(state: FreshnessState): boolean {
  return ALERTING_STATES.has(state)
}

export const ENTITY_KINDS = ['car-park', 'station', 'terminal'] as const
export type EntityKind = (typeof ENTITY_KINDS)[number]

export interface HeartbeatFigures {
  /** Newest heartbeat of any status. */
  lastAt: number | null
  /** Newest heartbeat saying the upstream answered (ok or empty). */
  lastOkAt: number | null
  lastErrorAt: number | null
  lastError: string | null
}

/** What the warehouse says about one source. Times are epoch ms UTC. */
export interface SourceReading {
  /** Newest live (not backfilled) event time landed. */
  lastEventAt: number | null
  /** When the newest batch with live rows landed. */
  lastArrivalAt: number | null
  /** When the newest batch of backfill only landed (shown, never counted as fresh). */
  lastBackfillAt: number | null
  /** Live rows landed in the last 24 h, and when the first of them landed (for the estimate of records missing). */
  liveRows24h: number
  firstLiveAt24h: number | null
  /** Live rows landed within the skew window. */
  recentLiveRows: number
  /** Largest lead of a landed batch's newest event time over its arrival, within the skew window. */
  maxAheadMs: number | null
  /** Records rejected for future timestamps within the skew window, and the first such rejection. */
  futureRejected: number
  firstFutureAt: number | null
  heartbeat: HeartbeatFigures
}

export interface EntityReading {
  id: string
  kind: EntityKind
  lastEventAt: number | null
  lastArrivalAt: number | null
  /** Newest event time minus newest arrival, when the entity's newest event is ahead. */
  maxAheadMs: number | null
  /** Car parks: parking_lot.openingHours. */
  openingHours?: string | null
  /** Terminals: scheduled departures from the landed timetable. */
  departures?: readonly number[]
}

export interface SourceContext {
  id: string
  name: string
  kind: string
  operator: string | null
  district: string | null
  paused: boolean
  /** connector_state.run_state */
  runState: string | null
  /** The delay clock of a source that never sent anything starts here. */
  createdAt: number
  settings: FreshnessSettings
  /** Scheduled departures of all its terminals (timetable read from the warehouse). */
  departures?: readonly number[]
}

export interface Verdict {
  state: FreshnessState
  /** When the condition behind the state began (best knowledge). */
  since: number
  reason: string
  lastEventAt: number | null
  lastArrivalAt: number | null
  /** Wall-clock age of the newest live event. */
  eventAgeMs: number | null
  arrivalAgeMs: number | null
  /** The delay clock: expected time since the newest live event. */
  delayMs: number
  maxDelayMs: number
}

export function formatSpan(ms: number): string {
  const neg = ms < 0
  let m = Math.round(Math.abs(ms) / 60_000)
  const d = Math.floor(m / 1440)
  m -= d * 1440
  const h = Math.floor(m / 60)
  m -= h * 60
  const text = `${d > 0 ? `${d}d` : ''}${h > 0 ? `${h}h` : ''}${m > 0 || (d === 0 && h === 0) ? `${m}m` : ''}`
  return neg ? `-${text}` : text
}

function ages(now: number, lastEventAt: number | null, lastArrivalAt: number | null): Pick<Verdict, 'eventAgeMs' | 'arrivalAgeMs'> {
  return { eventAgeMs: lastEventAt === null ? null : now - lastEventAt, arrivalAgeMs: lastArrivalAt === null ? null : now - lastArrivalAt }
}

interface Lateness {
  late: boolean
  since: number
  delayMs: number
}

/** The delay clock: expected time since `basis`; late when it exceeds maxDelay. */
function lateness(calendar: Calendar, basis: number, now: number, maxDelayMs: number): Lateness {
  // Wall time bounds expected time: no need to integrate the calendar for fresh data.
  if (now - basis <= maxDelayMs) return { late: false, since: now, delayMs: calendar.always ? Math.max(0, now - basis) : calendar.expectedBetween(basis, now) }
  const delayMs = calendar.expectedBetween(basis, now)
  if (delayMs <= maxDelayMs) return { late: false, since: now, delayMs }
  return { late: true, since: calendar.advanceExpected(basis, maxDelayMs) ?? now, delayMs }
}

/**
 * A source's state now. Precedence: MAINTENANCE (paused, or a maintenance
 * window), STOPPED (connector silent or failing), SKEWED (event times in the
 * future), LATE / STALLED (the delay clock passed maxDelay; STALLED when the
 * upstream still answers), QUIET (no data expected now), OK.
 */
export function classifySource(ctx: SourceContext, r: SourceReading, now: number, calendar: Calendar = ctx.settings.calendar): Verdict {
  const s = ctx.settings
  const base = { lastEventAt: r.lastEventAt, lastArrivalAt: r.lastArrivalAt, ...ages(now, r.lastEventAt, r.lastArrivalAt), maxDelayMs: s.maxDelayMs }
  const basis = r.lastEventAt ?? ctx.createdAt
  const late = lateness(calendar, Math.min(basis, now), now, s.maxDelayMs)
  const verdict = (state: FreshnessState, since: number, reason: string): Verdict => ({ ...base, state, since: Math.min(since, now), reason, delayMs: late.delayMs })

  if (ctx.paused) return verdict('MAINTENANCE', now, 'source is paused')
  const window = calendar.maintenanceAt(now)
  if (window !== null) return verdict('MAINTENANCE', window.from, `maintenance: ${window.reason}`)

  const hb = r.heartbeat
  if (ctx.runState === 'failed') return verdict('STOPPED', hb.lastErrorAt ?? now, `connector failed: ${hb.lastError ?? 'see the source status'}`)
  if (hb.lastAt !== null) {
    if (now - hb.lastAt > s.stoppedAfterMs) {
      return verdict('STOPPED', hb.lastAt + s.stoppedAfterMs, `connector not running: last run ${formatSpan(now - hb.lastAt)} ago`)
    }
    const lastGood = hb.lastOkAt ?? Number.NEGATIVE_INFINITY
    if (hb.lastErrorAt !== null && hb.lastErrorAt > lastGood) {
      const failingSince = hb.lastOkAt ?? ctx.createdAt
      if (now - failingSince > s.stoppedAfterMs) {
        return verdict('STOPPED', failingSince + s.stoppedAfterMs, `connector failing since ${formatSpan(now - failingSince)}: ${hb.lastError ?? 'error'}`)
      }
    }
  }

  if (r.lastEventAt !== null && r.lastEventAt - now > s.skewToleranceMs) {
    return verdict('SKEWED', r.lastArrivalAt ?? now, `newest event time is ${formatSpan(r.lastEventAt - now)} in the future`)
  }
  if (r.maxAheadMs !== null && r.maxAheadMs > s.skewToleranceMs) {
    return verdict('SKEWED', r.lastArrivalAt ?? now, `event times run ${formatSpan(r.maxAheadMs)} ahead of arrival`)
  }
  if (r.futureRejected > 0 && r.futureRejected >= r.recentLiveRows) {
    return verdict('SKEWED', r.firstFutureAt ?? now, `${r.futureRejected} records rejected for future timestamps, ${r.recentLiveRows} landed`)
  }

  if (late.late) {
    const answering = hb.lastOkAt !== null && now - hb.lastOkAt <= s.stoppedAfterMs
    const what = r.lastEventAt === null ? 'no data since the source was added' : `no new data for ${formatSpan(late.delayMs)} of expected time`
    return answering
      ? verdict('STALLED', late.since, `${what}; the upstream answers but sends nothing new`)
      : verdict('LATE', late.since, `${what} (limit ${formatSpan(s.maxDelayMs)})`)
  }
  if (!calendar.isExpected(now)) return verdict('QUIET', now, 'no data expected now')
  if (r.lastEventAt === null) return verdict('OK', ctx.createdAt, `no data yet; late after ${formatSpan(s.maxDelayMs)} of expected time`)
  return verdict('OK', r.lastArrivalAt ?? now, 'fresh')
}

export interface EntityVerdictInput {
  maxDelayMs: number
  calendar: Calendar
  skewToleranceMs: number
  /** Source-level maintenance (paused or window) applies to its entities. */
  maintenance: string | null
  /** When the entity was first seen, for entities that never sent live data. */
  firstSeen: number
}

// Entities are many: their verdicts are built without closures or spreads.
function entityVerdict(e: EntityReading, now: number, state: FreshnessState, since: number, reason: string, delayMs: number, maxDelayMs: number): Verdict {
  return {
    state,
    since: since < now ? since : now,
    reason,
    lastEventAt: e.lastEventAt,
    lastArrivalAt: e.lastArrivalAt,
    eventAgeMs: e.lastEventAt === null ? null : now - e.lastEventAt,
    arrivalAgeMs: e.lastArrivalAt === null ? null : now - e.lastArrivalAt,
    delayMs,
    maxDelayMs,
  }
}

export function classifyEntity(e: EntityReading, o: EntityVerdictInput, now: number): Verdict {
  const { maxDelayMs, calendar } = o
  const basis = Math.min(e.lastEventAt ?? o.firstSeen, now)
  let delayMs: number
  let lateSince = -1
  if (now - basis <= maxDelayMs) delayMs = calendar.always ? now - basis : calendar.expectedBetween(basis, now)
  else {
    delayMs = calendar.expectedBetween(basis, now)
    if (delayMs > maxDelayMs) lateSince = calendar.advanceExpected(basis, maxDelayMs) ?? now
  }
  if (o.maintenance !== null) return entityVerdict(e, now, 'MAINTENANCE', now, o.maintenance, delayMs, maxDelayMs)
  const window = calendar.maintenanceAt(now)
  if (window !== null) return entityVerdict(e, now, 'MAINTENANCE', window.from, `maintenance: ${window.reason}`, delayMs, maxDelayMs)
  if ((e.maxAheadMs !== null && e.maxAheadMs > o.skewToleranceMs) || (e.lastEventAt !== null && e.lastEventAt - now > o.skewToleranceMs)) {
    const ahead = Math.max(e.maxAheadMs ?? 0, (e.lastEventAt ?? 0) - now)
    return entityVerdict(e, now, 'SKEWED', e.lastArrivalAt ?? now, `event times run ${formatSpan(ahead)} ahead`, delayMs, maxDelayMs)
  }
  if (lateSince >= 0) return entityVerdict(e, now, 'LATE', lateSince, `no new data for ${formatSpan(delayMs)} of expected time (limit ${formatSpan(maxDelayMs)})`, delayMs, maxDelayMs)
  if (!calendar.isExpected(now)) return entityVerdict(e, now, 'QUIET', now, 'no data expected now', delayMs, maxDelayMs)
  return entityVerdict(e, now, 'OK', e.lastArrivalAt ?? now, 'fresh', delayMs, maxDelayMs)
}

// ---------------------------------------------------------------------------
// Hysteresis

/** What the evaluator remembers about a source or entity between cycles. */
export interface Tracker {
  /** The confirmed state (the one alerts follow). */
  state: FreshnessState
  since: number
  /** A different observed state waiting for its hold time. */
  candidate: FreshnessState | null
  candidateSince: number
}

export interface Hold {
  openAfterMs: number
  closeAfterMs: number
}

export interface Step {
  tracker: Tracker
  /** Present when the confirmed state changed. */
  change?: { from: FreshnessState; to: FreshnessState; since: number }
}

/**
 * One step of the state machine. Entering an alerting state from a calm one
 * needs openAfter; leaving an alerting state for OK needs closeAfter of
 * uninterrupted recovery; one alerting state gives way to another at once.
 * QUIET and MAINTENANCE never end an alert: nothing new has arrived, so the
 * fault stands until data returns.
 */
export function step(prev: Tracker | undefined, observed: Pick<Verdict, 'state' | 'since'>, now: number, hold: Hold): Step {
  const current: Tracker = prev ?? { state: isAlerting(observed.state) ? 'OK' : observed.state, since: observed.since, candidate: null, candidateSince: now }
  if (observed.state === current.state) {
    return { tracker: current.candidate === null ? current : { ...current, candidate: null } }
  }
  const wasAlerting = isAlerting(current.state)
  const toAlerting = isAlerting(observed.state)
  if (wasAlerting && (observed.state === 'QUIET' || observed.state === 'MAINTENANCE')) {
    return { tracker: current.candidate === null ? current : { ...current, candidate: null } }
  }
  const needed = toAlerting ? (wasAlerting ? 0 : hold.openAfterMs) : wasAlerting ? hold.closeAfterMs : 0
  const candidateSince = current.candidate === observed.state ? current.candidateSince : Math.min(observed.since, now)
  if (now - candidateSince >= needed) {
    return {
      tracker: { state: observed.state, since: candidateSince, candidate: null, candidateSince: now },
      change: { from: current.state, to: observed.state, since: candidateSince },
    }
  }
  return { tracker: { ...current, candidate: observed.state, candidateSince } }
}

// ---------------------------------------------------------------------------
// One evaluation cycle

export interface SourceInput {
  ctx: SourceContext
  reading: SourceReading
  entities: readonly EntityReading[]
}

export interface EntityResult {
  id: string
  kind: EntityKind
  verdict: Verdict
  /** Confirmed state (with hysteresis); equals the verdict's state when nothing is pending. */
  tracked: FreshnessState
}

export interface SourceResult {
  ctx: SourceContext
  verdict: Verdict
  tracked: FreshnessState
  entityCounts: Record<FreshnessState, number>
  entities: EntityResult[]
  /** Estimated records missing since the newest live data (null when no rate is known). */
  expectedMissing: number | null
}

export interface Transition {
  key: string
  sourceId: string
  entityId: string | null
  entityKind: EntityKind | null
  from: FreshnessState
  to: FreshnessState
  /** When the new state's condition began. */
  since: number
  verdict: Verdict
}
// Only changes into or out of an alerting state are reported: OK, QUIET and
// MAINTENANCE follow each other without anyone needing to know.

export type Trackers = Map<string, Tracker>

export function trackerKey(sourceId: string, entityId: string | null): string {
  return entityId === null ? sourceId : `${sourceId}\x1f${entityId}`
}

function emptyCounts(): Record<FreshnessState, number> {
  return { OK: 0, LATE: 0, STALLED: 0, STOPPED: 0, SKEWED: 0, QUIET: 0, MAINTENANCE: 0 }
}

/** Rows expected but missing: the live rate of the last day times the expected time without data. */
export function estimateMissing(calendar: Calendar, r: SourceReading, now: number): number | null {
  if (r.lastEventAt === null || r.liveRows24h === 0) return null
  const observed = calendar.expectedBetween(Math.max(now - 86_400_000, r.firstLiveAt24h ?? 0), Math.min(r.lastEventAt, now))
  if (observed <= 0) return null
  return Math.round((r.liveRows24h / observed) * calendar.expectedBetween(r.lastEventAt, now))
}

/**
 * Evaluates every source and entity once and advances the trackers (the map
 * is updated in place; trackers of calm entities with nothing pending are
 * dropped, so the map stays small). Entity alerts are held back while their
 * source itself is not calm: a dead source is one incident, not one per car park.
 */
export function evaluateCycle(now: number, sources: readonly SourceInput[], trackers: Trackers): { results: SourceResult[]; transitions: Transition[] } {
  const results: SourceResult[] = []
  const transitions: Transition[] = []
  for (const { ctx, reading, entities } of sources) {
    const s = ctx.settings
    const calendar = ctx.departures !== undefined && s.calendar.needsDepartures ? s.calendar.withDepartures(ctx.departures) : s.calendar
    const verdict = classifySource(ctx, reading, now, calendar)
    const key = trackerKey(ctx.id, null)
    const stepped = step(trackers.get(key), verdict, now, s)
    trackers.set(key, stepped.tracker)
    if (stepped.change && (isAlerting(stepped.change.from) || isAlerting(stepped.change.to))) {
      transitions.push({ key, sourceId: ctx.id, entityId: null, entityKind: null, ...stepped.change, verdict })
    }
    const calm = !isAlerting(stepped.tracker.state) && (verdict.state === 'OK' || verdict.state === 'QUIET')
    const maintenance = verdict.state === 'MAINTENANCE' ? verdict.reason : null

    const input: EntityVerdictInput = { maxDelayMs: s.maxDelayMs, calendar, skewToleranceMs: s.skewToleranceMs, maintenance, firstSeen: ctx.createdAt }
    const counts = emptyCounts()
    const out: EntityResult[] = new Array<EntityResult>(entities.length)
    let n = 0
    for (const e of entities) {
      const own = s.entities.get(e.id)
      if (own?.ignore === true) continue
      let cal = own?.calendar ?? calendar
      if (own === undefined) {
        if (e.kind === 'car-park' && s.lotHours && e.openingHours) cal = lotCalendar(calendar, e.openingHours)
        else if (e.departures !== undefined && calendar.needsDepartures) cal = s.calendar.withDepartures(e.departures)
      }
      input.maxDelayMs = own?.maxDelayMs ?? s.maxDelayMs
      input.calendar = cal
      const ev = classifyEntity(e, input, now)
      let tracked = ev.state
      counts[ev.state]++
      const ekey = trackerKey(ctx.id, e.id)
      const prev = trackers.get(ekey)
      if (calm && prev === undefined && !isAlerting(ev.state)) {
        // Calm with nothing pending, the common case: nothing to keep.
      } else if (calm) {
        const st = step(prev, ev, now, s)
        tracked = st.tracker.state
        if (!isAlerting(st.tracker.state) && st.tracker.candidate === null) trackers.delete(ekey)
        else trackers.set(ekey, st.tracker)
        if (st.change && (isAlerting(st.change.from) || isAlerting(st.change.to))) transitions.push({ key: ekey, sourceId: ctx.id, entityId: e.id, entityKind: e.kind, ...st.change, verdict: ev })
      } else if (prev !== undefined) {
        tracked = prev.state
      }
      out[n++] = { id: e.id, kind: e.kind, verdict: ev, tracked }
    }
    out.length = n
    results.push({ ctx, verdict, tracked: stepped.tracker.state, entityCounts: counts, entities: out, expectedMissing: isAlerting(verdict.state) ? estimateMissing(calendar, reading, now) : null })
  }
  return { results, transitions }
}

const lotCalendars = new WeakMap<Calendar, Map<string, Calendar>>()

function lotCalendar(source: Calendar, openingHours: string): Calendar {
  let byHours = lotCalendars.get(source)
  if (byHours === undefined) lotCalendars.set(source, (byHours = new Map<string, Calendar>()))
  let cal = byHours.get(openingHours)
  if (cal === undefined) {
    try {
      cal = calendarFor({ ...source.spec, openingHours }, source.zone)
    } catch {
      // A lot whose hours cannot be read follows the source's calendar.
      cal = source
    }
    byHours.set(openingHours, cal)
  }
  return cal
}
