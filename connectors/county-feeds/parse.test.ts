import { describe, expect, it } from 'vitest'
import { type ItemErrorMessage, type RecordMessage } from '../sdk/connector.ts'
import { ANY_LOT } from '../parking-lots/db-pull.ts'
import { type Field, DEFAULT_DATASETS, chooseLayout, mapCountyRow, normaliseLocalTime } from './map.ts'
import { UnreadableFile, decodeText, detectDelimiter, parseCountyFile, parseCsv, parseCsvFile } from './parse.ts'
import { countyLots, encodeGb18030, occupancyTable, passagesTable, toCsv, toXlsx } from './simulator.ts'

const HEADER = '停车场编号,车牌号,入场时间,出场时间,收费金额(元)'
const NOW = Date.parse('2026-11-22T00:00:00Z')

describe('county file parsing', () => {
  it('detects UTF-8 with and without BOM, and GB18030', () => {
    const text = `${HEADER}\r\nRD-P001,苏F12345,2026-11-21 08:00:00,,\r\n`
    const utf8 = Buffer.from(text, 'utf8')
    expect(decodeText(utf8)).toEqual({ encoding: 'utf-8', text })
    expect(decodeText(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), utf8]))).toEqual({ encoding: 'utf-8-bom', text })
    const gb = encodeGb18030(text)
    expect(gb.length).toBeLessThan(utf8.length) // two bytes a character instead of three
    expect(decodeText(gb)).toEqual({ encoding: 'gb18030', text })
    expect(() => decodeText(Buffer.from([0xff, 0xfe, 0x41, 0x00]))).toThrow(/UTF-16/)
  })

  it('detects comma or semicolon outside quotes', () => {
    expect(detectDelimiter('a,b,c')).toBe(',')
    expect(detectDelimiter('a;b;c')).toBe(';')
    expect(detectDelimiter('"x,y,z";b;c')).toBe(';')
    expect(detectDelimiter('single')).toBe(',')
  })

  it('parses RFC 4180 quoting, CRLF and LF, and line breaks inside quotes, keeping line numbers', () => {
    const rows = parseCsv('a;b\r\n"x;1";"say ""hi"""\n"two\nlines";z\n\nlast;row', ';')
    expect(rows).toEqual([
      { line: 1, cells: ['a', 'b'] },
      { line: 2, cells: ['x;1', 'say "hi"'] },
      { line: 3, cells: ['two\nlines', 'z'] },
      { line: 5, cells: [''] },
      { line: 6, cells: ['last', 'row'] },
    ])
    expect(() => parseCsv('a,"open\nb', ',')).toThrow(UnreadableFile)
  })

  it('skips a title row and empty rows, cleans the header', () => {
    const file = parseCsvFile(Buffer.from('\uFEFF如东县停车场数据报送表,,,\n\u3000停车场编号 ,剩余车位,总车位,上报时间\n\nRD-P001,5,100,2026-11-21 08:00:00\n,,,\n', 'utf8'))
    expect(file).toMatchObject({ encoding: 'utf-8-bom', delimiter: ',', headerLine: 2, header: ['停车场编号', '剩余车位', '总车位', '上报时间'] })
    expect(file.rows).toEqual([{ line: 4, cells: ['RD-P001', '5', '100', '2026-11-21 08:00:00'] }])
  })

  it('reads XLSX: title row skipped, numbers as numbers, date cells as naive local text', async () => {
    const lots = countyLots()
    const t = occupancyTable(lots, { from: Date.parse('2026-11-21T00:00:00Z'), count: 1, asDates: true })
    const file = await parseCountyFile('a.xlsx', await toXlsx(t, { title: '报送表' }))
    expect(file).toMatchObject({ format: 'xlsx', encoding: null, delimiter: null, headerLine: 2, header: ['停车场编号', '剩余车位', '总车位', '上报时间'] })
    expect(file.rows).toHaveLength(4)
    expect(file.rows[0]).toEqual({ line: 3, cells: [lots[0]!.code, t.rows[0]![1], lots[0]!.capacity, '2026-11-21 08:00:00'] })
    await expect(parseCountyFile('bad.xlsx', Buffer.from('not a zip'))).rejects.toThrow(/not a readable .xlsx/)
    await expect(parseCountyFile('notes.txt', Buffer.from('x'))).rejects.toThrow(/not a .csv or .xlsx/)
  })

  it('round-trips the simulator files in every encoding and delimiter', () => {
    const lots = countyLots()
    const t = passagesTable(lots, { from: Date.parse('2026-11-21T00:00:00Z'), count: 20, until: Date.parse('2026-11-21T15:59:59Z') })
    for (const encoding of ['utf-8', 'utf-8-bom', 'gb18030'] as const) {
      for (const delimiter of [',', ';'] as const) {
        const file = parseCsvFile(toCsv(t, { encoding, delimiter }))
        expect([file.encoding, file.delimiter]).toEqual([encoding, delimiter])
        expect(file.header).toEqual(t.header)
        expect(file.rows.map((r) => r.cells)).toEqual(t.rows.map((r) => r.map(String)))
      }
    }
  })
})

describe('county row mapping', () => {
  const ctx = { timezone: 'Asia/Shanghai', now: NOW, futureToleranceMs: 300_000, knownLots: ANY_LOT, lotTime: NOW - 3_600_000, county: '如东县' }
  const map = (header: string[], cells: (string | number)[], fileName = 'f.csv') => {
    const chosen = chooseLayout(fileName, header, DEFAULT_DATASETS)
    if ('reason' in chosen) throw new Error(chosen.reason)
    const raw = Object.fromEntries(header.map((h, i) => [h, cells[i]]))
    return mapCountyRow(chosen.layout, (f: Field) => raw[chosen.layout.names[f]!], raw, 'file f.csv row 2', ctx)
  }

  it('normalises the date forms county exports use', () => {
    expect(normaliseLocalTime('2026/11/21 8:05')).toBe('2026-11-21 08:05:00')
    expect(normaliseLocalTime('2026-11-21 08:05:09')).toBe('2026-11-21 08:05:09')
    expect(normaliseLocalTime('2026年11月21日 08:05:09')).toBe('2026-11-21 08:05:09')
    expect(normaliseLocalTime('2026.1.2 23:59')).toBe('2026-01-02 23:59:00')
    expect(normaliseLocalTime('昨天')).toBeNull()
  })

  it('chooses the dataset by its header, or says what is missing', () => {
    expect(chooseLayout('x.csv', ['停车场编号', '剩余车位', '总车位', '上报时间'], DEFAULT_DATASETS)).toMatchObject({ layout: { dataset: { kind: 'occupancy' } } })
    expect(chooseLayout('x.csv', HEADER.split(','), DEFAULT_DATASETS)).toMatchObject({ layout: { dataset: { kind: 'passages' }, names: { fee: '收费金额(元)' } } })
    const none = chooseLayout('x.csv', ['编号', '数量'], DEFAULT_DATASETS)
    expect(none).toEqual({ reason: expect.stringMatching(/fits no dataset .*occupancy: 停车场编号 \+ 剩余车位 \+ 上报时间/) as string })
    const custom = chooseLayout('cw_2026.csv', ['CCBH', 'SYCW', 'SBSJ'], [{ kind: 'occupancy', match: '^cw_', columns: { lotId: 'CCBH', free: 'SYCW', observedAt: 'SBSJ' } }])
    expect(custom).toMatchObject({ layout: { names: { lotId: 'CCBH', free: 'SYCW', observedAt: 'SBSJ' } } })
  })

  it('maps a stay to an entry and an exit, with a derived record number that hides the plate', () => {
    const out = map(HEADER.split(','), ['RD-P001', '苏F12345', '2026/11/21 8:05', '2026-11-21 09:40:00', '¥6.00'])
    expect(out.map((m) => m.type)).toEqual(['record', 'record'])
    const [entry, exit] = out.map((m) => (m as RecordMessage).draft) as Record<string, unknown>[]
    expect(entry).toMatchObject({ lotId: 'RD-P001', direction: 'entry', occurredAt: Date.parse('2026-11-21T00:05:00Z'), plate: '苏F12345', feeCents: null })
    expect(exit).toMatchObject({ direction: 'exit', occurredAt: Date.parse('2026-11-21T01:40:00Z'), entryAt: Date.parse('2026-11-21T00:05:00Z'), feeCents: 600 })
    expect(entry!.recordNo).toMatch(/^RD-P001-20261121080500-[0-9a-f]{4}$/)
    expect(String(entry!.recordNo)).not.toContain('12345')
    expect(exit!.recordNo).toBe(entry!.recordNo)
    // Still parked: the entry only.
    expect(map(HEADER.split(','), ['RD-P001', '苏F12345', '2026-11-21 08:05:00', '', ''])).toHaveLength(1)
  })

  it('refuses bad rows with the county header in the reason and no plate in the raw row', () => {
    const occ = ['停车场编号', '剩余车位', '总车位', '上报时间']
    const err = (m: unknown) => m as ItemErrorMessage
    expect(err(map(occ, ['RD-P001', 'unknown', '100', '2026-11-21 08:00:00'])[0])).toMatchObject({
      type: 'itemError', event: 'ParkingOccupancy', code: 'invalid_value', reason: 'file f.csv row 2: 剩余车位 is not a number: "unknown"',
    })
    expect(err(map(occ, ['RD-P001', 120, 100, '2026-11-21 08:00:00'])[0]).reason).toBe('file f.csv row 2: 剩余车位 120 is above 总车位 100')
    expect(err(map(occ, ['RD-P001', 5, 100, '2026-13-45 25:61:00'])[0]).reason).toBe('file f.csv row 2: 上报时间 is not a valid local time: "2026-13-45 25:61:00"')
    const bad = err(map(HEADER.split(','), ['RD-P001', '苏F12345', '2026-11-21 08:05:00', '2026-11-21 09:00:00', 'unknown'])[1])
    expect(bad).toMatchObject({ code: 'invalid_value', reason: 'file f.csv row 2 exit: 收费金额(元) is not an amount in yuan: "unknown"' })
    expect(JSON.parse(bad.raw)).toMatchObject({ 车牌号: '苏F·***45' })
    expect(err(map(HEADER.split(','), ['RD-P001', '苏F12345', '', '', ''])[0])).toMatchObject({ code: 'missing_field', reason: 'file f.csv row 2 entry: missing field 入场时间' })
  })

  it('maps a car park list with the county as district', () => {
    const [m] = map(['停车场编号', '停车场名称', '总车位', '经度', '纬度', '营业时间'], ['RD-P001', '如东县人民医院停车场', 240, 121.18, 32.31, '07:00-22:00'])
    expect((m as RecordMessage).draft).toMatchObject({ lotId: 'RD-P001', capacity: 240, district: '如东县', openingHours: 'Mo-Su 07:00-22:00', occurredAt: NOW - 3_600_000, coordSystem: 'GCJ02' })
  })
})
