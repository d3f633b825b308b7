import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../lib/clock.ts'
import { parseLocal } from '../lib/local-time.ts'
import { openMetadata, type Metadata } from '../lib/metadata/db.ts'
import { type SourceConfig } from '../lib/source-config.ts'
import { type Publisher } from '../pipelines/publisher.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { parseAlertingConfig } from './alerting-config.ts'
import { QualityService } from './service.ts'
import { type HttpReceiver, httpReceiver, Lander } from './test-receivers.ts'

// The sync-health service end to end: events land through the real
// publisher, bus and sink into chDB; the service reads the ingest log, the
// heartbeats, the dead letters and the event tables, evaluates, records
// alerts and incidents in the metadata store and notifies a real webhook.
// Time is a ManualClock, moved minute by minute where it matters.

const TZ = 'Asia/Shanghai'
const at = (local: string): number => parseLocal(`${local}:00`, TZ)!
const M = 60_000
const iso = (ms: number): string => new Date(ms).toISOString()

let dir: string
let wh: Warehouse
let webhook: HttpReceiver

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'citysync-quality-'))
  wh = await openWarehouse({ dataDir: join(dir, 'wh') })
  webhook = await httpReceiver()
})
afterAll(async () => {
  await webhook.close()
  await wh.close()
  rmSync(dir, { recursive: true, force: true })
})

interface Scenario {
  clock: ManualClock
  metadata: Metadata
  service: QualityService
  lander: Lander
  /** Runs one cycle at the clock's time and waits for its deliveries. */
  cycle(): Promise<Awaited<ReturnType<QualityService['runOnce']>>>
  /** Cycles every `stepMs` until `to` (inclusive). */
  until(to: number, stepMs?: number): Promise<number>
  close(): Promise<void>
}

let n = 0
async function scenario(start: number, sources: Partial<SourceConfig>[]): Promise<Scenario> {
  const clock = new ManualClock(start - 86_400_000)
  const metadata = await openMetadata({ dataDir: join(dir, `meta-${++n}`), clock })
  for (const s of sources) {
    await metadata.sources.add({ kind: 'parking-lots', name: s.id!, operator: '横琴停车公司', district: '横琴', timezone: TZ, schedule: { every: '1m' }, freshness: { maxDelay: '2h' }, config: {}, ...s } as SourceConfig)
    await metadata.sources.setDesiredState(s.id!, 'deployed', 'test')
  }
  clock.set(start)
  const alerting = parseAlertingConfig({
    externalUrl: 'http://citysync.test',
    receivers: [{ name: 'ops', channels: [{ type: 'webhook', url: `${webhook.url}/am/${n}` }] }],
    routes: [{ receivers: ['ops'], groupInterval: '0s', repeatInterval: '4h' }],
    delivery: { attempts: 2, backoff: '10ms', timeout: '5s' },
  })
  const service = new QualityService({ metadata, warehouse: wh, clock, log: pino({ level: 'silent' }), alerting })
  const lander = new Lander(wh, clock)
  const cycle = async (): Promise<Awaited<ReturnType<QualityService['runOnce']>>> => {
    const s = await service.runOnce()
    await service.deliveries.idle()
    return s
  }
  return {
    clock,
    metadata,
    service,
    lander,
    cycle,
    async until(to, stepMs = M) {
      let transitions = 0
      for (; clock.now() <= to; clock.advance(stepMs)) transitions += (await cycle()).transitions
      clock.set(to)
      return transitions
    },
    async close() {
      await service.stop()
      await lander.close()
      await metadata.close()
    },
  }
}

function occupancy(p: Publisher, lots: string[], t: number): void {
  for (const lotId of lots) p.record('ParkingOccupancy', { occurredAt: t, lotId, free: 40, capacity: 100, status: 'open' })
}

function hooks(path: string): { status: string; alerts: { status: string; labels: Record<string, string>; startsAt: string; endsAt: string }[] }[] {
  return webhook.requests.filter((r) => r.path === path).map((r) => r.body as never)
}

describe('quality service over chDB and the metadata store', () => {
  it('alerts a source that stopped at 10:00 at 12:00 (within one cycle), ignores backfill, and resolves when data returns', async () => {
    const s = await scenario(at('2026-11-21 08:00'), [{ id: 'stop-lots' }])
    const path = `/am/${n}`
    try {
      // Data every 10 minutes until 10:00, from the vendor's clock, landing as it happens.
      for (let t = at('2026-11-21 08:00'); t <= at('2026-11-21 10:00'); t += 10 * M) {
        s.clock.set(t)
        await s.lander.land('stop-lots', (p) => occupancy(p, ['P001', 'P002'], t))
      }
      s.clock.set(at('2026-11-21 11:00'))
      await s.cycle()
      expect(s.service.latest!.results[0]!.verdict).toMatchObject({ state: 'OK', lastEventAt: at('2026-11-21 10:00'), delayMs: 60 * M })

      s.clock.set(at('2026-11-21 11:55'))
      expect(await s.until(at('2026-11-21 12:00'))).toBe(0)
      expect(hooks(path)).toEqual([])
      s.clock.advance(M)
      const alerted = await s.cycle()
      expect(alerted).toMatchObject({ transitions: 1, firing: 1, notifications: 1 })
      const [alert] = (await s.service.store.listAlerts({ status: 'firing' })).items
      expect(alert).toMatchObject({ sourceId: 'stop-lots', entityId: null, state: 'LATE', startsAt: at('2026-11-21 12:00') })
      expect(hooks(path)).toHaveLength(1)
      expect(hooks(path)[0]).toMatchObject({ status: 'firing', alerts: [{ status: 'firing', labels: { alertname: 'SourceLate', sourceId: 'stop-lots', state: 'LATE' }, startsAt: iso(at('2026-11-21 12:00')), endsAt: '0001-01-01T00:00:00Z' }] })
      const incident = await s.service.store.getIncident(alert!.incidentId!)
      expect(incident).toMatchObject({ status: 'open', occurredAt: at('2026-11-21 12:00'), title: 'stop-lots: LATE' })
      expect(incident.scope).toMatchObject({ entities: ['P001', 'P002'], entityCount: 2, states: ['LATE'] })
      // 26 live rows landed from 08:00 to 10:00 (13 reports of 2 lots): at that rate, 26 are missing after 2h01m.
      expect(incident.scope.expectedMissing).toBe(26)

      // 补传: the vendor uploads passages of 10:00-11:30 after the fact. Live data is still missing.
      s.clock.set(at('2026-11-21 12:30'))
      await s.lander.land('stop-lots', (p) => {
        for (let i = 0; i < 10; i++) {
          p.record('ParkingPassage', { lotId: 'P001', recordNo: `BF${i}`, direction: 'entry', gateId: 'G1', plate: '粤C12345', plateType: 'blue', isBackfill: true, feeCents: null, entryAt: null, occurredAt: at('2026-11-21 10:00') + i * 9 * M })
        }
      })
      await s.cycle()
      expect(s.service.latest!.results[0]!.verdict).toMatchObject({ state: 'LATE', lastEventAt: at('2026-11-21 10:00') })
      expect((await s.service.store.listAlerts({ status: 'firing' })).total).toBe(1)

      // Live data returns at 13:00; the recovery must hold 15 minutes.
      s.clock.set(at('2026-11-21 13:00'))
      await s.lander.land('stop-lots', (p) => occupancy(p, ['P001', 'P002'], at('2026-11-21 13:00')))
      s.clock.set(at('2026-11-21 13:01'))
      expect(await s.until(at('2026-11-21 13:14'))).toBe(0)
      s.clock.advance(M)
      expect(await s.cycle()).toMatchObject({ transitions: 1, firing: 0, notifications: 1 })
      const resolved = hooks(path)[1]!
      expect(resolved).toMatchObject({ status: 'resolved', alerts: [{ status: 'resolved', startsAt: iso(at('2026-11-21 12:00')), endsAt: iso(at('2026-11-21 13:00')) }] })
      const after = await s.service.store.getIncident(incident.id)
      expect(after).toMatchObject({ status: 'recovered', recoveredAt: at('2026-11-21 13:00') })
      const timeline = await s.service.store.incidentEvents(incident.id)
      expect(timeline.map((e) => e.kind)).toEqual(['opened', 'alert', 'notified', 'alert', 'recovered', 'notified'])
      expect(timeline[0]!.message).toBe('stop-lots: LATE — no new data for 2h1m of expected time (limit 2h)')
      expect(timeline[2]!.message).toBe('alert to ops via ops/webhook: delivered')
      expect(timeline[4]!.message).toBe('recovered at 2026-11-21T05:00:00.000Z after 1h')
    } finally {
      await s.close()
    }
  })

  it('raises nothing overnight for a car park closed 22:00-07:00 and alerts at 09:00 if it is still silent', async () => {
    const s = await scenario(at('2026-11-21 21:00'), [{ id: 'night-lots', freshness: { maxDelay: '2h', calendar: { openingHours: 'Mo-Su 07:00-22:00' } } }])
    const path = `/am/${n}`
    try {
      for (const t of [at('2026-11-21 21:00'), at('2026-11-21 21:30'), at('2026-11-21 21:59')]) {
        s.clock.set(t)
        await s.lander.land('night-lots', (p) => occupancy(p, ['P101'], t))
      }
      s.clock.set(at('2026-11-21 22:00'))
      const quiet: string[] = []
      for (; s.clock.now() <= at('2026-11-22 06:30'); s.clock.advance(30 * M)) {
        expect((await s.cycle()).transitions).toBe(0)
        quiet.push(s.service.latest!.results[0]!.verdict.state)
      }
      expect(new Set(quiet)).toEqual(new Set(['QUIET']))
      // Open again at 07:00 with one minute on the delay clock from last night.
      s.clock.set(at('2026-11-22 07:00'))
      expect(await s.until(at('2026-11-22 08:50'), 10 * M)).toBe(0)
      s.clock.set(at('2026-11-22 08:51'))
      expect(await s.until(at('2026-11-22 08:59'))).toBe(0)
      expect(s.service.latest!.results[0]!.verdict).toMatchObject({ state: 'OK', delayMs: 120 * M })
      s.clock.set(at('2026-11-22 09:00'))
      expect(await s.cycle()).toMatchObject({ transitions: 1, firing: 1 })
      expect((await s.service.store.listAlerts({ status: 'firing' })).items[0]).toMatchObject({ state: 'LATE', startsAt: at('2026-11-22 08:59') })
      expect(hooks(path)).toHaveLength(1)
    } finally {
      await s.close()
    }
  })

  it('keeps a ferry quiet after its last sailing (timetable read from the landed sailings)', async () => {
    const s = await scenario(at('2026-11-21 20:00'), [
      { id: 'ferry-jz', kind: 'ferry-ticketing', name: '九洲港客运', config: { timetable: { source: 'sailings', graceMs: 90 * M } } },
    ])
    try {
      await s.lander.land('ferry-jz', (p) => {
        for (const day of ['2026-11-21', '2026-11-22']) {
          for (const time of ['07:30', '12:00', '17:30', '21:30']) {
            p.record('FerrySailing', {
              occurredAt: at('2026-11-21 19:00'),
              sailingId: `JZ-${day}-${time}`,
              terminalId: 'JZG',
              route: '九洲港-香港',
              vesselName: null,
              scheduledDeparture: at(`${day} ${time}`),
              actualDeparture: null,
              capacity: 300,
              status: 'scheduled',
            })
          }
        }
      })
      s.clock.set(at('2026-11-21 21:40'))
      await s.lander.land('ferry-jz', (p) => p.record('FerryTicket', { occurredAt: at('2026-11-21 21:40'), ticketId: 'T1', sailingId: 'JZ-2026-11-21-21:30', terminalId: 'JZG', ticketType: 'adult', priceCents: 16000, channel: 'app', status: 'sold' }))
      // After the last sailing (21:30) plus 90 minutes, silence is expected until two hours before 07:30.
      expect(await s.until(at('2026-11-22 05:30'), 30 * M)).toBe(0)
      const r = s.service.latest!.results[0]!
      expect(r.verdict).toMatchObject({ state: 'QUIET', delayMs: 80 * M })
      expect(r.entities.map((e) => [e.id, e.kind, e.verdict.state])).toEqual([['JZG', 'terminal', 'QUIET']])
      expect((await s.service.store.listIncidents()).total).toBe(0)
    } finally {
      await s.close()
    }
  })

  it('calls a feed whose timestamps run 3 hours ahead SKEWED, and a source that answers with nothing new STALLED', async () => {
    const s = await scenario(at('2026-11-21 10:00'), [{ id: 'skew-lots' }, { id: 'stall-lots' }])
    try {
      await s.lander.land('skew-lots', (p) => occupancy(p, ['P201'], at('2026-11-21 09:55')))
      await s.lander.land('stall-lots', (p) => occupancy(p, ['P301'], at('2026-11-21 07:00')))
      s.clock.set(at('2026-11-21 10:05'))
      // The sink refuses the future timestamps; nothing new lands for skew-lots.
      await s.lander.land('skew-lots', (p) => occupancy(p, ['P201', 'P202'], at('2026-11-21 13:05')))
      // stall-lots: the connector runs and the upstream answers, but with nothing new.
      await s.lander.land('stall-lots', (p) => p.heartbeat({ occurredAt: at('2026-11-21 10:05'), status: 'empty', itemsRead: 0, latencyMs: 120, message: null }))
      await s.cycle()
      const states = Object.fromEntries(s.service.latest!.results.map((r) => [r.ctx.id, [r.verdict.state, r.verdict.reason]]))
      expect(states).toEqual({
        'skew-lots': ['SKEWED', '2 records rejected for future timestamps, 1 landed'],
        'stall-lots': ['STALLED', 'no new data for 3h5m of expected time; the upstream answers but sends nothing new'],
      })
      const firing = (await s.service.store.listAlerts({ status: 'firing' })).items.map((a) => [a.sourceId, a.state]).sort()
      expect(firing).toEqual([
        ['skew-lots', 'SKEWED'],
        ['stall-lots', 'STALLED'],
      ])
    } finally {
      await s.close()
    }
  })
})
