// The monthly data-synchronisation report (数据同步监控报告) as data: a summary,
// one row per source and per car park (station, terminal) with records,
// days active, completeness, delays over maxDelay, the longest gap, incidents
// and abnormal states, a day × hour heat strip and daily volumes per source.
// Every renderer (HTML, XLSX, CSV, JSON) works from this model, and the
// archive keeps it, so a report reads the same whenever it is rendered.

import { type Knex } from 'knex'
import { CitysyncError, errorMessage } from '../../lib/errors.ts'
import { timestampToDb } from '../../lib/metadata/columns.ts'
import { type Metadata } from '../../lib/metadata/db.ts'
import { type SourceRecord } from '../../lib/metadata/sources.ts'
import { DEFAULT_TIMEZONE } from '../../lib/source-config.ts'
import { type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { type Calendar } from '../calendar.ts'
import { ALERTING_STATES, type EntityKind, type FreshnessState } from '../evaluate.ts'
import { calendarFor, DEFAULTS, type FreshnessSettings, resolveSettings } from '../freshness-config.ts'
import { parseDuration } from '../../lib/duration.ts'
import { type Incident, SyncHealthStore } from '../store.ts'
import {
  type ClockEnd,
  type ClockStep,
  type EntityActivity,
  type LiveRow,
  type LiveWindow,
  readActivity,
  readDepartures,
  readEntityClock,
  readHourlyRows,
  readLiveRows,
  readLots,
  readRejected,
  readSourceClock,
  type SlotRuns,
} from './activity.ts'
import {
  activeDays,
  addCounts,
  type BucketCounts,
  bucketCounts,
  type ClockInterval,
  type Delay,
  emptyCounts,
  findDelays,
  type Gap,
  type Grid,
  HeatStripBuilder,
  localDayNumber,
  longestGap,
  makeGrid,
  MaskCache,
  type Runs,
  SLOT_MS,
  unionRuns,
  slotRunsToGrid,
} from './completeness.ts'
import { type Period, parseMonth, previousMonth } from './period.ts'

export const DEFAULT_BUCKET_MS = 5 * 60_000
/** Entities' clocks look this far back for the newest live data before the month. */
export const ENTITY_LOOKBACK_MS = 7 * 86_400_000
export const SOURCE_LOOKBACK_MS = 35 * 86_400_000
/** Rows below this completeness are highlighted. */
export const LOW_COMPLETENESS = 0.95

export interface DelayView {
  lastDataAt: string
  lateFrom: string
  dataBackAt: string | null
  lateMinutes: number
}

export interface IncidentView {
  id: number
  sourceId: string
  title: string
  status: Incident['status']
  occurredAt: string
  recoveredAt: string | null
  states: string[]
  entities: string[]
  entityCount: number
  rootCause: string | null
}

export interface FigureRow {
  level: 'source' | 'entity'
  sourceId: string
  entityKind: EntityKind | null
  entityId: string | null
  name: string | null
  records: number
  rejected: number
  daysActive: number
  buckets: BucketCounts
  /** good / expected, 0..1; null when nothing was expected. */
  completeness: number | null
  delays: number
  /** Total wall-clock time late within the month. */
  delayMinutes: number
  longestGapMinutes: number
  delayList: DelayView[]
  /** Incident ids (details in SyncReport.incidents). */
  incidents: number[]
  /** Alerting states (LATE, STALLED, STOPPED, SKEWED) that fired during the month. */
  states: FreshnessState[]
  abnormal: boolean
}

export interface SourceSection {
  id: string
  name: string
  kind: string
  operator: string | null
  district: string | null
  maxDelayMinutes: number
  row: FigureRow
  entities: FigureRow[]
  /** Per local day and hour (day * 24 + hour): completeness 0..1, -1 no data expected, -2 maintenance. */
  heat: number[]
  daily: { date: string; records: number; rejected: number }[]
  rejectedByCode: { code: string; count: number }[]
}

export interface SummaryFigures {
  month: string
  sources: number
  entities: number
  carParks: number
  records: number
  rejected: number
  buckets: BucketCounts
  completeness: number | null
  sourcesWithInterruptions: string[]
  delays: number
  hoursLate: number
}

export interface SyncReport {
  kind: 'sync'
  month: string
  zone: string
  from: string
  to: string
  /** Data up to here (the month's end, or the last whole bucket when the month is under way). */
  until: string
  partial: boolean
  generatedAt: string
  bucketMinutes: number
  summary: SummaryFigures
  previous: SummaryFigures | null
  /** This month minus the previous one (completeness in percentage points). */
  change: { completeness: number | null; hoursLate: number; sourcesWithInterruptions: number; records: number } | null
  sources: SourceSection[]
  incidents: IncidentView[]
  dates: string[]
}

export interface SyncReportOptions {
  month: string
  now: number
  zone?: string
  bucketMs?: number
  /** Summary of the month before (from the archive); computed when absent, skipped when null. */
  previous?: SummaryFigures | null
}

const iso = (ms: number): string => new Date(ms).toISOString()

interface SourceInfo {
  id: string
  name: string
  kind: string
  operator: string | null
  district: string | null
  settings: FreshnessSettings
  /** When the source was added: the delay clock of what never sent data starts there (as in evaluate.ts). */
  createdAt: number
}

function settingsOf(s: SourceRecord): FreshnessSettings {
  try {
    return resolveSettings(s)
  } catch {
    return resolveSettings({ ...s, freshness: { maxDelay: s.freshness.maxDelay ?? DEFAULTS.maxDelay } })
  }
}

/** The calendar an entity follows, as quality/evaluate.ts chooses it. */
function entityCalendar(s: FreshnessSettings, kind: EntityKind, id: string, openingHours: string | null, departures: readonly number[] | undefined): { calendar: Calendar; maxDelayMs: number; ignore: boolean } {
  const own = s.entities.get(id)
  if (own !== undefined) return { calendar: own.calendar, maxDelayMs: own.maxDelayMs, ignore: own.ignore }
  let calendar = s.calendar
  if (kind === 'car-park' && s.lotHours && openingHours) {
    try {
      calendar = calendarFor({ ...s.calendar.spec, openingHours }, s.calendar.zone)
    } catch {
      // A lot whose hours cannot be read follows the source's calendar.
    }
  } else if (s.calendar.needsDepartures) calendar = s.calendar.withDepartures(departures ?? [])
  return { calendar, maxDelayMs: s.maxDelayMs, ignore: false }
}

interface Candidate {
  sourceId: string
  entity: { kind: EntityKind; id: string } | null
  /** Slot with the last live data before the gap (null: none known), first slot after it (null: none in the period). */
  beforeSlot: number | null
  afterSlot: number | null
  /** Exact figures, filled from the rows around the gap. */
  lastAt: number | null
  nextAt: number | null
  arrival: number | null
}

/**
 * The gaps of a live slot series worth measuring exactly: those that may
 * exceed maxDelay, and those that may be the longest.
 */
function gapCandidates(live: SlotRuns, before: number | null, calendar: Calendar, maxDelayMs: number, from: number, until: number): { beforeSlot: number | null; afterSlot: number | null }[] {
  const breaks: { beforeSlot: number | null; afterSlot: number | null }[] = []
  const n = live.starts.length
  if (n === 0) breaks.push({ beforeSlot: before, afterSlot: null })
  else {
    breaks.push({ beforeSlot: before, afterSlot: live.starts[0]! })
    for (let k = 0; k + 1 < n; k++) breaks.push({ beforeSlot: live.ends[k]!, afterSlot: live.starts[k + 1]! })
    breaks.push({ beforeSlot: live.ends[n - 1]!, afterSlot: null })
  }
  const bounds = breaks.map((b) => {
    const a0 = b.beforeSlot === null ? from : Math.max(from, b.beforeSlot * SLOT_MS)
    const a1 = b.beforeSlot === null ? from : Math.max(from, (b.beforeSlot + 1) * SLOT_MS)
    const z0 = b.afterSlot === null ? until : Math.min(until, (b.afterSlot + 1) * SLOT_MS)
    const z1 = b.afterSlot === null ? until : Math.min(until, b.afterSlot * SLOT_MS)
    return { upper: calendar.expectedBetween(a0, z0), lower: calendar.expectedBetween(a1, z1) }
  })
  let maxLower = 0
  for (const b of bounds) maxLower = Math.max(maxLower, b.lower)
  return breaks.filter((_, i) => bounds[i]!.upper > maxDelayMs || (bounds[i]!.upper >= maxLower && bounds[i]!.upper > 0))
}

function windowOf(c: Candidate, from: number, lookFrom: number): LiveWindow {
  const a = c.beforeSlot === null ? Math.max(lookFrom, from - 1) : c.beforeSlot * SLOT_MS
  const b = c.afterSlot === null ? (c.beforeSlot === null ? a + 1 : (c.beforeSlot + 1) * SLOT_MS) : (c.afterSlot + 2) * SLOT_MS
  return { sourceId: c.sourceId, entity: c.entity, from: a, to: b }
}

function fillCandidates(cands: Candidate[], rows: readonly LiveRow[]): void {
  const byEntity = new Map<string, LiveRow[]>()
  const bySource = new Map<string, LiveRow[]>()
  for (const r of rows) {
    const ek = `${r.sourceId}/${r.kind}/${r.entity}`
    let l = byEntity.get(ek)
    if (l === undefined) byEntity.set(ek, (l = []))
    l.push(r)
    let s = bySource.get(r.sourceId)
    if (s === undefined) bySource.set(r.sourceId, (s = []))
    s.push(r)
  }
  for (const c of cands) {
    const list = (c.entity === null ? bySource.get(c.sourceId) : byEntity.get(`${c.sourceId}/${c.entity.kind}/${c.entity.id}`)) ?? []
    const endBefore = c.beforeSlot === null ? null : (c.beforeSlot + 1) * SLOT_MS
    const startBefore = c.beforeSlot === null ? null : c.beforeSlot * SLOT_MS
    const afterFrom = c.afterSlot === null ? null : c.afterSlot * SLOT_MS
    const afterTo = c.afterSlot === null ? null : (c.afterSlot + 2) * SLOT_MS
    for (const r of list) {
      if (startBefore !== null && endBefore !== null && r.occurredAt >= startBefore && r.occurredAt < endBefore) {
        if (c.lastAt === null || r.occurredAt > c.lastAt) c.lastAt = r.occurredAt
      }
      if (afterFrom !== null && afterTo !== null && r.occurredAt >= afterFrom && r.occurredAt < afterTo) {
        if (r.occurredAt < afterFrom + SLOT_MS && (c.nextAt === null || r.occurredAt < c.nextAt)) c.nextAt = r.occurredAt
        if (c.arrival === null || r.receivedAt < c.arrival) c.arrival = r.receivedAt
      }
    }
  }
}

function delayView(d: Delay): DelayView {
  return { lastDataAt: iso(d.lastDataAt), lateFrom: iso(d.lateFrom), dataBackAt: d.dataBackAt === null ? null : iso(d.dataBackAt), lateMinutes: round2(d.lateMs / 60_000) }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100
}

/** Intervals of the event clock from step rows (arrivals that may end a delay) and the last arrival. */
function stepIntervals(steps: readonly ClockStep[], end: ClockEnd | undefined, lookFrom: number): ClockInterval[] {
  const out: ClockInterval[] = steps.map((s) => ({ basis: s.prevLatest > 0 ? s.prevLatest : lookFrom, start: s.prevArrival > 0 ? s.prevArrival : lookFrom, end: s.arrival }))
  if (end === undefined) out.push({ basis: lookFrom, start: lookFrom, end: null })
  else out.push({ basis: end.latest > 0 ? end.latest : lookFrom, start: end.lastArrival, end: null })
  return out
}

/** Delay and gap figures of one clock (a source or an entity). */
function clockFigures(
  cands: readonly Candidate[],
  timely: boolean,
  steps: { steps: readonly ClockStep[]; end: ClockEnd | undefined } | null,
  calendar: Calendar,
  maxDelayMs: number,
  grid: Grid,
  lookFrom: number,
): { delays: Delay[]; longestGapMs: number } {
  const gaps: Gap[] = cands.map((c) => ({ from: c.lastAt ?? (c.beforeSlot === null ? lookFrom : c.beforeSlot * SLOT_MS), to: c.afterSlot === null ? null : (c.nextAt ?? c.afterSlot * SLOT_MS) }))
  const longestGapMs = longestGap(gaps, calendar, grid.from, grid.until)
  let intervals: ClockInterval[]
  if (timely || steps === null) {
    intervals = cands.map((c) => {
      const basis = c.lastAt ?? (c.beforeSlot === null ? lookFrom : c.beforeSlot * SLOT_MS)
      return { basis, start: basis, end: c.afterSlot === null ? null : (c.arrival ?? c.afterSlot * SLOT_MS) }
    })
  } else intervals = stepIntervals(steps.steps, steps.end, lookFrom)
  return { delays: findDelays(intervals, calendar, maxDelayMs, grid.from, grid.until), longestGapMs }
}

interface EntityWork {
  info: SourceInfo
  kind: EntityKind
  id: string
  name: string | null
  calendar: Calendar
  maxDelayMs: number
  activity: EntityActivity | undefined
  rejected: number
  badRuns: Runs
  cands: Candidate[]
}

function rowOf(level: FigureRow['level'], sourceId: string, kind: EntityKind | null, id: string | null, name: string | null): FigureRow {
  return {
    level,
    sourceId,
    entityKind: kind,
    entityId: id,
    name,
    records: 0,
    rejected: 0,
    daysActive: 0,
    buckets: emptyCounts(),
    completeness: null,
    delays: 0,
    delayMinutes: 0,
    longestGapMinutes: 0,
    delayList: [],
    incidents: [],
    states: [],
    abnormal: false,
  }
}

function finish(row: FigureRow, delays: Delay[], longestGapMs: number): void {
  row.completeness = row.buckets.rate
  row.delays = delays.length
  row.delayMinutes = round2(delays.reduce((n, d) => n + d.lateMs, 0) / 60_000)
  row.longestGapMinutes = round2(longestGapMs / 60_000)
  row.delayList = delays.map(delayView)
  row.abnormal = row.states.length > 0 || row.delays > 0 || (row.completeness !== null && row.completeness < LOW_COMPLETENESS)
}

interface AlertSpan {
  sourceId: string
  entityId: string | null
  state: FreshnessState
}

async function alertsDuring(knex: Knex, dialect: Metadata['dialect'], from: number, to: number): Promise<AlertSpan[]> {
  const rows = (await knex('alerts')
    .select('source_id', 'entity_id', 'state')
    .where('starts_at', '<', timestampToDb(dialect, to))
    .andWhere((q) => {
      void q.whereNull('ends_at').orWhere('ends_at', '>=', timestampToDb(dialect, from))
    })) as { source_id: string; entity_id: string | null; state: FreshnessState }[]
  return rows.map((r) => ({ sourceId: r.source_id, entityId: r.entity_id, state: r.state }))
}

async function incidentsDuring(store: SyncHealthStore, from: number, to: number): Promise<Incident[]> {
  const { items } = await store.listIncidents({ to, limit: 10_000 })
  return items.filter((i) => i.recoveredAt === null || i.recoveredAt >= from).sort((a, b) => a.id - b.id)
}

export interface ReportDeps {
  metadata: Metadata
  warehouse: Warehouse
}

/** Builds the report of one month. Throws CITYSYNC_ERR_REPORT_PERIOD for a month that has not begun. */
export async function buildSyncReport(deps: ReportDeps, o: SyncReportOptions): Promise<SyncReport> {
  const zone = o.zone ?? DEFAULT_TIMEZONE
  const period: Period = parseMonth(o.month, zone)
  const bucketMs = o.bucketMs ?? DEFAULT_BUCKET_MS
  if (!Number.isInteger(bucketMs) || bucketMs < DEFAULT_BUCKET_MS || bucketMs % DEFAULT_BUCKET_MS !== 0 || bucketMs > 86_400_000) {
    throw new CitysyncError('CITYSYNC_ERR_REPORT_OPTION', ['bucket', 'a whole multiple of 5 minutes, at most 1 day'])
  }
  const grid = makeGrid(period.from, period.to, o.now, bucketMs, zone)
  if (grid.count === 0) throw new CitysyncError('CITYSYNC_ERR_REPORT_PERIOD', [period.id, `it has not begun yet (or its first ${bucketMs / 60_000} minutes are not over)`])
  const { metadata, warehouse } = deps
  const store = new SyncHealthStore({ knex: metadata.knex, dialect: metadata.dialect, clock: { now: () => o.now } })

  const records = await metadata.sources.list()
  const infos = new Map<string, SourceInfo>()
  for (const s of records) {
    if (s.createdAt >= period.to) continue
    infos.set(s.id, { id: s.id, name: s.name, kind: s.kind, operator: s.operator, district: s.district, settings: settingsOf(s), createdAt: s.createdAt })
  }
  const needsDepartures = [...infos.values()].some((i) => i.settings.calendar.needsDepartures)
  let minDelay = parseDuration(DEFAULTS.maxDelay)
  for (const i of infos.values()) {
    minDelay = Math.min(minDelay, i.settings.maxDelayMs)
    for (const e of i.settings.entities.values()) minDelay = Math.min(minDelay, e.maxDelayMs)
  }

  const [activity, rejected, hourly, lots, sourceClock, departures, alerts, incidents] = await Promise.all([
    readActivity(warehouse, grid.from, grid.until, ENTITY_LOOKBACK_MS),
    readRejected(warehouse, grid.from, grid.until),
    readHourlyRows(warehouse, grid.from, grid.until),
    readLots(warehouse, grid.until),
    readSourceClock(warehouse, grid.from, grid.until, SOURCE_LOOKBACK_MS, minDelay),
    needsDepartures ? readDepartures(warehouse, grid.from, grid.until) : Promise.resolve(new Map<string, Map<string, number[]>>()),
    alertsDuring(metadata.knex, metadata.dialect, grid.from, grid.until),
    incidentsDuring(store, grid.from, grid.until),
  ])

  // Sources seen in the warehouse but no longer in the metadata store still belong in the month's report.
  const defaults = resolveSettings({ freshness: { maxDelay: DEFAULTS.maxDelay }, schedule: { every: '1m' }, timezone: zone, config: {} })
  for (const id of new Set([...activity.map((a) => a.sourceId), ...sourceClock.ends.map((e) => e.sourceId)])) {
    if (!infos.has(id)) infos.set(id, { id, name: id, kind: 'unknown', operator: null, district: null, settings: defaults, createdAt: 0 })
  }

  // Entities per source: described car parks, and whatever sent data or was looked back on.
  const entities = new Map<string, Map<string, EntityWork>>()
  const lotInfo = new Map<string, { name: string | null; hours: string | null }>()
  for (const l of lots) lotInfo.set(`${l.sourceId}/car-park/${l.lotId}`, { name: l.name, hours: l.openingHours })
  const work = (sourceId: string, kind: EntityKind, id: string): EntityWork | undefined => {
    const info = infos.get(sourceId)
    if (info === undefined) return undefined
    let m = entities.get(sourceId)
    if (m === undefined) entities.set(sourceId, (m = new Map<string, EntityWork>()))
    const key = `${kind}/${id}`
    let w = m.get(key)
    if (w === undefined) {
      const li = lotInfo.get(`${sourceId}/${key}`)
      const cal = entityCalendar(info.settings, kind, id, li?.hours ?? null, departures.get(sourceId)?.get(id))
      if (cal.ignore) return undefined
      w = { info, kind, id, name: li?.name ?? null, calendar: cal.calendar, maxDelayMs: cal.maxDelayMs, activity: undefined, rejected: 0, badRuns: [], cands: [] }
      m.set(key, w)
    }
    return w
  }
  for (const l of lots) work(l.sourceId, 'car-park', l.lotId)
  for (const a of activity) {
    const w = work(a.sourceId, a.kind, a.entity)
    if (w !== undefined) w.activity = a
  }
  const unattributed = new Map<string, number>()
  for (const r of rejected.byEntity) {
    const m = entities.get(r.sourceId)
    const w = r.entity === '' || m === undefined ? undefined : [...['car-park', 'terminal', 'station']].map((k) => m.get(`${k}/${r.entity}`)).find((x) => x !== undefined)
    if (w === undefined) {
      unattributed.set(r.sourceId, (unattributed.get(r.sourceId) ?? 0) + r.count)
      continue
    }
    w.rejected += r.count
    w.badRuns = slotRunsToGrid(r.slots.starts, r.slots.ends, grid)
  }

  // Gaps worth measuring exactly, per entity and per source.
  const lookFromEntity = grid.from - ENTITY_LOOKBACK_MS
  const lookFromSource = grid.from - SOURCE_LOOKBACK_MS
  const allCands: Candidate[] = []
  const sourceCands = new Map<string, Candidate[]>()
  for (const [sourceId, m] of entities) {
    const liveUnion: [number, number][] = []
    let before: number | null = null
    for (const w of m.values()) {
      const live = w.activity?.live ?? { starts: [], ends: [] }
      const lb = w.activity?.lastLiveSlotBefore ?? null
      for (const c of gapCandidates(live, lb, w.calendar, w.maxDelayMs, grid.from, grid.until)) {
        const cand: Candidate = { sourceId, entity: { kind: w.kind, id: w.id }, ...c, lastAt: null, nextAt: null, arrival: null }
        w.cands.push(cand)
        allCands.push(cand)
      }
      for (let k = 0; k < live.starts.length; k++) liveUnion.push([live.starts[k]!, live.ends[k]!])
      if (lb !== null && (before === null || lb > before)) before = lb
    }
    liveUnion.sort((a, b) => a[0] - b[0])
    const starts: number[] = []
    const ends: number[] = []
    for (const [s, e] of liveUnion) {
      if (ends.length > 0 && s <= ends[ends.length - 1]! + 1) ends[ends.length - 1] = Math.max(ends[ends.length - 1]!, e)
      else {
        starts.push(s)
        ends.push(e)
      }
    }
    const info = infos.get(sourceId)!
    const sc = gapCandidates({ starts, ends }, before, info.settings.calendar, info.settings.maxDelayMs, grid.from, grid.until).map(
      (c): Candidate => ({ sourceId, entity: null, ...c, lastAt: null, nextAt: null, arrival: null }),
    )
    sourceCands.set(sourceId, sc)
    allCands.push(...sc)
  }
  const liveRows = await readLiveRows(
    warehouse,
    allCands.filter((c) => c.beforeSlot !== null || c.afterSlot !== null).map((c) => windowOf(c, grid.from, c.entity === null ? lookFromSource : lookFromEntity)),
  )
  fillCandidates(allCands, liveRows)

  // Entities whose rows arrive late follow the event clock arrival by arrival.
  const late: { sourceId: string; kind: EntityKind; entity: string }[] = []
  for (const m of entities.values()) for (const w of m.values()) if ((w.activity?.maxLagMs ?? 0) > SLOT_MS) late.push({ sourceId: w.info.id, kind: w.kind, entity: w.id })
  const entityClock = late.length > 0 ? await readEntityClock(warehouse, late, grid.from, grid.until, ENTITY_LOOKBACK_MS, minDelay) : { steps: [], ends: [] }
  const stepsOf = groupSteps(entityClock.steps, entityClock.ends)
  const sourceSteps = groupSteps(sourceClock.steps, sourceClock.ends)

  // Alerts and incidents.
  const statesOf = new Map<string, Set<FreshnessState>>()
  for (const a of alerts) {
    if (!ALERTING_STATES.has(a.state)) continue
    const key = a.entityId === null ? a.sourceId : `${a.sourceId}/${a.entityId}`
    let s = statesOf.get(key)
    if (s === undefined) statesOf.set(key, (s = new Set()))
    s.add(a.state)
  }
  const incidentsOf = new Map<string, number[]>()
  for (const i of incidents) {
    const push = (key: string): void => {
      let l = incidentsOf.get(key)
      if (l === undefined) incidentsOf.set(key, (l = []))
      l.push(i.id)
    }
    push(i.sourceId)
    for (const e of i.scope.entities) push(`${i.sourceId}/${e}`)
  }

  // Volumes per local day.
  const dates: string[] = []
  for (let d = 0; d < grid.days; d++) dates.push(new Date((localDayNumber(grid.from, zone) + d) * 86_400_000).toISOString().slice(0, 10))
  const dayIndex = (t: number): number => localDayNumber(t, zone) - localDayNumber(grid.from, zone)
  const dailyRecords = new Map<string, Float64Array>()
  const dailyRejected = new Map<string, Float64Array>()
  const addDaily = (m: Map<string, Float64Array>, sourceId: string, t: number, n: number): void => {
    const d = dayIndex(t)
    if (d < 0 || d >= grid.days) return
    let a = m.get(sourceId)
    if (a === undefined) m.set(sourceId, (a = new Float64Array(grid.days)))
    a[d]! += n
  }
  for (const h of hourly) addDaily(dailyRecords, h.sourceId, h.hour, h.count)
  for (const h of rejected.byHour) addDaily(dailyRejected, h.sourceId, h.hour, h.count)

  // Figures.
  const masks = new MaskCache(grid)
  const sections: SourceSection[] = []
  const total = emptyCounts()
  let totalRecords = 0
  let totalRejected = 0
  let entityCount = 0
  let carParks = 0
  const interrupted: string[] = []
  let totalLateMs = 0
  let totalDelays = 0
  for (const info of [...infos.values()].sort((a, b) => a.id.localeCompare(b.id))) {
    const heat = new HeatStripBuilder(grid)
    // Buckets before the source was added are not expected of it.
    const start = Math.max(0, Math.ceil((info.createdAt - grid.from) / grid.bucketMs))
    const srow = rowOf('source', info.id, null, null, info.name)
    const rows: FigureRow[] = []
    const m = entities.get(info.id) ?? new Map<string, EntityWork>()
    for (const w of [...m.values()].sort((a, b) => a.id.localeCompare(b.id) || a.kind.localeCompare(b.kind))) {
      const row = rowOf('entity', info.id, w.kind, w.id, w.name)
      const mask = masks.get(w.calendar)
      const good = w.activity === undefined ? [] : slotRunsToGrid(w.activity.good.starts, w.activity.good.ends, grid)
      row.buckets = bucketCounts(mask, good, w.badRuns, start)
      row.records = w.activity?.rows ?? 0
      row.rejected = w.rejected
      row.daysActive = activeDays(grid, good)
      heat.add(mask, good, start)
      const timely = (w.activity?.maxLagMs ?? 0) <= SLOT_MS
      const key = `${info.id}/${w.kind}/${w.id}`
      const fig = clockFigures(w.cands, timely, timely ? null : (stepsOf.get(key) ?? { steps: [], end: undefined }), w.calendar, w.maxDelayMs, grid, Math.max(lookFromEntity, info.createdAt))
      row.states = [...(statesOf.get(`${info.id}/${w.id}`) ?? [])].sort()
      row.incidents = incidentsOf.get(`${info.id}/${w.id}`) ?? []
      finish(row, fig.delays, fig.longestGapMs)
      rows.push(row)
      addCounts(srow.buckets, row.buckets)
      srow.records += row.records
      srow.rejected += row.rejected
      if (w.kind === 'car-park') carParks++
    }
    srow.rejected += unattributed.get(info.id) ?? 0
    const unionGood: number[] = []
    for (const w of m.values()) if (w.activity !== undefined) unionGood.push(...slotRunsToGrid(w.activity.good.starts, w.activity.good.ends, grid))
    srow.daysActive = activeDays(grid, unionRuns(unionGood, []))
    const sfig = clockFigures(sourceCands.get(info.id) ?? [], false, sourceSteps.get(info.id) ?? { steps: [], end: undefined }, info.settings.calendar, info.settings.maxDelayMs, grid, Math.max(lookFromSource, info.createdAt))
    srow.states = [...(statesOf.get(info.id) ?? [])].sort()
    srow.incidents = incidentsOf.get(info.id) ?? []
    finish(srow, sfig.delays, sfig.longestGapMs)
    if (sfig.delays.length > 0) interrupted.push(info.id)
    totalLateMs += sfig.delays.reduce((n, d) => n + d.lateMs, 0)
    totalDelays += sfig.delays.length
    addCounts(total, srow.buckets)
    totalRecords += srow.records
    totalRejected += srow.rejected
    entityCount += rows.length

    const strip = heat.build()
    const cells: number[] = new Array<number>(strip.days * 24)
    for (let c = 0; c < cells.length; c++) {
      const e = strip.expected[c]!
      cells[c] = e > 0 ? Math.round((strip.good[c]! / e) * 10_000) / 10_000 : strip.maintenance[c]! > 0 ? -2 : -1
    }
    const rec = dailyRecords.get(info.id)
    const rej = dailyRejected.get(info.id)
    sections.push({
      id: info.id,
      name: info.name,
      kind: info.kind,
      operator: info.operator,
      district: info.district,
      maxDelayMinutes: info.settings.maxDelayMs / 60_000,
      row: srow,
      entities: rows,
      heat: cells,
      daily: dates.map((date, d) => ({ date, records: rec?.[d] ?? 0, rejected: rej?.[d] ?? 0 })),
      rejectedByCode: rejected.byCode.filter((c) => c.sourceId === info.id).map(({ code, count }) => ({ code, count })).sort((a, b) => b.count - a.count || a.code.localeCompare(b.code)),
    })
  }

  const summary: SummaryFigures = {
    month: period.id,
    sources: sections.length,
    entities: entityCount,
    carParks,
    records: totalRecords,
    rejected: totalRejected,
    buckets: total,
    completeness: total.rate,
    sourcesWithInterruptions: interrupted,
    delays: totalDelays,
    hoursLate: round2(totalLateMs / 3_600_000),
  }
  let previous: SummaryFigures | null = null
  if (o.previous !== undefined) previous = o.previous
  else {
    const prev = previousMonth(period)
    try {
      previous = (await buildSyncReport(deps, { month: prev.id, now: Math.min(o.now, prev.to), zone, bucketMs, previous: null })).summary
    } catch (err) {
      // The month before may lie before any data or fail on its own: the comparison is then left out.
      void errorMessage(err)
      previous = null
    }
  }
  return {
    kind: 'sync',
    month: period.id,
    zone,
    from: iso(period.from),
    to: iso(period.to),
    until: iso(grid.until),
    partial: grid.until < period.to,
    generatedAt: iso(o.now),
    bucketMinutes: bucketMs / 60_000,
    summary,
    previous,
    change:
      previous === null
        ? null
        : {
            completeness: summary.completeness === null || previous.completeness === null ? null : round2((summary.completeness - previous.completeness) * 100),
            hoursLate: round2(summary.hoursLate - previous.hoursLate),
            sourcesWithInterruptions: summary.sourcesWithInterruptions.length - previous.sourcesWithInterruptions.length,
            records: summary.records - previous.records,
          },
    sources: sections,
    incidents: incidents.map((i) => ({
      id: i.id,
      sourceId: i.sourceId,
      title: i.title,
      status: i.status,
      occurredAt: iso(i.occurredAt),
      recoveredAt: i.recoveredAt === null ? null : iso(i.recoveredAt),
      states: i.scope.states,
      entities: i.scope.entities,
      entityCount: i.scope.entityCount,
      rootCause: i.rootCause,
    })),
    dates,
  }
}

function groupSteps(steps: readonly ClockStep[], ends: readonly ClockEnd[]): Map<string, { steps: ClockStep[]; end: ClockEnd | undefined }> {
  const out = new Map<string, { steps: ClockStep[]; end: ClockEnd | undefined }>()
  const key = (s: { sourceId: string; kind: EntityKind | null; entity: string | null }): string => (s.entity === null ? s.sourceId : `${s.sourceId}/${s.kind}/${s.entity}`)
  for (const s of steps) {
    let g = out.get(key(s))
    if (g === undefined) out.set(key(s), (g = { steps: [], end: undefined }))
    g.steps.push(s)
  }
  for (const e of ends) {
    let g = out.get(key(e))
    if (g === undefined) out.set(key(e), (g = { steps: [], end: undefined }))
    g.end = e
  }
  return out
}
