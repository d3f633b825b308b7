import { createServer, type Server } from 'node:http'
import { type AddressInfo } from 'node:net'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { type Clock, ManualClock } from '../../lib/clock.ts'
import { isCitysyncError } from '../../lib/errors.ts'
import { compileConnectorSchema } from '../../lib/source-config.ts'
import { type Draft, type EventName } from '../../schemas/events.ts'
import { type Ctx, type ItemErrorMessage, type RecordMessage, type SourceMessage, type StatusMessage } from '../sdk/connector.ts'
import { type BikeShareConfig, type BikeShareCursor, bikeShareConnector } from './connector.ts'
import { BikeShareSimulator, type BikeSimulatorOptions } from './simulator.ts'

// The connector against the simulator over real HTTP, without the pipeline:
// what it yields, what it fetches and when.

const START = '2026-11-21T00:00:00Z' // 08:00 in Shanghai
type Msg = SourceMessage<BikeShareCursor>

const running: { stop(): Promise<void> }[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()))
})

function makeCtx(clock: Clock): Ctx {
  return {
    sourceId: 'test-bike',
    timezone: 'Asia/Shanghai',
    clock,
    log: pino({ level: 'silent' }),
    signal: new AbortController().signal,
    fetch: (url, init = {}) => {
      const { timeoutMs, ...rest } = init
      return fetch(url, { ...rest, signal: AbortSignal.timeout(timeoutMs ?? 5000) })
    },
  }
}

async function collect(iter: AsyncIterable<Msg>): Promise<Msg[]> {
  const out: Msg[] = []
  for await (const m of iter) out.push(m)
  return out
}

/** Reads once; a read that throws still gives what it yielded before. */
async function readOnce(config: BikeShareConfig, cursor: BikeShareCursor | undefined, clock: Clock): Promise<{ msgs: Msg[]; error: unknown }> {
  const msgs: Msg[] = []
  try {
    for await (const m of bikeShareConnector.read(config, cursor, makeCtx(clock))) msgs.push(m)
    return { msgs, error: undefined }
  } catch (error) {
    return { msgs, error }
  }
}

async function startSim(options: BikeSimulatorOptions = {}) {
  const clock = new ManualClock(START)
  const sim = new BikeShareSimulator({ seed: 3, clock, stations: 6, fleet: 40, ...options })
  running.push(sim)
  const url = await sim.start()
  return { sim, clock, url }
}

const records = <N extends EventName>(ms: Msg[], event: N) =>
  ms.filter((m): m is RecordMessage => m.type === 'record' && m.event === event).map((m) => m.draft as Draft<N>)
const errors = (ms: Msg[]) => ms.filter((m): m is ItemErrorMessage => m.type === 'itemError')
const statuses = (ms: Msg[]) => ms.filter((m): m is StatusMessage => m.type === 'status').map((m) => m.message)
const lastCursor = (ms: Msg[]) => ms.flatMap((m) => (m.type === 'checkpoint' ? [m.cursor] : [])).at(-1)

describe('bikeShareConnector.read against the simulator', () => {
  it('reads a GBFS 2.3 system: stations, statuses, free vehicles, operator status, and keeps each file on its ttl', async () => {
    const { sim, clock } = await startSim()
    const config: BikeShareConfig = { gbfsUrl: sim.gbfsUrl('2.3'), fleetSize: 40 }
    const first = await collect(bikeShareConnector.read(config, undefined, makeCtx(clock)))
    const snap = sim.snapshot(0)

    expect(records(first, 'BikeStation').map((s) => [s.stationId, s.name, s.capacity, s.coordSystem, s.occurredAt])).toEqual(
      sim.stations.slice(0, 6).map((s) => [s.id, s.nameZh, s.capacity, 'WGS84', snap.at]),
    )
    expect(records(first, 'BikeStationStatus').map((s) => [s.stationId, s.vehiclesAvailable, s.docksAvailable, s.isRenting, s.occurredAt])).toEqual(
      snap.stations.map((s) => [s.id, s.available, s.docks, s.renting, s.reportedAt]),
    )
    const free = snap.vehicles.filter((v) => v.stationId === null)
    expect(records(first, 'BikeVehicleStatus').map((v) => [v.vehicleId, v.lat, v.lon, v.stationId, v.isReserved, v.isDisabled, v.occurredAt])).toEqual(
      free.map((v) => [v.id, v.lat, v.lon, null, v.reserved, v.disabled, v.reportedAt]),
    )
    expect(records(first, 'BikeOperatorStatus')).toEqual([
      { occurredAt: snap.at, operatorId: 'citysim', fleetSize: 40, vehiclesReporting: BikeShareSimulator.vehiclesReporting(snap) },
    ])
    expect(errors(first)).toEqual([])
    const cursor = lastCursor(first)!
    expect(cursor.discovery).toMatchObject({ version: '2.3', language: 'zh', nextFetchAt: clock.now() + 300_000 })
    expect(cursor.files).toMatchObject({
      system_information: { nextFetchAt: clock.now() + 3_600_000 },
      station_information: { lastUpdated: snap.at, nextFetchAt: clock.now() + 300_000 },
      station_status: { lastUpdated: snap.at, nextFetchAt: clock.now() + 60_000 },
      free_bike_status: { lastUpdated: snap.at, nextFetchAt: clock.now() + 60_000 },
    })

    // Called again before any ttl ran out: nothing is fetched, nothing yielded.
    const requestsBefore = sim.requests('/gbfs/2.3/zh/station_status.json')
    clock.advance(59_000)
    expect(await collect(bikeShareConnector.read(config, cursor, makeCtx(clock)))).toEqual([])
    expect(sim.requests('/gbfs/2.3/zh/station_status.json')).toBe(requestsBefore)
    expect(sim.requests('/gbfs/2.3/gbfs.json')).toBe(1)

    // At 60 s only the status files are due; station_information (ttl 300) is not.
    clock.advance(1_000)
    const second = await collect(bikeShareConnector.read(config, cursor, makeCtx(clock)))
    expect(sim.requests('/gbfs/2.3/zh/station_status.json')).toBe(requestsBefore + 1)
    expect(sim.requests('/gbfs/2.3/zh/station_information.json')).toBe(1)
    expect(sim.requests('/gbfs/2.3/zh/system_information.json')).toBe(1)
    expect(records(second, 'BikeStation')).toEqual([])
    expect(records(second, 'BikeOperatorStatus')).toHaveLength(1)
    expect(records(second, 'BikeOperatorStatus')[0]!.occurredAt).toBe(sim.snapshot(1).at)
  })

  it('reads a GBFS 3.0 system: RFC 3339 times, localised names, docked vehicles with their station', async () => {
    const { sim, clock } = await startSim()
    const msgs = await collect(bikeShareConnector.read({ gbfsUrl: sim.gbfsUrl('3.0'), language: 'en' }, undefined, makeCtx(clock)))
    const snap = sim.snapshot(0)
    expect(records(msgs, 'BikeStation').map((s) => s.name)).toEqual(sim.stations.slice(0, 6).map((s) => s.nameEn))
    expect(records(msgs, 'BikeStationStatus').map((s) => s.occurredAt)).toEqual(snap.stations.map((s) => s.reportedAt))
    const vehicles = records(msgs, 'BikeVehicleStatus')
    expect(vehicles.map((v) => [v.vehicleId, v.stationId, v.lat, v.occurredAt])).toEqual(snap.vehicles.map((v) => [v.id, v.stationId, v.lat, v.reportedAt]))
    expect(vehicles.some((v) => v.stationId !== null && v.lat === null)).toBe(true)
    // Without a configured fleet, the fleet is the most vehicles seen reporting at once.
    const reporting = BikeShareSimulator.vehiclesReporting(snap)
    expect(records(msgs, 'BikeOperatorStatus')).toEqual([{ occurredAt: snap.at, operatorId: 'citysim', fleetSize: reporting, vehiclesReporting: reporting }])
  })

  it('rejects quirky items with their reasons, skips a stale snapshot, reads epoch milliseconds', async () => {
    const { sim, clock } = await startSim({ quirks: { unknownAt: [1], msEpochAt: [1], staleAt: [2] } })
    const config: BikeShareConfig = { gbfsUrl: sim.gbfsUrl('2.3'), operatorId: 'nanshan-bikes' }
    const first = await collect(bikeShareConnector.read(config, undefined, makeCtx(clock)))
    clock.advance(60_000)
    const second = await collect(bikeShareConnector.read(config, lastCursor(first), makeCtx(clock)))
    const snap = sim.snapshot(1)
    expect(errors(second).map((e) => [e.event, e.code, e.reason])).toEqual([
      ['BikeStationStatus', 'invalid_value', `station_status station ${snap.unknownStation}: num_bikes_available is not a number: "unknown"`],
      ['BikeVehicleStatus', 'invalid_value', `free_bike_status vehicle ${snap.unknownVehicle}: lat is not a coordinate: "unknown"`],
    ])
    const raw = JSON.parse(errors(second)[0]!.raw) as Record<string, unknown>
    expect(raw).toMatchObject({ station_id: snap.unknownStation, num_bikes_available: 'unknown' })
    expect(typeof raw.last_reported).toBe('number')
    // Milliseconds are read as such: the times are the snapshot's, not 1000 times later.
    expect(records(second, 'BikeOperatorStatus')[0]).toMatchObject({ occurredAt: snap.at, operatorId: 'nanshan-bikes' })
    expect(statuses(second)).toContain('station_status: last_updated is in epoch milliseconds, not seconds; read as such')

    clock.advance(60_000)
    const third = await collect(bikeShareConnector.read(config, lastCursor(second), makeCtx(clock)))
    expect(third.filter((m) => m.type === 'record')).toEqual([])
    expect(statuses(third)).toEqual([
      'station_status: last_updated is in epoch milliseconds, not seconds; read as such',
      `station_status: same snapshot as before (last_updated ${new Date(snap.at).toISOString()}); skipped`,
      'free_bike_status: last_updated is in epoch milliseconds, not seconds; read as such',
      `free_bike_status: same snapshot as before (last_updated ${new Date(snap.at).toISOString()}); skipped`,
    ])
    // The ttl restarts even for a stale snapshot.
    expect(lastCursor(third)!.files.station_status).toEqual({ lastUpdated: snap.at, nextFetchAt: clock.now() + 60_000 })
  })

  it('goes on past a file that fails, then fails the read naming it; the others are checkpointed', async () => {
    const { sim, clock } = await startSim()
    const config: BikeShareConfig = { gbfsUrl: sim.gbfsUrl('3.0') }
    sim.setOutage(true, ['station_status'])
    const { msgs, error } = await readOnce(config, undefined, clock)
    expect(isCitysyncError(error, 'CITYSYNC_ERR_CONNECTOR_HTTP')).toBe(true)
    expect((error as Error).message).toBe(`upstream answered HTTP 503 to station_status (${sim.url}/gbfs/3.0/station_status.json)`)
    expect(records(msgs, 'BikeStation')).toHaveLength(6)
    expect(records(msgs, 'BikeVehicleStatus').length).toBeGreaterThan(0)
    const cursor = lastCursor(msgs)!
    expect(cursor.files.station_status).toBeUndefined()
    expect(cursor.files.vehicle_status).toBeDefined()

    // Every feed down: the read fails with all of them named, and yields no record.
    sim.setOutage(true)
    clock.advance(60_000)
    const all = await readOnce(config, cursor, clock)
    expect(isCitysyncError(all.error, 'CITYSYNC_ERR_CONNECTOR_PARTIAL')).toBe(true)
    expect((all.error as Error).message).toMatch(/^2 upstream feeds failed: upstream answered HTTP 503 to station_status .*; upstream answered HTTP 503 to vehicle_status/)
    expect(all.msgs.filter((m) => m.type === 'record')).toEqual([])

    // Back up: the station statuses are read, the vehicles again after their ttl.
    sim.setOutage(false)
    const back = await readOnce(config, cursor, clock)
    expect(back.error).toBeUndefined()
    expect(records(back.msgs, 'BikeStationStatus')).toHaveLength(6)
    expect(records(back.msgs, 'BikeOperatorStatus')).toHaveLength(1)
  })

  it('refuses feed URLs it cannot fetch, and reads them from feedBaseUrl when configured', async () => {
    const files: Record<string, unknown> = {
      '/gbfs.json': { last_updated: 1_763_683_200, ttl: 60, version: '2.2', data: { nb: { feeds: [
        { name: 'system_information', url: 'file:src/test/resources/system_information.json' },
        { name: 'station_status', url: 'file:src/test/resources/station_status.json' },
      ] } } },
      '/mirror/system_information.json': { last_updated: 1_763_683_200, ttl: 60, version: '2.2', data: { system_id: 'oslo', name: 'Oslo' } },
      '/mirror/station_status.json': { last_updated: 1_763_683_200, ttl: 60, version: '2.2', data: { stations: [
        { station_id: 'A', num_bikes_available: 3, num_docks_available: 1, is_installed: 1, is_renting: true, is_returning: 'true', last_reported: 1_763_683_100 },
      ] } },
    }
    const server: Server = createServer((req, res) => {
      const body = files[req.url ?? '']
      res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body ?? {}))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    running.push({ stop: () => new Promise<void>((resolve) => server.close(() => resolve())) })
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const clock = new ManualClock(START)

    const refused = await readOnce({ gbfsUrl: `${base}/gbfs.json` }, undefined, clock)
    expect((refused.error as Error).message).toContain('system_information is published at file:src/test/resources/system_information.json, which is not an http(s) URL; set feedBaseUrl')

    const mirrored = await readOnce({ gbfsUrl: `${base}/gbfs.json`, feedBaseUrl: `${base}/mirror` }, undefined, clock)
    expect(mirrored.error).toBeUndefined()
    expect(records(mirrored.msgs, 'BikeStationStatus')).toEqual([
      { occurredAt: 1_763_683_100_000, operatorId: 'oslo', stationId: 'A', vehiclesAvailable: 3, docksAvailable: 1, isInstalled: true, isRenting: true, isReturning: true },
    ])
  })

  it('reads the trips API from its cursor: local times in the source zone, late uploads flagged, defects rejected', async () => {
    const { sim, clock, url } = await startSim({ quirks: { lateTripRate: 0.2, badTripRate: 0.1 } })
    clock.advance(3 * 3_600_000)
    const config: BikeShareConfig = { operatorId: 'nanshan-bikes', trips: { baseUrl: url, pageSize: 50 } }
    const msgs = await collect(bikeShareConnector.read(config, undefined, makeCtx(clock)))
    const served = sim.servedTrips()
    const good = served.filter((t) => t.defect === null)
    expect(served.length).toBeGreaterThan(150)
    const trips = records(msgs, 'BikeTrip')
    expect(trips.map((t) => [t.tripId, t.startedAt, t.endedAt, t.occurredAt, t.durationS, t.distanceM, t.feeCents, t.isBackfill, t.startLat, t.endLon, t.coordSystem])).toEqual(
      good.map((t) => [t.orderNo, t.startedAt, t.endedAt, t.endedAt, t.durationS, t.distanceM, t.feeCents, t.isReupload, t.start.lat, t.end.lon, 'GCJ02']),
    )
    expect(trips.some((t) => t.isBackfill)).toBe(true)
    // Uploaded late means out of time order: a cursor on trip times would have skipped these.
    expect(trips.some((t, i) => i > 0 && t.endedAt < trips[i - 1]!.endedAt)).toBe(true)
    const bad = served.filter((t) => t.defect !== null)
    expect(errors(msgs).map((e) => e.code)).toEqual(bad.map((t) => ({ missing_order_no: 'missing_field', unknown_fee: 'invalid_value', unknown_distance: 'invalid_value', end_before_start: 'invalid_value' })[t.defect!]))
    expect(new Set(bad.map((t) => t.defect))).toEqual(new Set(['missing_order_no', 'unknown_fee', 'unknown_distance', 'end_before_start']))
    expect(errors(msgs).find((e) => e.code === 'missing_field')!.reason).toBe('trip ?: missing field orderNo')
    const cursor = lastCursor(msgs)!
    expect(cursor.trips).toEqual({ cursor: `o${served.length.toString(36)}` })

    // Later: only what reached the platform since.
    clock.advance(600_000)
    const more = await collect(bikeShareConnector.read(config, cursor, makeCtx(clock)))
    const after = sim.servedTrips().slice(served.length)
    expect(after.length).toBeGreaterThan(0)
    expect(records(more, 'BikeTrip').length + errors(more).length).toBe(after.length)
  })

  it('checks a source: the GBFS version and feeds, the system id, the trips API', async () => {
    const { sim, clock, url } = await startSim()
    expect(await bikeShareConnector.check({ gbfsUrl: sim.gbfsUrl('3.0'), trips: { baseUrl: url } }, makeCtx(clock))).toEqual({
      ok: true,
      message: 'GBFS 3.0 with system_information, vehicle_types, station_information, station_status, vehicle_status; trips API answers (no orders yet)',
      details: { gbfsVersion: '3.0', language: null, feeds: ['system_information', 'vehicle_types', 'station_information', 'station_status', 'vehicle_status'], systemId: 'citysim', tripsReachable: true },
    })
    sim.setOutage(true, ['gbfs'])
    expect(await bikeShareConnector.check({ gbfsUrl: sim.gbfsUrl('2.3') }, makeCtx(clock))).toEqual({
      ok: false,
      message: `upstream answered HTTP 503 to gbfs (${sim.gbfsUrl('2.3')})`,
    })
  })

  it('has a config schema that takes the example and refuses a source with nothing to read', () => {
    const validate = compileConnectorSchema(bikeShareConnector.configSchema)
    expect(validate({ gbfsUrl: 'https://gbfs.example/gbfs.json', fleetSize: 1200, trips: { baseUrl: 'https://op.example/', appKey: 'k' } })).toBe(true)
    expect(validate({ trips: { baseUrl: 'https://op.example/' }, operatorId: 'hellobike' })).toBe(true)
    expect(validate({ trips: { baseUrl: 'https://op.example/' } })).toBe(false)
    expect(validate({ gbfsUrl: 'file:/tmp/gbfs.json' })).toBe(false)
    expect(validate({ gbfsUrl: 'https://gbfs.example/gbfs.json', fleetSize: 0 })).toBe(false)
  })
})
