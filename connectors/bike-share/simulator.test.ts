import { afterEach, describe, expect, it } from 'vitest'
import { ManualClock } from '../../lib/clock.ts'
import { BikeShareSimulator, wgs84ToGcj02 } from './simulator.ts'

const START = Date.parse('2026-11-21T00:00:00Z')
const running: BikeShareSimulator[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()))
})

async function started(quirks: ConstructorParameters<typeof BikeShareSimulator>[0] = {}) {
  const clock = new ManualClock(START)
  const sim = new BikeShareSimulator({ seed: 5, clock, stations: 6, fleet: 30, ...quirks })
  running.push(sim)
  await sim.start()
  const get = async (path: string) => (await fetch(sim.url + path)).json() as Promise<Record<string, unknown>>
  return { sim, clock, get }
}

describe('BikeShareSimulator', () => {
  it('serves the same world in both layouts: seconds in 2.3, RFC 3339 in +08:00 in 3.0', async () => {
    const { sim, get } = await started()
    const v23 = await get('/gbfs/2.3/zh/station_status.json')
    const v30 = await get('/gbfs/3.0/station_status.json')
    expect(v23).toMatchObject({ last_updated: START / 1000, ttl: 60, version: '2.3' })
    expect(v30).toMatchObject({ last_updated: '2026-11-21T08:00:00+08:00', ttl: 60, version: '3.0' })
    const s23 = (v23.data as { stations: { station_id: string; num_bikes_available: number }[] }).stations
    const s30 = (v30.data as { stations: { station_id: string; num_vehicles_available: number }[] }).stations
    expect(s23.map((s) => [s.station_id, s.num_bikes_available])).toEqual(s30.map((s) => [s.station_id, s.num_vehicles_available]))
    // 2.3 lists vehicles not at a station; 3.0 lists docked ones too, with their station.
    const bikes = (await get('/gbfs/2.3/zh/free_bike_status.json')).data as { bikes: { bike_id: string }[] }
    const vehicles = (await get('/gbfs/3.0/vehicle_status.json')).data as { vehicles: { vehicle_id: string; station_id?: string }[] }
    expect(vehicles.vehicles.filter((v) => v.station_id === undefined).map((v) => v.vehicle_id)).toEqual(bikes.bikes.map((b) => b.bike_id))
    expect(vehicles.vehicles.length).toBeGreaterThan(bikes.bikes.length)
    expect(sim.servedContents('2.3', 'station_status')).toEqual([0])
  })

  it('rotates a vehicle id after each trip', async () => {
    const { sim, clock } = await started()
    const ids0 = new Set(sim.snapshot(0).vehicles.map((v) => v.id))
    clock.advance(30 * 60_000)
    const ids30 = new Set(sim.snapshot(30).vehicles.map((v) => v.id))
    const kept = [...ids30].filter((id) => ids0.has(id)).length
    expect(kept).toBeLessThan(ids30.size)
    expect(sim.servedTrips().length).toBeGreaterThan(0)
    // Every trip's bike kept its number: trips are the operator's own record.
    expect(sim.servedTrips().every((t) => /^86\d{8}$/.test(t.bikeNo))).toBe(true)
  })

  it('repeats a stale snapshot verbatim, last_updated and all', async () => {
    const { clock, get } = await started({ quirks: { staleAt: [1] } })
    const first = await get('/gbfs/3.0/vehicle_status.json')
    clock.advance(60_000)
    expect(await get('/gbfs/3.0/vehicle_status.json')).toEqual(first)
    clock.advance(60_000)
    expect((await get('/gbfs/3.0/vehicle_status.json')).last_updated).toBe('2026-11-21T08:02:00+08:00')
  })

  it('writes milliseconds, "unknown" and duplicates where told', async () => {
    const { sim, clock, get } = await started({ quirks: { msEpochAt: [1], unknownAt: [1], duplicatesAt: [1] } })
    clock.advance(60_000)
    const status = await get('/gbfs/2.3/en/station_status.json')
    expect(status.last_updated).toBe(START + 60_000)
    const stations = (status.data as { stations: { station_id: string; num_bikes_available: unknown }[] }).stations
    const snap = sim.snapshot(1)
    expect(stations.find((s) => s.station_id === snap.unknownStation)?.num_bikes_available).toBe('unknown')
    expect(stations.filter((s) => s.station_id === snap.duplicateStation)).toHaveLength(2)
    const bikes = ((await get('/gbfs/2.3/en/free_bike_status.json')).data as { bikes: { bike_id: string; lat: unknown }[] }).bikes
    expect(bikes.find((b) => b.bike_id === snap.unknownVehicle)?.lat).toBe('unknown')
    const conflict = bikes.filter((b) => b.bike_id === snap.conflictVehicle)
    expect(conflict).toHaveLength(2)
    expect(conflict[0]!.lat).not.toBe(conflict[1]!.lat)
  })

  it('takes outages on command over HTTP, and serves trips from an incremental cursor', async () => {
    const { sim, clock, get } = await started({ quirks: { lateTripRate: 0.3 } })
    clock.advance(3_600_000)
    const off = await fetch(`${sim.url}/_sim/outage?on=1&feeds=station_status`, { method: 'POST' })
    expect(await off.json()).toEqual({ outage: true, feeds: ['station_status'] })
    expect((await fetch(`${sim.url}/gbfs/3.0/station_status.json`)).status).toBe(503)
    expect((await fetch(`${sim.url}/gbfs/3.0/vehicle_status.json`)).status).toBe(200)
    await fetch(`${sim.url}/_sim/outage?on=0`, { method: 'POST' })
    expect((await fetch(`${sim.url}/gbfs/3.0/station_status.json`)).status).toBe(200)

    const page1 = (await get('/openapi/v1/bike/orders?limit=5')).data as { list: { orderNo: string; endTime: string }[]; nextCursor: string; hasMore: boolean }
    expect(page1.list).toHaveLength(5)
    expect(page1.list[0]!.endTime).toMatch(/^2026-11-21 0[89]:\d{2}:\d{2}$/)
    const page2 = (await get(`/openapi/v1/bike/orders?limit=5&cursor=${page1.nextCursor}`)).data as { list: { orderNo: string }[] }
    expect(page2.list.map((t) => t.orderNo)).toEqual(sim.servedTrips().slice(5, 10).map((t) => t.orderNo))
    expect(sim.servedTrips().some((t) => t.isReupload && t.uploadAt > t.endedAt)).toBe(true)
  })

  it('converts WGS84 to GCJ-02 by the published transform (Shenzhen is offset by about 550 m)', () => {
    const g = wgs84ToGcj02(22.5333, 113.9304)
    expect(g.lat - 22.5333).toBeCloseTo(-0.0027, 3)
    expect(g.lon - 113.9304).toBeCloseTo(0.0049, 3)
  })
})
