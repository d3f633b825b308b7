import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../api/app.ts'
import { adminToken, backends, client, KEYS } from '../api/test-stack.ts'
import { ManualClock } from '../lib/clock.ts'
import { parseLocal } from '../lib/local-time.ts'
import { type Publisher } from '../pipelines/publisher.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { parseAlertingConfig } from './alerting-config.ts'
import { QualityService } from './service.ts'
import { type HttpReceiver, httpReceiver, Lander } from './test-receivers.ts'

// Bike-share balance alerts through the sync-health channels, on the real
// stack: station and vehicle reports land through the publisher, bus and sink
// into chDB; the quality service counts the areas every cycle, opens an alert
// per area and operator once it has been out of balance for openAfter,
// resolves it once back within the thresholds for closeAfter; the alerts are
// in GET /api/v1/alerts (real HTTP) and reach a real webhook, on SQLite and
// PostgreSQL.

const TZ = 'Asia/Shanghai'
const at = (local: string): number => parseLocal(`2026-11-21 ${local}:00`, TZ)!
const M = 60_000
const OP = 'nanshan-bikes'

// Three areas of 500 m: S1's (normal, 3 bikes), S2's (a station with none: shortage),
// and a square near 22.55, 113.92 where free-floating bikes pile up (accumulation at 6).
const THRESHOLDS = { cellMeters: 500, accumulationAt: 6, shortageAt: 0, windowMs: 10 * M }

let dir: string
let wh: Warehouse
let webhook: HttpReceiver

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'citysync-bike-alerts-'))
  wh = await openWarehouse({ dataDir: dir })
  webhook = await httpReceiver()
})
afterAll(async () => {
  await webhook.close()
  await wh.close()
  rmSync(dir, { recursive: true, force: true })
})

/** One report of the feed: the stations' counts, `free` bikes parked in the pile's square, `docked` more of them back at S2. */
function report(p: Publisher, t: number, s2: number, free: number, docked = 0): void {
  p.record('BikeStationStatus', { occurredAt: t, operatorId: OP, stationId: 'S1', vehiclesAvailable: 3, docksAvailable: 17, isInstalled: true, isRenting: true, isReturning: true })
  p.record('BikeStationStatus', { occurredAt: t, operatorId: OP, stationId: 'S2', vehiclesAvailable: s2, docksAvailable: 10 - s2, isInstalled: true, isRenting: true, isReturning: true })
  for (let i = 0; i < free + docked; i++) {
    const atS2 = i >= free
    p.record('BikeVehicleStatus', {
      occurredAt: t, operatorId: OP, vehicleId: `B${i}`, lat: atS2 ? 22.6 : 22.55 + i * 0.0001, lon: atS2 ? 113.95 : 113.92,
      stationId: atS2 ? 'S2' : null, vehicleTypeId: null, isReserved: false, isDisabled: false,
    })
  }
}

interface AlertJson {
  id: number
  sourceId: string
  entityId: string
  entityKind: string
  state: string
  status: string
  labels: Record<string, string>
  annotations: Record<string, string>
  startsAt: string
  endsAt: string | null
  incidentId: number | null
}

interface Hook {
  status: string
  alerts: { status: string; labels: Record<string, string>; annotations: Record<string, string>; startsAt: string; generatorURL: string }[]
}

const all = await backends()

describe.each(all)('bike-share balance alerts ($name)', (backend) => {
  it.skipIf(!backend.run)('opens one alert per area after openAfter, lists it, sends it, and resolves it after closeAfter back within thresholds', async () => {
    const clock = new ManualClock(at('07:00'))
    // One source per backend: both runs land into the same warehouse.
    const SOURCE = `nanshan-bike-${backend.name}`
    const { metadata, drop } = await backend.open(clock)
    const path = `/am/${backend.name}`
    const alerting = parseAlertingConfig({
      externalUrl: 'http://citysync.test',
      receivers: [{ name: 'bikes', channels: [{ type: 'webhook', url: `${webhook.url}${path}` }] }],
      routes: [{ match: { entityKind: 'area', state: ['ACCUMULATION', 'SHORTAGE'] }, receivers: ['bikes'], groupBy: ['sourceId'], groupInterval: '0s', repeatInterval: '4h', sendResolved: true }],
      delivery: { attempts: 2, backoff: '10ms', timeout: '5s' },
    })
    const service = new QualityService({
      metadata, warehouse: wh, clock, log: pino({ level: 'silent' }), alerting, reports: false,
      bikeBalance: { thresholds: THRESHOLDS, openAfterMs: 5 * M, closeAfterMs: 10 * M },
    })
    const lander = new Lander(wh, clock)
    const app = await buildApp({ metadata, warehouse: wh, logger: pino({ level: 'silent' }), version: 'test', quality: service, auth: { encKey: KEYS.encKey, clock } })
    const base = await app.listen({ port: 0, host: '127.0.0.1' })
    const get = client(base, [], await adminToken(metadata, clock))
    const hooks = (): Hook[] => webhook.requests.filter((r) => r.path === path).map((r) => r.body as Hook)
    const cycle = async (): Promise<void> => {
      await service.runOnce()
      await service.deliveries.idle()
    }
    const balanceAlerts = async (status: string): Promise<AlertJson[]> => {
      const r = await get('GET', `/api/v1/alerts?status=${status}&sourceId=${SOURCE}`)
      expect(r.status).toBe(200)
      return (r.json as { items: AlertJson[] }).items.filter((a) => a.entityKind === 'area').sort((a, b) => a.state.localeCompare(b.state))
    }
    try {
      await metadata.sources.add({
        id: SOURCE, kind: 'bike-share', name: '南山共享单车', operator: '城市单车', district: '南山区', timezone: TZ,
        schedule: { every: '1m' }, freshness: { maxDelay: '2h' }, config: { gbfsUrl: 'http://127.0.0.1:9/gbfs.json' },
      })
      // Deployed: a paused source is in maintenance, and its alerts are kept but not sent.
      await metadata.sources.setDesiredState(SOURCE, 'deployed', 'test')
      await lander.land(SOURCE, (p) => {
        p.record('BikeStation', { occurredAt: at('07:00'), operatorId: OP, stationId: 'S1', name: '科技园', lat: 22.5, lon: 113.9, capacity: 20, coordSystem: 'WGS84' })
        p.record('BikeStation', { occurredAt: at('07:00'), operatorId: OP, stationId: 'S2', name: '深大', lat: 22.6, lon: 113.95, capacity: 10, coordSystem: 'WGS84' })
      })

      // 08:00 S2 empties and bikes pile up: seen, not yet confirmed.
      for (let t = at('08:00'); t <= at('08:04'); t += M) {
        clock.set(t)
        await lander.land(SOURCE, (p) => report(p, t, 0, 7))
        await cycle()
      }
      expect(await balanceAlerts('firing')).toEqual([])
      expect(hooks()).toEqual([])

      // 08:05: out of balance for openAfter — one alert per area, starting when it was first seen.
      clock.set(at('08:05'))
      await lander.land(SOURCE, (p) => report(p, at('08:05'), 0, 7))
      await cycle()
      const firing = await balanceAlerts('firing')
      expect(firing.map((a) => [a.state, a.labels.alertname, a.labels.operator, a.labels.district, a.annotations.vehicles, a.startsAt, a.incidentId])).toEqual([
        ['ACCUMULATION', 'BikeAccumulation', OP, '南山区', '7', new Date(at('08:00')).toISOString(), null],
        ['SHORTAGE', 'BikeShortage', OP, '南山区', '0', new Date(at('08:00')).toISOString(), null],
      ])
      expect(firing.every((a) => a.sourceId === SOURCE && /^-?\d+:-?\d+$/.test(a.entityId))).toBe(true)
      expect(new Set(firing.map((a) => a.entityId)).size).toBe(2)
      expect(hooks()).toHaveLength(1)
      expect(hooks()[0]).toMatchObject({ status: 'firing' })
      expect(hooks()[0]!.alerts.map((a) => [a.labels.alertname, a.labels.entityKind, a.annotations.threshold]).sort()).toEqual([['BikeAccumulation', 'area', '≥ 6'], ['BikeShortage', 'area', '≤ 0']])
      expect(hooks()[0]!.alerts[0]!.generatorURL).toBe(`http://citysync.test/api/v1/analytics/bike/balance?source=${SOURCE}`)
      // The state filter of the list knows the balance states.
      const listed = await get('GET', '/api/v1/alerts?state=SHORTAGE')
      expect((listed.json as { items: AlertJson[] }).items.map((a) => a.entityId)).toEqual([firing[1]!.entityId])

      // Still out of balance, with more bikes: the same alerts, their count kept current, nothing new sent.
      clock.set(at('08:10'))
      await lander.land(SOURCE, (p) => report(p, at('08:10'), 0, 9))
      await cycle()
      expect((await balanceAlerts('firing')).map((a) => [a.id, a.annotations.vehicles])).toEqual([[firing[0]!.id, '9'], [firing[1]!.id, '0']])
      expect(hooks()).toHaveLength(1)

      // 08:15 rebalanced: 7 bikes of the pile are docked (S2 shows 4 available). Back within thresholds for less than closeAfter resolves nothing...
      for (let t = at('08:15'); t <= at('08:20'); t += 5 * M) {
        clock.set(t)
        await lander.land(SOURCE, (p) => report(p, t, 4, 2, 7))
        await cycle()
      }
      expect(await balanceAlerts('firing')).toHaveLength(2)
      // ...closeAfter (10 min) of it does: both resolve as of 08:15, and the resolution is sent.
      clock.set(at('08:25'))
      await lander.land(SOURCE, (p) => report(p, at('08:25'), 4, 2, 7))
      await cycle()
      expect(await balanceAlerts('firing')).toEqual([])
      const resolved = await balanceAlerts('resolved')
      expect(resolved.map((a) => [a.state, a.endsAt, a.annotations.resolution])).toEqual([
        ['ACCUMULATION', new Date(at('08:15')).toISOString(), 'back within thresholds: 2 vehicles'],
        ['SHORTAGE', new Date(at('08:15')).toISOString(), 'back within thresholds: 4 vehicles'],
      ])
      expect(hooks()).toHaveLength(2)
      expect(hooks()[1]).toMatchObject({ status: 'resolved' })
      expect(hooks()[1]!.alerts.map((a) => a.status)).toEqual(['resolved', 'resolved'])

      // The gauges count them by state while they fire.
      const metrics = await service.metrics.registry.getSingleMetricAsString('citysync_alerts_firing')
      expect(metrics).toContain('citysync_alerts_firing{state="ACCUMULATION"} 0')
      // Freshness is untouched by them: the source is fresh, its alerts are the balance ones only.
      expect(service.latest!.results.find((r) => r.ctx.id === SOURCE)!.verdict.state).toBe('OK')
      expect((await service.store.listAlerts({ sourceId: SOURCE })).items.every((a) => a.entityKind === 'area')).toBe(true)
    } finally {
      await app.close()
      await service.stop()
      await lander.close()
      await metadata.close()
      await drop()
    }
  })
})
