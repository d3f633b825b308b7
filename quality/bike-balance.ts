// Bike-share balance alerts: every quality cycle counts the vehicles of each
// area of each bike-share source and operator (api/analytics/bike.ts, the
// figures GET /api/v1/analytics/bike/balance answers), and an area that holds
// an accumulation or a shortage for `openAfter` raises an alert, one per
// source, operator and area; it resolves once the area has been back within
// its thresholds for `closeAfter`. The alerts live beside the sync-health
// alerts (state ACCUMULATION or SHORTAGE, entity kind `area`), so the
// notifier routes, groups, repeats, escalates and silences them the same way
// and they appear in GET /api/v1/alerts. They open no incident: an area out
// of balance is an operating matter for the bike operator, not a data fault.

import { type Logger } from 'pino'
import { type Area, type AreaState, balanceAlerts, bikeBalance } from '../api/analytics/bike.ts'
import { analyticsConfigFromEnv, type BikeBalanceDefaults } from '../api/analytics/config.ts'
import { errorMessage } from '../lib/errors.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { type SourceContext } from './evaluate.ts'
import { type Alert, type BalanceState, BALANCE_STATES, type SyncHealthStore } from './store.ts'

export interface BikeBalanceAlerting {
  /** Areas, thresholds and the report window (CITYSYNC_BIKE_CELL_METERS, _ACCUMULATION_AT, _SHORTAGE_AT, _WINDOW). */
  thresholds: BikeBalanceDefaults
  /** An area must stay out of balance this long before its alert opens (CITYSYNC_BIKE_ALERT_OPEN_AFTER). */
  openAfterMs: number
  /** And back within its thresholds this long before the alert resolves (CITYSYNC_BIKE_ALERT_CLOSE_AFTER). */
  closeAfterMs: number
}

/** From the environment (api/analytics/config.ts); undefined when CITYSYNC_BIKE_ALERTS=off. */
export function bikeAlertingFromEnv(env: NodeJS.ProcessEnv = process.env): BikeBalanceAlerting | undefined {
  const c = analyticsConfigFromEnv(env)
  return c.bikeAlerts.enabled ? { thresholds: c.bike, openAfterMs: c.bikeAlerts.openAfterMs, closeAfterMs: c.bikeAlerts.closeAfterMs } : undefined
}

/** The state an area is confirmed in, and a different one it has shown since `candidateSince`. */
export interface AreaTracker {
  state: AreaState
  since: number
  candidate: AreaState | null
  candidateSince: number
}

export interface AreaTransition {
  key: string
  from: AreaState
  to: AreaState
  /** When the new state was first seen (the alert's start, or its end). */
  since: number
}

export function areaKey(sourceId: string, operatorId: string, area: string): string {
  return `${sourceId}\x1f${operatorId}\x1f${area}`
}

/**
 * Pure: one observation of an area against its tracker. A change must hold
 * `openAfter` (into accumulation or shortage, also from one into the other)
 * or `closeAfter` (back to normal) before it is confirmed.
 */
export function stepArea(t: AreaTracker, observed: AreaState, now: number, hold: Pick<BikeBalanceAlerting, 'openAfterMs' | 'closeAfterMs'>): { tracker: AreaTracker; changed: boolean } {
  if (observed === t.state) return { tracker: { ...t, candidate: null, candidateSince: now }, changed: false }
  const candidateSince = t.candidate === observed ? t.candidateSince : now
  const needed = observed === 'normal' ? hold.closeAfterMs : hold.openAfterMs
  if (now - candidateSince >= needed) return { tracker: { state: observed, since: candidateSince, candidate: null, candidateSince: now }, changed: true }
  return { tracker: { ...t, candidate: observed, candidateSince }, changed: false }
}

const STATE_OF: Record<BalanceState, AreaState> = { ACCUMULATION: 'accumulation', SHORTAGE: 'shortage' }

function isBalance(a: Alert): a is Alert & { state: BalanceState } {
  return (BALANCE_STATES as readonly string[]).includes(a.state)
}

/** The feed's operator id of a balance alert (its `operator` label; the source's operator name is elsewhere). */
function alertKey(a: Alert): string {
  return areaKey(a.sourceId, a.labels.operator ?? '', a.entityId ?? '')
}

export interface BalanceCycle {
  areas: number
  opened: number
  resolved: number
}

export class BikeBalanceMonitor {
  readonly #o: { warehouse: Warehouse; store: SyncHealthStore; log: Logger; config: BikeBalanceAlerting }
  /** Confirmed states of the areas seen out of balance (normal areas without a pending change are dropped). */
  #trackers: Map<string, AreaTracker> | undefined

  constructor(o: { warehouse: Warehouse; store: SyncHealthStore; log: Logger; config: BikeBalanceAlerting }) {
    this.#o = o
  }

  /**
   * One cycle at `now` over the bike-share sources among `sources`: counts the
   * areas, steps their trackers, opens and resolves alerts. `firing` are the
   * firing alerts of the store (all kinds).
   */
  async cycle(now: number, sources: readonly SourceContext[], firing: readonly Alert[]): Promise<BalanceCycle> {
    const { store, config } = this.#o
    const open = new Map(firing.filter(isBalance).map((a) => [alertKey(a), a]))
    // After a restart: the states the firing alerts say.
    this.#trackers ??= new Map([...open].map(([k, a]) => [k, { state: STATE_OF[a.state], since: a.startsAt, candidate: null, candidateSince: now }]))
    const trackers = this.#trackers
    // Paused sources too: their reports age out of the window, and the notifier mutes sources in maintenance.
    const bikes = sources.filter((s) => s.kind === 'bike-share')
    const byId = new Map(bikes.map((s) => [s.id, s]))
    const areas = bikes.length === 0 ? [] : await bikeBalance(this.#o.warehouse, { scope: { sources: bikes.map((s) => s.id) }, at: now, thresholds: config.thresholds })
    const seen = new Map<string, Area>(areas.map((a) => [areaKey(a.sourceId, a.operatorId, a.area), a]))

    let opened = 0
    let resolved = 0
    for (const key of new Set([...seen.keys(), ...trackers.keys()])) {
      const area = seen.get(key)
      const observed: AreaState = area?.state ?? 'normal'
      const before = trackers.get(key) ?? { state: 'normal', since: now, candidate: null, candidateSince: now }
      const { tracker, changed } = stepArea(before, observed, now, config)
      if (tracker.state === 'normal' && tracker.candidate === null) trackers.delete(key)
      else trackers.set(key, tracker)
      const current = open.get(key)
      if (changed) {
        if (current !== undefined) {
          const resolution = tracker.state === 'normal' ? `back within thresholds: ${area?.vehicles ?? 0} vehicles` : `became ${tracker.state}`
          await store.resolveAlert(current.id, tracker.since, { ...current.annotations, resolution })
          resolved++
        }
        if (tracker.state !== 'normal' && area !== undefined) {
          const source = byId.get(area.sourceId)
          const [alert] = balanceAlerts([area], { at: tracker.since, thresholds: config.thresholds, extraLabels: source?.district ? { district: source.district } : {} })
          if (alert !== undefined) {
            await store.openAlert({
              fingerprint: alert.fingerprint,
              sourceId: area.sourceId,
              entityId: area.area,
              entityKind: 'area',
              state: alert.labels.state as BalanceState,
              operator: area.operatorId,
              district: source?.district ?? null,
              labels: alert.labels,
              annotations: { ...alert.annotations, ...(source ? { source: source.name } : {}) },
              startsAt: tracker.since,
              incidentId: null,
            })
            opened++
          }
        }
      } else if (current !== undefined && area !== undefined && current.annotations.vehicles !== String(area.vehicles)) {
        // Still out of balance: keep the count in the notifications current.
        const [fresh] = balanceAlerts([area], { at: current.startsAt, thresholds: config.thresholds })
        if (fresh !== undefined) await store.updateAnnotations(current.id, { ...current.annotations, summary: fresh.annotations.summary!, vehicles: fresh.annotations.vehicles! })
      }
    }
    if (opened + resolved > 0) this.#o.log.info({ areas: areas.length, opened, resolved }, 'bike-share balance changed')
    return { areas: areas.length, opened, resolved }
  }

  /** Forgets the trackers (they are rebuilt from the firing alerts). */
  reset(err?: unknown): void {
    if (err !== undefined) this.#o.log.error({ err: errorMessage(err) }, 'bike-share balance check failed')
    this.#trackers = undefined
  }
}
