// County data as counties really send it, for tests and demos. Deterministic
// from a seed.
//
// Files: car park lists, free-space reports and stay records as CSV (UTF-8
// with and without BOM, GB18030; comma or semicolon) and XLSX (with a title
// row above the header, dates as date cells), with bad rows of the kinds
// county exports have: "unknown" or "未知" in a number, free above capacity,
// impossible dates, an exit before the entry, a missing car park code.
// Tables: the same stay records in a county database table whose columns are
// named in Chinese (停车场编号, 车牌号, 入场时间, ...), with late exits (the
// row is updated, its 更新时间 moves) and backfilled rows.
//
// Every generator returns its ground truth: what a correct reader lands and
// which rows it must refuse, with which code.

import ExcelJS from 'exceljs'
import { type Knex } from 'knex'
import { formatLocal, parseLocal } from '../../lib/local-time.ts'
import { createRng, randomPlate, randomStay } from '../parking-lots/simulator-data.ts'
import { type FileEncoding } from './parse.ts'

const MINUTE = 60_000
const HOUR = 3_600_000

// --- GB18030 --------------------------------------------------------------
// Node can decode GB18030 but not encode it. Every character a county file
// uses is in the two-byte (GBK) area, so the encoder is the decoder inverted
// over that area, built once.
let GBK: Map<string, [number, number]> | undefined

function gbkTable(): Map<string, [number, number]> {
  if (GBK !== undefined) return GBK
  const pairs: [number, number][] = []
  for (let lead = 0x81; lead <= 0xfe; lead++) {
    for (let trail = 0x40; trail <= 0xfe; trail++) if (trail !== 0x7f) pairs.push([lead, trail])
  }
  const bytes = Uint8Array.from(pairs.flat())
  const text = new TextDecoder('gb18030').decode(bytes)
  const chars = Array.from(text)
  GBK = new Map()
  if (chars.length !== pairs.length) throw new Error('GB18030 two-byte area did not decode one character per pair')
  chars.forEach((ch, i) => {
    if (!GBK!.has(ch)) GBK!.set(ch, pairs[i]!)
  })
  return GBK
}

export function encodeGb18030(text: string): Buffer {
  const table = gbkTable()
  const out: number[] = []
  for (const ch of text) {
    const code = ch.codePointAt(0)!
    if (code < 0x80) {
      out.push(code)
      continue
    }
    const pair = table.get(ch)
    if (pair === undefined) throw new RangeError(`character ${JSON.stringify(ch)} is outside the GB18030 two-byte area`)
    out.push(pair[0], pair[1])
  }
  return Buffer.from(out)
}

// --- rows ------------------------------------------------------------------

export type Cell = string | number | Date
export type SimDataset = 'lots' | 'occupancy' | 'passages'

/** A bad row: its 1-based position among the data rows, and the code a reader must give. */
export interface BadRow {
  index: number
  code: string
  what: string
}

export interface SimTable {
  dataset: SimDataset
  header: string[]
  rows: Cell[][]
  bad: BadRow[]
  /** What the good rows must become. */
  expect: { lots: number; occupancy: number; entries: number; exits: number }
}

export interface CountyLot {
  code: string
  name: string
  capacity: number
}

export interface CountyOptions {
  seed?: number
  /** Car park code prefix (RD: 如东). */
  prefix?: string
  lots?: number
  zone?: string
}

const NAMES = ['人民医院停车场', '汽车站停车场', '文化广场停车场', '城中菜场停车场', '体育中心停车场', '政务中心停车场', '洋口港停车场', '实验小学停车场']

export function countyLots(o: CountyOptions = {}): CountyLot[] {
  const rand = createRng(o.seed ?? 11)
  return Array.from({ length: o.lots ?? 4 }, (_, i) => ({
    code: `${o.prefix ?? 'RD'}-P${String(i + 1).padStart(3, '0')}`,
    name: `如东县${NAMES[i % NAMES.length]}`,
    capacity: 80 + Math.floor(rand() * 12) * 20,
  }))
}

export function lotsTable(lots: CountyLot[]): SimTable {
  return {
    dataset: 'lots',
    header: ['停车场编号', '停车场名称', '总车位', '地址', '经度', '纬度', '营业时间'],
    rows: lots.map((l, i) => [l.code, l.name, l.capacity, `江苏省南通市如东县掘港街道人民路${10 + i * 7}号`, 121.18 + i * 0.004, 32.31 + i * 0.003, i % 2 === 0 ? '00:00-24:00' : '07:00-22:00']),
    bad: [],
    expect: { lots: lots.length, occupancy: 0, entries: 0, exits: 0 },
  }
}

const OCCUPANCY_DEFECTS = [
  { code: 'invalid_value', what: 'unknown', apply: (r: Cell[]) => void (r[1] = 'unknown') },
  { code: 'invalid_value', what: 'free above capacity', apply: (r: Cell[]) => void (r[1] = Number(r[2]) + 15) },
  { code: 'invalid_value', what: 'bad date', apply: (r: Cell[]) => void (r[3] = '2026-13-45 25:61:00') },
  { code: 'invalid_value', what: '未知', apply: (r: Cell[]) => void (r[1] = '未知') },
  { code: 'missing_field', what: 'no car park code', apply: (r: Cell[]) => void (r[0] = '') },
] as const

/**
 * Free-space reports every `everyMinutes` from `from` (epoch ms) for `count`
 * rounds, one bad row every `badEvery` rows (0: none). `asDates`: times as
 * Date cells (XLSX) rather than text.
 */
export function occupancyTable(lots: CountyLot[], o: { from: number; count: number; everyMinutes?: number; badEvery?: number; zone?: string; seed?: number; asDates?: boolean }): SimTable {
  const zone = o.zone ?? 'Asia/Shanghai'
  const rand = createRng(o.seed ?? 5)
  const rows: Cell[][] = []
  const bad: BadRow[] = []
  let d = 0
  for (let k = 0; k < o.count; k++) {
    const at = o.from + k * (o.everyMinutes ?? 15) * MINUTE
    for (const lot of lots) {
      const free = Math.floor(rand() * lot.capacity)
      const row: Cell[] = [lot.code, free, lot.capacity, timeCell(at, zone, o.asDates === true, k)]
      if (o.badEvery !== undefined && o.badEvery > 0 && (rows.length + 1) % o.badEvery === 0) {
        const defect = OCCUPANCY_DEFECTS[d++ % OCCUPANCY_DEFECTS.length]!
        defect.apply(row)
        bad.push({ index: rows.length + 1, code: defect.code, what: defect.what })
      }
      rows.push(row)
    }
  }
  return {
    dataset: 'occupancy',
    header: ['停车场编号', '剩余车位', '总车位', '上报时间'],
    rows,
    bad,
    expect: { lots: 0, occupancy: rows.length - bad.length, entries: 0, exits: 0 },
  }
}

// Excel exports drop leading zeros and seconds now and then.
function timeCell(at: number, zone: string, asDate: boolean, k: number): Cell {
  const text = formatLocal(at, zone)
  if (asDate) return new Date(`${text.replace(' ', 'T')}Z`)
  if (k % 5 === 3) return text.slice(0, 16).replace(/-0?(\d)/g, '/$1').replace(/ 0(\d)/, ' $1')
  return text
}

const PASSAGE_DEFECTS = [
  { code: 'invalid_value', what: 'bad entry date', failing: 'entry', apply: (r: Cell[]) => void (r[2] = '2026/02/30 08:00') },
  { code: 'invalid_value', what: 'exit before entry', failing: 'exit', apply: (r: Cell[], inAt: number, zone: string) => void (r[3] = formatLocal(inAt - 30 * MINUTE, zone)) },
  { code: 'invalid_value', what: 'fee unknown', failing: 'exit', apply: (r: Cell[]) => void (r[4] = 'unknown') },
  { code: 'missing_field', what: 'no entry time', failing: 'entry', apply: (r: Cell[]) => void (r[2] = '') },
] as const

/**
 * Stays starting from `from`, one every few minutes; about a quarter still
 * parked (no exit). Columns: 停车场编号, 车牌号, 入场时间, 出场时间, 收费金额(元), 车牌颜色.
 */
export function passagesTable(lots: CountyLot[], o: { from: number; count: number; badEvery?: number; zone?: string; seed?: number; asDates?: boolean; until: number }): SimTable {
  const zone = o.zone ?? 'Asia/Shanghai'
  const rand = createRng(o.seed ?? 3)
  const rows: Cell[][] = []
  const bad: BadRow[] = []
  let entries = 0
  let exits = 0
  let d = 0
  let at = o.from
  const colorZh = { blue: '蓝色', green: '绿色', yellow: '黄色', black: '黑色' } as const
  for (let i = 1; i <= o.count; i++) {
    at += Math.round((1 + rand() * 6) * MINUTE)
    const lot = lots[Math.floor(rand() * lots.length)]!
    const { plate, color } = randomPlate(rand)
    const stay = Math.min(randomStay(rand), 8 * HOUR)
    const outAt = at + stay
    const parked = rand() < 0.25 || outAt > o.until
    const cell = (ms: number): Cell => (o.asDates === true ? new Date(`${formatLocal(ms, zone).replace(' ', 'T')}Z`) : formatLocal(ms, zone))
    const fee = (Math.ceil(stay / (30 * MINUTE)) * 1.5).toFixed(2)
    const row: Cell[] = [lot.code, plate.replace('粤C', '苏F'), cell(at), parked ? '' : cell(outAt), parked ? '' : fee, colorZh[color]]
    let entryOk = true
    let exitOk = !parked
    if (o.badEvery !== undefined && o.badEvery > 0 && i % o.badEvery === 0) {
      let defect = PASSAGE_DEFECTS[d++ % PASSAGE_DEFECTS.length]!
      // Exit defects need an exit.
      if (parked && defect.failing === 'exit') defect = PASSAGE_DEFECTS[0]
      defect.apply(row, at, zone)
      bad.push({ index: i, code: defect.code, what: defect.what })
      if (defect.failing === 'entry') entryOk = exitOk = false
      else exitOk = false
    }
    if (entryOk) entries++
    if (exitOk) exits++
    rows.push(row)
  }
  return {
    dataset: 'passages',
    header: ['停车场编号', '车牌号', '入场时间', '出场时间', '收费金额(元)', '车牌颜色'],
    rows,
    bad,
    expect: { lots: 0, occupancy: 0, entries, exits },
  }
}

// --- files -----------------------------------------------------------------

function csvField(c: Cell, delimiter: string): string {
  const s = c instanceof Date ? c.toISOString().slice(0, 19).replace('T', ' ') : String(c)
  return s.includes(delimiter) || s.includes('"') || s.includes('\n') ? `"${s.replace(/"/g, '""')}"` : s
}

export function toCsv(t: SimTable, o: { encoding: FileEncoding; delimiter: ',' | ';'; title?: string; crlf?: boolean }): Buffer {
  const eol = o.crlf === false ? '\n' : '\r\n'
  const lines = [...(o.title === undefined ? [] : [o.title]), t.header.join(o.delimiter), ...t.rows.map((r) => r.map((c) => csvField(c, o.delimiter)).join(o.delimiter))]
  const text = lines.join(eol) + eol
  if (o.encoding === 'gb18030') return encodeGb18030(text)
  const body = Buffer.from(text, 'utf8')
  return o.encoding === 'utf-8-bom' ? Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body]) : body
}

export async function toXlsx(t: SimTable, o: { title?: string; sheet?: string } = {}): Promise<Buffer> {
  const wb = new ExcelJS.Workbook()
  const ws = wb.addWorksheet(o.sheet ?? '数据')
  if (o.title !== undefined) {
    ws.addRow([o.title])
    ws.mergeCells(1, 1, 1, t.header.length)
  }
  ws.addRow(t.header)
  for (const r of t.rows) ws.addRow(r)
  t.header.forEach((h, i) => {
    if (/时间/.test(h)) ws.getColumn(i + 1).numFmt = 'yyyy-mm-dd hh:mm:ss'
  })
  return Buffer.from(await wb.xlsx.writeBuffer())
}

export interface DropFile {
  name: string
  bytes: Buffer
  table: SimTable
  /** Row number in the file of data row 1. */
  firstRowLine: number
}

/**
 * The standard drop of one county day: a car park list, free-space reports
 * and stays in every encoding, both delimiters and XLSX, with bad rows.
 * `day` is the local date the data is about; keep it in the past.
 */
export async function countyDrop(o: { day: string; zone?: string; seed?: number }): Promise<DropFile[]> {
  const zone = o.zone ?? 'Asia/Shanghai'
  const lots = countyLots({ seed: o.seed ?? 11 })
  const dayStart = parseLocal(`${o.day} 00:00:00`, zone)!
  const until = dayStart + 24 * HOUR - 1
  const files: DropFile[] = []
  const add = (name: string, bytes: Buffer, table: SimTable, firstRowLine: number): void => void files.push({ name, bytes, table, firstRowLine })

  const lt = lotsTable(lots)
  add(`${o.day}_停车场信息.csv`, toCsv(lt, { encoding: 'utf-8-bom', delimiter: ',' }), lt, 2)

  const occ1 = occupancyTable(lots, { from: dayStart + 6 * HOUR, count: 12, badEvery: 9, zone, seed: 21 })
  add(`${o.day}_剩余车位_gbk.csv`, toCsv(occ1, { encoding: 'gb18030', delimiter: ',' }), occ1, 2)
  const occ2 = occupancyTable(lots, { from: dayStart + 12 * HOUR, count: 10, badEvery: 7, zone, seed: 22 })
  add(`${o.day}_剩余车位_semicolon.csv`, toCsv(occ2, { encoding: 'utf-8', delimiter: ';', title: '如东县停车场剩余车位报送表' }), occ2, 3)
  const occ3 = occupancyTable(lots, { from: dayStart + 18 * HOUR, count: 6, badEvery: 8, zone, seed: 23, asDates: true })
  add(`${o.day}_剩余车位.xlsx`, await toXlsx(occ3), occ3, 2)

  const pas1 = passagesTable(lots, { from: dayStart + 5 * HOUR, count: 60, badEvery: 11, zone, seed: 31, until })
  add(`${o.day}_停车记录_gb18030_semicolon.csv`, toCsv(pas1, { encoding: 'gb18030', delimiter: ';' }), pas1, 2)
  const pas2 = passagesTable(lots, { from: dayStart + 9 * HOUR, count: 45, badEvery: 9, zone, seed: 32, until })
  add(`${o.day}_停车记录_bom.csv`, toCsv(pas2, { encoding: 'utf-8-bom', delimiter: ',', crlf: false }), pas2, 2)
  const pas3 = passagesTable(lots, { from: dayStart + 14 * HOUR, count: 40, badEvery: 10, zone, seed: 33, until, asDates: true })
  add(`${o.day}_停车记录.xlsx`, await toXlsx(pas3, { title: '如东县停车记录报送表' }), pas3, 3)
  return files
}

/** Totals a correct reader lands from `files`, and the item errors it gives. */
export function dropTotals(files: readonly DropFile[]): { lots: number; occupancy: number; entries: number; exits: number; bad: number } {
  const t = { lots: 0, occupancy: 0, entries: 0, exits: 0, bad: 0 }
  for (const f of files) {
    t.lots += f.table.expect.lots
    t.occupancy += f.table.expect.occupancy
    t.entries += f.table.expect.entries
    t.exits += f.table.expect.exits
    t.bad += f.table.bad.length
  }
  return t
}

// --- a county database table ----------------------------------------------

/**
 * A county stay table with Chinese column names:
 *   id, 停车场编号, 车牌号, 入场时间, 出场时间 (NULL while parked), 收费金额,
 *   是否补传, 更新时间 (DATETIME(3), moves on every write).
 */
export class CountyStayTable {
  readonly table: string
  private readonly db: Knex
  private readonly zone: string
  private readonly lots: CountyLot[]
  private readonly rand: () => number
  private id = 0
  private tick = 0
  private newWrite = true
  private readonly writesFrom: number
  private eventAt: number
  readonly rows = new Map<number, { open: boolean; bad: string | null; plate: string; inAt: number }>()

  constructor(db: Knex, o: { table: string; lots: CountyLot[]; from: number; writesFrom: number; zone?: string; seed?: number }) {
    this.db = db
    this.table = o.table
    this.lots = o.lots
    this.zone = o.zone ?? 'Asia/Shanghai'
    this.rand = createRng(o.seed ?? 41)
    this.writesFrom = o.writesFrom
    this.eventAt = o.from
  }

  async create(): Promise<void> {
    await this.db.schema.dropTableIfExists(this.table)
    await this.db.schema.createTable(this.table, (t) => {
      t.increments('id').primary()
      t.string('停车场编号', 20)
      t.string('车牌号', 16)
      t.datetime('入场时间', { useTz: false, precision: 0 })
      t.datetime('出场时间', { useTz: false, precision: 0 })
      t.string('收费金额', 16)
      t.string('是否补传', 4).notNullable().defaultTo('否')
      t.datetime('更新时间', { useTz: false, precision: 3 }).notNullable()
      t.index(['更新时间', 'id'])
    })
  }

  private stamp(): string {
    // Ties only within one write: a later write never reuses an earlier stamp.
    if (this.newWrite || this.rand() < 0.4) this.tick++
    this.newWrite = false
    return formatLocal(this.writesFrom + this.tick * 1000, this.zone, true)
  }

  private local(ms: number): string {
    return formatLocal(ms, this.zone)
  }

  /** `count` stays, a third still parked; every `badEvery`-th has fee 未知 or no car park code. */
  async seed(count: number, badEvery = 0, backfill = false): Promise<void> {
    this.newWrite = true
    const rows: Record<string, unknown>[] = []
    for (let i = 1; i <= count; i++) {
      const id = ++this.id
      const inAt = backfill ? this.eventAt - 26 * HOUR + i * 7 * MINUTE : (this.eventAt += Math.round((1 + this.rand() * 5) * MINUTE))
      const open = !backfill && this.rand() < 0.33
      const stay = Math.round((15 + this.rand() * 200) * MINUTE)
      const { plate } = randomPlate(this.rand)
      let bad: string | null = null
      const row: Record<string, unknown> = {
        id,
        停车场编号: this.lots[Math.floor(this.rand() * this.lots.length)]!.code,
        车牌号: plate.replace('粤C', '苏F'),
        入场时间: this.local(inAt),
        出场时间: open ? null : this.local(inAt + stay),
        收费金额: open ? null : (Math.ceil(stay / (30 * MINUTE)) * 2).toFixed(2),
        是否补传: backfill ? '是' : '否',
        更新时间: this.stamp(),
      }
      if (badEvery > 0 && i % badEvery === 0) {
        if (open) {
          row['停车场编号'] = null
          bad = 'missing_field'
        } else {
          row['收费金额'] = '未知'
          bad = 'invalid_value'
        }
      }
      this.rows.set(id, { open, bad, plate: String(row['车牌号']), inAt })
      rows.push(row)
    }
    for (let i = 0; i < rows.length; i += 200) await this.db(this.table).insert(rows.slice(i, i + 200))
  }

  /** Cars leave: `count` parked, valid stays get their exit; 更新时间 moves. */
  async lateExits(count: number): Promise<number> {
    this.newWrite = true
    const open = [...this.rows.entries()].filter(([, r]) => r.open && r.bad === null).slice(0, count)
    for (const [id, r] of open) {
      r.open = false
      await this.db(this.table)
        .where({ id })
        .update({ 出场时间: this.local(r.inAt + 45 * MINUTE), 收费金额: '3.00', 更新时间: this.stamp() })
    }
    return open.length
  }

  truth(): { entries: number; exits: number; bad: number; rows: number } {
    let entries = 0
    let exits = 0
    let bad = 0
    for (const r of this.rows.values()) {
      if (r.bad === 'missing_field') {
        bad++
        continue
      }
      entries++
      if (r.bad === 'invalid_value') bad++
      else if (!r.open) exits++
    }
    return { entries, exits, bad, rows: this.rows.size }
  }
}
