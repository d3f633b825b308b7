import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import avro from 'avsc'
import { afterAll, describe, expect, it } from 'vitest'
import { CitysyncError, type ErrorCode } from '../lib/errors.ts'
import { checkBackwardCompatible, LocalIdSource, SchemaCatalogue, type SchemaIdSource, wireHeader } from './catalogue.ts'
import { EVENT_NAMES, type EventName, type EventTypes } from './events.ts'

const SCHEMAS_DIR = dirname(fileURLToPath(import.meta.url))
const catalogue = SchemaCatalogue.load()

const T0 = Date.UTC(2025, 2, 14, 1, 23, 45, 678) // 09:23:45.678 in Asia/Shanghai
const base = (n: number) => ({
  sourceId: 'parking-futian-01',
  eventId: `4f1c9a2e7b0d4e6f8a1b2c3d4e5f60${n.toString().padStart(2, '0')}`,
  occurredAt: T0,
  receivedAt: T0 + 1_322,
})

// Written in interface order: the test compares key order with the schema.
const SAMPLES: { [N in EventName]: EventTypes[N] } = {
  ParkingLot: {
    ...base(1),
    lotId: 'FT-0042',
    name: '福田中心区停车场',
    capacity: 480,
    lat: 22.541123,
    lon: 114.059876,
    coordSystem: 'GCJ02',
    district: '福田区',
    address: '深南大道6008号',
    openingHours: 'Mo-Su 07:00-23:00',
  },
  ParkingOccupancy: { ...base(2), lotId: 'FT-0042', free: 37, capacity: 480, status: 'open' },
  ParkingPassage: {
    ...base(3),
    lotId: 'FT-0042',
    recordNo: 'R20250314092345000123',
    direction: 'exit',
    gateId: 'G2',
    plateKey: 'a3f1c2e4b5d6978812345678abcdef0123456789abcdef0123456789abcdef01',
    plateCipher: '5e2b7c9d1f3a4b6c8d0e2f4a6b8c0d1e',
    plateMasked: '粤C·***45',
    plateType: 'blue',
    isBackfill: true,
    feeCents: 1_500,
    entryAt: T0 - 2 * 3_600_000,
  },
  FerrySailing: {
    ...base(4),
    sailingId: 'SK-HK-20250314-0930',
    terminalId: 'shekou',
    route: 'Shekou-Hong Kong Airport',
    vesselName: '海珠',
    scheduledDeparture: T0 + 6_000_000,
    actualDeparture: T0 + 6_240_000,
    capacity: 300,
    status: 'delayed',
  },
  FerryTicket: {
    ...base(5),
    ticketId: 'TK889900123',
    sailingId: 'SK-HK-20250314-0930',
    terminalId: 'shekou',
    ticketType: 'adult',
    priceCents: 29_000,
    channel: 'mini-program',
    status: 'refunded',
  },
  FerryCheckIn: {
    ...base(6),
    checkInId: 'CI-5521',
    ticketId: 'TK889900123',
    sailingId: 'SK-HK-20250314-0930',
    terminalId: 'shekou',
    gate: 'B3',
  },
  BikeStationStatus: {
    ...base(7),
    operatorId: 'meituan',
    stationId: 'st-10293',
    vehiclesAvailable: 12,
    docksAvailable: 8,
    isInstalled: true,
    isRenting: true,
    isReturning: false,
  },
  BikeVehicleStatus: {
    ...base(8),
    operatorId: 'hellobike',
    vehicleId: 'hb-77812',
    lat: 22.53211,
    lon: 113.93045,
    stationId: null,
    vehicleTypeId: 'ebike-2',
    isReserved: false,
    isDisabled: true,
  },
  BikeOperatorStatus: { ...base(9), operatorId: 'hellobike', fleetSize: 120_000, vehiclesReporting: 98_311 },
  SourceHeartbeat: { ...base(10), status: 'error', itemsRead: 0, latencyMs: 30_001, message: 'upstream answered 503' },
  IngestError: {
    ...base(11),
    stage: 'map',
    code: 'CITYSYNC_ERR_CONNECTOR_PAYLOAD',
    reason: 'capacity is not a number',
    family: 'ParkingLot',
    raw: '{"id":"FT-0042","capacity":"n/a"}',
  },
  BikeStation: {
    ...base(12),
    operatorId: 'hellobike',
    stationId: 'st-10293',
    name: '深圳湾公园地铁站B口',
    lat: 22.521904,
    lon: 113.94318,
    capacity: 40,
    coordSystem: 'GCJ02',
  },
  BikeTrip: {
    ...base(13),
    operatorId: 'hellobike',
    tripId: 'OD202503140923450001',
    vehicleId: '8600123456',
    startedAt: T0 - 1_080_000,
    endedAt: T0,
    startLat: 22.53211,
    startLon: 113.93045,
    endLat: 22.521904,
    endLon: 113.94318,
    coordSystem: 'GCJ02',
    durationS: 1_080,
    distanceM: 2_350,
    feeCents: 150,
    isBackfill: true,
  },
}

// A published Name@version must never change: data on the wire carries only
// its id. To change a schema, keep the old file as history/<file>.v<N>.avsc,
// bump "version", give the new version an id in catalogue.json and pin it here.
const PUBLISHED_FINGERPRINTS: Record<string, string> = {
  'ParkingLot@1': '8a52fb2430b673f49fd39ade775a2a189df96ae6e14e1866c45c27c3c19294ee',
  'ParkingOccupancy@1': 'f462c47e4f6075190482c5c73a1f115a225b5fa93e9d4f5491ab6e524dc5ac6d',
  'ParkingPassage@1': 'd6c06a584d5650465bd4936741e8ce0fc5fd5cd90e5796da8937ba6edb4c84af',
  'FerrySailing@1': 'bf59f779ed1f3fccb61a36757084faa0da7ab701a9203238783135f8461e65e8',
  'FerryTicket@1': '96056eda04240f2e9ce79856d168b44a8d540bf029ab84667770a71794fa946b',
  'FerryCheckIn@1': '51ec2c4adae7eeb9eb406da912acbdafceda86bd5b28420c12d12b24f555b5ec',
  'BikeStationStatus@1': '07b41623fe894011aa3bfb119559fa05297751f54ed1af2f43a72014f56b32a7',
  'BikeVehicleStatus@1': 'b5756ef6904dc0a9da83e93f62408e2eec33d1079eeb8f488c808bcf5bd92ff9',
  'BikeOperatorStatus@1': 'c8cc810306dc91306790b02564b0f275cdbb2173fb933ed68c7d68956e932d79',
  'SourceHeartbeat@1': '70deab5b7449d93af486c6e2fd4f737bf5feb2040f4576ddf4d100635f8231cb',
  'IngestError@1': '728d8afacb7802761bcebfea042ef8e77beec233c1bacb800aa82c4c6c36ff86',
  'BikeStation@1': '284c8b7d650c4251db94de5eb970de46804426d1fe9530b769a70c086c8c936b',
  'BikeTrip@1': 'f97b6320e99fb81b03faf7f6f341a3b5a36d6049bf01b3b04f3997f09da46730',
}

const tempDirs: string[] = []
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
})

function thrown(fn: () => unknown): CitysyncError {
  try {
    fn()
  } catch (err) {
    if (err instanceof CitysyncError) return err
    throw err
  }
  throw new Error('expected a CitysyncError')
}

function expectError(fn: () => unknown, code: ErrorCode, ...parts: string[]): void {
  const err = thrown(fn)
  expect(err.code).toBe(code)
  for (const part of parts) expect(err.message).toContain(part)
}

function nullableFields(name: EventName): string[] {
  return catalogue
    .latest(name)
    .type.fields.filter((f) => f.type.typeName.startsWith('union') && f.defaultValue() === null)
    .map((f) => f.name)
}

function readSchema(path: string): { fields: { name: string; type: unknown; default?: unknown; doc?: unknown }[]; [key: string]: unknown } {
  return JSON.parse(readFileSync(path, 'utf8')) as ReturnType<typeof readSchema>
}

/** A copy of the schemas folder with ParkingPassage v1 moved to history and `v2` as the current schema. */
function dirWithPassageV2(v2: object, ids: Record<string, number> = { 'ParkingPassage@2': 14 }): string {
  const dir = mkdtempSync(join(tmpdir(), 'citysync-schemas-'))
  tempDirs.push(dir)
  cpSync(SCHEMAS_DIR, dir, { recursive: true, filter: (src) => statSync(src).isDirectory() || /\.(avsc|json)$/.test(src) })
  mkdirSync(join(dir, 'history'), { recursive: true })
  renameSync(join(dir, 'parking-passage.avsc'), join(dir, 'history', 'parking-passage.v1.avsc'))
  writeFileSync(join(dir, 'parking-passage.avsc'), JSON.stringify(v2, null, 2))
  const committed = JSON.parse(readFileSync(join(dir, 'catalogue.json'), 'utf8')) as Record<string, number>
  writeFileSync(join(dir, 'catalogue.json'), JSON.stringify({ ...committed, ...ids }, null, 2))
  return dir
}

const passageV1 = readSchema(join(SCHEMAS_DIR, 'parking-passage.avsc'))
const passageV2 = {
  ...passageV1,
  version: 2,
  fields: [
    ...passageV1.fields,
    { name: 'laneNo', type: ['null', 'string'], default: null, doc: 'Lane number at the gate.' },
  ],
}

describe('schema files', () => {
  it.each(EVENT_NAMES.map((name, i) => [name, i + 1] as const))('%s has a v1 schema with id %d', (name, id) => {
    const entry = catalogue.latest(name)
    expect(entry).toMatchObject({ id, name, version: 1 })
    expect(entry.type.name).toBe(`citysync.v1.${name}`)
    expect(catalogue.byId(id)).toBe(entry)
  })

  it('holds nothing but the events', () => {
    expect(catalogue.entries.map((e) => e.name)).toEqual([...EVENT_NAMES])
  })

  it.each(EVENT_NAMES)('%s fields are the sample fields, in order', (name) => {
    const fields = catalogue.latest(name).type.fields.map((f) => f.name)
    expect(fields).toEqual(Object.keys(SAMPLES[name]))
    expect(fields.slice(0, 4)).toEqual(['sourceId', 'eventId', 'occurredAt', 'receivedAt'])
  })

  it.each(EVENT_NAMES)('%s documents every field', (name) => {
    for (const field of readSchema(catalogue.latest(name).file).fields) {
      expect(field.doc, field.name).toMatch(/\w{3,}/)
    }
  })

  it('fingerprints are the SHA-256 of the canonical form and do not change once published', () => {
    for (const entry of catalogue.entries) {
      const fresh = avro.Type.forSchema(JSON.parse(readFileSync(entry.file, 'utf8')) as avro.Schema)
      expect(fresh.fingerprint('sha256').toString('hex'), entry.file).toBe(entry.fingerprint)
      expect(entry.fingerprint, `${entry.name}@${entry.version}`).toBe(PUBLISHED_FINGERPRINTS[`${entry.name}@${entry.version}`])
    }
  })
})

describe('encode and decode', () => {
  it.each(EVENT_NAMES)('%s round-trips', (name) => {
    const decoded = catalogue.decode(catalogue.encode(name, SAMPLES[name]))
    expect(decoded.name).toBe(name)
    expect(decoded.schemaId).toBe(catalogue.latest(name).id)
    expect({ ...decoded.value }).toStrictEqual(SAMPLES[name])
  })

  it.each(EVENT_NAMES)('%s round-trips with every nullable field null', (name) => {
    const sample: Record<string, unknown> = { ...SAMPLES[name] }
    for (const field of nullableFields(name)) sample[field] = null
    const decoded = catalogue.decode(catalogue.encode(name, sample as never))
    expect({ ...decoded.value }).toStrictEqual(sample)
  })

  it('reads an absent nullable field as null (its default)', () => {
    const { feeCents: _fee, entryAt: _entry, ...rest } = SAMPLES.ParkingPassage
    const decoded = catalogue.decode(catalogue.encode('ParkingPassage', rest as never))
    expect(decoded.value).toMatchObject({ feeCents: null, entryAt: null })
  })

  it('keeps edge values exact', () => {
    const edge = {
      ...SAMPLES.ParkingPassage,
      occurredAt: 0,
      receivedAt: Date.UTC(9999, 11, 31, 23, 59, 59, 999),
      entryAt: -1,
      feeCents: 2 ** 31 - 1,
      recordNo: '',
      plateMasked: '鲁A·***9🚗',
      gateId: 'x'.repeat(100_000),
    }
    expect({ ...catalogue.decode(catalogue.encode('ParkingPassage', edge)).value }).toStrictEqual(edge)
    const lot = { ...SAMPLES.ParkingLot, lat: -0.000001, lon: 179.9999999999, capacity: 0 }
    expect({ ...catalogue.decode(catalogue.encode('ParkingLot', lot)).value }).toStrictEqual(lot)
  })

  it('writes the header as magic 0 and the schema id big-endian', () => {
    const buf = catalogue.encode('ParkingPassage', SAMPLES.ParkingPassage)
    expect([...buf.subarray(0, 5)]).toEqual([0, 0, 0, 0, 3])
    expect(wireHeader(buf)).toEqual({ schemaId: 3 })

    const ids: SchemaIdSource = { idFor: (name) => 0x01020300 + EVENT_NAMES.indexOf(name) }
    const wide = SchemaCatalogue.load(undefined, { ids })
    const wideBuf = wide.encode('ParkingPassage', SAMPLES.ParkingPassage)
    expect([...wideBuf.subarray(0, 5)]).toEqual([0, 1, 2, 3, 2])
    expect(wireHeader(wideBuf)).toEqual({ schemaId: 0x01020302 })
    expect(wide.decode(wideBuf).schemaId).toBe(0x01020302)
    expect(wideBuf.subarray(5)).toEqual(buf.subarray(5))
  })

  it('rejects a bad magic byte', () => {
    const buf = catalogue.encode('ParkingOccupancy', SAMPLES.ParkingOccupancy)
    buf[0] = 1
    expectError(() => catalogue.decode(buf), 'CITYSYNC_ERR_SCHEMA_WIRE', 'magic byte 0x01')
    expectError(() => wireHeader(Buffer.from('{"json":true}')), 'CITYSYNC_ERR_SCHEMA_WIRE', 'magic byte 0x7b')
  })

  it.each([0, 1, 4])('rejects a %d-byte buffer', (n) => {
    expectError(() => catalogue.decode(Buffer.alloc(n)), 'CITYSYNC_ERR_SCHEMA_WIRE', `${n} bytes`)
  })

  it('rejects an unknown schema id', () => {
    const buf = catalogue.encode('ParkingOccupancy', SAMPLES.ParkingOccupancy)
    buf.writeUInt32BE(999, 1)
    expectError(() => catalogue.decode(buf), 'CITYSYNC_ERR_SCHEMA_WIRE', 'unknown schema id 999')
  })

  it('rejects a truncated body and trailing bytes', () => {
    const buf = catalogue.encode('ParkingPassage', SAMPLES.ParkingPassage)
    expectError(() => catalogue.decode(buf.subarray(0, 5)), 'CITYSYNC_ERR_SCHEMA_WIRE', 'truncated', 'ParkingPassage@1')
    expectError(() => catalogue.decode(buf.subarray(0, buf.length - 1)), 'CITYSYNC_ERR_SCHEMA_WIRE', 'truncated')
    expectError(() => catalogue.decode(Buffer.concat([buf, Buffer.from([0])])), 'CITYSYNC_ERR_SCHEMA_WIRE', '1 trailing bytes')
  })

  it('rejects a body that is not valid Avro for the schema', () => {
    // ParkingOccupancy: 4 base fields, lotId, free, capacity union, status enum; a union index of 5 is impossible.
    const good = catalogue.encode('ParkingOccupancy', { ...SAMPLES.ParkingOccupancy, capacity: null, status: 'open' })
    const bad = Buffer.from(good)
    bad[bad.length - 2] = 10 // zig-zag 5
    expectError(() => catalogue.decode(bad), 'CITYSYNC_ERR_SCHEMA_WIRE', 'undecodable body', 'ParkingOccupancy@1')
  })
})

describe('validate', () => {
  it.each(EVENT_NAMES)('accepts the %s sample', (name) => {
    expect(catalogue.validate(name, SAMPLES[name])).toEqual({ ok: true })
  })

  it.each([
    ['a wrong-typed field', { feeCents: '15.00' }, 'feeCents', ["expected null | int, got '15.00'"]],
    ['a fraction in an int', { feeCents: 15.5 }, 'feeCents', ['expected int, got 15.5']],
    ['an int out of range', { feeCents: 2 ** 31 }, 'feeCents', ['expected int']],
    ['a wrong-typed timestamp', { occurredAt: '2025-03-14T01:23:45Z' }, 'occurredAt', ['expected long']],
    ['a timestamp beyond what a double holds exactly', { entryAt: 2 ** 53 }, 'entryAt', ['expected long, got 9007199254740992']],
    ['a missing required field', { lotId: undefined }, 'lotId', ['expected string, got nothing (field missing)']],
    ['a bad enum symbol', { direction: 'in' }, 'direction', ['enum Direction {entry, exit}', "got 'in'"]],
    ['an inherited key as enum symbol', { direction: 'toString' }, 'direction', ["got 'toString'"]],
    ['a string boolean', { isBackfill: 'false' }, 'isBackfill', ['expected boolean']],
  ] as const)('reports %s with its path', (_what, patch, path, parts) => {
    const value = { ...SAMPLES.ParkingPassage, ...patch }
    const result = catalogue.validate('ParkingPassage', value)
    expect(result).toMatchObject({ ok: false, path })
    for (const part of parts) expect(result.ok ? '' : result.message).toContain(part)
    expectError(
      () => catalogue.encode('ParkingPassage', value as never),
      'CITYSYNC_ERR_SCHEMA_INVALID',
      `schema ParkingPassage at ${path}:`,
      ...parts,
    )
  })

  it('reports the first failing field when several fail', () => {
    const result = catalogue.validate('ParkingPassage', { ...SAMPLES.ParkingPassage, lotId: 7, feeCents: 'x' })
    expect(result).toMatchObject({ ok: false, path: 'lotId' })
  })

  it('reports a non-record at the root', () => {
    expect(catalogue.validate('ParkingOccupancy', null)).toMatchObject({ ok: false, path: '', message: 'expected record ParkingOccupancy, got null' })
    expectError(() => catalogue.encode('ParkingOccupancy', null as never), 'CITYSYNC_ERR_SCHEMA_INVALID', 'at (root)')
  })

  it('rejects an inherited key in a nullable enum', () => {
    const lot = { ...SAMPLES.ParkingLot, coordSystem: 'constructor' }
    expect(catalogue.validate('ParkingLot', lot)).toMatchObject({ ok: false, path: 'coordSystem' })
    expectError(() => catalogue.encode('ParkingLot', lot as never), 'CITYSYNC_ERR_SCHEMA_INVALID', 'coordSystem')
  })
})

describe('schema evolution', () => {
  it('reads v1 data with the v2 reader, filling the default', () => {
    const evolved = SchemaCatalogue.load(dirWithPassageV2(passageV2))
    expect(evolved.latest('ParkingPassage')).toMatchObject({ id: 14, version: 2 })
    expect(evolved.byId(3)).toMatchObject({ name: 'ParkingPassage', version: 1, fingerprint: catalogue.latest('ParkingPassage').fingerprint })

    const v1Bytes = catalogue.encode('ParkingPassage', SAMPLES.ParkingPassage)
    for (let i = 0; i < 2; i++) {
      const decoded = evolved.decode(v1Bytes)
      expect(decoded.schemaId).toBe(3)
      expect({ ...decoded.value }).toStrictEqual({ ...SAMPLES.ParkingPassage, laneNo: null })
    }

    const v2Value = { ...SAMPLES.ParkingPassage, laneNo: '3' }
    const v2Bytes = evolved.encode('ParkingPassage', v2Value)
    expect([...v2Bytes.subarray(0, 5)]).toEqual([0, 0, 0, 0, 14])
    expect({ ...evolved.decode(v2Bytes).value }).toStrictEqual(v2Value)
    // Other events are untouched.
    expect(evolved.latest('ParkingLot')).toMatchObject({ id: 1, version: 1 })
  })

  it('refuses a v2 that cannot read v1 data', () => {
    const breaking = { ...passageV2, fields: [...passageV1.fields, { name: 'laneNo', type: 'string' }] }
    expectError(() => SchemaCatalogue.load(dirWithPassageV2(breaking)), 'CITYSYNC_ERR_CONFIG_INVALID', 'cannot read ParkingPassage@1 data')
  })

  it('refuses a version without an id', () => {
    expectError(() => SchemaCatalogue.load(dirWithPassageV2(passageV2, {})), 'CITYSYNC_ERR_SCHEMA_UNKNOWN', 'ParkingPassage@2')
  })

  it('refuses an id given twice', () => {
    expectError(
      () => SchemaCatalogue.load(dirWithPassageV2(passageV2, { 'ParkingPassage@2': 1 })),
      'CITYSYNC_ERR_CONFIG_INVALID',
      'schema id 1 is given to both',
    )
  })

  it('refuses a current version whose older versions are gone', () => {
    const dir = dirWithPassageV2(passageV2)
    rmSync(join(dir, 'history'), { recursive: true })
    expectError(() => SchemaCatalogue.load(dir), 'CITYSYNC_ERR_CONFIG_INVALID', 'ParkingPassage@1 is missing')
  })

  it('takes ids from any SchemaIdSource', () => {
    const ids = new LocalIdSource({ 'ParkingLot@1': 40 }, 'test ids')
    expectError(() => SchemaCatalogue.load(undefined, { ids }), 'CITYSYNC_ERR_SCHEMA_UNKNOWN', 'ParkingOccupancy@1', 'test ids')
  })
})

describe('checkBackwardCompatible', () => {
  const v1 = avro.Type.forSchema(passageV1 as unknown as avro.Schema)
  const withFields = (fields: unknown[]) => avro.Type.forSchema({ ...passageV1, fields } as unknown as avro.Schema)
  const replace = (name: string, type: unknown, extra: object = {}) =>
    withFields(passageV1.fields.map((f) => (f.name === name ? { name, type, ...extra } : f)))

  it.each([
    ['adding a field with a default', avro.Type.forSchema(passageV2 as unknown as avro.Schema)],
    ['removing a field (the reader skips it)', withFields(passageV1.fields.filter((f) => f.name !== 'plateType'))],
    ['widening int to long', replace('feeCents', ['null', 'long'], { default: null })],
    ['adding an enum symbol', replace('direction', { type: 'enum', name: 'Direction', symbols: ['entry', 'exit', 'pass'] })],
  ])('accepts %s', (_what, next) => {
    expect(checkBackwardCompatible(v1, next)).toEqual({ ok: true })
  })

  it.each([
    ['adding a field without a default', withFields([...passageV1.fields, { name: 'laneNo', type: 'string' }])],
    ['changing a type', replace('recordNo', 'long')],
    ['narrowing long to int', replace('occurredAt', 'int')],
    ['making a nullable field required', replace('gateId', 'string')],
    ['removing an enum symbol', replace('direction', { type: 'enum', name: 'Direction', symbols: ['entry'] })],
    ['renaming the record', avro.Type.forSchema({ ...passageV1, name: 'VehiclePassage' } as unknown as avro.Schema)],
  ])('rejects %s', (_what, next) => {
    const result = checkBackwardCompatible(v1, next)
    expect(result.ok).toBe(false)
    expect(result.ok ? '' : result.message).not.toBe('')
  })
})
