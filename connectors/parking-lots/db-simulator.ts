// A vendor car-park database table (停车记录表) in MariaDB/MySQL or
// PostgreSQL, for tests and demos of the parking-db connector. Deterministic
// from a seed.
//
// Table `park_record` (session layout: one row per stay):
//   id BIGINT auto increment, record_no, park_code, in_gate, out_gate,
//   plate_no, plate_color, in_time, out_time (NULL while parked),
//   fee VARCHAR (yuan as text, as many vendor systems keep it),
//   is_reupload 0/1 (补传), updated_at DATETIME(3) naive local time.
//
// What real vendor tables do, reproduced on request:
//   - many rows share one updated_at (batch jobs stamp a whole batch),
//   - late updates: a parked car leaves, the row gets out_time and fee and its
//     updated_at moves forward,
//   - backfilled rows: records uploaded days late (is_reupload = 1) with old
//     event times and a fresh updated_at,
//   - plate corrections: a misread plate fixed after the fact,
//   - defects: missing in_time, exit before entry, fee "unknown" or negative,
//     an unknown car park, an entry time in the future.
// `truth()` tells what a correct reader must make of the table as it is now.

import { type Knex } from 'knex'
import { formatLocal, parseLocal } from '../../lib/local-time.ts'
import { type PlateColor, createRng, randomPlate, randomStay } from './simulator-data.ts'

const MINUTE = 60_000
const HOUR = 3_600_000

export const ROW_DEFECTS = ['missing_in_time', 'exit_before_entry', 'fee_unknown', 'fee_negative', 'unknown_lot', 'future_entry'] as const
export type RowDefect = (typeof ROW_DEFECTS)[number]

/** What the connector must yield for a defect: code and the passage the error is about. */
export const DEFECT_OUTCOME: Record<RowDefect, { code: string; failing: 'entry' | 'exit' }> = {
  missing_in_time: { code: 'missing_field', failing: 'entry' },
  exit_before_entry: { code: 'invalid_value', failing: 'exit' },
  fee_unknown: { code: 'invalid_value', failing: 'exit' },
  fee_negative: { code: 'invalid_value', failing: 'exit' },
  unknown_lot: { code: 'unknown_lot', failing: 'entry' },
  future_entry: { code: 'future_timestamp', failing: 'entry' },
}

export interface VendorRow {
  id: number
  record_no: string
  park_code: string
  in_gate: string
  out_gate: string | null
  plate_no: string
  plate_color: PlateColor
  in_time: string | null
  out_time: string | null
  fee: string | null
  is_reupload: number
  updated_at: string
}

export interface VendorParkingOptions {
  dialect: 'mysql' | 'postgres'
  table?: string
  seed?: number
  /** Car park codes (default NT01..NT03). */
  lots?: string[]
  zone?: string
  /** Event time of the first stay (epoch ms); keep it in the past. */
  startAt: number
  /** updated_at of the first write (epoch ms); later writes move forward from it. */
  writesFrom: number
  /** "Now" for future-dated defects. */
  now: number
}

export interface VendorTruth {
  /** `${lot}/${recordNo}` of every entry and exit the table holds validly. */
  entries: string[]
  exits: string[]
  /** One per defective row: the item error a reader must yield. */
  errors: { recordNo: string; code: string; failing: 'entry' | 'exit' }[]
  rows: number
}

export class VendorParkingTable {
  readonly table: string
  private readonly db: Knex
  private readonly o: Required<Omit<VendorParkingOptions, 'table'>>
  private readonly rand: () => number
  private readonly rows = new Map<number, VendorRow & { defect: RowDefect | null }>()
  private nextId = 1
  private seq = 0
  private tick = 0
  private newWrite = true
  private eventAt: number

  constructor(db: Knex, o: VendorParkingOptions) {
    this.db = db
    this.table = o.table ?? 'park_record'
    this.o = { seed: 7, lots: ['NT01', 'NT02', 'NT03'], zone: 'Asia/Shanghai', ...o }
    this.rand = createRng(this.o.seed)
    this.eventAt = o.startAt
  }

  async create(): Promise<void> {
    const { db, table } = this
    await db.schema.dropTableIfExists(table)
    await db.schema.createTable(table, (t) => {
      t.bigIncrements('id').primary()
      t.string('record_no', 40).notNullable().unique()
      t.string('park_code', 16).notNullable()
      t.string('in_gate', 16)
      t.string('out_gate', 16)
      t.string('plate_no', 16)
      t.string('plate_color', 8)
      t.datetime('in_time', { useTz: false, precision: 0 })
      t.datetime('out_time', { useTz: false, precision: 0 })
      t.string('fee', 16)
      t.smallint('is_reupload').notNullable().defaultTo(0)
      t.datetime('updated_at', { useTz: false, precision: 3 }).notNullable()
      t.index(['updated_at', 'id'])
    })
  }

  /** The next write time; several consecutive writes share one (1 to 6 rows a stamp). */
  private stamp(): string {
    // Ties only within one write: a later write never reuses an earlier stamp.
    if (this.newWrite || this.rand() < 0.35) this.tick++
    this.newWrite = false
    return formatLocal(this.o.writesFrom + this.tick * 1_000 + 250, this.o.zone, true)
  }

  private local(ms: number): string {
    return formatLocal(ms, this.o.zone)
  }

  private newRow(opts: { open: boolean; reupload: boolean; defect: RowDefect | null; at?: number }): VendorRow & { defect: RowDefect | null } {
    const r = this.rand
    this.seq++
    const lotIndex = Math.floor(r() * this.o.lots.length)
    const lot = this.o.lots[lotIndex]!
    const { plate, color } = randomPlate(r)
    const inAt = opts.at ?? (this.eventAt += Math.round((0.5 + r() * 3) * MINUTE))
    const stay = Math.min(randomStay(r), 6 * HOUR)
    const day = formatLocal(inAt, this.o.zone).slice(0, 10).replace(/-/g, '')
    const row: VendorRow & { defect: RowDefect | null } = {
      id: this.nextId++,
      record_no: `${lot}-${day}-${String(this.seq).padStart(6, '0')}`,
      park_code: lot,
      in_gate: `E${1 + Math.floor(r() * 2)}`,
      out_gate: null,
      plate_no: plate,
      plate_color: color,
      in_time: this.local(inAt),
      out_time: null,
      fee: null,
      is_reupload: opts.reupload ? 1 : 0,
      updated_at: '',
      defect: opts.defect,
    }
    if (!opts.open) this.close(row, inAt + stay)
    switch (opts.defect) {
      case 'missing_in_time':
        row.in_time = null
        break
      case 'exit_before_entry':
        this.close(row, inAt - 20 * MINUTE)
        break
      case 'fee_unknown':
        this.close(row, inAt + stay)
        row.fee = 'unknown'
        break
      case 'fee_negative':
        this.close(row, inAt + stay)
        row.fee = '-5.00'
        break
      case 'unknown_lot':
        row.park_code = 'XX99'
        row.record_no = `XX99-${day}-${String(this.seq).padStart(6, '0')}`
        break
      case 'future_entry':
        row.in_time = this.local(this.o.now + 2 * 24 * HOUR)
        row.out_time = null
        row.fee = null
        row.out_gate = null
        break
      case null:
        break
    }
    return row
  }

  private close(row: VendorRow, outAt: number): void {
    const inAt = row.in_time === null ? outAt : (parseLocal(row.in_time, this.o.zone) ?? outAt)
    const stayMin = Math.max(0, (outAt - inAt) / MINUTE)
    row.out_time = this.local(outAt)
    row.out_gate = `X${1 + Math.floor(this.rand() * 2)}`
    row.fee = (Math.ceil(stayMin / 30) * 2.5).toFixed(2)
  }

  private async write(rows: (VendorRow & { defect: RowDefect | null })[]): Promise<void> {
    for (const row of rows) {
      row.updated_at = this.stamp()
      this.rows.set(row.id, row)
    }
    const plain = rows.map(({ defect: _d, ...rest }) => rest)
    for (let i = 0; i < plain.length; i += 200) await this.db(this.table).insert(plain.slice(i, i + 200))
  }

  /**
   * Inserts `count` stays, about a third still parked, with one defect of each
   * kind every `defectEvery` rows (0: none).
   */
  async seed(count: number, defectEvery = 0): Promise<void> {
    this.newWrite = true
    const rows: (VendorRow & { defect: RowDefect | null })[] = []
    let d = 0
    for (let i = 1; i <= count; i++) {
      const defect = defectEvery > 0 && i % defectEvery === 0 ? ROW_DEFECTS[d++ % ROW_DEFECTS.length]! : null
      rows.push(this.newRow({ open: this.rand() < 0.33, reupload: false, defect }))
    }
    await this.write(rows)
  }

  /** Cars leave: `count` parked (valid) stays get their exit; their updated_at moves. Returns their record numbers. */
  async lateExits(count: number): Promise<string[]> {
    this.newWrite = true
    const open = [...this.rows.values()].filter((r) => r.out_time === null && r.defect === null).slice(0, count)
    for (const row of open) {
      const inAt = parseLocal(row.in_time!, this.o.zone)!
      this.close(row, inAt + Math.round((20 + this.rand() * 120) * MINUTE))
      row.updated_at = this.stamp()
      await this.db(this.table).where({ id: row.id }).update({ out_time: row.out_time, out_gate: row.out_gate, fee: row.fee, updated_at: row.updated_at })
    }
    return open.map((r) => r.record_no)
  }

  /** Records uploaded late (补传): complete stays from `hoursBack` hours before the first one, fresh updated_at. */
  async backfill(count: number, hoursBack = 30): Promise<string[]> {
    this.newWrite = true
    const rows: (VendorRow & { defect: RowDefect | null })[] = []
    let at = this.o.startAt - hoursBack * HOUR
    for (let i = 0; i < count; i++) {
      at += Math.round((2 + this.rand() * 10) * MINUTE)
      rows.push(this.newRow({ open: false, reupload: true, defect: null, at }))
    }
    await this.write(rows)
    return rows.map((r) => r.record_no)
  }

  /** Misread plates fixed after the fact on `count` completed stays; returns how many passages changed content. */
  async correctPlates(count: number): Promise<number> {
    this.newWrite = true
    const done = [...this.rows.values()].filter((r) => r.out_time !== null && r.defect === null && r.is_reupload === 0).slice(0, count)
    for (const row of done) {
      row.plate_no = row.plate_no.slice(0, -1) + (row.plate_no.endsWith('8') ? '9' : '8')
      row.updated_at = this.stamp()
      await this.db(this.table).where({ id: row.id }).update({ plate_no: row.plate_no, updated_at: row.updated_at })
    }
    return done.length * 2
  }

  /** Id of the last row in (updated_at, id) order: where a reader that is caught up stands. */
  lastId(): number {
    let last: VendorRow | undefined
    for (const r of this.rows.values()) {
      if (last === undefined || r.updated_at > last.updated_at || (r.updated_at === last.updated_at && r.id > last.id)) last = r
    }
    return last?.id ?? 0
  }

  /** Rows stamped with an updated_at shared by at least one other row. */
  sharedStamps(): number {
    const byStamp = new Map<string, number>()
    for (const r of this.rows.values()) byStamp.set(r.updated_at, (byStamp.get(r.updated_at) ?? 0) + 1)
    return [...byStamp.values()].filter((n) => n > 1).reduce((a, b) => a + b, 0)
  }

  truth(): VendorTruth {
    const t: VendorTruth = { entries: [], exits: [], errors: [], rows: this.rows.size }
    for (const r of this.rows.values()) {
      const key = `${r.park_code}/${r.record_no}`
      if (r.defect !== null) {
        const outcome = DEFECT_OUTCOME[r.defect]
        t.errors.push({ recordNo: r.record_no, code: outcome.code, failing: outcome.failing })
        if (outcome.failing === 'exit') t.entries.push(key)
        continue
      }
      t.entries.push(key)
      if (r.out_time !== null) t.exits.push(key)
    }
    return t
  }

  row(recordNo: string): VendorRow | undefined {
    for (const r of this.rows.values()) if (r.record_no === recordNo) return r
    return undefined
  }
}
