import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../lib/clock.ts'
import { type Metadata } from '../lib/metadata/db.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { type Warehouse } from '../pipelines/warehouse/warehouse.ts'
import { balanceAlerts, bikeBalance } from './analytics/bike.ts'
import { ANALYTICS_DEFAULTS } from './analytics/config.ts'
import { refreshParking } from './analytics/refresh.ts'
import { CAP_MS, L, land, landAll, NOW, TZ } from './analytics/test-fixture.ts'
import { buildApp } from './app.ts'
import { type AnalyticsDeps } from './routes/analytics.ts'
import { backends, roleToken } from './test-stack.ts'

// The analytics routes over real HTTP: parking figures of the hand-built car
// parks (worked out in analytics/parking.int.test.ts) as JSON and CSV, district
// and operator from the metadata store, validation, bike share, ferries, and
// the guarded analyst SQL endpoint.

const H = 60
// An analyst's API token (analytics:read, analytics:sql).
let TOKEN: string

let dir: string
let warehouse: Warehouse
let metadata: Metadata
let drop: () => Promise<void>
let app: FastifyInstance
let sqlApp: FastifyInstance
let base: string
let sqlBase: string

interface Answer {
  status: number
  type: string
  text: string
  json: Record<string, unknown>
}

async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(url, init)
  const text = await res.text()
  let json: Record<string, unknown> = {}
  try {
    json = JSON.parse(text) as Record<string, unknown>
  } catch {
    // CSV
  }
  return { status: res.status, type: res.headers.get('content-type') ?? '', text, json }
}

const get = (path: string, headers: Record<string, string> = {}): Promise<Answer> => call(base + path, { headers: { authorization: `Bearer ${TOKEN}`, ...headers } })
const sql = (body: unknown, headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }, url = sqlBase): Promise<Answer> =>
  call(url + '/api/v1/analytics/sql', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })

function row(t: string, extra: Record<string, unknown>): Record<string, unknown> {
  return { occurredAt: L(t), receivedAt: L(t), eventId: `${t}-${JSON.stringify(extra)}`, ...extra }
}

async function landBikesAndFerries(): Promise<void> {
  const bike = { sourceId: 'fx-bike', operatorId: 'nanshan-bikes' }
  await land(warehouse, 'bike_operator_status', [
    row('2026-11-02 08:00', { ...bike, fleetSize: 1000, vehiclesReporting: 950 }),
    row('2026-11-02 08:30', { ...bike, fleetSize: 1000, vehiclesReporting: 900 }),
    row('2026-11-02 09:00', { ...bike, fleetSize: 1000, vehiclesReporting: 800 }),
  ])
  await land(warehouse, 'bike_station', [
    row('2026-11-02 00:00', { ...bike, stationId: 'S1', name: '科技园', lat: 22.5, lon: 113.9, capacity: 20, coordSystem: 'WGS84' }),
    row('2026-11-02 00:00', { ...bike, stationId: 'S2', name: '深大', lat: 22.6, lon: 113.95, capacity: 10, coordSystem: 'WGS84' }),
  ])
  const status = (t: string, stationId: string, vehiclesAvailable: number): Record<string, unknown> =>
    row(t, { ...bike, stationId, vehiclesAvailable, docksAvailable: null, isInstalled: true, isRenting: true, isReturning: true })
  await land(warehouse, 'bike_station_status', [status('2026-11-02 07:00', 'S2', 8), status('2026-11-02 08:25', 'S1', 35), status('2026-11-02 08:25', 'S2', 0)])
  const vehicle = (t: string, vehicleId: string, extra: Record<string, unknown> = {}): Record<string, unknown> =>
    row(t, { ...bike, vehicleId, lat: 22.55, lon: 113.92, stationId: null, vehicleTypeId: null, isReserved: false, isDisabled: false, ...extra })
  await land(warehouse, 'bike_vehicle_status', [
    vehicle('2026-11-02 08:25', 'V1'),
    vehicle('2026-11-02 08:25', 'V2'),
    vehicle('2026-11-02 08:26', 'V3'),
    vehicle('2026-11-02 08:25', 'V4', { isDisabled: true }),
    vehicle('2026-11-02 08:25', 'V5', { isReserved: true }),
    vehicle('2026-11-02 08:25', 'V6', { stationId: 'S1', lat: 22.5, lon: 113.9 }),
    vehicle('2026-11-02 08:00', 'V7'),
  ])

  const ferry = { sourceId: 'fx-ferry', terminalId: 'JZG' }
  const sailing = (t: string, sailingId: string, dep: string, capacity: number, status: string, actual: string | null = null): Record<string, unknown> =>
    row(t, { ...ferry, sailingId, route: '九洲港-蛇口', vesselName: '海鸥1号', scheduledDeparture: L(dep), actualDeparture: actual === null ? null : L(actual), capacity, status })
  await land(warehouse, 'ferry_sailing', [
    sailing('2026-11-01 20:00', 'S1', '2026-11-02 08:30', 200, 'scheduled'),
    sailing('2026-11-02 08:32', 'S1', '2026-11-02 08:30', 200, 'departed', '2026-11-02 08:32'),
    sailing('2026-11-01 20:00', 'S2', '2026-11-02 10:00', 100, 'scheduled'),
    sailing('2026-11-01 20:00', 'S3', '2026-11-03 08:30', 200, 'scheduled'),
  ])
  const ticket = (t: string, ticketId: string, sailingId: string, status: string): Record<string, unknown> =>
    row(t, { ...ferry, ticketId, sailingId, ticketType: 'adult', priceCents: 17500, channel: 'window', status })
  await land(warehouse, 'ferry_ticket', [
    ticket('2026-11-01 21:00', 'T1', 'S1', 'sold'),
    ticket('2026-11-01 21:00', 'T2', 'S1', 'sold'),
    ticket('2026-11-01 21:00', 'T3', 'S1', 'sold'),
    ticket('2026-11-01 21:00', 'T4', 'S1', 'sold'),
    ticket('2026-11-02 07:00', 'T4', 'S1', 'refunded'),
    ticket('2026-11-01 21:00', 'T5', 'S1', 'sold'),
    ticket('2026-11-02 07:30', 'T5', 'S2', 'changed'),
    ticket('2026-11-01 22:00', 'T6', 'S2', 'sold'),
  ])
  const checkin = (t: string, checkInId: string, ticketId: string, sailingId: string): Record<string, unknown> => row(t, { ...ferry, checkInId, ticketId, sailingId, gate: 'A1' })
  await land(warehouse, 'ferry_checkin', [
    checkin('2026-11-02 08:10', 'C1', 'T1', 'S1'),
    checkin('2026-11-02 08:11', 'C4', 'T1', 'S1'),
    checkin('2026-11-02 08:12', 'C2', 'T2', 'S1'),
    checkin('2026-11-02 09:40', 'C3', 'T5', 'S2'),
  ])
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'citysync-api-analytics-'))
  warehouse = await openWarehouse({ dataDir: dir })
  const clock = new ManualClock(NOW)
  ;({ metadata, drop } = await (await backends())[0]!.open(clock))
  const add = (id: string, kind: string, operator: string, district: string | null): Promise<unknown> =>
    metadata.sources.add({ id, kind, name: id, operator, district, timezone: TZ, schedule: { every: '1m' }, freshness: { maxDelay: '2h' }, config: {} })
  await add('fx-parking', 'parking-lots', '横琴停车公司', '横琴')
  await add('fx-other', 'parking-lots', '香洲停车', '香洲')
  await add('fx-bike', 'bike-share', '城市单车', '南山区')
  await add('fx-ferry', 'ferry-ticketing', '珠海高速客运', null)
  await landAll(warehouse)
  await landBikesAndFerries()
  await refreshParking(warehouse, { now: NOW, timezone: TZ, sessionCapMs: CAP_MS })

  const logger = pino({ level: 'silent' })
  const plain: AnalyticsDeps = { metadata, warehouse, logger, version: 'test', analytics: { refreshIntervalMs: 0 }, analyticsClock: clock }
  app = await buildApp(plain)
  TOKEN = await roleToken(metadata, 'analyst')
  base = await app.listen({ port: 0, host: '127.0.0.1' })
  const withSql: AnalyticsDeps = {
    ...plain,
    analytics: { refreshIntervalMs: 0, maxRows: 50, sql: { enabled: true, maxExecutionSeconds: 10, maxResultRows: 5, maxMemoryBytes: 1024 ** 3 } },
  }
  sqlApp = await buildApp(withSql)
  sqlBase = await sqlApp.listen({ port: 0, host: '127.0.0.1' })
})

afterAll(async () => {
  await app?.close()
  await sqlApp?.close()
  await metadata?.close()
  await drop?.()
  await warehouse?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('parking analytics over HTTP', () => {
  it('answers occupancy for a district by day, with the refresh time', async () => {
    const r = await get('/api/v1/analytics/parking/occupancy?district=横琴&from=2026-11-02&to=2026-11-04&granularity=day')
    expect(r.status).toBe(200)
    expect(r.type).toMatch(/^application\/json/)
    expect(r.json).toEqual({
      granularity: 'day', timezone: TZ, from: '2026-11-02T00:00:00+08:00', to: '2026-11-04T00:00:00+08:00', by: 'all', dataUntil: '2026-11-04T00:00:00+08:00',
      items: [
        { bucket: '2026-11-02', lotHours: 48, spaceHours: 20160 / H, vehicleHours: 3640 / H, occupancyRate: 3640 / 20160, peakOccupancyRate: 550 / 840, peakHour: '2026-11-02T09:00:00+08:00', snapshotShare: 0.5 },
        { bucket: '2026-11-03', lotHours: 48, spaceHours: 21600 / H, vehicleHours: 1590 / H, occupancyRate: 1590 / 21600, peakOccupancyRate: 180 / 960, peakHour: '2026-11-03T16:00:00+08:00', snapshotShare: 0.5 },
      ],
      totals: { lotHours: 96, spaceHours: 41760 / H, vehicleHours: 5230 / H, occupancyRate: 5230 / 41760, peakOccupancyRate: 550 / 840, peakHour: '2026-11-02T09:00:00+08:00' },
    })
  })

  it('answers CSV with format=csv or Accept: text/csv', async () => {
    const expected =
      'bucket,spaceDays,sessions,turnoverRate,matched,open,capped,entryOnly,exitOnly,entries,exits,averageDurationMinutes,revenueCents,revenueYuan\r\n' +
      `2026-11-02,4,8,2,5,0,1,0,2,6,6,${2390 / 6},1200,12\r\n` +
      '2026-11-03,5,7,1.4,2,1,0,2,2,5,5,345,4700,47\r\n'
    const byParam = await get('/api/v1/analytics/parking/turnover?lot=P1&from=2026-11-02&to=2026-11-04&format=csv')
    expect(byParam.status).toBe(200)
    expect(byParam.type).toBe('text/csv; charset=utf-8')
    expect(byParam.text).toBe(expected)
    const byAccept = await get('/api/v1/analytics/parking/turnover?lot=P1&from=2026-11-02&to=2026-11-04', { accept: 'text/csv' })
    expect(byAccept.text).toBe(expected)
    // Lot columns appear with by=lot; names with commas or quotes are quoted.
    const lots = await get('/api/v1/analytics/parking/occupancy?operator=横琴停车公司&from=2026-11-02&to=2026-12-01&granularity=month&by=lot&format=csv')
    expect(lots.text.split('\r\n').slice(0, 3)).toEqual([
      'bucket,sourceId,lotId,name,district,lotHours,spaceHours,vehicleHours,occupancyRate,peakOccupancyRate,peakHour,snapshotShare,averageCapacity,maxOccupied',
      `2026-11,fx-parking,P1,停车场 P1,横琴,48,216,${2710 / H},${2710 / 12960},${190 / 240},2026-11-02T09:00:00+08:00,0,4.5,4`,
      `2026-11,fx-parking,P2,停车场 P2,横琴,48,480,42,${42 / 480},0.6,2026-11-02T08:00:00+08:00,1,10,6`,
    ])
  })

  it('resolves a district that only the source names, and an operator, from the metadata store', async () => {
    const r = await get('/api/v1/analytics/parking/turnover?district=香洲&from=2026-11-02&to=2026-11-04&by=lot')
    expect((r.json.items as Record<string, unknown>[]).map((i) => [i.sourceId, i.lotId, i.district, i.bucket, i.sessions, i.revenueCents])).toEqual([
      ['fx-other', 'P3', null, '2026-11-02', 1, 400],
      ['fx-other', 'P3', null, '2026-11-03', 0, 0],
    ])
    const op = await get('/api/v1/analytics/parking/turnover?operator=香洲停车&from=2026-11-02&to=2026-11-04&granularity=month')
    expect(op.json.totals).toEqual({ spaceDays: (28 + 48) / 24, sessions: 1, turnoverRate: 1 / ((28 + 48) / 24), averageDurationMinutes: 240, revenueCents: 400, revenueYuan: 4 })
    const nobody = await get('/api/v1/analytics/parking/turnover?operator=no-such-operator&from=2026-11-02&to=2026-11-04')
    expect(nobody.json.items).toEqual([])
    expect((await get('/api/v1/analytics/parking/turnover?operator=no-such-operator&from=2026-11-02&to=2026-11-04&format=csv')).text).toBe(
      'bucket,spaceDays,sessions,turnoverRate,matched,open,capped,entryOnly,exitOnly,entries,exits,averageDurationMinutes,revenueCents,revenueYuan\r\n',
    )
  })

  it('refuses bad parameters with a clear code', async () => {
    const cases: [string, string, string | RegExp][] = [
      ['/api/v1/analytics/parking/occupancy?to=2026-11-04', 'CITYSYNC_ERR_API_VALIDATION', "querystring must have required property 'from'"],
      ['/api/v1/analytics/parking/occupancy?from=2026-11-02&to=2026-11-04&granularity=week', 'CITYSYNC_ERR_API_VALIDATION', /granularity must be equal to one of the allowed values/],
      ['/api/v1/analytics/parking/occupancy?from=2026-11-02&to=2026-11-04&lots=P1', 'CITYSYNC_ERR_API_VALIDATION', 'querystring must NOT have additional properties'],
      ['/api/v1/analytics/parking/occupancy?from=2026-11-02T09:30&to=2026-11-04&granularity=hour', 'CITYSYNC_ERR_ANALYTICS_QUERY', 'analytics query refused: from must be the start of an hour for granularity=hour, got 2026-11-02T09:30'],
      ['/api/v1/analytics/parking/occupancy?from=2026-11-02T09:00&to=2026-11-04', 'CITYSYNC_ERR_ANALYTICS_QUERY', 'analytics query refused: from must be a date (local midnight) for granularity=day, got 2026-11-02T09:00'],
      ['/api/v1/analytics/parking/occupancy?from=2026-11-04&to=2026-11-02', 'CITYSYNC_ERR_ANALYTICS_QUERY', 'analytics query refused: to (2026-11-02) must be after from (2026-11-04); to is exclusive'],
      ['/api/v1/analytics/parking/occupancy?from=yesterday&to=2026-11-02', 'CITYSYNC_ERR_ANALYTICS_QUERY', /^analytics query refused: from: expected a date/],
      ['/api/v1/analytics/parking/turnover?from=2026-11-02&to=2026-11-04&hours=7-25', 'CITYSYNC_ERR_ANALYTICS_QUERY', 'analytics query refused: hours: values from 0 to 23, ranges ascending, got "7-25"'],
      ['/api/v1/analytics/parking/turnover?from=2026-11-02&to=2026-11-04&weekdays=0', 'CITYSYNC_ERR_ANALYTICS_QUERY', 'analytics query refused: weekdays: values from 1 to 7, ranges ascending, got "0"'],
      ['/api/v1/analytics/parking/turnover?from=2000-01-01&to=2026-11-04', 'CITYSYNC_ERR_ANALYTICS_QUERY', 'analytics query refused: the period may cover at most 5 years'],
      ["/api/v1/analytics/parking/turnover?from=2026-11-02&to=2026-11-04&lot=P1' OR 1=1 --", 'OK', ''],
    ]
    for (const [path, code, message] of cases) {
      const r = await get(path)
      if (code === 'OK') {
        // A quote in a value is a value: parameters are bound, never spliced into SQL.
        expect(r.status).toBe(200)
        expect(r.json.items).toEqual([])
        continue
      }
      expect(r.status, path).toBe(400)
      expect(r.json.code, path).toBe(code)
      if (typeof message === 'string') expect(r.json.message, path).toBe(message)
      else expect(r.json.message, path).toMatch(message)
    }
    const big = await call(sqlBase + '/api/v1/analytics/parking/occupancy?district=横琴&from=2026-11-02&to=2026-11-04&granularity=hour&by=lot', { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(big.json).toEqual({ code: 'CITYSYNC_ERR_ANALYTICS_TOO_LARGE', message: 'the answer would have more than 50 rows; ask for a coarser granularity, a shorter period or fewer lots' })
  })

  it('describes the routes in OpenAPI with examples and both content types', async () => {
    const spec = (await app.inject('/docs/json')).json<{ paths: Record<string, Record<string, { summary?: string; responses: Record<string, { content?: Record<string, { schema?: { examples?: unknown[] } }> }> }>> }>()
    for (const [path, method] of [
      ['/api/v1/analytics/parking/occupancy', 'get'],
      ['/api/v1/analytics/parking/turnover', 'get'],
      ['/api/v1/analytics/bike/online-rate', 'get'],
      ['/api/v1/analytics/bike/balance', 'get'],
      ['/api/v1/analytics/ferry/load', 'get'],
      ['/api/v1/analytics/sql', 'post'],
    ] as const) {
      const op = spec.paths[path]?.[method]
      expect(op?.summary, path).toBeTruthy()
      expect(Object.keys(op!.responses['200']!.content!), path).toEqual(['application/json', 'text/csv'])
      expect(op!.responses['200']!.content!['application/json']!.schema!.examples!.length, path).toBe(1)
    }
  })
})

describe('bike share and ferries over HTTP', () => {
  it('answers the online rate per operator and hour', async () => {
    const r = await get('/api/v1/analytics/bike/online-rate?operator=城市单车&from=2026-11-02T08:00&to=2026-11-02T10:00')
    expect(r.status).toBe(200)
    expect(r.json.items).toEqual([
      { bucket: '2026-11-02T08:00+08:00', sourceId: 'fx-bike', operatorId: 'nanshan-bikes', snapshots: 2, onlineRate: (950 + 900) / 2000, minOnlineRate: 0.9, maxOnlineRate: 0.95, vehiclesReporting: 900, fleetSize: 1000, lastSnapshotAt: '2026-11-02T08:30:00+08:00' },
      { bucket: '2026-11-02T09:00+08:00', sourceId: 'fx-bike', operatorId: 'nanshan-bikes', snapshots: 1, onlineRate: 0.8, minOnlineRate: 0.8, maxOnlineRate: 0.8, vehiclesReporting: 800, fleetSize: 1000, lastSnapshotAt: '2026-11-02T09:00:00+08:00' },
    ])
    const day = await get('/api/v1/analytics/bike/online-rate?operator=nanshan-bikes&from=2026-11-02&to=2026-11-03&granularity=day&format=csv')
    expect(day.text).toBe(
      'bucket,sourceId,operatorId,snapshots,onlineRate,minOnlineRate,maxOnlineRate,vehiclesReporting,fleetSize,lastSnapshotAt\r\n' +
        `2026-11-02,fx-bike,nanshan-bikes,3,${2650 / 3000},0.8,0.95,800,1000,2026-11-02T09:00:00+08:00\r\n`,
    )
  })

  it('finds where vehicles pile up or run out, and raises alerts for them', async () => {
    const r = await get('/api/v1/analytics/bike/balance?operator=nanshan-bikes&at=2026-11-02T08:30')
    expect(r.status).toBe(200)
    expect(r.json.counts).toEqual({ accumulation: 1, shortage: 1, normal: 1 })
    const items = r.json.items as Record<string, number | string>[]
    // S1: 35 available (V6 is docked there, counted once); S2: 0 now (8 at 07:00 is too old);
    // three free-floating vehicles (V4 disabled, V5 reserved, V7 too old).
    expect(items.map((a) => [a.state, a.vehicles, a.stationVehicles, a.freeVehicles, a.stations, a.stationsReporting, a.docks])).toEqual([
      ['accumulation', 35, 35, 0, 1, 1, 20],
      ['normal', 3, 0, 3, 0, 0, null],
      ['shortage', 0, 0, 0, 1, 1, 10],
    ])
    for (const [a, lat, lon] of [[items[0]!, 22.5, 113.9], [items[1]!, 22.55, 113.92], [items[2]!, 22.6, 113.95]] as const) {
      expect(Math.abs((a.lat as number) - lat)).toBeLessThan(0.005)
      expect(Math.abs((a.lon as number) - lon)).toBeLessThan(0.005)
    }
    const stricter = await get('/api/v1/analytics/bike/balance?operator=nanshan-bikes&at=2026-11-02T08:30&accumulationAt=3&state=accumulation')
    expect((stricter.json.items as { vehicles: number }[]).map((a) => a.vehicles)).toEqual([35, 3])

    const thresholds = { ...ANALYTICS_DEFAULTS.bike }
    const areas = await bikeBalance(warehouse, { scope: { operator: 'nanshan-bikes' }, at: L('2026-11-02 08:30'), thresholds })
    const alerts = balanceAlerts(areas, { at: L('2026-11-02 08:30'), thresholds, extraLabels: { district: '南山区' } })
    expect(alerts.map((a) => [a.labels.alertname, a.labels.state, a.labels.operator, a.labels.district, a.labels.entityKind, a.annotations.vehicles, a.annotations.threshold])).toEqual([
      ['BikeAccumulation', 'ACCUMULATION', 'nanshan-bikes', '南山区', 'area', '35', '≥ 30'],
      ['BikeShortage', 'SHORTAGE', 'nanshan-bikes', '南山区', 'area', '0', '≤ 0'],
    ])
    expect(alerts[0]!.annotations.summary).toBe(`35 vehicles in area ${String(items[0]!.area)} (500 m), threshold ≥ 30`)
  })

  it('answers ferry load factor and check-in rate per sailing', async () => {
    const r = await get('/api/v1/analytics/ferry/load?operator=珠海高速客运&from=2026-11-02&to=2026-11-03')
    expect(r.status).toBe(200)
    expect(r.json).toEqual({
      timezone: TZ, from: '2026-11-02T00:00:00+08:00', to: '2026-11-03T00:00:00+08:00',
      items: [
        // T1 T2 T3; T4 refunded, T5 changed to S2; T1 checked in twice, counted once
        { sourceId: 'fx-ferry', sailingId: 'S1', terminalId: 'JZG', route: '九洲港-蛇口', vesselName: '海鸥1号', scheduledDeparture: '2026-11-02T08:30:00+08:00', actualDeparture: '2026-11-02T08:32:00+08:00', status: 'departed', seats: 200, passengers: 3, refunded: 1, checkedIn: 2, loadFactor: 3 / 200, checkInRate: 2 / 3 },
        { sourceId: 'fx-ferry', sailingId: 'S2', terminalId: 'JZG', route: '九洲港-蛇口', vesselName: '海鸥1号', scheduledDeparture: '2026-11-02T10:00:00+08:00', actualDeparture: null, status: 'scheduled', seats: 100, passengers: 2, refunded: 0, checkedIn: 1, loadFactor: 2 / 100, checkInRate: 1 / 2 },
      ],
      totals: { sailings: 2, seats: 300, passengers: 5, checkedIn: 3, loadFactor: 5 / 300, checkInRate: 3 / 5 },
    })
    const one = await get('/api/v1/analytics/ferry/load?terminal=JZG&sailing=S3&from=2026-11-03&to=2026-11-04&format=csv')
    expect(one.text.split('\r\n')[1]).toBe('fx-ferry,S3,JZG,九洲港-蛇口,海鸥1号,2026-11-03T08:30:00+08:00,,scheduled,200,0,0,0,0,')
  })
})

describe('analyst SQL', () => {
  it('is off unless enabled, and needs a credential with analytics:sql', async () => {
    expect((await sql({ sql: 'SELECT 1' }, undefined, base)).json).toEqual({ code: 'CITYSYNC_ERR_ANALYTICS_SQL_DISABLED', message: 'analyst SQL is not enabled in this process (set CITYSYNC_ANALYST_SQL=on)' })
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: TOKEN }] as Record<string, string>[]) {
      const r = await sql({ sql: 'SELECT 1' }, headers)
      expect(r.status).toBe(401)
      expect(r.json.code).toBe('CITYSYNC_ERR_AUTH_REQUIRED')
    }
    const operator = await sql({ sql: 'SELECT 1' }, { authorization: `Bearer ${await roleToken(metadata, 'operator')}` })
    expect(operator.status).toBe(403)
    expect(operator.json.code).toBe('CITYSYNC_ERR_AUTH_FORBIDDEN')
  })

  it('runs read-only queries over the analytics views, as JSON or CSV', async () => {
    const q = `WITH busy AS (SELECT lotId, day, occupancyRate FROM analytics_parking_lot_day WHERE day < '2026-11-04')
      SELECT lotId, round(max(occupancyRate), 4) AS best, count() AS days FROM busy
      WHERE lotId IN (SELECT lotId FROM analytics_parking_lot WHERE district = '横琴') GROUP BY lotId ORDER BY lotId;`
    const r = await sql({ sql: q })
    expect(r.status).toBe(200)
    expect(r.json).toMatchObject({
      columns: [{ name: 'lotId', type: 'String' }, { name: 'best', type: 'Nullable(Float64)' }, { name: 'days', type: 'UInt64' }],
      rows: [{ lotId: 'P1', best: 0.2208, days: 2 }, { lotId: 'P2', best: 0.175, days: 2 }],
      rowCount: 2,
    })
    const csv = await sql({ sql: "SELECT status, count() AS n FROM analytics_parking_session WHERE lotId = 'P1' GROUP BY status ORDER BY status", format: 'csv' })
    expect(csv.text).toBe('status,n\r\ncapped,1\r\nentry_only,2\r\nexit_only,4\r\nmatched,7\r\nopen,1\r\n')
    // The views leave plate keys and ciphers out.
    expect((await sql({ sql: 'SELECT plateKey FROM analytics_parking_passage' })).json.code).toBe('CITYSYNC_ERR_ANALYTICS_SQL_FAILED')
  })

  it('refuses what reaches beyond the views, writes, settings and second statements', async () => {
    const refused: [string, RegExp][] = [
      ['SELECT * FROM parking_passage', /table default\.parking_passage is not one of the analytics views/],
      ['SELECT name FROM system.tables', /table system\.tables is not one of the analytics views/],
      ['SELECT count() FROM analytics_parking_lot_day WHERE lotId IN (SELECT name FROM system.tables)', /table system\.tables is not one of the analytics views/],
      ['SELECT (SELECT count() FROM parking_session) AS n', /table default\.parking_session is not one of the analytics views/],
      ["SELECT file('/etc/passwd')", /function file is not allowed/],
      ["SELECT * FROM file('/etc/passwd', 'LineAsString')", /table function file is not allowed/],
      ['SELECT * FROM numbers(10)', /table function numbers is not allowed/],
      ["SELECT dictGet('d', 'a', 1)", /function dictGet is not allowed/],
      ['SELECT sleep(3)', /function sleep is not allowed/],
      ['SELECT * FROM analytics_parking_lot SETTINGS readonly = 0', /SETTINGS are not allowed in the statement/],
      ['SELECT * FROM (SELECT * FROM analytics_parking_lot SETTINGS max_result_rows = 1000000)', /SETTINGS are not allowed in the statement/],
      ['SELECT 1; DROP TABLE parking_lot_day', /one statement only/],
      ["SELECT ';'", /one statement only/],
      [' ;  ', /the statement is empty/],
    ]
    for (const [text, message] of refused) {
      const r = await sql({ sql: text })
      expect(r.status, text).toBe(400)
      expect(r.json.code, text).toBe('CITYSYNC_ERR_ANALYTICS_SQL_REFUSED')
      expect(r.json.message, text).toMatch(message)
    }
    for (const text of ['INSERT INTO parking_lot_day SELECT * FROM parking_lot_day', 'DROP TABLE parking_lot_day', 'SELECT 1) SETTINGS readonly = 0 --', 'SELECT 1 FORMAT JSON']) {
      const r = await sql({ sql: text })
      expect(r.status, text).toBe(400)
      expect(['CITYSYNC_ERR_ANALYTICS_SQL_REFUSED', 'CITYSYNC_ERR_ANALYTICS_SQL_FAILED'], text).toContain(r.json.code)
    }
    // Nothing was dropped or written.
    expect(await warehouse.query('SELECT count() AS n FROM parking_lot_day FINAL')).toEqual([{ n: 6 }])
  })

  it('stops at the limits', async () => {
    const r = await sql({ sql: 'SELECT hour FROM analytics_parking_lot_hour' })
    expect(r.status).toBe(422)
    expect(r.json.code).toBe('CITYSYNC_ERR_ANALYTICS_SQL_LIMIT')
    expect(r.json.message).toMatch(/^analyst SQL stopped at a limit: .*Limit for result exceeded, max rows: 5/)
  })
})
