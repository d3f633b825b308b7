import { describe, expect, it } from 'vitest'
import { maskPlate } from '../../lib/crypto.ts'
import {
  type ItemFault,
  type MapContext,
  type Mapped,
  feeToCents,
  itemSeq,
  mapLot,
  mapOccupancy,
  mapPassage,
  redactPlates,
  toOpeningHours,
} from './map.ts'

// Fixtures as the vendor platform sends them (Asia/Shanghai naive times).
const NOW = Date.parse('2026-11-21T04:00:00Z') // 12:00 in Shanghai
const ctx: MapContext = {
  timezone: 'Asia/Shanghai',
  now: NOW,
  futureToleranceMs: 300_000,
  knownLots: new Set(['HQ01', 'HQ02']),
}

const PARK = {
  parkCode: 'HQ01',
  parkName: '横琴口岸P1停车场',
  totalSpace: 860,
  lng: 113.548312,
  lat: 22.135207,
  coordType: 'GCJ02',
  address: '广东省珠海市横琴粤澳深度合作区港澳大道1号横琴口岸综合服务区',
  openTime: '00:00-24:00',
}

const ENTRY = {
  seq: 123,
  recordNo: 'HQ01-IN-20261121-000123',
  parkCode: 'HQ01',
  gateNo: 'E2',
  plateNo: '粤C12345',
  plateColor: 'blue',
  inTime: '2026-11-21 09:15:30',
  isReupload: 0,
}

const EXIT = {
  seq: 98,
  recordNo: 'HQ01-OUT-20261121-000098',
  parkCode: 'HQ01',
  gateNo: 'X1',
  plateNo: '粤CD12345',
  plateColor: 'green',
  inTime: '2026-11-21 09:15:30',
  outTime: '2026-11-21 11:47:02',
  fee: '12.50',
  isReupload: 0,
}

const SPACE = { seq: 7, parkCode: 'HQ02', freeSpace: 37, totalSpace: 120, reportTime: '2026-11-21 11:55:00' }

function fault<T>(r: Mapped<T>): ItemFault {
  if (r.ok) throw new Error(`expected a fault, got ${JSON.stringify(r.draft)}`)
  return r.fault
}

function draft<T>(r: Mapped<T>): T {
  if (!r.ok) throw new Error(`expected a draft, got ${JSON.stringify(r.fault)}`)
  return r.draft
}

describe('mapLot', () => {
  const at = Date.parse('2026-11-21T04:00:00Z')

  it('maps a park to a ParkingLot draft', () => {
    expect(draft(mapLot(PARK, at))).toEqual({
      occurredAt: at,
      lotId: 'HQ01',
      name: '横琴口岸P1停车场',
      capacity: 860,
      lat: 22.135207,
      lon: 113.548312,
      coordSystem: 'GCJ02',
      district: null,
      address: '广东省珠海市横琴粤澳深度合作区港澳大道1号横琴口岸综合服务区',
      openingHours: '24/7',
    })
  })

  it('turns opening times into OSM opening_hours', () => {
    expect(draft(mapLot({ ...PARK, openTime: '07:00-22:00' }, at)).openingHours).toBe('Mo-Su 07:00-22:00')
    expect(draft(mapLot({ ...PARK, openTime: undefined }, at)).openingHours).toBeNull()
    expect(toOpeningHours('00:00-24:00')).toBe('24/7')
    expect(toOpeningHours('00:00-00:00')).toBe('24/7')
    expect(toOpeningHours('22:00-06:00')).toBe('Mo-Su 22:00-06:00')
    expect(toOpeningHours('7:00-22:00')).toBeNull()
    expect(toOpeningHours('07:00-25:00')).toBeNull()
    expect(fault(mapLot({ ...PARK, openTime: '全天' }, at))).toMatchObject({ code: 'invalid_value', field: 'openTime' })
  })

  it('reads coordinate systems and numeric strings, 0,0 as unknown', () => {
    expect(draft(mapLot({ ...PARK, coordType: 'wgs-84' }, at)).coordSystem).toBe('WGS84')
    expect(draft(mapLot({ ...PARK, coordType: undefined }, at)).coordSystem).toBe('GCJ02')
    expect(draft(mapLot({ ...PARK, lng: '113.5', lat: '22.1' }, at))).toMatchObject({ lon: 113.5, lat: 22.1 })
    expect(draft(mapLot({ ...PARK, lng: 0, lat: 0 }, at))).toMatchObject({ lon: null, lat: null, coordSystem: null })
    expect(draft(mapLot({ ...PARK, totalSpace: '860' }, at)).capacity).toBe(860)
  })

  it('rejects bad lots with a code and the field', () => {
    expect(fault(mapLot({ ...PARK, parkCode: undefined }, at))).toMatchObject({ code: 'missing_field', field: 'parkCode' })
    expect(fault(mapLot({ ...PARK, totalSpace: 'unknown' }, at))).toMatchObject({ code: 'invalid_value', field: 'totalSpace' })
    expect(fault(mapLot({ ...PARK, totalSpace: -5 }, at))).toMatchObject({ code: 'invalid_value', field: 'totalSpace' })
    expect(fault(mapLot({ ...PARK, lng: 213.5 }, at))).toMatchObject({ code: 'invalid_value', field: 'lng' })
    expect(fault(mapLot({ ...PARK, lat: undefined }, at))).toMatchObject({ code: 'invalid_value', field: 'lat' })
    expect(fault(mapLot({ ...PARK, coordType: 'BD-11' }, at))).toMatchObject({ code: 'invalid_value', field: 'coordType' })
    expect(fault(mapLot('HQ01', at))).toMatchObject({ code: 'wrong_type', field: null })
  })
})

describe('mapPassage', () => {
  it('maps an entry, reading inTime in the source zone', () => {
    expect(draft(mapPassage(ENTRY, 'entry', ctx))).toEqual({
      occurredAt: Date.parse('2026-11-21T01:15:30Z'),
      lotId: 'HQ01',
      recordNo: 'HQ01-IN-20261121-000123',
      direction: 'entry',
      gateId: 'E2',
      plate: '粤C12345',
      plateType: 'blue',
      isBackfill: false,
      feeCents: null,
      entryAt: null,
    })
  })

  it('maps an exit with fee in fen and the entry time', () => {
    expect(draft(mapPassage(EXIT, 'exit', ctx))).toEqual({
      occurredAt: Date.parse('2026-11-21T03:47:02Z'),
      lotId: 'HQ01',
      recordNo: 'HQ01-OUT-20261121-000098',
      direction: 'exit',
      gateId: 'X1',
      plate: '粤CD12345',
      plateType: 'green',
      isBackfill: false,
      feeCents: 1250,
      entryAt: Date.parse('2026-11-21T01:15:30Z'),
    })
  })

  it('uses the zone it is given', () => {
    const berlin = { ...ctx, timezone: 'Europe/Berlin', now: Date.parse('2026-11-21T12:00:00Z') }
    expect(draft(mapPassage(ENTRY, 'entry', berlin)).occurredAt).toBe(Date.parse('2026-11-21T08:15:30Z'))
  })

  it('marks backfilled (补传) records and keeps a Macau plate', () => {
    const old = { ...ENTRY, isReupload: 1, inTime: '2026-11-19 22:05:00', plateNo: '澳MA1234', plateColor: 'black' }
    expect(draft(mapPassage(old, 'entry', ctx))).toMatchObject({
      isBackfill: true,
      plate: '澳MA1234',
      plateType: 'black',
      occurredAt: Date.parse('2026-11-19T14:05:00Z'),
    })
  })

  it('accepts a gate number given as a number, and no plate', () => {
    expect(draft(mapPassage({ ...ENTRY, gateNo: 3, plateNo: '' }, 'entry', ctx))).toMatchObject({ gateId: '3', plate: null })
    expect(draft(mapPassage({ ...ENTRY, gateNo: null, plateNo: null }, 'entry', ctx))).toMatchObject({ gateId: null, plate: null })
  })

  it.each([
    ['recordNo', 'missing_field'],
    ['parkCode', 'missing_field'],
    ['inTime', 'missing_field'],
  ])('entry without %s -> %s', (field, code) => {
    const item: Record<string, unknown> = { ...ENTRY }
    delete item[field]
    expect(fault(mapPassage(item, 'entry', ctx))).toMatchObject({ code, field })
  })

  it('exit without outTime -> missing_field', () => {
    const { outTime: _outTime, ...item } = EXIT
    expect(fault(mapPassage(item, 'exit', ctx))).toMatchObject({ code: 'missing_field', field: 'outTime' })
  })

  it('wrong types -> wrong_type', () => {
    expect(fault(mapPassage({ ...ENTRY, inTime: 12345 }, 'entry', ctx))).toMatchObject({ code: 'wrong_type', field: 'inTime' })
    expect(fault(mapPassage({ ...ENTRY, parkCode: null }, 'entry', ctx))).toMatchObject({ code: 'wrong_type', field: 'parkCode' })
    expect(fault(mapPassage({ ...EXIT, outTime: 12345 }, 'exit', ctx))).toMatchObject({ code: 'wrong_type', field: 'outTime' })
    expect(fault(mapPassage({ ...EXIT, fee: true }, 'exit', ctx))).toMatchObject({ code: 'wrong_type', field: 'fee' })
    expect(fault(mapPassage({ ...ENTRY, isReupload: [1] }, 'entry', ctx))).toMatchObject({ code: 'wrong_type', field: 'isReupload' })
    expect(fault(mapPassage(null, 'entry', ctx))).toMatchObject({ code: 'wrong_type', field: null })
    expect(fault(mapPassage([ENTRY], 'entry', ctx))).toMatchObject({ code: 'wrong_type', field: null })
  })

  it('never puts the plate in a reason', () => {
    const f = fault(mapPassage({ ...ENTRY, plateNo: 12345 }, 'entry', ctx))
    expect(f).toMatchObject({ code: 'wrong_type', field: 'plateNo' })
    expect(f.reason).not.toContain('12345')
    for (const bad of [{ ...ENTRY, inTime: 'x' }, { ...ENTRY, parkCode: 'ZZ' }, { ...ENTRY, inTime: '2026-11-29 10:00:00' }]) {
      expect(fault(mapPassage(bad, 'entry', ctx)).reason).not.toContain('粤C12345')
    }
  })

  it('invalid times -> invalid_value', () => {
    for (const inTime of ['2026-02-30 10:00:00', '2026-11-21 25:00:00', 'garbage', '']) {
      const f = fault(mapPassage({ ...ENTRY, inTime }, 'entry', ctx))
      expect(f.field).toBe('inTime')
      expect(f.code).toBe(inTime === '' ? 'missing_field' : 'invalid_value')
    }
    expect(fault(mapPassage({ ...EXIT, inTime: '2026-11-21 12:00:00', outTime: '2026-11-21 11:00:00' }, 'exit', ctx))).toMatchObject({
      code: 'invalid_value',
      field: 'inTime',
    })
  })

  it('fees: yuan strings and numbers to fen; unknown, NaN and negative rejected', () => {
    expect(draft(mapPassage({ ...EXIT, fee: '0.00' }, 'exit', ctx)).feeCents).toBe(0)
    expect(draft(mapPassage({ ...EXIT, fee: '8' }, 'exit', ctx)).feeCents).toBe(800)
    expect(draft(mapPassage({ ...EXIT, fee: '3.5' }, 'exit', ctx)).feeCents).toBe(350)
    expect(draft(mapPassage({ ...EXIT, fee: 12.5 }, 'exit', ctx)).feeCents).toBe(1250)
    expect(draft(mapPassage({ ...EXIT, fee: 0.29 }, 'exit', ctx)).feeCents).toBe(29)
    expect(draft(mapPassage({ ...EXIT, fee: undefined }, 'exit', ctx)).feeCents).toBeNull()
    expect(fault(mapPassage({ ...EXIT, fee: 'unknown' }, 'exit', ctx))).toMatchObject({ code: 'invalid_value', field: 'fee' })
    expect(fault(mapPassage({ ...EXIT, fee: 'NaN' }, 'exit', ctx))).toMatchObject({ code: 'invalid_value', field: 'fee' })
    expect(fault(mapPassage({ ...EXIT, fee: Number.NaN }, 'exit', ctx))).toMatchObject({ code: 'invalid_value', field: 'fee' })
    const negative = fault(mapPassage({ ...EXIT, fee: '-5.00' }, 'exit', ctx))
    expect(negative).toMatchObject({ code: 'invalid_value', field: 'fee' })
    expect(negative.reason).toMatch(/negative/)
    expect(fault(mapPassage({ ...EXIT, fee: -5 }, 'exit', ctx)).reason).toMatch(/negative/)
    expect(fault(mapPassage({ ...EXIT, fee: '12.505' }, 'exit', ctx)).code).toBe('invalid_value')
    expect(feeToCents('1234567.89')).toBe(123456789)
    expect(() => feeToCents('99999999.99')).toThrow()
  })

  it('unknown lot -> unknown_lot', () => {
    const f = fault(mapPassage({ ...ENTRY, parkCode: 'XX03' }, 'entry', ctx))
    expect(f).toMatchObject({ code: 'unknown_lot', field: 'parkCode' })
    expect(f.reason).toContain('XX03')
  })

  it('future timestamps beyond the tolerance -> future_timestamp', () => {
    // now is 12:00 local; tolerance 5 min.
    expect(draft(mapPassage({ ...ENTRY, inTime: '2026-11-21 12:04:59' }, 'entry', ctx)).occurredAt).toBe(NOW + 299_000)
    const f = fault(mapPassage({ ...ENTRY, inTime: '2026-11-24 08:00:00' }, 'entry', ctx))
    expect(f).toMatchObject({ code: 'future_timestamp', field: 'inTime' })
    expect(f.reason).toMatch(/2\.8 d ahead/)
    expect(fault(mapPassage({ ...EXIT, outTime: '2026-11-21 12:06:00' }, 'exit', ctx))).toMatchObject({
      code: 'future_timestamp',
      field: 'outTime',
    })
    expect(draft(mapPassage({ ...ENTRY, inTime: '2026-11-21 12:06:00' }, 'entry', { ...ctx, futureToleranceMs: 600_000 }))).toBeTruthy()
  })

  it('isReupload accepts 0/1 as numbers, strings or booleans', () => {
    expect(draft(mapPassage({ ...ENTRY, isReupload: '1' }, 'entry', ctx)).isBackfill).toBe(true)
    expect(draft(mapPassage({ ...ENTRY, isReupload: false }, 'entry', ctx)).isBackfill).toBe(false)
    expect(draft(mapPassage({ ...ENTRY, isReupload: undefined }, 'entry', ctx)).isBackfill).toBe(false)
    expect(fault(mapPassage({ ...ENTRY, isReupload: 2 }, 'entry', ctx))).toMatchObject({ code: 'invalid_value', field: 'isReupload' })
  })
})

describe('mapOccupancy', () => {
  it('maps a space report', () => {
    expect(draft(mapOccupancy(SPACE, ctx))).toEqual({
      occurredAt: Date.parse('2026-11-21T03:55:00Z'),
      lotId: 'HQ02',
      free: 37,
      capacity: 120,
      status: 'open',
    })
  })

  it('is full at zero free', () => {
    expect(draft(mapOccupancy({ ...SPACE, freeSpace: 0 }, ctx)).status).toBe('full')
    expect(draft(mapOccupancy({ ...SPACE, freeSpace: '120' }, ctx))).toMatchObject({ free: 120, status: 'open' })
    expect(draft(mapOccupancy({ ...SPACE, totalSpace: undefined }, ctx)).capacity).toBeNull()
  })

  it('rejects free above capacity, negative and unknown free', () => {
    const above = fault(mapOccupancy({ ...SPACE, freeSpace: 121 }, ctx))
    expect(above).toMatchObject({ code: 'invalid_value', field: 'freeSpace' })
    expect(above.reason).toBe('freeSpace 121 is above totalSpace 120')
    expect(fault(mapOccupancy({ ...SPACE, freeSpace: -1 }, ctx))).toMatchObject({ code: 'invalid_value', field: 'freeSpace' })
    expect(fault(mapOccupancy({ ...SPACE, freeSpace: 'unknown' }, ctx))).toMatchObject({ code: 'invalid_value', field: 'freeSpace' })
    expect(fault(mapOccupancy({ ...SPACE, freeSpace: 3.5 }, ctx))).toMatchObject({ code: 'invalid_value', field: 'freeSpace' })
    expect(fault(mapOccupancy({ ...SPACE, totalSpace: 'unknown' }, ctx))).toMatchObject({ code: 'invalid_value', field: 'totalSpace' })
  })

  it('rejects missing fields, wrong types, unknown lots and future reports', () => {
    const { reportTime: _r, ...noTime } = SPACE
    expect(fault(mapOccupancy(noTime, ctx))).toMatchObject({ code: 'missing_field', field: 'reportTime' })
    const { freeSpace: _f, ...noFree } = SPACE
    expect(fault(mapOccupancy(noFree, ctx))).toMatchObject({ code: 'missing_field', field: 'freeSpace' })
    expect(fault(mapOccupancy({ ...SPACE, reportTime: 12345 }, ctx))).toMatchObject({ code: 'wrong_type', field: 'reportTime' })
    expect(fault(mapOccupancy({ ...SPACE, parkCode: null }, ctx))).toMatchObject({ code: 'wrong_type', field: 'parkCode' })
    expect(fault(mapOccupancy({ ...SPACE, freeSpace: null }, ctx))).toMatchObject({ code: 'wrong_type', field: 'freeSpace' })
    expect(fault(mapOccupancy({ ...SPACE, parkCode: 'HQ09' }, ctx))).toMatchObject({ code: 'unknown_lot', field: 'parkCode' })
    expect(fault(mapOccupancy({ ...SPACE, reportTime: '2026-11-23 11:55:00' }, ctx))).toMatchObject({
      code: 'future_timestamp',
      field: 'reportTime',
    })
  })
})

describe('helpers', () => {
  it('itemSeq reads positive integer seqs only', () => {
    expect(itemSeq({ seq: 5 })).toBe(5)
    expect(itemSeq({ seq: '5' })).toBe(5)
    for (const seq of [0, -1, 1.5, 'x', null, undefined]) expect(itemSeq({ seq })).toBeNull()
    expect(itemSeq('x')).toBeNull()
  })

  it('masks plates and redacts them from raw JSON, also when truncated', () => {
    expect(maskPlate('粤C12345')).toBe('粤C·***45')
    expect(maskPlate('澳MA1234')).toBe('澳M·***34')
    expect(maskPlate('AB1')).toBe('***')
    const raw = JSON.stringify([ENTRY, EXIT])
    const red = redactPlates(raw)
    expect(red).not.toContain('粤C12345')
    expect(red).not.toContain('粤CD12345')
    expect(JSON.parse(red)).toMatchObject([{ plateNo: '粤C·***45' }, { plateNo: '粤C·****45' }])
    expect(redactPlates('{"a":1,"plateNo" : "\\u7ca4C12345"}')).toBe('{"a":1,"plateNo" : "粤C·***45"}')
    const cut = redactPlates('{"list":[{"seq":1,"plateNo":"粤C123')
    expect(cut).not.toContain('粤C123')
    expect(redactPlates('{"plateNo":"粤C1\\')).not.toContain('粤C1')
  })
})
