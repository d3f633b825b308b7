import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import ExcelJS from 'exceljs'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../api/app.ts'
import { injectAsAdmin } from '../../api/test-stack.ts'
import { type ParkingLotsCursor, parkingLotsConnector } from '../../connectors/parking-lots/connector.ts'
import { ParkingSimulator } from '../../connectors/parking-lots/simulator.ts'
import { type Ctx, type SourceMessage } from '../../connectors/sdk/connector.ts'
import { requireService } from '../../infra/test/services.ts'
import { ManualClock } from '../../lib/clock.ts'
import { formatLocal, parseLocal } from '../../lib/local-time.ts'
import { openMetadata, type Metadata } from '../../lib/metadata/db.ts'
import { openWarehouse } from '../../pipelines/warehouse/open.ts'
import { type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { SyncHealthStore } from '../store.ts'
import { Lander } from '../test-receivers.ts'
import { type FigureRow, type SyncReport } from './model.ts'
import { findChromium, htmlToPdf, renderInChromium } from './pdf.ts'
import { reportCsv, reportHtml, reportXlsx } from './render.ts'
import { Reports } from './reports.ts'
import { ReportScheduler } from './scheduler.ts'

// A month of data through the real pipeline into chDB, with outages whose
// effect is known, and every figure of the report checked against ground
// truth computed here, independently, from what was sent and when:
//
// sim-lots: the car-park simulator over HTTP, read every hour by the real
//   connector. HQ04 is open 07:00-22:00 (its own opening hours), the others
//   24/7. 2026-11-05 09:00-13:00 the vendor API answers 503 (data kept,
//   delivered late at 14:00); 2026-11-20 02:00-04:00 it is down again and at
//   04:00 the operator skips the cursor past what was missed (data lost).
// push-lots: two car parks reporting every 5 minutes, 10 s after the fact.
//   B1 sends nothing 2026-11-10 10:00-13:00 and stops for good on 11-30 at
//   21:00; B2's reports of 2026-11-15 08:00-09:00 are rejected; the source's
//   calendar has a maintenance window 2026-11-25 02:00-04:00 in which both
//   are silent.

const TZ = 'Asia/Shanghai'
const at = (local: string): number => parseLocal(`${local}:00`, TZ)!
const S = 1000
const M = 60_000
const H = 3_600_000
const BUCKET = 5 * M
const LIMIT = 2 * H
const FROM = at('2026-11-01 00:00')
const TO = at('2026-12-01 00:00')
const NOW = at('2026-12-01 02:00')

let dir: string
let wh: Warehouse
let metadata: Metadata
let clock: ManualClock
let sim: ParkingSimulator
let reports: Reports

/** Everything that landed: event time, arrival, entity; `live` false for backfill. */
interface Landed {
  source: string
  entity: string | null
  occ: number
  arr: number
}
const landed: Landed[] = []
const rejectedB2: number[] = []

function lotHoursOf(entity: string): [number, number] | null {
  return entity === 'HQ04' ? [7 * 60, 22 * 60] : null
}
const MAINT: [number, number] = [at('2026-11-25 02:00'), at('2026-11-25 04:00')]

/** Local minute of the day in Asia/Shanghai (UTC+8, no DST). */
const minuteOfDay = (t: number): number => Math.floor((((t + 8 * H) % 86_400_000) + 86_400_000) % 86_400_000 / M)

function expectedAt(t: number, hours: [number, number] | null, maintenance: boolean): boolean {
  if (maintenance && t >= MAINT[0] && t < MAINT[1]) return false
  if (hours === null) return true
  const m = minuteOfDay(t)
  return m >= hours[0] && m < hours[1]
}

/** Expected ms in [a, b), second by second where it matters. */
function expectedMs(a: number, b: number, hours: [number, number] | null, maintenance: boolean): number {
  if (b <= a) return 0
  if (hours === null && !maintenance) return b - a
  let n = 0
  for (let t = a; t < b; t += S) if (expectedAt(t, hours, maintenance)) n += S
  return n
}

interface Truth {
  records: number
  daysActive: number
  expected: number
  good: number
  bad: number
  missing: number
  maintenance: number
  quiet: number
  delays: number
  delayMinutes: number
  longestGapMinutes: number
}

const round2 = (x: number): number => Math.round(x * 100) / 100

/** The figures of one clock (an entity, or a whole source when `events` are all of its rows), computed the plain way. */
function truthOf(events: readonly Landed[], hours: [number, number] | null, maintenance: boolean, bad: readonly number[] = []): Truth {
  const inMonth = events.filter((e) => e.occ >= FROM && e.occ < TO)
  // Buckets.
  const goodBuckets = new Set(inMonth.map((e) => Math.floor((e.occ - FROM) / BUCKET)))
  const badBuckets = new Set(bad.filter((t) => t >= FROM && t < TO).map((t) => Math.floor((t - FROM) / BUCKET)))
  let expected = 0
  let good = 0
  let badN = 0
  let maint = 0
  const n = (TO - FROM) / BUCKET
  for (let i = 0; i < n; i++) {
    const t = FROM + i * BUCKET
    if (maintenance && t >= MAINT[0] && t < MAINT[1]) {
      maint++
      continue
    }
    if (!expectedAt(t, hours, false)) continue
    expected++
    if (goodBuckets.has(i)) good++
    else if (badBuckets.has(i)) badN++
  }
  const days = new Set(inMonth.map((e) => formatLocal(e.occ, TZ).slice(0, 10)))
  // Delays: second by second, the delay is the expected time since the newest event that had arrived.
  const byArrival = [...events].sort((a, b) => a.arr - b.arr)
  let k = 0
  let latest = Number.NEGATIVE_INFINITY
  while (k < byArrival.length && byArrival[k]!.arr <= FROM) latest = Math.max(latest, byArrival[k++]!.occ)
  let delay = expectedMs(latest, FROM, hours, maintenance)
  let lateSeconds = 0
  let episodes = 0
  let inEpisode = false
  for (let t = FROM; t < TO; t += S) {
    let moved = false
    while (k < byArrival.length && byArrival[k]!.arr <= t) {
      if (byArrival[k]!.occ > latest) {
        latest = byArrival[k]!.occ
        moved = true
      }
      k++
    }
    if (moved) delay = expectedMs(latest, t, hours, maintenance)
    if (delay >= LIMIT) {
      lateSeconds++
      if (!inEpisode) episodes++
      inEpisode = true
    } else inEpisode = false
    if (expectedAt(t, hours, maintenance)) delay += S
  }
  // Gaps: between consecutive live events with a whole empty bucket between them, and at the month's edges.
  const times = [...new Set(events.map((e) => e.occ))].sort((a, b) => a - b)
  const before = times.filter((t) => t < FROM)
  const inside = times.filter((t) => t >= FROM && t < TO)
  let longest = 0
  const gap = (a: number, b: number): void => {
    longest = Math.max(longest, expectedMs(Math.max(a, FROM), Math.min(b, TO), hours, maintenance))
  }
  gap(before.length > 0 ? before[before.length - 1]! : FROM, inside[0] ?? TO)
  for (let i = 0; i + 1 < inside.length; i++) {
    const a = inside[i]!
    const b = inside[i + 1]!
    if (Math.floor(b / BUCKET) - Math.floor(a / BUCKET) >= 2) gap(a, b)
  }
  if (inside.length > 0) gap(inside[inside.length - 1]!, TO)
  return {
    records: inMonth.length,
    daysActive: days.size,
    expected,
    good,
    bad: badN,
    missing: expected - good - badN,
    maintenance: maint,
    quiet: n - expected - maint,
    delays: episodes,
    delayMinutes: round2((lateSeconds * S) / M),
    longestGapMinutes: round2(longest / M),
  }
}

function figures(r: FigureRow): Truth {
  return {
    records: r.records,
    daysActive: r.daysActive,
    expected: r.buckets.expected,
    good: r.buckets.good,
    bad: r.buckets.bad,
    missing: r.buckets.missing,
    maintenance: r.buckets.maintenance,
    quiet: r.buckets.quiet,
    delays: r.delays,
    delayMinutes: r.delayMinutes,
    longestGapMinutes: r.longestGapMinutes,
  }
}

async function readAll(cursor: ParkingLotsCursor | undefined, ctx: Ctx): Promise<{ msgs: SourceMessage<ParkingLotsCursor>[]; cursor: ParkingLotsCursor | undefined }> {
  const msgs: SourceMessage<ParkingLotsCursor>[] = []
  let last = cursor
  for await (const m of parkingLotsConnector.read({ baseUrl: sim.url, pageSize: 1000 }, cursor, ctx)) {
    msgs.push(m)
    if (m.type === 'checkpoint') last = m.cursor
  }
  return { msgs, cursor: last }
}

let report: SyncReport

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'citysync-report-'))
  clock = new ManualClock(at('2026-10-30 09:00'))
  wh = await openWarehouse({ dataDir: join(dir, 'wh') })
  metadata = await openMetadata({ dataDir: join(dir, 'meta'), clock })
  const base = { kind: 'parking-lots', operator: '横琴停车公司', district: '横琴', timezone: TZ, schedule: { every: '1h' }, config: {} }
  await metadata.sources.add({ ...base, id: 'sim-lots', name: '横琴口岸停车场平台', freshness: { maxDelay: '2h' } })
  await metadata.sources.add({
    ...base,
    id: 'push-lots',
    name: '十字门推送平台',
    freshness: { maxDelay: '2h', calendar: { maintenance: [{ from: '2026-11-25 02:00', to: '2026-11-25 04:00', reason: '厂商系统升级' }] } },
  })

  sim = new ParkingSimulator({ seed: 7, lots: 4, clock, eventsPerMinute: 1, spaceIntervalMs: 5 * M, startAt: at('2026-10-31 00:00') })
  await sim.start()
  const lander = new Lander(wh, clock)
  const ac = new AbortController()
  const ctx: Ctx = {
    sourceId: 'sim-lots',
    timezone: TZ,
    clock,
    log: pino({ level: 'silent' }),
    signal: ac.signal,
    fetch: (url, init = {}) => {
      const { timeoutMs, ...rest } = init
      return fetch(url, { ...rest, signal: AbortSignal.timeout(timeoutMs ?? 5000) })
    },
  }
  let cursor: ParkingLotsCursor | undefined
  const down = (t: number): boolean => (t >= at('2026-11-05 09:00') && t < at('2026-11-05 14:00')) || (t >= at('2026-11-20 02:00') && t < at('2026-11-20 04:00'))
  for (let t = at('2026-10-31 01:00'); t <= TO; t += H) {
    clock.set(t)
    // sim-lots
    sim.outage(down(t))
    if (t === at('2026-11-20 04:00')) {
      sim.advance()
      const c = sim.counts()
      cursor = { in: c.in, out: c.out, space: c.space }    }
    let read: Awaited<ReturnType<typeof readAll>> | null = null
    if (t !== at('2026-11-20 04:00')) {
      try {
        read = await readAll(cursor, ctx)
        cursor = read.cursor
      } catch (err) {
        if (!down(t)) throw err
      }
    }
    // One sink batch per hour: sim-lots as read, push-lots' reports of the hour, each 10 s after the fact.
    const pending = [] as Promise<void>[]
    if (read !== null) {
      const msgs = read.msgs
      pending.push(
        lander.land('sim-lots', (p) => {
          for (const m of msgs) {
            if (m.type === 'record') p.record(m.event, m.draft)
            else if (m.type === 'itemError') p.reject('connector', m.code, m.reason, m.event, m.raw)
          }
        }),
      )
      for (const m of msgs) {
        if (m.type !== 'record') continue
        const d = m.draft as { occurredAt: number; lotId: string }
        landed.push({ source: 'sim-lots', entity: m.event === 'ParkingLot' ? null : d.lotId, occ: d.occurredAt, arr: t })
      }
    }
    pending.push(
      lander.land('push-lots', (p) => {
        for (let occ = t - H + BUCKET; occ <= t; occ += BUCKET) {
          for (const lot of ['B1', 'B2']) {
            if (occ >= MAINT[0] && occ < MAINT[1]) continue
            if (lot === 'B1' && ((occ > at('2026-11-10 10:00') && occ < at('2026-11-10 13:00')) || occ > at('2026-11-30 21:00'))) continue
            clock.set(occ + 10 * S)
            if (lot === 'B2' && occ >= at('2026-11-15 08:00') && occ < at('2026-11-15 09:00')) {
              p.reject('connector', 'invalid_value', 'freeSpace above totalSpace', 'ParkingOccupancy', JSON.stringify({ parkCode: 'B2', freeSpace: 999, totalSpace: 100, reportTime: formatLocal(occ, TZ) }))
              rejectedB2.push(occ + 10 * S)
              continue
            }
            p.record('ParkingOccupancy', { occurredAt: occ, lotId: lot, free: 40, capacity: 100, status: 'open' })
            landed.push({ source: 'push-lots', entity: lot, occ, arr: occ + 10 * S })
          }
        }
        // The batch lands at the hour.
        clock.set(t)
      }),
    )
    await Promise.all(pending)
  }
  ac.abort()
  await lander.close()
  await sim.stop()

  // The incident ledger: the vendor outage of 11-05, with its root cause.
  clock.set(at('2026-11-05 14:30'))
  const store = new SyncHealthStore({ knex: metadata.knex, dialect: metadata.dialect, clock })
  const incident = await store.createIncident(
    { sourceId: 'sim-lots', sourceName: '横琴口岸停车场平台', operator: '横琴停车公司', district: '横琴', title: '横琴口岸停车场平台: LATE', occurredAt: at('2026-11-05 10:00'), scope: { entities: [], entityCount: 0, states: ['LATE'], expectedMissing: null } },
    metadata.knex,
  )
  const alert = await store.openAlert({ fingerprint: 'f1', sourceId: 'sim-lots', entityId: null, entityKind: null, state: 'LATE', operator: null, district: null, labels: {}, annotations: {}, startsAt: at('2026-11-05 10:00'), incidentId: incident.id })
  await store.resolveAlert(alert.id, at('2026-11-05 14:00'), undefined)
  await store.updateIncident(incident.id, { status: 'recovered', recoveredAt: at('2026-11-05 14:00') })
  await store.patchIncident(incident.id, { by: '值班员 李工', rootCause: '厂商接口服务器宕机，重启后补发' })

  clock.set(NOW)
  reports = new Reports({ metadata, warehouse: wh, clock })
  report = (await reports.generateSync('2026-11', 'manual', null)).report
}, 900_000)

afterAll(async () => {
  await metadata?.close()
  await wh?.close()
  rmSync(dir, { recursive: true, force: true })
})

function row(source: string, entity: string | null): FigureRow {
  const s = report.sources.find((x) => x.id === source)!
  return entity === null ? s.row : s.entities.find((e) => e.entityId === entity)!
}

describe('the monthly sync report against ground truth', () => {
  it('gives every car park the figures the scenario implies', () => {
    expect(report.sources.map((s) => s.id)).toEqual(['push-lots', 'sim-lots'])
    for (const lot of ['HQ01', 'HQ02', 'HQ03', 'HQ04']) {
      const truth = truthOf(landed.filter((e) => e.source === 'sim-lots' && e.entity === lot), lotHoursOf(lot), false)
      expect({ lot, ...figures(row('sim-lots', lot)) }).toEqual({ lot, ...truth })
    }
    for (const lot of ['B1', 'B2']) {
      const truth = truthOf(landed.filter((e) => e.source === 'push-lots' && e.entity === lot), null, true, lot === 'B2' ? rejectedB2 : [])
      expect({ lot, ...figures(row('push-lots', lot)) }).toEqual({ lot, ...truth })
    }
  })

  it('matches the outages as scheduled', () => {
    // 24/7 car parks: late 11-05 10:00-14:00 (API down, data delivered late) and 11-20 03:00-05:00 (data lost).
    expect(row('sim-lots', 'HQ01')).toMatchObject({ delays: 2, delayMinutes: 360, completeness: expect.any(Number) as number })
    expect(row('sim-lots', 'HQ01').delayList.map((d) => [d.lateFrom, d.dataBackAt, d.lateMinutes])).toEqual([
      [new Date(at('2026-11-05 10:00')).toISOString(), new Date(at('2026-11-05 14:00')).toISOString(), 240],
      [new Date(at('2026-11-20 03:00')).toISOString(), new Date(at('2026-11-20 05:00')).toISOString(), 120],
    ])
    // HQ04 is closed at night: the data lost at 01:00-04:00 was not expected.
    expect(row('sim-lots', 'HQ04')).toMatchObject({ delays: 1, delayMinutes: 240, longestGapMinutes: 0, buckets: { expected: 30 * 15 * 12, quiet: 30 * 9 * 12, missing: 0 } })
    // B1: 3 h without data on 11-10 (late 12:00 until the 13:00 report arrived at 13:00:10), and silent since 11-30 21:00 (late from 23:00, still).
    expect(row('push-lots', 'B1')).toMatchObject({ delays: 2, delayMinutes: round2(60 + 10 / 60 + 60), longestGapMinutes: 180, buckets: { expected: 8640 - 24, maintenance: 24, missing: 35 + 35, bad: 0 } })
    expect(row('push-lots', 'B1').delayList[1]).toMatchObject({ lateFrom: new Date(at('2026-11-30 23:00')).toISOString(), dataBackAt: null, lateMinutes: 60 })
    // B2: an hour of rejected reports is bad, not missing; 65 minutes without good data is no delay.
    expect(row('push-lots', 'B2')).toMatchObject({ delays: 0, rejected: 12, longestGapMinutes: 65, buckets: { bad: 12, missing: 0 } })
  })

  it('sums sources and the month, with the incident and its root cause', () => {
    for (const source of ['sim-lots', 'push-lots']) {
      const s = report.sources.find((x) => x.id === source)!
      const events = landed.filter((e) => e.source === source)
      // Source clocks: completeness is summed over car parks; delays follow every landed row (the
      // ingest log, car-park descriptions included), gaps the car parks' data.
      const clockTruth = truthOf(events, null, source === 'push-lots')
      const gapTruth = truthOf(events.filter((e) => e.entity !== null), null, source === 'push-lots')
      expect({ delays: s.row.delays, delayMinutes: s.row.delayMinutes, longestGapMinutes: s.row.longestGapMinutes }).toEqual({ delays: clockTruth.delays, delayMinutes: clockTruth.delayMinutes, longestGapMinutes: gapTruth.longestGapMinutes })
      expect(s.row.buckets.good).toBe(s.entities.reduce((n, e) => n + e.buckets.good, 0))
      expect(s.row.buckets.expected).toBe(s.entities.reduce((n, e) => n + e.buckets.expected, 0))
      expect(s.row.records).toBe(events.filter((e) => e.entity !== null && e.occ >= FROM && e.occ < TO).length)
    }
    expect(row('sim-lots', null)).toMatchObject({ delays: 2, delayMinutes: 360, states: ['LATE'], abnormal: true })
    expect(row('push-lots', null)).toMatchObject({ delays: 0, rejected: 12 })
    const all = report.sources.flatMap((s) => s.entities)
    const good = all.reduce((n, e) => n + e.buckets.good, 0)
    const expected = all.reduce((n, e) => n + e.buckets.expected, 0)
    expect(report.summary).toMatchObject({ sources: 2, entities: 6, carParks: 6, completeness: good / expected, sourcesWithInterruptions: ['sim-lots'], delays: 2, hoursLate: 6, rejected: 12 })
    const incident = report.incidents[0]!
    expect(incident).toMatchObject({ sourceId: 'sim-lots', rootCause: '厂商接口服务器宕机，重启后补发', occurredAt: new Date(at('2026-11-05 10:00')).toISOString() })
    expect(row('sim-lots', null).incidents).toEqual([incident.id])
    // Heat strip: 11-10 11:00 of push-lots is half complete (B1 silent), 11-25 02:00 is maintenance.
    const push = report.sources.find((x) => x.id === 'push-lots')!
    expect(push.heat[9 * 24 + 11]).toBe(0.5)
    expect(push.heat[24 * 24 + 2]).toBe(-2)
    expect(push.daily[14]).toEqual({ date: '2026-11-15', records: 2 * 288 - 12, rejected: 12 })
    // The month before (only its last day had data) is the comparison.
    expect(report.previous).toMatchObject({ month: '2026-10' })
    expect(report.change).not.toBeNull()
  })
})

// In CI a missing Chromium fails here (requireService throws); elsewhere the test is left out, loudly.
const withChromium = requireService('chromium', findChromium() !== null, 'apt-get install chromium')

describe('formats', () => {
  it.runIf(withChromium)('renders the HTML in headless Chromium without console errors', async () => {
    const html = reportHtml(report, 'zh')
    const { dom, console: lines } = await renderInChromium(html)
    expect(lines).toEqual([])
    expect(dom).toContain('数据同步监控报告 · 2026-11')
    expect(dom).toContain('<svg')
    expect(dom).toContain('厂商接口服务器宕机，重启后补发')
    const pdf = await htmlToPdf(reportHtml(report, 'en'))
    expect(pdf.subarray(0, 5).toString('latin1')).toBe('%PDF-')
  })

  it('holds in the XLSX the same figures as in the JSON', async () => {
    const json = JSON.parse(JSON.stringify(report)) as SyncReport
    const wb = new ExcelJS.Workbook()
    await wb.xlsx.load((await reportXlsx(report, 'zh')) as unknown as ArrayBuffer)
    expect(wb.worksheets.map((w) => w.name)).toEqual(['汇总', 'push-lots', 'sim-lots', '故障事件'])
    const summary = new Map<string, unknown>()
    wb.getWorksheet('汇总')!.eachRow((r) => summary.set(r.getCell(1).text, r.getCell(2).value))
    expect(summary.get('接入数据完整率')).toBe(json.summary.completeness)
    expect(summary.get('延迟合计（小时）')).toBe(json.summary.hoursLate)
    expect(summary.get('发生中断的数据源')).toBe(1)
    expect(summary.get('接收记录数')).toBe(json.summary.records)
    for (const s of json.sources) {
      const ws = wb.getWorksheet(s.id)!
      const header = (ws.getRow(1).values as unknown[]).slice(1).map(String)
      const col = (name: string): number => header.indexOf(name) + 1
      const rows = [s.row, ...s.entities]
      expect(ws.rowCount).toBe(rows.length + 1)
      rows.forEach((r, i) => {
        const x = ws.getRow(i + 2)
        expect([x.getCell(col('编号')).value || null, x.getCell(col('接收记录数')).value, x.getCell(col('接入数据完整率')).value, x.getCell(col('超限延迟次数')).value, x.getCell(col('超限延迟时长（分钟）')).value, x.getCell(col('最长中断（分钟）')).value, x.getCell(col('缺失时段')).value]).toEqual([
          r.entityId,
          r.records,
          r.completeness,
          r.delays,
          r.delayMinutes,
          r.longestGapMinutes,
          r.buckets.missing,
        ])
      })
    }
    const inc = wb.getWorksheet('故障事件')!
    expect(inc.getRow(2).getCell(8).value).toBe('厂商接口服务器宕机，重启后补发')
    const csv = reportCsv(report, 'en').toString('utf8')
    expect(csv.split('\r\n').filter((l) => l !== '')).toHaveLength(1 + 2 + 6)
    expect(csv).toContain('Data completeness rate(%)')
  })
})

describe('archive, schedule and backfill', () => {
  it('generates the previous month on the 1st at 08:00 and no earlier', async () => {
    const scheduler = new ReportScheduler(reports, clock, pino({ level: 'silent' }))
    clock.set(at('2026-11-01 07:59'))
    expect(await scheduler.tick()).toEqual({ generated: [], regenerated: [] })
    clock.set(at('2026-11-01 08:00'))
    expect(await scheduler.tick()).toEqual({ generated: ['2026-10'], regenerated: [] })
    expect((await reports.archive.latestEntry('sync', '2026-10', TZ))!.trigger).toBe('schedule')
    expect(await scheduler.tick()).toEqual({ generated: [], regenerated: [] })
  })

  it('serves the archived month and generates it again once backfilled rows for it land', async () => {
    clock.set(at('2026-12-02 10:00'))
    const scheduler = new ReportScheduler(reports, clock, pino({ level: 'silent' }))
    const first = await reports.sync({ month: '2026-11' })
    expect(first.archived).toMatchObject({ revision: 1, trigger: 'manual' })
    expect(await reports.staleMonths()).toEqual([])

    // 补传: the vendor uploads B1's passages of the 11-10 outage.
    const lander = new Lander(wh, clock)
    await lander.land('push-lots', (p) => {
      for (const t of [at('2026-11-10 10:30'), at('2026-11-10 11:30'), at('2026-11-10 12:30')]) {
        p.record('ParkingPassage', { lotId: 'B1', recordNo: `BF${t}`, direction: 'entry', gateId: 'G1', plate: '粤C12345', plateType: 'blue', isBackfill: true, feeCents: null, entryAt: null, occurredAt: t })
      }
    })
    await lander.close()
    expect((await reports.staleMonths()).map((s) => [s.entry.period, s.rows])).toEqual([['2026-11', 3]])
    expect(await scheduler.tick()).toEqual({ generated: [], regenerated: ['2026-11'] })
    const again = await reports.sync({ month: '2026-11' })
    expect(again.archived).toMatchObject({ revision: 2, trigger: 'backfill' })
    const before = first.report.sources.find((s) => s.id === 'push-lots')!.entities.find((e) => e.entityId === 'B1')!
    const after = again.report.sources.find((s) => s.id === 'push-lots')!.entities.find((e) => e.entityId === 'B1')!
    // Backfill completes the data; it never moves the event clock, so the delays stand.
    expect(after.buckets.good - before.buckets.good).toBe(3)
    expect(after.buckets.missing - before.buckets.missing).toBe(-3)
    expect(after.records - before.records).toBe(3)
    expect([after.delays, after.delayMinutes]).toEqual([before.delays, before.delayMinutes])
    expect((await reports.archive.list({ kind: 'sync', period: '2026-11' })).map((e) => [e.revision, e.trigger])).toEqual([
      [2, 'backfill'],
      [1, 'manual'],
    ])
  })

  it('serves reports over REST', async () => {
    const app = await buildApp({ metadata, warehouse: wh, logger: pino({ level: 'silent' }), version: 'test' })
    await injectAsAdmin(app, metadata)
    try {
      const json = await app.inject({ method: 'GET', url: '/api/v1/reports/sync?month=2026-11' })
      expect(json.statusCode).toBe(200)
      expect((JSON.parse(json.body) as SyncReport).summary.sourcesWithInterruptions).toEqual(['sim-lots'])
      expect(json.headers['x-citysync-report-revision']).toBe('2')
      const xlsx = await app.inject({ method: 'GET', url: '/api/v1/reports/sync?month=2026-11&format=xlsx&lang=en' })
      expect(xlsx.headers['content-type']).toBe('application/vnd.openxmlformats-officedocument.spreadsheetml.sheet')
      expect(xlsx.headers['content-disposition']).toContain('citysync-sync-2026-11-en.xlsx')
      const html = await app.inject({ method: 'GET', url: '/api/v1/reports/sync?month=2026-11&format=html' })
      expect(html.body).toContain('<svg')
      const bad = await app.inject({ method: 'GET', url: '/api/v1/reports/sync?month=2026-13' })
      expect([bad.statusCode, (JSON.parse(bad.body) as { code: string }).code]).toEqual([400, 'CITYSYNC_ERR_REPORT_PERIOD'])
      const archive = await app.inject({ method: 'GET', url: '/api/v1/reports/archive?kind=sync' })
      expect((JSON.parse(archive.body) as { items: { period: string; revision: number }[] }).items.map((i) => `${i.period}#${i.revision}`)).toEqual(['2026-11#2', '2026-10#1', '2026-11#1'])
    } finally {
      await app.close()
    }
  })
})

describe('the quarterly onboarding list', () => {
  it('lists county car parks by status as they stood at the quarter’s end, with the quarter’s changes', async () => {
    const o = metadata.onboarding
    clock.set(at('2026-09-10 10:00'))
    await o.put('RD-P001', { county: '如东县', name: '如东县人民医院停车场', status: 'planned', plannedDate: '2026-10-31' }, '王工')
    await o.put('HA-P001', { county: '海安市', name: '海安市政务中心停车场', status: 'onboarded', onboardedDate: '2026-09-01' }, '王工')
    clock.set(at('2026-10-20 10:00'))
    await o.put('RD-P001', { status: 'connecting', note: '厂商已开通数据库只读账号' }, '王工')
    await o.put('RD-P002', { county: '如东县', name: '如东县汽车站停车场', status: 'planned' }, '李工')
    clock.set(at('2026-11-02 09:00'))
    await o.put('RD-P001', { status: 'onboarded' }, '王工')
    clock.set(at('2027-01-05 09:00'))
    await o.put('RD-P002', { status: 'suspended', note: '场站改造' }, '李工')

    const list = await reports.onboarding('2026Q4')
    expect(list.totals).toMatchObject({ planned: 1, connecting: 0, onboarded: 2, suspended: 0, total: 3, onboardedInQuarter: 1, newInQuarter: 1 })
    const rudong = list.counties.find((c) => c.county === '如东县')!
    expect(rudong.lots.map((l) => [l.lotId, l.status, l.connectedDate, l.onboardedDate, l.note])).toEqual([
      ['RD-P001', 'onboarded', '2026-10-20', '2026-11-02', '厂商已开通数据库只读账号'],
      ['RD-P002', 'planned', null, null, null],
    ])
    expect(rudong.changes.map((c) => [c.lotId, c.from, c.to])).toEqual([
      ['RD-P001', 'planned', 'connecting'],
      ['RD-P002', null, 'planned'],
      ['RD-P001', 'connecting', 'onboarded'],
    ])
    expect(list.counties.find((c) => c.county === '海安市')!.changes).toEqual([])
    expect((await reports.archive.latestEntry('onboarding', '2026Q4', TZ))!.summary).toMatchObject({ onboarded: 2 })
    const app = await buildApp({ metadata, warehouse: wh, logger: pino({ level: 'silent' }), version: 'test' })
    await injectAsAdmin(app, metadata)
    try {
      const csv = await app.inject({ method: 'GET', url: '/api/v1/reports/onboarding?quarter=2026Q4&format=csv' })
      expect(csv.body).toContain('RD-P001,如东县人民医院停车场,已接入,2026-10-31,2026-10-20,2026-11-02')
      const bad = await app.inject({ method: 'GET', url: '/api/v1/reports/onboarding?quarter=2026Q5' })
      expect(bad.statusCode).toBe(400)
    } finally {
      await app.close()
    }
  })
})
