import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { ManualClock } from '../../lib/clock.ts'
import { isCitysyncError } from '../../lib/errors.ts'
import { compileConnectorSchema, loadSourceFile } from '../../lib/source-config.ts'
import { configSchemaFor } from '../registry.ts'
import { type Ctx, type ItemErrorMessage, type SourceMessage } from '../sdk/connector.ts'
import { type CountyFilesConfig, type CountyFilesCursor, countyFilesConnector, storeUpload } from './files.ts'
import { countyDrop, countyLots, dropTotals, occupancyTable, toCsv } from './simulator.ts'

type Msg = SourceMessage<CountyFilesCursor>
const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function dropDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'citysync-drop-'))
  dirs.push(d)
  return d
}

const clock = new ManualClock('2026-11-22T04:00:00Z')
const ctx: Ctx = {
  sourceId: 'rudong',
  timezone: 'Asia/Shanghai',
  clock,
  log: pino({ level: 'silent' }),
  signal: new AbortController().signal,
  fetch: () => Promise.reject(new Error('no HTTP')),
}

async function read(config: CountyFilesConfig, cursor?: CountyFilesCursor): Promise<{ msgs: Msg[]; cursor: CountyFilesCursor | undefined }> {
  const msgs: Msg[] = []
  for await (const m of countyFilesConnector.read(config, cursor, ctx)) msgs.push(m)
  const cps = msgs.flatMap((m) => (m.type === 'checkpoint' ? [m.cursor] : []))
  return { msgs, cursor: cps.at(-1) ?? cursor }
}

const count = (msgs: Msg[], event: string, direction?: string) =>
  msgs.filter((m) => m.type === 'record' && m.event === event && (direction === undefined || (m.draft as { direction?: string }).direction === direction)).length
const errors = (msgs: Msg[]) => msgs.filter((m): m is ItemErrorMessage => m.type === 'itemError')

describe('county-files connector', () => {
  it('reads every file of a drop, then moves them once their checkpoint is behind them', async () => {
    const dir = dropDir()
    const files = await countyDrop({ day: '2026-11-21' })
    for (const f of files) writeFileSync(join(dir, f.name), f.bytes)
    const config: CountyFilesConfig = { county: '如东县', dropDir: dir, settleMs: 0 }
    const totals = dropTotals(files)

    const first = await read(config)
    expect(count(first.msgs, 'ParkingLot')).toBe(totals.lots)
    expect(count(first.msgs, 'ParkingOccupancy')).toBe(totals.occupancy)
    expect(count(first.msgs, 'ParkingPassage', 'entry')).toBe(totals.entries)
    expect(count(first.msgs, 'ParkingPassage', 'exit')).toBe(totals.exits)
    expect(errors(first.msgs)).toHaveLength(totals.bad)
    expect([totals.lots, totals.occupancy, totals.entries, totals.exits, totals.bad]).toEqual([4, 99, 135, 93, 27])
    // Each bad row is named by file and line.
    for (const f of files) {
      for (const b of f.table.bad) {
        const line = f.firstRowLine + b.index - 1
        expect(errors(first.msgs).some((e) => e.code === b.code && e.reason.startsWith(`file ${f.name} row ${line}`)), `${f.name} ${line} ${b.what}`).toBe(true)
      }
    }
    // One checkpoint per file; the files wait in place until the next run.
    expect(first.msgs.filter((m) => m.type === 'checkpoint')).toHaveLength(files.length)
    expect(Object.keys(first.cursor!.files)).toHaveLength(files.length)
    expect(readdirSync(dir).filter((n) => n.endsWith('.csv') || n.endsWith('.xlsx'))).toHaveLength(files.length)

    const second = await read(config, first.cursor)
    expect(second.msgs.map((m) => m.type)).toEqual(['checkpoint'])
    expect(second.cursor!.pending).toEqual([])
    // Landed files leave a receipt, not their plates.
    expect(readdirSync(join(dir, 'processed')).sort()).toEqual(files.map((f) => `${f.name}.receipt.json`).sort())
    for (const f of files) {
      const receipt = JSON.parse(readFileSync(join(dir, 'processed', `${f.name}.receipt.json`), 'utf8')) as Record<string, unknown>
      expect(receipt.file).toBe(f.name)
      expect(Object.keys(first.cursor!.files)).toContain(receipt.sha256)
      expect(receipt.bytes).toBeGreaterThan(0)
    }
    expect(readdirSync(dir).sort()).toEqual(['processed'])
  })

  it('never lands the same content twice, under any name; rejects what it cannot read', async () => {
    const dir = dropDir()
    const t = occupancyTable(countyLots(), { from: Date.parse('2026-11-21T00:00:00Z'), count: 2 })
    const bytes = toCsv(t, { encoding: 'utf-8', delimiter: ',' })
    writeFileSync(join(dir, 'a.csv'), bytes)
    writeFileSync(join(dir, 'notes.txt'), 'hello')
    writeFileSync(join(dir, 'other.csv'), '编号,数量\n1,2\n')
    writeFileSync(join(dir, '.uploading.csv.part'), 'half')
    const config: CountyFilesConfig = { county: '如东县', dropDir: dir, settleMs: 0 }
    const r1 = await read(config)
    expect(count(r1.msgs, 'ParkingOccupancy')).toBe(8)
    expect(errors(r1.msgs).map((e) => [e.code, e.event])).toEqual([
      ['unsupported_file', null],
      ['unreadable_file', null],
    ])
    expect(readdirSync(join(dir, 'rejected')).sort()).toEqual(['notes.txt', 'notes.txt.reason.txt'])

    // The same bytes again, as a.csv (after the first moved) and as b.csv.
    const r2 = await read(config, r1.cursor)
    writeFileSync(join(dir, 'a.csv'), bytes)
    writeFileSync(join(dir, 'b.csv'), bytes)
    const r3 = await read(config, r2.cursor)
    expect(count(r3.msgs, 'ParkingOccupancy')).toBe(0)
    expect(errors(r3.msgs).map((e) => e.code)).toEqual(['duplicate_file', 'duplicate_file'])
    expect(readdirSync(join(dir, 'processed')).sort()).toEqual(['a.csv.receipt.json'])
    expect(readdirSync(join(dir, 'rejected')).sort()).toEqual(['a.csv', 'a.csv.reason.txt', 'b.csv', 'b.csv.reason.txt', 'notes.txt', 'notes.txt.reason.txt', 'other.csv', 'other.csv.reason.txt'])
    expect(readFileSync(join(dir, 'rejected', 'other.csv.reason.txt'), 'utf8')).toMatch(/fits no dataset/)
    expect(existsSync(join(dir, '.uploading.csv.part'))).toBe(true)

    // Rejected files may hold plates in clear: gone once their retention has passed.
    clock.advance(6 * 86_400_000)
    await read(config, r3.cursor)
    expect(readdirSync(join(dir, 'rejected'))).toHaveLength(8)
    clock.advance(2 * 86_400_000)
    await read(config, r3.cursor)
    expect(readdirSync(join(dir, 'rejected'))).toEqual([])
  })

  it('reads a file again when its checkpoint was never saved (a crash before landing)', async () => {
    const dir = dropDir()
    const t = occupancyTable(countyLots(), { from: Date.parse('2026-11-21T00:00:00Z'), count: 3 })
    writeFileSync(join(dir, 'a.csv'), toCsv(t, { encoding: 'gb18030', delimiter: ';' }))
    const config: CountyFilesConfig = { county: '如东县', dropDir: dir, settleMs: 0 }
    const lost = await read(config)
    const again = await read(config, undefined)
    expect(count(again.msgs, 'ParkingOccupancy')).toBe(count(lost.msgs, 'ParkingOccupancy'))
    expect(readdirSync(dir)).toEqual(['a.csv'])
  })

  it('leaves a file alone while it is still being written', async () => {
    const dir = dropDir()
    writeFileSync(join(dir, 'a.csv'), toCsv(occupancyTable(countyLots(), { from: Date.parse('2026-11-21T00:00:00Z'), count: 1 }), { encoding: 'utf-8', delimiter: ',' }))
    const fresh = await read({ county: 'x', dropDir: dir, settleMs: 60_000 })
    expect(fresh.msgs).toEqual([])
    const old = (Date.now() - 120_000) / 1000
    utimesSync(join(dir, 'a.csv'), old, old)
    expect(count((await read({ county: 'x', dropDir: dir, settleMs: 60_000 })).msgs, 'ParkingOccupancy')).toBe(4)
  })

  it('stores an upload atomically after checking it, and refuses duplicates, junk and oversize', async () => {
    const dir = dropDir()
    const config: CountyFilesConfig = { county: '如东县', dropDir: dir, maxFileBytes: 4096 }
    const bytes = toCsv(occupancyTable(countyLots(), { from: Date.parse('2026-11-21T00:00:00Z'), count: 2 }), { encoding: 'gb18030', delimiter: ';' })
    const stored = await storeUpload(config, undefined, '剩余车位.csv', bytes, clock.now())
    expect(stored).toMatchObject({ file: '剩余车位.csv', bytes: bytes.length, format: 'csv', encoding: 'gb18030', delimiter: ';', dataset: 'occupancy', rows: 8 })
    expect((await storeUpload(config, undefined, '剩余车位.csv', bytes, clock.now())).file).toBe('剩余车位-2.csv')
    expect(readdirSync(dir).sort()).toEqual(['剩余车位-2.csv', '剩余车位.csv'])
    const code = async (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (isCitysyncError(e) ? e.code : String(e)))
    expect(await code(storeUpload(config, { files: { [stored.sha256]: clock.now() }, pending: [] }, 'again.csv', bytes, clock.now()))).toBe('CITYSYNC_ERR_COUNTY_FILE_DUPLICATE')
    expect(await code(storeUpload(config, undefined, '../escape.csv', bytes, clock.now()))).toBe('CITYSYNC_ERR_COUNTY_FILE')
    expect(await code(storeUpload(config, undefined, 'x.pdf', bytes, clock.now()))).toBe('CITYSYNC_ERR_COUNTY_FILE')
    expect(await code(storeUpload(config, undefined, 'x.csv', Buffer.from('a,b\n1,2\n'), clock.now()))).toBe('CITYSYNC_ERR_COUNTY_FILE')
    expect(await code(storeUpload(config, undefined, 'x.csv', Buffer.alloc(5000, 0x41), clock.now()))).toBe('CITYSYNC_ERR_COUNTY_FILE_TOO_LARGE')
  })

  it('validates its config and applies defaults', () => {
    const validate = compileConnectorSchema(countyFilesConnector.configSchema)
    const config: Record<string, unknown> = { county: '如东县', dropDir: '/srv/drops/rudong' }
    expect(validate(config)).toBe(true)
    expect(config).toEqual({ county: '如东县', dropDir: '/srv/drops/rudong', maxFileBytes: 20 * 1024 * 1024, settleMs: 5000, futureToleranceMs: 300_000, remember: 5000, rejectedRetentionDays: 7 })
    expect(validate({ county: 'x', dropDir: '/d', datasets: [{ kind: 'passages', columns: { plate: 'CPH', entryTime: ['RCSJ', '入场时间'] } }] })).toBe(true)
    for (const bad of [{ county: 'x' }, { county: 'x', dropDir: '/d', datasets: [{ kind: 'tickets' }] }, { county: 'x', dropDir: '/d', datasets: [{ kind: 'lots', columns: { colour: 'x' } }] }]) {
      expect(validate(bad), JSON.stringify(bad)).toBe(false)
    }
  })

  it('accepts the example source file', () => {
    const source = loadSourceFile(new URL('../../examples/sources/nantong-county.yaml', import.meta.url).pathname, configSchemaFor)
    expect(source).toMatchObject({ id: 'nantong-rudong-files', kind: 'county-files', freshness: { maxDelay: '26h' }, config: { county: '如东县', settleMs: 5000 } })
    expect((source.config.datasets as unknown[]).length).toBe(3)
  })
})
