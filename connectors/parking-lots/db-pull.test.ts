import { describe, expect, it } from 'vitest'
import { compileConnectorSchema } from '../../lib/source-config.ts'
import { type ItemErrorMessage, type RecordMessage } from '../sdk/connector.ts'
import { type RowContext } from '../sdk/db-pull.ts'
import { type ParkingDbConfig, ANY_LOT, mapPassageRow, parkingDbConnector, renameFields, resolveParkingDb } from './db-pull.ts'

const NOW = Date.parse('2026-11-22T00:00:00Z')
const rc: RowContext = { timezone: 'Asia/Shanghai', table: 'park_record', where: (row) => `table park_record id ${String(row.id)}` }
const base: ParkingDbConfig = {
  connection: { dialect: 'mysql', host: '127.0.0.1', database: 'vendor', user: 'reader', password: 'pw' },
  table: 'park_record',
  mapping: { recordNo: 'record_no', lotId: 'park_code', plate: 'plate_no', plateColor: 'plate_color', gate: 'in_gate', exitGate: 'out_gate', entryTime: 'in_time', exitTime: 'out_time', fee: 'fee', backfill: 'is_reupload' },
  lots: ['NT01'],
}
const mapCtx = { timezone: 'Asia/Shanghai', now: NOW, futureToleranceMs: 300_000, knownLots: new Set(['NT01']) }
const row = (over: Record<string, unknown> = {}) => ({
  id: 7, record_no: 'NT01-20261121-000007', park_code: 'NT01', in_gate: 'E1', out_gate: 'X2', plate_no: '苏F12345', plate_color: '蓝色',
  in_time: '2026-11-21 08:00:00', out_time: '2026-11-21 09:30:00', fee: '7.50', is_reupload: 0, updated_at: '2026-11-21 09:30:01.250', ...over,
})
const drafts = (msgs: unknown[]) => (msgs as RecordMessage[]).map((m) => m.draft as Record<string, unknown>)

describe('parking-db row mapping', () => {
  it('turns a completed stay into an entry and an exit, in the database zone', () => {
    const out = mapPassageRow(row(), rc, resolveParkingDb(base), mapCtx)
    expect(drafts(out)).toEqual([
      { occurredAt: Date.parse('2026-11-21T00:00:00Z'), lotId: 'NT01', recordNo: 'NT01-20261121-000007', direction: 'entry', gateId: 'E1', plate: '苏F12345', plateType: 'blue', isBackfill: false, feeCents: null, entryAt: null },
      { occurredAt: Date.parse('2026-11-21T01:30:00Z'), lotId: 'NT01', recordNo: 'NT01-20261121-000007', direction: 'exit', gateId: 'X2', plate: '苏F12345', plateType: 'blue', isBackfill: false, feeCents: 750, entryAt: Date.parse('2026-11-21T00:00:00Z') },
    ])
  })

  it('yields only the entry while the car is parked, and reads fees in fen when told', () => {
    expect(mapPassageRow(row({ out_time: null, fee: null }), rc, resolveParkingDb(base), mapCtx)).toHaveLength(1)
    const fen = mapPassageRow(row({ fee: 750, is_reupload: '是' }), rc, resolveParkingDb({ ...base, feeUnit: 'fen' }), mapCtx)
    expect(drafts(fen)[1]).toMatchObject({ feeCents: 750, isBackfill: true })
  })

  it('refuses a bad row once, naming the row, the passage and the vendor column, with the plate masked', () => {
    const cfg = resolveParkingDb(base)
    const [e1] = mapPassageRow(row({ in_time: null }), rc, cfg, mapCtx) as ItemErrorMessage[]
    expect(e1).toMatchObject({ type: 'itemError', code: 'missing_field', reason: 'table park_record id 7 entry: missing field in_time' })
    expect(JSON.parse(e1!.raw)).toMatchObject({ plate_no: '苏F·***45' })
    const [ok, e2] = mapPassageRow(row({ fee: 'unknown' }), rc, cfg, mapCtx)
    expect(ok).toMatchObject({ type: 'record' })
    expect(e2).toMatchObject({ code: 'invalid_value', reason: 'table park_record id 7 exit: fee is not an amount in yuan: "unknown"' })
    expect(mapPassageRow(row({ park_code: 'XX99' }), rc, cfg, mapCtx)[0]).toMatchObject({ code: 'unknown_lot', reason: 'table park_record id 7 entry: park_code "XX99" is not among the lots of this source' })
    expect(mapPassageRow(row({ out_time: '2026-11-21 07:00:00' }), rc, cfg, mapCtx)[1]).toMatchObject({ code: 'invalid_value', reason: 'table park_record id 7 exit: in_time is after out_time' })
  })

  it('reads the event layout with its direction column', () => {
    const cfg = resolveParkingDb({ ...base, layout: 'event', mapping: { recordNo: 'record_no', lotId: 'park_code', time: 'pass_time', direction: 'io', fee: 'fee' } })
    const ctx = { ...mapCtx, knownLots: ANY_LOT }
    expect(drafts(mapPassageRow({ id: 1, record_no: 'R1', park_code: 'ANY', pass_time: '2026-11-21 08:00:00', io: '入场' }, rc, cfg, ctx))[0]).toMatchObject({ direction: 'entry' })
    expect(drafts(mapPassageRow({ id: 2, record_no: 'R1', park_code: 'ANY', pass_time: '2026-11-21 09:00:00', io: 'out', fee: '3' }, rc, cfg, ctx))[0]).toMatchObject({ direction: 'exit', feeCents: 300 })
    expect(mapPassageRow({ id: 3, record_no: 'R2', park_code: 'ANY', pass_time: '2026-11-21 09:00:00', io: '?' }, rc, cfg, ctx)[0]).toMatchObject({ code: 'invalid_value' })
  })

  it('renames open-API field names whole words only', () => {
    expect(renameFields('freeSpace 120 is above totalSpace 100', { freeSpace: '剩余车位', totalSpace: '总车位' })).toBe('剩余车位 120 is above 总车位 100')
    expect(renameFields('inTime is after outTime', { inTime: 'in_time', outTime: undefined })).toBe('in_time is after outTime')
  })
})

describe('parking-db config', () => {
  const validate = compileConnectorSchema(parkingDbConnector.configSchema)
  it('marks the password secret, applies defaults and needs the columns of its layout', () => {
    const props = parkingDbConnector.configSchema.properties as Record<string, { properties: Record<string, unknown> }>
    expect(props.connection!.properties.password).toMatchObject({ type: 'string', 'x-secret': true })
    const c: Record<string, unknown> = structuredClone(base) as unknown as Record<string, unknown>
    expect(validate(c), JSON.stringify(validate.errors)).toBe(true)
    expect(c).toMatchObject({ layout: 'session', pageSize: 1000, updatedAtColumn: 'updated_at', idColumn: 'id', feeUnit: 'yuan', connection: { ssl: false, queryTimeoutMs: 30_000 } })
    expect(validate({ ...base, mapping: { recordNo: 'r', lotId: 'l' } })).toBe(false)
    expect(validate({ ...base, layout: 'event', mapping: { recordNo: 'r', lotId: 'l', time: 't', direction: 'd' } })).toBe(true)
    expect(validate({ ...base, layout: 'event', mapping: { recordNo: 'r', lotId: 'l', entryTime: 't' } })).toBe(false)
    expect(validate({ ...base, table: 'x`; drop table y' })).toBe(false)
    expect(validate({ ...base, connection: { ...base.connection, dialect: 'oracle' } })).toBe(false)
  })
})
