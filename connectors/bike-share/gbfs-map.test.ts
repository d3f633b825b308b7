import { describe, expect, it } from 'vitest'
import { deriveEventId } from '../../pipelines/normalise.ts'
import {
  type GbfsFile,
  type GbfsMapContext,
  localizedText,
  mapStationInformation,
  mapStationStatus,
  mapVehicle,
  parseDiscovery,
  parseEnvelope,
} from './gbfs-map.ts'

// Items below follow the shapes of real published feeds (Lillestrøm bysykkel
// 2.2, Call a Bike 2.3, Check Almere and Ecovelo 3.0).

const SH = 'Asia/Shanghai'
const LAST_UPDATED = Date.UTC(2021, 8, 10, 7, 23, 51)
const ctx: GbfsMapContext = { operatorId: 'lillestrom', timezone: SH, lastUpdated: LAST_UPDATED, language: null, coordSystem: 'WGS84' }

function file(data: Record<string, unknown>, version: string | null = '2.3'): GbfsFile {
  return { lastUpdated: LAST_UPDATED, lastUpdatedUnit: 'seconds', ttl: 60, ttlValid: true, version, data }
}

describe('parseEnvelope', () => {
  it('reads last_updated in any form and the ttl', () => {
    expect(parseEnvelope('station_status', { last_updated: 1631258631, ttl: 61, version: '2.2', data: {} }, SH)).toEqual({
      lastUpdated: 1631258631000,
      lastUpdatedUnit: 'seconds',
      ttl: 61,
      ttlValid: true,
      version: '2.2',
      data: {},
    })
    expect(parseEnvelope('vehicle_status', { last_updated: '2025-05-21T07:48:04.229881+00:00', ttl: 600, version: '3.0', data: {} }, SH)).toMatchObject({
      lastUpdated: Date.UTC(2025, 4, 21, 7, 48, 4, 229),
      lastUpdatedUnit: 'rfc3339',
    })
    expect(parseEnvelope('x', { last_updated: 1631258631000, ttl: 0, data: {} }, SH)).toMatchObject({ lastUpdatedUnit: 'milliseconds', ttl: 0, version: null })
  })

  it('treats a missing or unusable ttl as 0 and says so', () => {
    expect(parseEnvelope('x', { last_updated: 1631258631, data: {} }, SH)).toMatchObject({ ttl: 0, ttlValid: false })
    expect(parseEnvelope('x', { last_updated: 1631258631, ttl: '60', data: {} }, SH)).toMatchObject({ ttl: 0, ttlValid: false })
    expect(parseEnvelope('x', { last_updated: 1631258631, ttl: -1, data: {} }, SH)).toMatchObject({ ttl: 0, ttlValid: false })
  })

  it.each([
    ['a list', [], 'station_status: body is not a JSON object (got array)'],
    ['no last_updated', { ttl: 1, data: {} }, 'station_status: no last_updated'],
    ['an unreadable last_updated', { last_updated: 'yesterday', data: {} }, 'station_status: last_updated is not a timestamp: "yesterday"'],
    ['no data', { last_updated: 1631258631 }, 'station_status: data is not an object (got undefined)'],
  ])('refuses a file with %s', (_what, body, message) => {
    expect(() => parseEnvelope('station_status', body, SH)).toThrow(message)
  })
})

describe('parseDiscovery', () => {
  const feeds = (prefix: string) => [
    { name: 'gbfs', url: `${prefix}/gbfs.json` },
    { name: 'system_information', url: `${prefix}/system_information.json` },
    { name: 'station_status', url: `${prefix}/station_status.json` },
    { name: 'geofencing_zones', url: `${prefix}/geofencing_zones.json` },
  ]

  it('takes the 2.x block of the preferred language, else the first', () => {
    const f = file({ nb: { feeds: feeds('https://x/nb') }, en: { feeds: feeds('https://x/en') } }, '2.2')
    expect(parseDiscovery(f, 'en')).toEqual({
      version: '2.2',
      language: 'en',
      feeds: { system_information: 'https://x/en/system_information.json', station_status: 'https://x/en/station_status.json' },
    })
    expect(parseDiscovery(f, null).language).toBe('nb')
    expect(parseDiscovery(f, 'zh').language).toBe('nb')
  })

  it('reads the 3.0 flat list; files it does not read are left out', () => {
    const f = file({ feeds: [...feeds('https://y'), { name: 'vehicle_status', url: 'https://y/vs' }, { name: 42 }] }, '3.0')
    expect(parseDiscovery(f, null)).toEqual({
      version: '3.0',
      language: null,
      feeds: { system_information: 'https://y/system_information.json', station_status: 'https://y/station_status.json', vehicle_status: 'https://y/vs' },
    })
  })

  it('takes a file without version as 1.0 and refuses one without feeds', () => {
    expect(parseDiscovery(file({ en: { feeds: [] } }, null), null).version).toBe('1.0')
    expect(() => parseDiscovery(file({}), null)).toThrow('gbfs: data has neither feeds nor a language block')
    expect(() => parseDiscovery(file({ en: { feeds: 'x' } }), null)).toThrow('gbfs: feeds of language en is not a list')
  })
})

describe('station_information', () => {
  it('maps a 2.x station', () => {
    const raw = { station_id: 'YLS:VehicleSharingParkingArea:3', name: 'TORVGATA', lat: 59.95585, lon: 11.04745, address: 'Torvgata 8', capacity: 3 }
    expect(mapStationInformation(raw, ctx)).toEqual({
      ok: true,
      value: { occurredAt: LAST_UPDATED, operatorId: 'lillestrom', stationId: 'YLS:VehicleSharingParkingArea:3', name: 'TORVGATA', lat: 59.95585, lon: 11.04745, capacity: 3, coordSystem: 'WGS84' },
    })
  })

  it('maps a 3.0 station with localised names and no capacity', () => {
    const raw = { station_id: 'stn_1', name: [{ language: 'fr', text: 'Avenue du Grau' }, { language: 'en', text: 'Grau Avenue' }], lat: 42.546817, lon: 3.047534 }
    expect(mapStationInformation(raw, { ...ctx, language: 'en' })).toMatchObject({ ok: true, value: { name: 'Grau Avenue', capacity: null } })
    expect(mapStationInformation(raw, { ...ctx, language: 'de' })).toMatchObject({ ok: true, value: { name: 'Avenue du Grau' } })
  })

  it.each([
    [{ name: 'A', lat: 1, lon: 1 }, 'missing_field', 'missing field station_id'],
    [{ station_id: 'A', lat: 1, lon: 1 }, 'missing_field', 'missing field name'],
    [{ station_id: 'A', name: [], lat: 1, lon: 1 }, 'invalid_value', 'name is neither a text nor a list of localised texts: "[]"'],
    [{ station_id: 'A', name: 'A', lat: 91, lon: 1 }, 'invalid_value', 'lat is not a coordinate: 91'],
    [{ station_id: 'A', name: 'A', lat: 1, lon: 1, capacity: 'unknown' }, 'invalid_value', 'capacity is not a number: "unknown"'],
  ])('refuses %j', (raw, code, reason) => {
    expect(mapStationInformation(raw, ctx)).toMatchObject({ ok: false, fault: { code, reason } })
  })

  it('reads localised texts', () => {
    expect(localizedText('  Darmstadt Hbf ', null)).toBe('Darmstadt Hbf')
    expect(localizedText([{ language: 'nl', text: 'x' }, { language: 'en', text: 'y' }], 'en')).toBe('y')
    expect(localizedText([{ language: 'nl', text: '' }], 'nl')).toBeNull()
    expect(localizedText(7, null)).toBeNull()
  })
})

describe('station_status', () => {
  // Lillestrøm: non-spec "installed"/"renting" next to the is_* fields; 10 bikes at a capacity-3 station.
  const lillestrom = {
    installed: true,
    renting: true,
    returning: true,
    station_id: 'YLS:VehicleSharingParkingArea:3',
    num_bikes_available: 10,
    vehicle_types_available: [{ vehicle_type_id: 'YLS:VehicleType:CityBike', count: 10 }],
    num_docks_available: 10,
    is_installed: true,
    is_renting: true,
    is_returning: true,
    last_reported: 1631258631,
  }

  it('maps a 2.x station, keeping vehicles above capacity as published', () => {
    expect(mapStationStatus(lillestrom, ctx)).toEqual({
      ok: true,
      value: {
        draft: { occurredAt: 1631258631000, operatorId: 'lillestrom', stationId: 'YLS:VehicleSharingParkingArea:3', vehiclesAvailable: 10, docksAvailable: 10, isInstalled: true, isRenting: true, isReturning: true },
        disabled: 0,
      },
    })
  })

  it('maps a 3.0 station: vehicles, RFC 3339 last_reported, disabled count', () => {
    const raw = { station_id: 'stn_3', num_vehicles_available: 0, num_vehicles_disabled: 2, num_docks_available: 2, is_installed: true, is_renting: true, is_returning: false, last_reported: '2025-10-21T06:13:12+02:00' }
    expect(mapStationStatus(raw, ctx)).toEqual({
      ok: true,
      value: {
        draft: { occurredAt: Date.UTC(2025, 9, 21, 4, 13, 12), operatorId: 'lillestrom', stationId: 'stn_3', vehiclesAvailable: 0, docksAvailable: 2, isInstalled: true, isRenting: true, isReturning: false },
        disabled: 2,
      },
    })
  })

  it('takes the file time when last_reported is missing, and no docks when none are published (Call a Bike)', () => {
    const raw = { station_id: 'CAB:Station:4a58', num_bikes_available: 48, is_installed: true, is_renting: true, is_returning: true }
    expect(mapStationStatus(raw, ctx)).toMatchObject({ ok: true, value: { draft: { occurredAt: LAST_UPDATED, docksAvailable: null } } })
  })

  it.each([
    [{ ...lillestrom, num_bikes_available: 'unknown' }, 'invalid_value', 'num_bikes_available is not a number: "unknown"'],
    [{ ...lillestrom, num_bikes_available: undefined }, 'missing_field', 'missing field num_bikes_available'],
    [{ ...lillestrom, is_renting: undefined }, 'missing_field', 'missing field is_renting'],
    [{ ...lillestrom, last_reported: 'soon' }, 'invalid_value', 'last_reported is not a timestamp: "soon"'],
    [{ ...lillestrom, num_docks_available: -3 }, 'invalid_value', 'num_docks_available must not be negative: -3'],
  ])('refuses %#', (raw, code, reason) => {
    expect(mapStationStatus(raw, ctx)).toMatchObject({ ok: false, fault: { code, reason } })
  })
})

describe('vehicles', () => {
  const callabike = {
    bike_id: 'CAB:Vehicle:887f506f',
    lat: 49.87530897258006,
    lon: 8.627667300924486,
    is_reserved: false,
    is_disabled: false,
    rental_uris: { android: 'https://www.callabike.de/bike?number=12404' },
    vehicle_type_id: 'CAB:VehicleType:832e0956',
  }

  it('maps a 2.x free bike without last_reported to the file time', () => {
    expect(mapVehicle(callabike, ctx)).toEqual({
      ok: true,
      value: { occurredAt: LAST_UPDATED, operatorId: 'lillestrom', vehicleId: 'CAB:Vehicle:887f506f', lat: 49.87530897258006, lon: 8.627667300924486, stationId: null, vehicleTypeId: 'CAB:VehicleType:832e0956', isReserved: false, isDisabled: false },
    })
  })

  it('maps a 3.0 vehicle docked at a station without a position', () => {
    const raw = { vehicle_id: 'v1', station_id: 'stn_3', is_reserved: false, is_disabled: true, last_reported: '2025-05-21T07:47:43.124370+00:00' }
    expect(mapVehicle(raw, ctx)).toMatchObject({ ok: true, value: { vehicleId: 'v1', stationId: 'stn_3', lat: null, lon: null, isDisabled: true, occurredAt: Date.UTC(2025, 4, 21, 7, 47, 43, 124) } })
  })

  it('refuses a free vehicle without a position, or with "unknown" in it', () => {
    expect(mapVehicle({ ...callabike, lat: undefined, lon: undefined }, ctx)).toMatchObject({ ok: false, fault: { code: 'missing_field', reason: 'missing field lat' } })
    expect(mapVehicle({ ...callabike, lat: 'unknown' }, ctx)).toMatchObject({ ok: false, fault: { code: 'invalid_value', reason: 'lat is not a coordinate: "unknown"' } })
    expect(mapVehicle({ ...callabike, is_reserved: undefined }, ctx)).toMatchObject({ ok: false, fault: { code: 'missing_field', field: 'is_reserved' } })
  })

  it('gives one event id per (vehicle id, last_reported): the same snapshot again lands nothing new, a rotated id is another record', () => {
    const id = (raw: unknown) => {
      const m = mapVehicle(raw, ctx)
      if (!m.ok) throw new Error(m.fault.reason)
      return deriveEventId('src', 'BikeVehicleStatus', m.value)
    }
    const seen = { ...callabike, last_reported: 1631258600 }
    expect(id(seen)).toBe(id({ ...seen }))
    expect(id({ ...seen, last_reported: 1631258600000 })).toBe(id(seen)) // the same instant in milliseconds
    expect(id({ ...seen, last_reported: 1631258660 })).not.toBe(id(seen))
    expect(id({ ...seen, bike_id: 'CAB:Vehicle:0b1c' })).not.toBe(id(seen))
  })
})
