// Prometheus gauges of sync health, on the process's registry (or one of
// their own): the quality process serves it (`citysync quality
// --metrics-port`), and the API serves it at GET /metrics where the quality
// service runs in the same process. Names: docs/operations.md, Monitoring.

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { FRESHNESS_STATES, type SourceResult } from './evaluate.ts'
import { type Alert, ALERT_STATES } from './store.ts'

export class QualityMetrics {
  readonly registry: Registry
  readonly dataAge: Gauge
  readonly arrivalAge: Gauge
  readonly delay: Gauge
  readonly maxDelay: Gauge
  readonly state: Gauge
  readonly entities: Gauge
  readonly alertsFiring: Gauge
  readonly cycleSeconds: Gauge
  readonly lastCycle: Gauge
  readonly deliveries: Counter

  /** On `registry` when given (shared with the process's other metrics), else on a registry of its own. */
  constructor(options: { processMetrics?: boolean; registry?: Registry } = {}) {
    this.registry = options.registry ?? new Registry()
    const registers = [this.registry]
    if (options.processMetrics === true) collectDefaultMetrics({ register: this.registry, prefix: 'citysync_' })
    this.dataAge = new Gauge({ name: 'citysync_source_data_age_seconds', help: 'Age of the newest live event of a source (event time)', labelNames: ['source'], registers })
    this.arrivalAge = new Gauge({ name: 'citysync_source_arrival_age_seconds', help: 'Time since the newest live rows of a source landed', labelNames: ['source'], registers })
    this.delay = new Gauge({ name: 'citysync_source_delay_seconds', help: 'The delay clock: expected time since the newest live event (calendar-aware)', labelNames: ['source'], registers })
    this.maxDelay = new Gauge({ name: 'citysync_source_max_delay_seconds', help: "A source's maxDelay", labelNames: ['source'], registers })
    this.state = new Gauge({ name: 'citysync_source_state', help: 'Freshness state of a source: 1 for the current state, 0 for the others', labelNames: ['source', 'state'], registers })
    this.entities = new Gauge({ name: 'citysync_source_entities', help: 'Entities (car parks, stations, terminals) of a source by freshness state', labelNames: ['source', 'state'], registers })
    this.alertsFiring = new Gauge({ name: 'citysync_alerts_firing', help: 'Firing alerts by state (freshness: LATE, STALLED, STOPPED, SKEWED; bike-share areas: ACCUMULATION, SHORTAGE)', labelNames: ['state'], registers })
    this.cycleSeconds = new Gauge({ name: 'citysync_quality_cycle_seconds', help: 'Duration of the last freshness evaluation cycle', registers })
    this.lastCycle = new Gauge({ name: 'citysync_quality_last_cycle_timestamp_seconds', help: 'When the last evaluation cycle ran', registers })
    this.deliveries = new Counter({ name: 'citysync_alert_deliveries_total', help: 'Alert notifications by channel type and outcome', labelNames: ['channel', 'outcome'], registers })
  }

  update(now: number, results: readonly SourceResult[], firing: readonly Alert[], cycleMs: number): void {
    for (const g of [this.dataAge, this.arrivalAge, this.delay, this.maxDelay, this.state, this.entities, this.alertsFiring]) g.reset()
    for (const r of results) {
      const source = r.ctx.id
      const v = r.verdict
      if (v.eventAgeMs !== null) this.dataAge.set({ source }, v.eventAgeMs / 1000)
      if (v.arrivalAgeMs !== null) this.arrivalAge.set({ source }, v.arrivalAgeMs / 1000)
      this.delay.set({ source }, v.delayMs / 1000)
      this.maxDelay.set({ source }, v.maxDelayMs / 1000)
      for (const s of FRESHNESS_STATES) {
        this.state.set({ source, state: s }, s === v.state ? 1 : 0)
        if (r.entities.length > 0) this.entities.set({ source, state: s }, r.entityCounts[s])
      }
    }
    const byState = new Map<string, number>()
    for (const a of firing) byState.set(a.state, (byState.get(a.state) ?? 0) + 1)
    for (const s of ALERT_STATES) this.alertsFiring.set({ state: s }, byState.get(s) ?? 0)
    this.cycleSeconds.set(cycleMs / 1000)
    this.lastCycle.set(now / 1000)
  }
}
