import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Ajv } from 'ajv'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { injectAsAdmin } from '../../api/test-stack.ts'
import { type Embedded, startEmbedded } from '../../cli/embedded.ts'
import { loadConfig } from '../../lib/config.ts'
import { requireService } from '../../infra/test/services.ts'
import { ManualClock } from '../../lib/clock.ts'
import { type BikeShareCursor } from './schedule.ts'
import { BikeShareSimulator } from './simulator.ts'

// Real published GBFS snapshots (four systems: 2.2, 2.3, two 3.0), each
// folder served verbatim over HTTP, read by the connector and landed in
// ClickHouse through the embedded pipeline. What lands is compared with
// figures this test reads from the JSON itself.

const SAMPLES = process.env.CITYSYNC_GBFS_SAMPLES ?? '/work/shared/samples/gbfs'
const SYSTEMS = ['lillestrombysykkel-v2.2', 'callabike-darmstadt-v2.3', 'check-almere-v3.0', 'ecovelo-velodaqui-v3.0'] as const
const available = requireService('GBFS sample feeds', SYSTEMS.every((s) => existsSync(join(SAMPLES, s, 'gbfs.json'))), `set CITYSYNC_GBFS_SAMPLES; looked in ${SAMPLES}`)

type Json = Record<string, unknown>
const readJson = (system: string, file: string): Json => JSON.parse(readFileSync(join(SAMPLES, system, `${file}.json`), 'utf8')) as Json

interface Figures {
  feeds: string[]
  stations: number
  stationStatuses: number
  vehiclesAvailableAtStations: number
  vehicles: number
  vehiclesReporting: number
  newestStatusAt: number
}

/** What each system's files hold, read independently of the connector. */
function figuresOf(system: string): Figures {
  const discovery = readJson(system, 'gbfs')
  const data = discovery.data as Json
  const feedList = (Array.isArray(data.feeds) ? data.feeds : (Object.values(data)[0] as Json).feeds) as { name: string }[]
  const feeds = feedList.map((f) => f.name)
  const toMs = (v: unknown): number => (typeof v === 'number' ? v * 1000 : Date.parse(String(v)))
  const list = (file: string, key: string): Json[] => (feeds.includes(file) ? ((readJson(system, file).data as Json)[key] as Json[]) : [])
  const statuses = list('station_status', 'stations')
  const vehicleFile = feeds.includes('vehicle_status') ? 'vehicle_status' : 'free_bike_status'
  const vehicles = list(vehicleFile, feeds.includes('vehicle_status') ? 'vehicles' : 'bikes')
  const count = (s: Json, ...fields: string[]): number => Number(fields.map((f) => s[f]).find((v) => v !== undefined) ?? 0)
  const times = [feeds.includes('station_status') ? toMs(readJson(system, 'station_status').last_updated) : 0, feeds.includes(vehicleFile) ? toMs(readJson(system, vehicleFile).last_updated) : 0]
  return {
    feeds,
    stations: list('station_information', 'stations').length,
    stationStatuses: statuses.length,
    vehiclesAvailableAtStations: statuses.reduce((n, s) => n + count(s, 'num_vehicles_available', 'num_bikes_available'), 0),
    vehicles: vehicles.length,
    vehiclesReporting:
      statuses.reduce((n, s) => n + count(s, 'num_vehicles_available', 'num_bikes_available') + count(s, 'num_vehicles_disabled', 'num_bikes_disabled'), 0) +
      vehicles.filter((v) => v.station_id === undefined).length,
    newestStatusAt: Math.max(...times),
  }
}

describe.skipIf(!available)('official GBFS JSON Schemas accept the samples', () => {
  // Draft-07 schemas; `errorMessage` is an ajv-errors keyword that only words messages.
  const formats = {
    uri: (s: string) => URL.canParse(s),
    email: (s: string) => /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(s),
    date: (s: string) => /^\d{4}-\d{2}-\d{2}$/.test(s) && !Number.isNaN(Date.parse(s)),
    'date-time': (s: string) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i.test(s) && !Number.isNaN(Date.parse(s)),
  }
  const validatorFor = (version: string, file: string) => {
    const ajv = new Ajv({ allErrors: true, strict: false, formats })
    ajv.addKeyword('errorMessage')
    return ajv.compile(JSON.parse(readFileSync(join(SAMPLES, 'schemas', version, `${file}.json`), 'utf8')) as object)
  }
  const schemaFiles = (version: string) => readdirSync(join(SAMPLES, 'schemas', version)).map((f) => f.replace(/\.json$/, ''))

  it.each([
    ['callabike-darmstadt-v2.3', 'v2.3'],
    ['check-almere-v3.0', 'v3.0'],
    ['ecovelo-velodaqui-v3.0', 'v3.0'],
  ])('%s validates against the %s schemas with no error', (system, version) => {
    const checked: string[] = []
    for (const file of schemaFiles(version)) {
      if (!existsSync(join(SAMPLES, system, `${file}.json`))) continue
      const validate = validatorFor(version, file)
      expect(validate(readJson(system, file)), `${file}: ${JSON.stringify(validate.errors)}`).toBe(true)
      checked.push(file)
    }
    expect(checked.length).toBeGreaterThanOrEqual(3)
  })

  it('the simulator serves files the same schemas accept, in both layouts', async () => {
    const sim = new BikeShareSimulator({ seed: 2, clock: new ManualClock('2026-11-21T00:00:00Z') })
    await sim.start()
    try {
      for (const [layout, version, prefix, vehicleFile] of [['2.3', 'v2.3', 'zh/', 'free_bike_status'], ['3.0', 'v3.0', '', 'vehicle_status']] as const) {
        for (const file of ['gbfs', 'system_information', 'station_information', 'station_status', vehicleFile]) {
          const body: unknown = await (await fetch(`${sim.url}/gbfs/${layout}/${file === 'gbfs' ? '' : prefix}${file}.json`)).json()
          const validate = validatorFor(version, file)
          expect(validate(body), `${layout} ${file}: ${JSON.stringify(validate.errors)}`).toBe(true)
        }
      }
    } finally {
      await sim.stop()
    }
  })

  it('lillestrombysykkel (2.2) fails the 2.3 schemas on its version only', () => {
    const system = 'lillestrombysykkel-v2.2'
    for (const file of ['gbfs', 'system_information', 'station_information', 'station_status']) {
      const validate = validatorFor('v2.3', file)
      expect(validate(readJson(system, file))).toBe(false)
      expect(validate.errors?.map((e) => [e.instancePath, e.keyword, e.params])).toEqual([['/version', 'const', { allowedValue: '2.3' }]])
    }
  })
})

describe.skipIf(!available)('real GBFS snapshots through the pipeline', () => {
  const dir = mkdtempSync(join(tmpdir(), 'citysync-gbfs-samples-'))
  const servers: Server[] = []
  let e: Embedded
  const sourceOf = (system: string) => `gbfs-${system.replace(/[^a-z0-9]+/g, '-')}`.slice(0, 60)

  /** Serves a sample folder's files byte for byte; gbfs.json is left as published. */
  async function serve(system: string): Promise<string> {
    const server = createServer((req, res) => {
      const name = (req.url ?? '').replace(/^\//, '')
      const path = join(SAMPLES, system, name)
      if (!/^[a-z_]+\.json$/.test(name) || !existsSync(path)) {
        res.writeHead(404).end()
        return
      }
      const body = readFileSync(path)
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }).end(body)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    servers.push(server)
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  beforeAll(async () => {
    e = await startEmbedded({ cfg: { ...loadConfig({ CITYSYNC_DATA_DIR: dir }), port: 0 }, demo: false, log: pino({ level: 'silent' }), maxWaitMs: 20 })
    await injectAsAdmin(e.app, e.stores.metadata)
    for (const system of SYSTEMS) {
      const base = await serve(system)
      const id = sourceOf(system)
      // The published gbfs.json lists file: and upstream https URLs; the files are read from this mirror.
      await e.stores.metadata.sources.add({
        id, kind: 'bike-share', name: system, operator: null, district: null, timezone: 'Asia/Shanghai',
        schedule: { every: '1s' }, freshness: { maxDelay: '2h' }, config: { gbfsUrl: `${base}/gbfs.json`, feedBaseUrl: base },
      })
      await e.stores.metadata.sources.setDesiredState(id, 'deployed', 'test')
    }
    await e.manager.reconcile()
    // Done when every listed file this connector reads has been taken and the operator status is out.
    for (const system of SYSTEMS) {
      const wanted = figuresOf(system).feeds.filter((f) => ['system_information', 'vehicle_types', 'station_information', 'station_status', 'free_bike_status', 'vehicle_status'].includes(f))
      for (const deadline = Date.now() + 60_000; ; ) {
        const c = (await e.stores.metadata.connectorState.get(sourceOf(system))).cursor as BikeShareCursor | null
        if (c?.operator && wanted.every((f) => c.files[f as keyof BikeShareCursor['files']] !== undefined)) break
        if (Date.now() > deadline) throw new Error(`${system}: cursor stuck at ${JSON.stringify(c)}`)
        await new Promise((r) => setTimeout(r, 100))
      }
    }
  }, 120_000)

  afterAll(async () => {
    await e?.close()
    for (const s of servers) await new Promise<void>((resolve) => s.close(() => resolve()))
    rmSync(dir, { recursive: true, force: true })
  })

  const one = async <T>(sql: string): Promise<T> => (await e.stores.warehouse.query<T>(sql))[0]!

  it.each(SYSTEMS)('%s: stations and vehicles in ClickHouse are those in the files', async (system) => {
    const id = sourceOf(system)
    const f = figuresOf(system)
    const got = await one<{ stations: number; statuses: number; available: number; vehicles: number; dead: number }>(`
      SELECT (SELECT count() FROM bike_station WHERE sourceId = '${id}') AS stations,
             (SELECT count() FROM bike_station_status WHERE sourceId = '${id}') AS statuses,
             (SELECT sum(vehiclesAvailable) FROM bike_station_status WHERE sourceId = '${id}') AS available,
             (SELECT count() FROM bike_vehicle_status WHERE sourceId = '${id}') AS vehicles,
             (SELECT count() FROM dead_letter WHERE sourceId = '${id}') AS dead`)
    expect({ ...got, available: Number(got.available) }).toEqual({
      stations: f.stations,
      statuses: f.stationStatuses,
      available: f.vehiclesAvailableAtStations,
      vehicles: f.vehicles,
      dead: 0,
    })
    const op = await e.stores.warehouse.query<{ fleetSize: number; vehiclesReporting: number; at: number; operatorId: string }>(
      `SELECT fleetSize, vehiclesReporting, toUnixTimestamp64Milli(occurredAt) AS at, operatorId FROM bike_operator_status WHERE sourceId = '${id}'`,
    )
    const systemId = (readJson(system, 'system_information').data as Json).system_id
    expect(op.map((r) => ({ ...r, at: Number(r.at) }))).toEqual([
      { fleetSize: f.vehiclesReporting, vehiclesReporting: f.vehiclesReporting, at: f.newestStatusAt, operatorId: systemId },
    ])
  })

  it('pins the figures of the four systems', async () => {
    const rows = await e.stores.warehouse.query<{ sourceId: string; t: string; n: number }>(`
      SELECT sourceId, 'station' AS t, count() AS n FROM bike_station GROUP BY sourceId
      UNION ALL SELECT sourceId, 'status', count() FROM bike_station_status GROUP BY sourceId
      UNION ALL SELECT sourceId, 'vehicle', count() FROM bike_vehicle_status GROUP BY sourceId
      UNION ALL SELECT sourceId, 'operator', count() FROM bike_operator_status GROUP BY sourceId`)
    const table: Record<string, Record<string, number>> = {}
    for (const r of rows) (table[r.sourceId] ??= {})[r.t] = Number(r.n)
    expect(table).toEqual({
      [sourceOf('lillestrombysykkel-v2.2')]: { station: 6, status: 6, operator: 1 },
      [sourceOf('callabike-darmstadt-v2.3')]: { station: 1, status: 1, vehicle: 1, operator: 1 },
      [sourceOf('check-almere-v3.0')]: { vehicle: 6, operator: 1 },
      [sourceOf('ecovelo-velodaqui-v3.0')]: { station: 6, status: 6, operator: 1 },
    })
  })

  it('keeps times as published: seconds, and RFC 3339 with their offsets', async () => {
    const id = sourceOf('ecovelo-velodaqui-v3.0')
    const times = await e.stores.warehouse.query<{ t: number }>(`SELECT DISTINCT toUnixTimestamp64Milli(occurredAt) AS t FROM bike_station_status WHERE sourceId = '${id}'`)
    expect(times.map((r) => Number(r.t))).toEqual([Date.parse('2025-10-21T06:13:12+02:00')])
    const almere = await e.stores.warehouse.query<{ t: number }>(`SELECT DISTINCT toUnixTimestamp64Milli(occurredAt) AS t FROM bike_vehicle_status WHERE sourceId = '${sourceOf('check-almere-v3.0')}'`)
    // No last_reported in Almere's vehicles: the file's last_updated, microseconds cut to milliseconds.
    expect(almere.map((r) => Number(r.t))).toEqual([Date.parse('2025-05-21T07:48:04.229Z')])
    const lille = await one<{ n: number; names: string[] }>(`SELECT count() AS n, groupArray(name) AS names FROM bike_station WHERE sourceId = '${sourceOf('lillestrombysykkel-v2.2')}' AND coordSystem = 'WGS84' AND capacity BETWEEN 1 AND 6`)
    expect(Number(lille.n)).toBe(6)
    expect(lille.names).toContain('LILLESTRØM STASJON')
  })

  it('reports every row landed on the source status, and re-reading the same snapshots lands nothing more', async () => {
    const id = sourceOf('lillestrombysykkel-v2.2')
    const status = (await e.app.inject(`/api/v1/sources/${id}/status`)).json<{ rowsLanded: number; rowsRejected: number; lastError: string | null }>()
    expect(status).toMatchObject({ rowsLanded: 6 + 6 + 1, rowsRejected: 0, lastError: null })
    // Forget the cursor: everything is fetched again and every event id is one already landed.
    await e.stores.metadata.connectorState.resetCursor(id, 'test')
    for (const deadline = Date.now() + 30_000; ; ) {
      const c = (await e.stores.metadata.connectorState.get(id)).cursor as BikeShareCursor | null
      if (c?.operator) break
      if (Date.now() > deadline) throw new Error('not read again')
      await new Promise((r) => setTimeout(r, 100))
    }
    const got = await one<{ s: number; st: number; o: number; d: number }>(`
      SELECT (SELECT count() FROM bike_station WHERE sourceId = '${id}') AS s,
             (SELECT count() FROM bike_station_status WHERE sourceId = '${id}') AS st,
             (SELECT count() FROM bike_operator_status WHERE sourceId = '${id}') AS o,
             (SELECT count() FROM dead_letter WHERE sourceId = '${id}') AS d`)
    expect(got).toEqual({ s: 6, st: 6, o: 1, d: 0 })
  })
})
