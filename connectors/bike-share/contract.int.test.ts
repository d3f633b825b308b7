import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import PQueue from 'p-queue'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { injectAsAdmin } from '../../api/test-stack.ts'
import { type Embedded, startEmbedded } from '../../cli/embedded.ts'
import { ManualClock } from '../../lib/clock.ts'
import { loadConfig } from '../../lib/config.ts'
import { isCitysyncError } from '../../lib/errors.ts'
import { Publisher } from '../../pipelines/publisher.ts'
import { stateStore } from '../sdk/manager.ts'
import { type RunOutcome, SourceRunner } from '../sdk/runtime.ts'
import { type BikeShareConfig, bikeShareConnector } from './connector.ts'
import { BikeShareSimulator, type SimFeed, type SimLayout, type SnapshotContent } from './simulator.ts'

// The connector against the simulator over real HTTP, both GBFS layouts and
// the trips API, through the embedded pipeline into ClickHouse (chDB), with
// every quirk the simulator has. Time is a manual clock shared by the
// simulator, the connector and the pipeline; each step is one snapshot (60 s).
//
// Scenario, by snapshot:
//   1, 4  epoch milliseconds in the 2.3 status files
//   2, 6  a station's vehicle count and a vehicle's lat are "unknown"
//   3, 7  a station and a vehicle listed twice, and a vehicle again with another position
//   2, 7  a station reports more vehicles than its capacity
//   4     stale: snapshot 3 again, same last_updated
//   5     every feed down (connections reset)
//   6     a ninth station opens
//   8     vehicle_status (3.0) and the trips API answer 503
// Then four reads 30 minutes apart (the snapshots between are never read), so
// that trips pile up: 15 % uploaded late (补传), 5 % with a defect, 5 % served twice.

const START = Date.parse('2026-11-21T00:00:00Z') // 08:00 in Shanghai
const STEPS = 10
/** Read times: one per snapshot for STEPS snapshots, then every 30 minutes. */
const READ_AT = [...Array.from({ length: STEPS }, (_, k) => k * 60_000), ...[1, 2, 3, 4].map((n) => (STEPS - 1) * 60_000 + n * 1_800_000)]
const FLEET = 60

const dir = mkdtempSync(join(tmpdir(), 'citysync-bike-contract-'))
const clock = new ManualClock(START)
const sim = new BikeShareSimulator({
  seed: 7,
  clock,
  stations: 8,
  fleet: FLEET,
  periodS: 60,
  quirks: {
    msEpochAt: [1, 4],
    unknownAt: [2, 6],
    duplicatesAt: [3, 7],
    aboveCapacityAt: [2, 7],
    staleAt: [4],
    stationAddedAt: [6],
    lateTripRate: 0.15,
    badTripRate: 0.05,
    duplicateTripRate: 0.05,
  },
})

interface Source {
  id: string
  layout: SimLayout
  vehicleFeed: SimFeed
  runner: SourceRunner
  /** Per read: the snapshot whose station_status and vehicle file it took, if any. */
  reads: { station: number | null; vehicle: number | null; outcome: RunOutcome | null; error: unknown }[]
}

let e: Embedded
const sources: Source[] = []
const q = async <T>(sql: string): Promise<T[]> => e.stores.warehouse.query<T>(sql)

beforeAll(async () => {
  await sim.start()
  e = await startEmbedded({ cfg: { ...loadConfig({ CITYSYNC_DATA_DIR: dir }), port: 0 }, demo: false, log: pino({ level: 'silent' }), clock, maxWaitMs: 10 })
  await injectAsAdmin(e.app, e.stores.metadata, clock)
  const configs: [string, SimLayout, BikeShareConfig][] = [
    ['bike-gbfs23', '2.3', { gbfsUrl: sim.gbfsUrl('2.3'), fleetSize: FLEET, trips: { baseUrl: sim.url, pageSize: 40 } }],
    ['bike-gbfs30', '3.0', { gbfsUrl: sim.gbfsUrl('3.0'), language: 'en' }],
  ]
  const queue = new PQueue({ concurrency: 2 })
  for (const [id, layout, config] of configs) {
    await e.stores.metadata.sources.add({
      id, kind: 'bike-share', name: id, operator: null, district: null, timezone: 'Asia/Shanghai',
      schedule: { every: '1s' }, freshness: { maxDelay: '2h' }, config: config as Record<string, unknown>,
    })
    const runner = new SourceRunner({
      source: { id, timezone: 'Asia/Shanghai', schedule: { everyMs: 1000 }, config },
      connector: bikeShareConnector,
      state: stateStore(e.stores.metadata),
      publisher: new Publisher({ sourceId: id, bus: e.bus, catalogue: e.stores.catalogue, clock, protectPlate: e.stores.protect }),
      clock,
      log: pino({ level: 'silent' }),
      queue,
    })
    sources.push({ id, layout, vehicleFeed: layout === '2.3' ? 'free_bike_status' : 'vehicle_status', runner, reads: [] })
  }

  for (const [step, offset] of READ_AT.entries()) {
    clock.set(START + offset + 1_000)
    if (step === 5) sim.setOutage(true, undefined, 'reset')
    if (step === 8) sim.setOutage(true, ['vehicle_status', 'trips'])
    for (const s of sources) {
      const before = { station: sim.servedContents(s.layout, 'station_status'), vehicle: sim.servedContents(s.layout, s.vehicleFeed) }
      // What this read took: a snapshot served for the first time (a stale repeat is not new).
      const taken = (feed: 'station' | 'vehicle', now: number[]): number | null => now.find((k) => !before[feed].includes(k)) ?? null
      let outcome: RunOutcome | null = null
      let error: unknown
      try {
        outcome = await s.runner.runOnce()
      } catch (err) {
        error = err
      }
      const station = sim.servedContents(s.layout, 'station_status')
      const vehicle = sim.servedContents(s.layout, s.vehicleFeed)
      s.reads.push({ station: taken('station', station), vehicle: taken('vehicle', vehicle), outcome, error })
    }
    sim.setOutage(false)
  }
}, 180_000)

afterAll(async () => {
  await e?.close()
  await sim.stop()
  rmSync(dir, { recursive: true, force: true })
})

/** Vehicles at stations in a snapshot: valid stations, once each. */
const atStations = (c: SnapshotContent) => c.stations.filter((s) => s.id !== c.unknownStation).reduce((n, s) => n + s.available + s.disabled, 0)
/** Vehicles not at a station in a snapshot: valid ones, once each. */
const elsewhere = (c: SnapshotContent) => c.vehicles.filter((v) => v.stationId === null && v.id !== c.unknownVehicle).length

/** The operator statuses the documented rule gives for what each read took. */
function expectedOperatorRows(s: Source): { at: number; vehiclesReporting: number }[] {
  let station: { at: number; n: number } | null = null
  let free: { at: number; n: number } | null = null
  let last = -Infinity
  const rows: { at: number; vehiclesReporting: number }[] = []
  for (const r of s.reads) {
    if (r.station !== null) station = { at: sim.snapshot(r.station).at, n: atStations(sim.snapshot(r.station)) }
    if (r.vehicle !== null) free = { at: sim.snapshot(r.vehicle).at, n: elsewhere(sim.snapshot(r.vehicle)) }
    if (station === null && free === null) continue
    const at = Math.max(station?.at ?? 0, free?.at ?? 0)
    if (at <= last) continue
    rows.push({ at, vehiclesReporting: (station?.n ?? 0) + (free?.n ?? 0) })
    last = at
  }
  return rows
}

interface Counts {
  stations: number
  stationStatus: number
  vehicleStatus: number
  operatorStatus: number
  trips: number
  dead: number
}

async function counts(id: string): Promise<Counts> {
  const [row] = await q<Record<keyof Counts, number>>(`
    SELECT (SELECT count() FROM bike_station WHERE sourceId = '${id}') AS stations,
           (SELECT count() FROM bike_station_status WHERE sourceId = '${id}') AS stationStatus,
           (SELECT count() FROM bike_vehicle_status WHERE sourceId = '${id}') AS vehicleStatus,
           (SELECT count() FROM bike_operator_status WHERE sourceId = '${id}') AS operatorStatus,
           (SELECT count() FROM bike_trip WHERE sourceId = '${id}') AS trips,
           (SELECT count() FROM dead_letter WHERE sourceId = '${id}') AS dead`)
  return Object.fromEntries(Object.entries(row!).map(([k, v]) => [k, Number(v)])) as unknown as Counts
}

async function deadByCode(id: string): Promise<Record<string, number>> {
  const rows = await q<{ code: string; n: number }>(`SELECT code, count() AS n FROM dead_letter WHERE sourceId = '${id}' GROUP BY code ORDER BY code`)
  return Object.fromEntries(rows.map((r) => [r.code, Number(r.n)]))
}

describe('bike-share connector against the simulator, through the pipeline', () => {
  it('reads every snapshot that was up, and fails the reads of the outages', () => {
    for (const s of sources) {
      const failed = s.reads.map((r, step) => (r.error === undefined ? null : step)).filter((x) => x !== null)
      expect(failed, s.id).toEqual([5, 8])
      expect(isCitysyncError(s.reads[5]!.error, 'CITYSYNC_ERR_CONNECTOR_PARTIAL')).toBe(true)
      expect(s.reads.map((r) => r.station)).toEqual([0, 1, 2, 3, null, null, 6, 7, 8, 9, 39, 69, 99, 129])
    }
    const [a, b] = sources as [Source, Source]
    // The 2.3 source fails at 8 for the trips API only; the 3.0 one for vehicle_status only, after its stations landed.
    expect((a.reads[8]!.error as Error).message).toMatch(/^upstream answered HTTP 503 to \/openapi\/v1\/bike\/orders\?cursor=o[0-9a-z]+&limit=40$/)
    expect((b.reads[8]!.error as Error).message).toBe(`upstream answered HTTP 503 to vehicle_status (${sim.url}/gbfs/3.0/vehicle_status.json)`)
    expect(b.reads.map((r) => r.vehicle)).toEqual([0, 1, 2, 3, null, null, 6, 7, null, 9, 39, 69, 99, 129])
    // The stale snapshot is recognised: the 3.0 source (no trips) yields no record at all at step 4.
    expect(b.reads[4]!.outcome).toMatchObject({ records: 0, rejected: 0 })
  })

  it.each(['2.3', '3.0'] as const)('GBFS %s: exact stations, statuses, vehicles and rejections in ClickHouse', async (layout) => {
    const s = sources.find((x) => x.layout === layout)!
    const truth = sim.expected(layout)
    const got = await counts(s.id)
    const operatorRows = expectedOperatorRows(s)
    expect(got).toMatchObject({ stations: truth.stations, stationStatus: truth.stationStatus, vehicleStatus: truth.vehicleStatus, operatorStatus: operatorRows.length })
    // 8 stations, then 9 once the ninth opened; unchanged station_information lands nothing.
    expect(truth.stations).toBe(17)
    // Two "unknown" snapshots x (one station + one vehicle); two conflicting vehicle duplicates.
    expect(truth.deadLetter).toEqual({ invalid_value: 4, duplicate_record: 2 })
    // The 2.3 source also reads the trips API.
    const expectedDead = { ...truth.deadLetter }
    if (layout === '2.3') for (const [code, n] of Object.entries(sim.expectedTrips().deadLetter)) expectedDead[code] = (expectedDead[code] ?? 0) + n
    expect(await deadByCode(s.id)).toEqual(expectedDead)

    const ops = await q<{ at: number; vehiclesReporting: number; fleetSize: number }>(
      `SELECT toUnixTimestamp64Milli(occurredAt) AS at, vehiclesReporting, fleetSize FROM bike_operator_status WHERE sourceId = '${s.id}' ORDER BY occurredAt`,
    )
    expect(ops.map((o) => ({ at: Number(o.at), vehiclesReporting: o.vehiclesReporting }))).toEqual(operatorRows)
    if (layout === '2.3') {
      expect(ops.every((o) => o.fleetSize === FLEET)).toBe(true)
    } else {
      // No configured fleet: the most vehicles seen reporting at once, never a count of (rotating) ids.
      let peak = 0
      for (const o of ops) {
        peak = Math.max(peak, o.vehiclesReporting)
        expect(o.fleetSize).toBe(peak)
      }
    }
  })

  it('rotating vehicle ids are not identities: more ids than vehicles, fleet and online rate unaffected', async () => {
    for (const s of sources) {
      const [row] = await q<{ ids: number; perSnapshot: number }>(
        `SELECT uniqExact(vehicleId) AS ids, (SELECT max(vehiclesReporting) FROM bike_operator_status WHERE sourceId = '${s.id}') AS perSnapshot FROM bike_vehicle_status WHERE sourceId = '${s.id}'`,
      )
      expect(Number(row!.ids)).toBe(sim.expected(s.layout).distinctVehicleIds)
      if (s.layout === '3.0') expect(Number(row!.ids)).toBeGreaterThan(FLEET)
      expect(Number(row!.perSnapshot)).toBeLessThanOrEqual(FLEET)
    }
  })

  it('keeps vehicles above a station capacity, and reads milliseconds as milliseconds', async () => {
    for (const s of sources) {
      const above = await q<{ stationId: string; at: number }>(`
        SELECT st.stationId AS stationId, toUnixTimestamp64Milli(st.occurredAt) AS at FROM bike_station_status AS st
        INNER JOIN (SELECT stationId, max(capacity) AS capacity FROM bike_station WHERE sourceId = '${s.id}' GROUP BY stationId) AS info USING (stationId)
        WHERE st.sourceId = '${s.id}' AND st.vehiclesAvailable > info.capacity ORDER BY at`)
      expect(above.map((r) => [r.stationId, Number(r.at)])).toEqual([
        [sim.snapshot(2).aboveCapacity, sim.snapshot(2).at],
        [sim.snapshot(7).aboveCapacity, sim.snapshot(7).at],
      ])
      const [range] = await q<{ lo: number; hi: number }>(
        `SELECT toUnixTimestamp64Milli(min(occurredAt)) AS lo, toUnixTimestamp64Milli(max(occurredAt)) AS hi FROM bike_station_status WHERE sourceId = '${s.id}'`,
      )
      expect(Number(range!.lo)).toBe(START)
      expect(Number(range!.hi)).toBe(sim.snapshot(129).at)
    }
  })

  it('trips: every one once, late uploads flagged, times read in the source zone, defects dead-lettered', async () => {
    const truth = sim.expectedTrips()
    const id = 'bike-gbfs23'
    const [row] = await q<{ n: number; backfill: number; ids: number }>(`SELECT count() AS n, countIf(isBackfill) AS backfill, uniqExact(tripId) AS ids FROM bike_trip WHERE sourceId = '${id}'`)
    expect({ n: Number(row!.n), backfill: Number(row!.backfill), ids: Number(row!.ids) }).toEqual({ n: truth.trips, backfill: truth.backfillTrips, ids: truth.trips })
    expect(truth.backfillTrips).toBeGreaterThan(0)
    expect(truth.repeats).toBeGreaterThan(0)
    expect(Object.keys(truth.deadLetter).sort()).toEqual(['invalid_value', 'missing_field'])
    const reasons = await q<{ reason: string }>(`SELECT reason FROM dead_letter WHERE sourceId = '${id}' AND family = 'BikeTrip' ORDER BY reason`)
    expect(reasons.length).toBe(Object.values(truth.deadLetter).reduce((x, y) => x + y, 0))
    expect(reasons.every((r) => /^trip (OD\d+|\?): /.test(r.reason))).toBe(true)
    // Spot-check one trip: naive 08:xx Shanghai wall time lands as 00:xx UTC.
    const first = sim.servedTrips().find((t) => t.defect === null)!
    const [trip] = await q<{ startedAt: number; endedAt: number; feeCents: number; coordSystem: string }>(
      `SELECT toUnixTimestamp64Milli(startedAt) AS startedAt, toUnixTimestamp64Milli(endedAt) AS endedAt, feeCents, coordSystem FROM bike_trip WHERE sourceId = '${id}' AND tripId = '${first.orderNo}'`,
    )
    expect({ ...trip, startedAt: Number(trip!.startedAt), endedAt: Number(trip!.endedAt) }).toEqual({ startedAt: first.startedAt, endedAt: first.endedAt, feeCents: first.feeCents, coordSystem: 'GCJ02' })
  })

  it('pins the figures of this scenario', async () => {
    const a = await counts('bike-gbfs23')
    const b = await counts('bike-gbfs30')
    expect({ a, b, deadA: await deadByCode('bike-gbfs23'), deadB: await deadByCode('bike-gbfs30') }).toEqual({
      a: { stations: 17, stationStatus: 94, vehicleStatus: 122, operatorStatus: 12, trips: 228, dead: 17 },
      b: { stations: 17, stationStatus: 94, vehicleStatus: 240, operatorStatus: 12, trips: 0, dead: 6 },
      deadA: { duplicate_record: 2, invalid_value: 14, missing_field: 1 },
      deadB: { duplicate_record: 2, invalid_value: 4 },
    })
  })

  it('reading everything again from an empty cursor lands nothing twice', async () => {
    const a = sources[0]!
    const before = await counts(a.id)
    await e.stores.metadata.connectorState.resetCursor(a.id, 'test')
    clock.advance(1_000)
    const outcome = await a.runner.runOnce()
    expect(outcome.records).toBeGreaterThan(0)
    // The defective trips are refused again, under the same dead-letter ids, so dead_letter keeps one
    // row each. station_information is republished with every snapshot under a new last_updated; the
    // one taken now is a snapshot not landed before (the content check that skips it needs the
    // cursor), so its stations land once. Nothing else changes.
    const badTrips = Object.values(sim.expectedTrips().deadLetter).reduce((x, y) => x + y, 0)
    expect(outcome.rejected).toBe(badTrips)
    expect(await counts(a.id)).toEqual({ ...before, stations: before.stations + sim.stationCount(129) })
    const status = (await e.app.inject(`/api/v1/sources/${a.id}/status`)).json<{ rowsRejected: number; lastError: string | null }>()
    expect(status).toMatchObject({ rowsRejected: before.dead })
  })
})
