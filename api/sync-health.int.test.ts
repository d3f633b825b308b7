import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import ExcelJS from 'exceljs'
import { type FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../lib/clock.ts'
import { parseLocal } from '../lib/local-time.ts'
import { type Metadata } from '../lib/metadata/db.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { parseAlertingConfig } from '../quality/alerting-config.ts'
import { LEDGER_COLUMNS } from '../quality/incident-export.ts'
import { QualityService } from '../quality/service.ts'
import { type HttpReceiver, httpReceiver, Lander } from '../quality/test-receivers.ts'
import { buildApp } from './app.ts'
import { backends, injectAsAdmin } from './test-stack.ts'

// The sync-health routes over both metadata stores: freshness, alerts,
// acknowledgement, silences, the incident ledger with its export, /metrics
// and the OpenAPI description.

const TZ = 'Asia/Shanghai'
const at = (local: string): number => parseLocal(`${local}:00`, TZ)!
const M = 60_000
// Changes are recorded under the authenticated caller (injectAsAdmin's token), not the `by` a body gives.
const ACTOR = 'token:test-admin'

let dir: string
let warehouse: Warehouse
let webhook: HttpReceiver

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'citysync-api-health-'))
  warehouse = await openWarehouse({ dataDir: dir })
  webhook = await httpReceiver()
})
afterAll(async () => {
  await webhook.close()
  await warehouse.close()
  rmSync(dir, { recursive: true, force: true })
})

for (const backend of await backends()) {
  describe.runIf(backend.run)(`sync-health API (${backend.name})`, () => {
    const clock = new ManualClock(at('2026-11-21 07:00'))
    const sourceId = `api-lots-${backend.name}`
    let metadata: Metadata
    let drop: () => Promise<void>
    let service: QualityService
    let app: FastifyInstance
    let lander: Lander

    beforeAll(async () => {
      ;({ metadata, drop } = await backend.open(clock))
      await metadata.sources.add({
        id: sourceId, kind: 'parking-lots', name: '横琴口岸停车场平台', operator: '横琴停车公司', district: '横琴', timezone: TZ,
        schedule: { every: '1m' }, freshness: { maxDelay: '2h' }, config: {},
      })
      await metadata.sources.setDesiredState(sourceId, 'deployed', 'test')
      const alerting = parseAlertingConfig({
        externalUrl: 'http://citysync.test',
        receivers: [{ name: 'ops', channels: [{ type: 'webhook', url: `${webhook.url}/${backend.name}` }] }],
        routes: [{ receivers: ['ops'], groupInterval: '0s' }],
        delivery: { attempts: 1 },
      })
      service = new QualityService({ metadata, warehouse, clock, log: pino({ level: 'silent' }), alerting })
      app = await buildApp({ metadata, warehouse, logger: pino({ level: 'silent' }), version: 'test', quality: service })
      await injectAsAdmin(app, metadata)
      lander = new Lander(warehouse, clock)
      for (let t = at('2026-11-21 08:00'); t <= at('2026-11-21 10:00'); t += 10 * M) {
        clock.set(t)
        await lander.land(sourceId, (p) => {
          for (const lotId of ['P001', 'P002']) p.record('ParkingOccupancy', { occurredAt: t, lotId, free: 12, capacity: 80, status: 'open' })
        })
      }
      clock.set(at('2026-11-21 12:01'))
      await service.runOnce()
      await service.deliveries.idle()
    })

    afterAll(async () => {
      await app.close()
      await service.stop()
      await lander.close()
      await metadata.close()
      await drop()
    })

    it('answers freshness per source and per entity', async () => {
      const list = await app.inject('/api/v1/freshness')
      expect(list.statusCode).toBe(200)
      const body = list.json<{ at: string; total: number; states: Record<string, number>; items: Record<string, unknown>[] }>()
      expect(body.at).toBe('2026-11-21T04:01:00.000Z')
      expect(body.states).toEqual({ LATE: 1 })
      expect(body.items).toEqual([
        {
          sourceId, name: '横琴口岸停车场平台', kind: 'parking-lots', operator: '横琴停车公司', district: '横琴',
          state: 'LATE', alertState: 'LATE', since: '2026-11-21T04:00:00.000Z', reason: 'no new data for 2h1m of expected time (limit 2h)',
          lastEventAt: '2026-11-21T02:00:00.000Z', lastArrivalAt: '2026-11-21T02:00:00.000Z',
          eventAgeSeconds: 7260, arrivalAgeSeconds: 7260, delaySeconds: 7260, maxDelaySeconds: 7200, expectedMissing: 26,
          entities: { total: 2, LATE: 2 },
        },
      ])
      expect((await app.inject('/api/v1/freshness?state=OK')).json()).toMatchObject({ total: 0, items: [] })

      const one = await app.inject(`/api/v1/freshness/${sourceId}?limit=1`)
      expect(one.statusCode).toBe(200)
      const detail = one.json<{ entities: { total: number; items: Record<string, unknown>[] }; alerts: { state: string }[] }>()
      expect(detail.entities.total).toBe(2)
      expect(detail.entities.items).toEqual([
        { id: 'P001', kind: 'car-park', state: 'LATE', alertState: 'LATE', since: '2026-11-21T04:00:00.000Z', reason: 'no new data for 2h1m of expected time (limit 2h)', lastEventAt: '2026-11-21T02:00:00.000Z', lastArrivalAt: '2026-11-21T02:00:00.000Z', delaySeconds: 7260, maxDelaySeconds: 7200 },
      ])
      expect(detail.alerts.map((a) => a.state)).toEqual(['LATE'])
      expect((await app.inject('/api/v1/freshness/no-such-source')).json()).toEqual({ code: 'CITYSYNC_ERR_SOURCE_NOT_FOUND', message: 'source no-such-source not found' })
    })

    it('evaluates on the spot in a process without the quality service', async () => {
      const apiOnly = await buildApp({ metadata, warehouse, logger: pino({ level: 'silent' }), version: 'test' })
      await injectAsAdmin(apiOnly, metadata)
      try {
        const body = (await apiOnly.inject('/api/v1/freshness')).json<{ items: { sourceId: string; state: string; alertState: string }[] }>()
        expect(body.items.find((i) => i.sourceId === sourceId)).toMatchObject({ state: 'LATE', alertState: 'LATE' })
        expect((await apiOnly.inject('/metrics')).statusCode).toBe(404)
      } finally {
        await apiOnly.close()
      }
    })

    it('lists, acknowledges and silences alerts', async () => {
      const firing = (await app.inject('/api/v1/alerts?status=firing')).json<{ total: number; items: { id: number; silencedBy: number | null; acknowledged: unknown }[] }>()
      expect(firing.total).toBe(1)
      const id = firing.items[0]!.id
      const ack = await app.inject({ method: 'POST', url: `/api/v1/alerts/${id}/ack`, payload: { by: '值班员 李工', comment: '已电话联系厂商' } })
      expect(ack.statusCode).toBe(200)
      expect(ack.json()).toMatchObject({ id, acknowledged: { by: ACTOR, at: '2026-11-21T04:01:00.000Z', comment: '已电话联系厂商' } })
      expect((await app.inject({ method: 'POST', url: '/api/v1/alerts/999999/ack', payload: { by: 'x' } })).json()).toEqual({ code: 'CITYSYNC_ERR_ALERT_NOT_FOUND', message: 'alert 999999 not found' })
      expect((await app.inject({ method: 'POST', url: `/api/v1/alerts/${id}/ack`, payload: { bogus: 1 } })).statusCode).toBe(400)

      const silence = await app.inject({ method: 'POST', url: '/api/v1/silences', payload: { matchers: { sourceId }, duration: '2h', reason: '厂商升级服务器', createdBy: '值班员 李工' } })
      expect(silence.statusCode).toBe(201)
      expect(silence.json()).toMatchObject({ matchers: { sourceId }, startsAt: '2026-11-21T04:01:00.000Z', endsAt: '2026-11-21T06:01:00.000Z', reason: '厂商升级服务器' })
      const silenceId = silence.json<{ id: number }>().id
      expect((await app.inject('/api/v1/alerts?status=firing')).json()).toMatchObject({ items: [{ id, silencedBy: silenceId }] })
      expect((await app.inject('/api/v1/silences?active=true')).json<{ items: unknown[] }>().items).toHaveLength(1)
      const past = await app.inject({ method: 'POST', url: '/api/v1/silences', payload: { matchers: { sourceId }, endsAt: '2026-11-20T00:00:00Z', reason: 'r', createdBy: 'x' } })
      expect(past.statusCode).toBe(400)
      expect(past.json()).toEqual({ code: 'CITYSYNC_ERR_API_VALIDATION', message: 'endsAt must be after startsAt and in the future' })
      const noMatcher = await app.inject({ method: 'POST', url: '/api/v1/silences', payload: { matchers: {}, duration: '1h', reason: 'r', createdBy: 'x' } })
      expect(noMatcher.statusCode).toBe(400)
      expect((await app.inject({ method: 'DELETE', url: `/api/v1/silences/${silenceId}` })).json()).toMatchObject({ id: silenceId, endsAt: '2026-11-21T04:01:00.000Z' })
      expect((await app.inject('/api/v1/alerts?status=firing')).json()).toMatchObject({ items: [{ id, silencedBy: null }] })
      const deliveries = (await app.inject('/api/v1/alerts/deliveries')).json<{ items: { outcome: string; kind: string; status: string }[] }>()
      expect(deliveries.items).toEqual([expect.objectContaining({ receiver: 'ops', channel: 'ops/webhook', kind: 'notify', status: 'firing', outcome: 'delivered', attempts: 1, alerts: 1 })])
    })

    it('keeps the incident ledger: handling, root cause required to close, export', async () => {
      const list = (await app.inject('/api/v1/incidents')).json<{ total: number; items: { id: number; version: number; status: string }[] }>()
      expect(list.total).toBe(1)
      const incident = list.items[0]!
      expect(incident).toMatchObject({ status: 'open', occurredAt: '2026-11-21T04:00:00.000Z', title: `${sourceId}: LATE`.replace(sourceId, '横琴口岸停车场平台') })

      const noCause = await app.inject({ method: 'PATCH', url: `/api/v1/incidents/${incident.id}`, payload: { by: '李工', status: 'closed' } })
      expect(noCause.statusCode).toBe(422)
      expect(noCause.json()).toEqual({ code: 'CITYSYNC_ERR_INCIDENT_ROOT_CAUSE', message: `incident ${incident.id} needs a root cause before it can be closed` })

      const handled = await app.inject({
        method: 'PATCH',
        url: `/api/v1/incidents/${incident.id}`,
        payload: { by: '值班员 李工', note: '厂商确认数据库磁盘写满，正在扩容', assignee: '李工', version: incident.version },
      })
      expect(handled.statusCode).toBe(200)
      const stale = await app.inject({ method: 'PATCH', url: `/api/v1/incidents/${incident.id}`, payload: { by: 'x', note: 'n', version: incident.version } })
      expect(stale.statusCode).toBe(409)
      expect(stale.json()).toMatchObject({ code: 'CITYSYNC_ERR_INCIDENT_CONFLICT' })

      // Data returns at 13:00; after the 15-minute hold the incident is recovered.
      clock.set(at('2026-11-21 13:00'))
      await lander.land(sourceId, (p) => {
        for (const lotId of ['P001', 'P002']) p.record('ParkingOccupancy', { occurredAt: at('2026-11-21 13:00'), lotId, free: 10, capacity: 80, status: 'open' })
      })
      for (const t of ['13:01', '13:16']) {
        clock.set(at(`2026-11-21 ${t}`))
        await service.runOnce()
        await service.deliveries.idle()
      }
      const closed = await app.inject({
        method: 'PATCH',
        url: `/api/v1/incidents/${incident.id}`,
        payload: { by: '值班员 李工', rootCause: '厂商数据库磁盘写满，推送服务停止', status: 'closed' },
      })
      expect(closed.statusCode).toBe(200)
      const detail = closed.json<{ incident: Record<string, unknown>; timeline: { actor: string; kind: string; message: string }[]; alerts: { status: string }[] }>()
      expect(detail.incident).toMatchObject({
        status: 'closed', recoveredAt: '2026-11-21T05:00:00.000Z', closedAt: '2026-11-21T05:16:00.000Z', durationSeconds: 3600,
        rootCause: '厂商数据库磁盘写满，推送服务停止', assignee: '李工', scope: { entities: ['P001', 'P002'], entityCount: 2, states: ['LATE'], expectedMissing: 26 },
      })
      expect(detail.timeline.map((e) => [e.actor, e.kind])).toEqual([
        ['citysync', 'opened'],
        ['citysync', 'alert'],
        ['citysync', 'notified'],
        [ACTOR, 'acknowledged'],
        [ACTOR, 'note'],
        [ACTOR, 'assigned'],
        ['citysync', 'alert'],
        ['citysync', 'recovered'],
        ['citysync', 'notified'],
        [ACTOR, 'root_cause'],
        [ACTOR, 'closed'],
      ])
      expect(detail.alerts.map((a) => a.status)).toEqual(['resolved'])

      const csv = await app.inject(`/api/v1/incidents?format=csv&sourceId=${sourceId}`)
      expect(csv.statusCode).toBe(200)
      expect(csv.headers['content-type']).toBe('text/csv; charset=utf-8')
      expect(csv.headers['content-disposition']).toBe('attachment; filename="incidents-2026-11-21.csv"')
      expect([...csv.rawPayload.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf])
      const lines = csv.rawPayload.subarray(3).toString('utf8').split('\r\n')
      expect(lines[0]).toBe('事件编号,数据源,运营方,区域,故障类型,发生时间,影响范围,缺失记录(估计),处置过程,恢复时间,持续时长,根本原因,状态,关联告警')
      expect(lines[1]).toMatch(
        new RegExp(`^${incident.id},横琴口岸停车场平台 \\(${sourceId}\\),横琴停车公司,横琴,LATE,2026-11-21 12:00:00,2 个：P001、P002,26,"2026-11-21 12:01:00 citysync: 横琴口岸停车场平台: LATE — no new data`),
      )
      expect(csv.body).toContain(',2026-11-21 13:00:00,1h,厂商数据库磁盘写满，推送服务停止,已关闭,#')

      const xlsx = await app.inject(`/api/v1/incidents?format=xlsx&sourceId=${sourceId}`)
      expect(xlsx.headers['content-type']).toBe('application/vnd.openxmlformats-officedocument.spreadsheetml.sheet')
      const wb = new ExcelJS.Workbook()
      await wb.xlsx.load(xlsx.rawPayload as unknown as ArrayBuffer)
      const ws = wb.worksheets[0]!
      expect(ws.name).toBe('数据中断事件台账')
      expect(ws.getRow(1).values).toEqual([undefined, ...LEDGER_COLUMNS.map((c) => c.header)])
      expect(ws.getRow(2).getCell(6).value).toBe('2026-11-21 12:00:00')
      expect(ws.getRow(2).getCell(12).value).toBe('厂商数据库磁盘写满，推送服务停止')
      expect(ws.rowCount).toBe(2)

      const again = await app.inject({ method: 'PATCH', url: `/api/v1/incidents/${incident.id}`, payload: { by: 'x', status: 'closed' } })
      expect(again.statusCode).toBe(409)
      expect((await app.inject('/api/v1/incidents/999999')).json()).toEqual({ code: 'CITYSYNC_ERR_INCIDENT_NOT_FOUND', message: 'incident 999999 not found' })
    })

    it('serves the freshness gauges and documents every route', async () => {
      const metrics = await app.inject('/metrics')
      expect(metrics.statusCode).toBe(200)
      expect(metrics.body).toContain(`citysync_source_state{source="${sourceId}",state="OK"} 1`)
      expect(metrics.body).toContain(`citysync_source_state{source="${sourceId}",state="LATE"} 0`)
      expect(metrics.body).toContain(`citysync_source_data_age_seconds{source="${sourceId}"} 960`)
      expect(metrics.body).toContain(`citysync_source_entities{source="${sourceId}",state="OK"} 2`)
      expect(metrics.body).toContain('citysync_alert_deliveries_total{channel="webhook",outcome="delivered"} 2')

      const spec = (await app.inject('/docs/json')).json<{ paths: Record<string, Record<string, { summary?: string; description?: string; responses?: Record<string, { content?: Record<string, { schema?: { examples?: unknown[]; $ref?: string } }> }> }>> }>()
      const routes: [string, string][] = [
        ['/api/v1/freshness', 'get'],
        ['/api/v1/freshness/{sourceId}', 'get'],
        ['/api/v1/alerts', 'get'],
        ['/api/v1/alerts/{id}/ack', 'post'],
        ['/api/v1/alerts/deliveries', 'get'],
        ['/api/v1/silences', 'get'],
        ['/api/v1/silences', 'post'],
        ['/api/v1/silences/{id}', 'delete'],
        ['/api/v1/incidents', 'get'],
        ['/api/v1/incidents/{id}', 'get'],
        ['/api/v1/incidents/{id}', 'patch'],
      ]
      for (const [path, method] of routes) {
        const op = spec.paths[path]?.[method]
        expect(op, `${method} ${path}`).toBeDefined()
        expect(op!.description, `${method} ${path}`).toContain('curl')
        expect(op!.responses?.['200'] ?? op!.responses?.['201'], `${method} ${path}`).toBeDefined()
      }
    })
  })
}
