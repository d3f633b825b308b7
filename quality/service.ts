// The quality service: every interval, read the warehouse, evaluate every
// source and entity, turn confirmed state changes into alerts and incidents,
// update the gauges, and hand notifications to the delivery queue. Runs as
// `citysync quality` or inside `citysync start`.

import { createHash } from 'node:crypto'
import { type Logger } from 'pino'
import { type Clock } from '../lib/clock.ts'
import { errorMessage } from '../lib/errors.ts'
import { type Metadata } from '../lib/metadata/db.ts'
import { type SourceRecord } from '../lib/metadata/sources.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { type AlertingConfig, emptyAlertingConfig } from './alerting-config.ts'
import {
  evaluateCycle,
  formatSpan,
  type FreshnessState,
  isAlerting,
  type SourceContext,
  type SourceInput,
  type SourceResult,
  type Trackers,
  type Transition,
  trackerKey,
} from './evaluate.ts'
import { type BikeBalanceAlerting, BikeBalanceMonitor } from './bike-balance.ts'
import { DEFAULTS, type FreshnessSettings, resolveSettings } from './freshness-config.ts'
import { QualityMetrics } from './metrics.ts'
import { DeliveryQueue, Notifier } from './notifier.ts'
import { emptyReading, FreshnessReader, type ReaderOptions } from './reader.ts'
import { Reports } from './report/reports.ts'
import { ReportScheduler, type ReportSchedulerOptions } from './report/scheduler.ts'
import { type Alert, alertLabel, type Incident, type IncidentScope, isFreshnessAlert, MAX_SCOPE_ENTITIES, SyncHealthStore } from './store.ts'

export const DEFAULT_INTERVAL_MS = 60_000

export interface Snapshot {
  at: number
  results: SourceResult[]
  cycleMs: number
}

export interface QualityServiceOptions {
  metadata: Metadata
  warehouse: Warehouse
  clock: Clock
  log: Logger
  /** Receivers and routes; without it alerts and incidents are recorded and nothing is sent. */
  alerting?: AlertingConfig
  /** Evaluation interval (default 60 s). */
  intervalMs?: number
  reader?: ReaderOptions
  metrics?: QualityMetrics
  /** Monthly sync reports on a schedule, and regeneration after backfill (quality/report/scheduler.ts); false: none. */
  reports?: ReportSchedulerOptions | false
  /** Bike-share balance alerts (quality/bike-balance.ts); without it, none. */
  bikeBalance?: BikeBalanceAlerting
}

export interface CycleSummary {
  at: number
  sources: number
  entities: number
  transitions: number
  firing: number
  notifications: number
  cycleMs: number
}

const SEVERITY: Record<string, string> = { STOPPED: 'critical', LATE: 'critical', STALLED: 'critical', SKEWED: 'warning' }

function titleCase(s: string): string {
  return s.charAt(0) + s.slice(1).toLowerCase()
}

export function alertFingerprint(sourceId: string, entityId: string | null, state: FreshnessState): string {
  return createHash('sha256').update(`${sourceId}\x1f${entityId ?? ''}\x1f${state}`).digest('hex').slice(0, 16)
}

export function alertLabels(ctx: Pick<SourceContext, 'id' | 'operator' | 'district'>, entityId: string | null, entityKind: string | null, state: FreshnessState): Record<string, string> {
  const labels: Record<string, string> = {
    alertname: `${entityId === null ? 'Source' : 'Entity'}${titleCase(state)}`,
    sourceId: ctx.id,
    state,
    severity: entityId === null ? (SEVERITY[state] ?? 'warning') : 'warning',
  }
  if (entityId !== null) {
    labels.entityId = entityId
    if (entityKind !== null) labels.entityKind = entityKind
  }
  if (ctx.operator) labels.operator = ctx.operator
  if (ctx.district) labels.district = ctx.district
  return labels
}

/** Settings per source, recompiled only when the source changes. */
export class SettingsCache {
  readonly #cache = new Map<string, { stamp: string; settings: FreshnessSettings }>()
  readonly #log: Logger | undefined

  constructor(log?: Logger) {
    this.#log = log
  }

  get(s: SourceRecord): FreshnessSettings {
    const stamp = `${s.version}:${s.updatedAt}`
    const hit = this.#cache.get(s.id)
    if (hit?.stamp === stamp) return hit.settings
    let settings: FreshnessSettings
    try {
      settings = resolveSettings(s)
    } catch (err) {
      // Stored before calendars were validated: fall back to the defaults rather than stop evaluating.
      this.#log?.warn({ sourceId: s.id, err: errorMessage(err) }, 'freshness settings unusable; using the defaults')
      settings = resolveSettings({ ...s, freshness: { maxDelay: s.freshness.maxDelay ?? DEFAULTS.maxDelay } })
    }
    this.#cache.set(s.id, { stamp, settings })
    return settings
  }
}

async function runStates(metadata: Metadata): Promise<Map<string, string>> {
  const rows = await metadata.knex<{ source_id: string; run_state: string }>('connector_state').select('source_id', 'run_state')
  return new Map(rows.map((r) => [r.source_id, r.run_state]))
}

/** Everything one evaluation needs, read from the metadata store and the warehouse. */
export async function gatherInputs(metadata: Metadata, reader: FreshnessReader, settings: SettingsCache, now: number, only?: string): Promise<SourceInput[]> {
  const [all, states, view] = await Promise.all([metadata.sources.list(), runStates(metadata), reader.read(now)])
  const sources = only === undefined ? all : all.filter((s) => s.id === only)
  return sources.map((s) => {
    const ctx: SourceContext = {
      id: s.id,
      name: s.name,
      kind: s.kind,
      operator: s.operator,
      district: s.district,
      paused: s.desiredState === 'paused',
      runState: states.get(s.id) ?? null,
      createdAt: s.createdAt,
      settings: settings.get(s),
    }
    const departures = view.departures.get(s.id)
    if (departures !== undefined) ctx.departures = departures
    return { ctx, reading: view.sources.get(s.id) ?? emptyReading(), entities: view.entities.get(s.id) ?? [] }
  })
}

/** Trackers of alerting states, rebuilt from the firing alerts (after a restart, or in an API-only process). */
export function trackersFrom(firing: readonly Alert[], now: number): Trackers {
  const trackers: Trackers = new Map()
  for (const a of firing) {
    if (!isFreshnessAlert(a)) continue
    trackers.set(trackerKey(a.sourceId, a.entityId), { state: a.state, since: a.startsAt, candidate: null, candidateSince: now })
  }
  return trackers
}

/**
 * Freshness now, without a running service (API-only processes): one
 * stateless evaluation over a full read, with the alert states as they are.
 */
export async function evaluateOnce(metadata: Metadata, warehouse: Warehouse, store: SyncHealthStore, now: number, only?: string): Promise<Snapshot> {
  const started = performance.now()
  const inputs = await gatherInputs(metadata, new FreshnessReader(warehouse), new SettingsCache(), now, only)
  const { results } = evaluateCycle(now, inputs, trackersFrom(await store.firingAlerts(), now))
  return { at: now, results, cycleMs: performance.now() - started }
}

export class QualityService {
  readonly store: SyncHealthStore
  readonly metrics: QualityMetrics
  readonly deliveries: DeliveryQueue
  readonly intervalMs: number
  readonly #o: QualityServiceOptions
  readonly #reader: FreshnessReader
  readonly #settings: SettingsCache
  readonly #notifier: Notifier
  readonly #alerting: AlertingConfig
  #trackers: Trackers | undefined
  #latest: Snapshot | undefined
  #timer: NodeJS.Timeout | undefined
  #running: Promise<unknown> | undefined
  #stopped = false
  #reports: ReportScheduler | undefined
  readonly #bikes: BikeBalanceMonitor | undefined

  constructor(o: QualityServiceOptions) {
    this.#o = o
    this.intervalMs = o.intervalMs ?? DEFAULT_INTERVAL_MS
    this.store = new SyncHealthStore({ knex: o.metadata.knex, dialect: o.metadata.dialect, clock: o.clock })
    this.metrics = o.metrics ?? new QualityMetrics()
    this.#alerting = o.alerting ?? emptyAlertingConfig()
    this.deliveries = new DeliveryQueue(this.store, o.log, this.#alerting.delivery, this.metrics)
    this.#notifier = new Notifier(this.store, this.#alerting, this.deliveries, o.log)
    this.#reader = new FreshnessReader(o.warehouse, o.reader)
    this.#settings = new SettingsCache(o.log)
    if (o.bikeBalance !== undefined) this.#bikes = new BikeBalanceMonitor({ warehouse: o.warehouse, store: this.store, log: o.log, config: o.bikeBalance })
  }

  /** The results of the latest cycle. */
  get latest(): Snapshot | undefined {
    return this.#latest
  }

  /** One evaluation cycle at the clock's current time. */
  async runOnce(): Promise<CycleSummary> {
    const cycle = this.#cycle()
    this.#running = cycle.catch(() => undefined)
    return cycle
  }

  async #cycle(): Promise<CycleSummary> {
    const { clock, metadata, log } = this.#o
    const started = performance.now()
    const now = clock.now()
    const inputs = await gatherInputs(metadata, this.#reader, this.#settings, now)
    this.#trackers ??= trackersFrom(await this.store.firingAlerts(), now)
    const trackers = this.#trackers
    const { results, transitions } = evaluateCycle(now, inputs, trackers)
    const byId = new Map(results.map((r) => [r.ctx.id, r]))

    let firing = await this.store.firingAlerts()
    const firingByKey = new Map(firing.filter(isFreshnessAlert).map((a) => [`${trackerKey(a.sourceId, a.entityId)}\x1f${a.state}`, a]))
    for (const t of transitions) {
      try {
        await this.#apply(t, byId.get(t.sourceId)!, firingByKey, now)
      } catch (err) {
        // Forget the tracker: the next cycle sees the state again and retries.
        trackers.delete(t.key)
        log.error({ err: errorMessage(err), sourceId: t.sourceId, entityId: t.entityId, from: t.from, to: t.to }, 'could not record a freshness change')
      }
    }
    await this.#resolveRemoved(firing, new Set(byId.keys()), now)
    if (this.#bikes !== undefined) {
      try {
        await this.#bikes.cycle(now, results.map((r) => r.ctx), await this.store.firingAlerts())
      } catch (err) {
        // Freshness goes on; the areas are looked at again next cycle.
        this.#bikes.reset(err)
      }
    }
    firing = await this.store.firingAlerts()
    await this.#refresh(results, firing)

    const cycleMs = performance.now() - started
    this.metrics.update(now, results, firing, cycleMs)
    this.#latest = { at: now, results, cycleMs }
    const muted = new Set(results.filter((r) => r.verdict.state === 'MAINTENANCE').map((r) => r.ctx.id))
    const dispatched = await this.#notifier.dispatch(now, firing, muted)
    const entities = results.reduce((n, r) => n + r.entities.length, 0)
    if (transitions.length > 0) log.info({ transitions: transitions.length, firing: firing.length, notifications: dispatched.notifications }, 'freshness changed')
    return { at: now, sources: results.length, entities, transitions: transitions.length, firing: firing.length, notifications: dispatched.notifications, cycleMs }
  }

  async #apply(t: Transition, r: SourceResult, firingByKey: Map<string, Alert>, now: number): Promise<void> {
    const { ctx } = r
    const store = this.store
    const where = t.entityId === null ? ctx.id : `${ctx.id}/${t.entityId}`
    let incidentId: number | null = null
    if (isAlerting(t.from)) {
      const old = firingByKey.get(`${t.key}\x1f${t.from}`)
      if (old !== undefined) {
        const resolution = isAlerting(t.to) ? `became ${t.to}` : `recovered: ${t.verdict.reason}`
        await store.resolveAlert(old.id, t.since, { ...old.annotations, resolution })
        firingByKey.delete(`${t.key}\x1f${t.from}`)
        incidentId = old.incidentId
        if (incidentId !== null) {
          await store.addEvent(incidentId, 'alert', 'citysync', `${where}: ${t.from} → ${t.to}${isAlerting(t.to) ? '' : ` (data back ${formatSpan(now - t.since)} ago)`}`, { alertId: old.id, from: t.from, to: t.to }, undefined, now)
        }
      }
    }
    if (isAlerting(t.to)) {
      const incident = await this.#incidentFor(r, t, now)
      const labels = alertLabels(ctx, t.entityId, t.entityKind, t.to)
      const alert = await store.openAlert({
        fingerprint: alertFingerprint(ctx.id, t.entityId, t.to),
        sourceId: ctx.id,
        entityId: t.entityId,
        entityKind: t.entityKind,
        state: t.to,
        operator: ctx.operator,
        district: ctx.district,
        labels,
        annotations: this.#annotations(r, t.verdict, incident.id),
        startsAt: t.since,
        incidentId: incident.id,
      })
      firingByKey.set(`${t.key}\x1f${t.to}`, alert)
      await store.addEvent(incident.id, 'alert', 'citysync', `${where}: ${t.to} since ${new Date(t.since).toISOString()}: ${t.verdict.reason}`, { alertId: alert.id, state: t.to }, undefined, now)
      return
    }
    if (incidentId !== null) await this.#maybeRecovered(incidentId, t.since, now)
  }

  #annotations(r: SourceResult, v: SourceResult['verdict'], incidentId: number): Record<string, string> {
    const a: Record<string, string> = {
      summary: v.reason,
      source: r.ctx.name,
      delay: formatSpan(v.delayMs),
      maxDelay: formatSpan(v.maxDelayMs),
      incident: String(incidentId),
    }
    if (v.lastEventAt !== null) a.lastEventAt = new Date(v.lastEventAt).toISOString()
    if (v.lastArrivalAt !== null) a.lastArrivalAt = new Date(v.lastArrivalAt).toISOString()
    return a
  }

  async #incidentFor(r: SourceResult, t: Transition, now: number): Promise<Incident> {
    const store = this.store
    const current = await store.currentIncident(r.ctx.id, now - this.#alerting.reopenWindowMs)
    if (current !== undefined) {
      if (current.status === 'recovered') {
        await store.updateIncident(current.id, { status: 'open', recoveredAt: null })
        await store.addEvent(current.id, 'reopened', 'citysync', `fault back ${formatSpan(now - (current.recoveredAt ?? now))} after recovery: ${t.to}`, { state: t.to }, undefined, now)
      }
      return current
    }
    const scope: IncidentScope = {
      entities: t.entityId === null ? [] : [t.entityId],
      entityCount: t.entityId === null ? 0 : 1,
      states: [t.to],
      expectedMissing: r.expectedMissing,
    }
    const title = `${r.ctx.name}: ${t.to}${t.entityId === null ? '' : ` at ${t.entityId}`}`
    const incident = await store.createIncident(
      { sourceId: r.ctx.id, sourceName: r.ctx.name, operator: r.ctx.operator, district: r.ctx.district, title, occurredAt: t.since, scope },
      this.#o.metadata.knex,
    )
    await store.addEvent(incident.id, 'opened', 'citysync', `${title} — ${t.verdict.reason}`, { state: t.to, since: t.since }, undefined, now)
    return incident
  }

  async #maybeRecovered(incidentId: number, at: number, now: number): Promise<void> {
    const { total } = await this.store.listAlerts({ incidentId, status: 'firing', limit: 1 })
    if (total > 0) return
    const incident = await this.store.getIncident(incidentId)
    if (incident.status !== 'open') return
    await this.store.updateIncident(incidentId, { status: 'recovered', recoveredAt: at })
    await this.store.addEvent(incidentId, 'recovered', 'citysync', `recovered at ${new Date(at).toISOString()} after ${formatSpan(at - incident.occurredAt)}`, { recoveredAt: at }, undefined, now)
  }

  async #resolveRemoved(firing: readonly Alert[], present: ReadonlySet<string>, now: number): Promise<void> {
    const incidents = new Set<number>()
    for (const a of firing) {
      if (present.has(a.sourceId)) continue
      await this.store.resolveAlert(a.id, now, { ...a.annotations, resolution: 'source removed' })
      this.#trackers?.delete(trackerKey(a.sourceId, a.entityId))
      if (a.incidentId !== null && !incidents.has(a.incidentId)) {
        incidents.add(a.incidentId)
        await this.store.addEvent(a.incidentId, 'alert', 'citysync', `${alertLabel(a)}: source removed, alert ended`, { alertId: a.id }, undefined, now)
        await this.#maybeRecovered(a.incidentId, now, now)
      }
    }
  }

  /** Keeps the scope of open incidents and the summaries of firing source alerts current. */
  async #refresh(results: readonly SourceResult[], firing: readonly Alert[]): Promise<void> {
    const bySource = new Map<string, (Alert & { state: FreshnessState })[]>()
    for (const a of firing.filter(isFreshnessAlert)) {
      let list = bySource.get(a.sourceId)
      if (list === undefined) bySource.set(a.sourceId, (list = []))
      list.push(a)
    }
    for (const r of results) {
      const alerts = bySource.get(r.ctx.id)
      if (alerts === undefined) continue
      for (const a of alerts) {
        if (a.entityId !== null || a.annotations.summary === r.verdict.reason || r.verdict.state !== a.state) continue
        await this.store.updateAnnotations(a.id, { ...a.annotations, summary: r.verdict.reason, delay: formatSpan(r.verdict.delayMs) })
      }
      const incidentIds = new Set(alerts.map((a) => a.incidentId).filter((i): i is number => i !== null))
      for (const id of incidentIds) {
        const incident = await this.store.findIncident(id)
        if (incident === undefined || incident.status !== 'open') continue
        const sourceWide = alerts.some((a) => a.entityId === null && a.incidentId === id)
        const affected = new Set<string>()
        if (sourceWide) for (const e of r.entities) if (isAlerting(e.verdict.state)) affected.add(e.id)
        for (const a of alerts) if (a.entityId !== null && a.incidentId === id) affected.add(a.entityId)
        for (const e of incident.scope.entities) affected.add(e)
        const states = [...incident.scope.states]
        for (const a of alerts) if (a.incidentId === id && !states.includes(a.state)) states.push(a.state)
        const all = [...affected].sort()
        const scope: IncidentScope = {
          entities: all.slice(0, MAX_SCOPE_ENTITIES),
          entityCount: Math.max(all.length, incident.scope.entityCount),
          states,
          expectedMissing: r.expectedMissing === null ? incident.scope.expectedMissing : Math.max(r.expectedMissing, incident.scope.expectedMissing ?? 0),
        }
        if (JSON.stringify(scope) !== JSON.stringify(incident.scope)) await this.store.updateIncident(id, { scope })
      }
    }
  }

  /** Evaluates now, then every interval, until stop(). */
  start(): void {
    this.#stopped = false
    if (this.#o.reports !== false && this.#reports === undefined) {
      const { metadata, warehouse, clock, log } = this.#o
      this.#reports = new ReportScheduler(new Reports({ metadata, warehouse, clock, log }), clock, log, this.#o.reports)
      this.#reports.start()
    }
    const tick = async (): Promise<void> => {
      if (this.#stopped) return
      try {
        const s = await this.runOnce()
        this.#o.log.debug(s, 'freshness evaluated')
      } catch (err) {
        this.#o.log.error({ err: errorMessage(err) }, 'freshness evaluation failed')
      }
      if (!this.#stopped) this.#timer = setTimeout(() => void tick(), this.intervalMs)
    }
    this.#timer = setTimeout(() => void tick(), 0)
  }

  /** Stops evaluating, lets the cycle under way finish and gives deliveries a moment to complete. */
  async stop(graceMs = 5_000): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    await this.#reports?.stop()
    this.#reports = undefined
    await this.#running
    await this.deliveries.close(graceMs)
  }
}
