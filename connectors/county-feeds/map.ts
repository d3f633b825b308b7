// County rows -> canonical drafts. Pure: no I/O; the caller passes `now`.
//
// A county sends datasets of three kinds, each as files or as a table:
//   lots       car parks: 停车场编号, 停车场名称, 总车位, 地址, 经度, 纬度, ...
//   occupancy  free-space reports: 停车场编号, 剩余车位, 总车位, 上报时间
//   passages   stays: 停车场编号, 车牌号, 入场时间, 出场时间 (empty while parked), 收费金额, ...
// Columns are found by header name: the county's configured names first, then
// the common names below. A row is rebuilt as the open-API item shape of
// connectors/parking-lots/map.ts and mapped by the same rules (so "unknown" in
// a number, free above capacity and impossible dates are refused the same
// way), and reasons name the county's own headers.
//
// A passages row yields an entry and, when it has an exit time, an exit. When
// the county has no record number, one is derived from the car park, the entry
// time and 16 bits of a hash of the plate: stable across re-sends of the same
// stay, and too short to tell the plate.

import { createHash } from 'node:crypto'
import { normalisePlate } from '../../lib/crypto.ts'
import { parseLocal } from '../../lib/local-time.ts'
import { type SourceMessage, itemError, record } from '../sdk/connector.ts'
import { ANY_LOT, plateColorName, redactRow, renameFields } from '../parking-lots/db-pull.ts'
import { type MapContext, mapLot, mapOccupancy, mapPassage } from '../parking-lots/map.ts'

export const DATASET_KINDS = ['lots', 'occupancy', 'passages'] as const
export type DatasetKind = (typeof DATASET_KINDS)[number]

export const FIELDS = {
  lots: ['lotId', 'name', 'capacity', 'address', 'lon', 'lat', 'coordType', 'openingHours', 'district'],
  occupancy: ['lotId', 'free', 'capacity', 'observedAt'],
  passages: ['lotId', 'recordNo', 'plate', 'plateColor', 'gate', 'exitGate', 'entryTime', 'exitTime', 'fee', 'backfill'],
} as const satisfies Record<DatasetKind, readonly string[]>

export type Field = (typeof FIELDS)[DatasetKind][number]
export const ALL_FIELDS: readonly Field[] = [...new Set(Object.values(FIELDS).flat())]

export const REQUIRED: Record<DatasetKind, readonly Field[]> = {
  lots: ['lotId', 'name', 'capacity'],
  occupancy: ['lotId', 'free', 'observedAt'],
  passages: ['lotId', 'entryTime'],
}

/** Header names county systems commonly use, tried after the configured ones. */
export const DEFAULT_HEADERS: Record<Field, readonly string[]> = {
  lotId: ['停车场编号', '停车场编码', '车场编号', '车场编码', '停车场ID'],
  name: ['停车场名称', '车场名称'],
  capacity: ['总车位', '总车位数', '泊位总数', '车位总数'],
  address: ['地址', '停车场地址'],
  lon: ['经度'],
  lat: ['纬度'],
  coordType: ['坐标系'],
  openingHours: ['营业时间', '开放时间'],
  district: ['所属区县', '区县'],
  free: ['剩余车位', '剩余车位数', '空余车位', '空闲车位', '剩余泊位'],
  observedAt: ['上报时间', '统计时间', '采集时间', '更新时间'],
  recordNo: ['记录编号', '停车记录编号', '流水号', '订单号'],
  plate: ['车牌号', '车牌号码', '车牌'],
  plateColor: ['车牌颜色'],
  gate: ['入口', '入场通道', '入口名称', '出入口'],
  exitGate: ['出口', '出场通道', '出口名称'],
  entryTime: ['入场时间', '进场时间'],
  exitTime: ['出场时间', '离场时间'],
  fee: ['实收金额', '收费金额', '停车费', '应收金额'],
  backfill: ['是否补传'],
}

export interface DatasetConfig {
  /** Names the dataset in reasons and in a DB cursor (default: its kind). */
  name?: string
  kind: DatasetKind
  /** Files only: a regular expression on the file name that selects this dataset. */
  match?: string
  /** Field -> the county's header (or column) name, or several accepted names. */
  columns?: Partial<Record<Field, string | string[]>>
  /** Unit of the fee column (default yuan). */
  feeUnit?: 'yuan' | 'fen'
}

export const DEFAULT_DATASETS: readonly DatasetConfig[] = DATASET_KINDS.map((kind) => ({ kind }))

export function datasetName(d: DatasetConfig): string {
  return d.name ?? d.kind
}

/** A dataset bound to one header: where each field is, and under which name. */
export interface Layout {
  dataset: DatasetConfig
  /** Field -> the header (column) name found. */
  names: Partial<Record<Field, string>>
}

function candidates(d: DatasetConfig, field: Field): string[] {
  const configured = d.columns?.[field]
  const own = configured === undefined ? [] : Array.isArray(configured) ? configured : [configured]
  return [...own, ...DEFAULT_HEADERS[field]]
}

// "收费金额(元)" and "收费金额（元）" match "收费金额".
const UNIT_SUFFIX = /\s*[（(][^）)]*[）)]\s*$/

/** Binds `d` to a header, or says which required fields it lacks. */
export function bindLayout(d: DatasetConfig, header: readonly string[]): { layout: Layout } | { missing: Field[] } {
  const exact = new Map<string, string>()
  const loose = new Map<string, string>()
  for (const h of header) {
    if (h === '') continue
    if (!exact.has(h)) exact.set(h, h)
    const bare = h.replace(UNIT_SUFFIX, '')
    if (!loose.has(bare)) loose.set(bare, h)
  }
  const names: Partial<Record<Field, string>> = {}
  for (const field of FIELDS[d.kind] as readonly Field[]) {
    for (const c of candidates(d, field)) {
      const hit = exact.get(c) ?? loose.get(c)
      if (hit !== undefined) {
        names[field] = hit
        break
      }
    }
  }
  const missing = REQUIRED[d.kind].filter((f) => names[f] === undefined)
  return missing.length > 0 ? { missing } : { layout: { dataset: d, names } }
}

/**
 * The dataset a file holds: the one whose `match` fits the file name, else the
 * only one (or the most specific one) whose required headers are all present.
 */
export function chooseLayout(fileName: string, header: readonly string[], datasets: readonly DatasetConfig[]): { layout: Layout } | { reason: string } {
  const named = datasets.filter((d) => d.match !== undefined && new RegExp(d.match, 'u').test(fileName))
  if (named.length > 0) {
    const bound = bindLayout(named[0]!, header)
    if ('layout' in bound) return bound
    return { reason: `dataset ${datasetName(named[0]!)} (by file name) needs ${bound.missing.map((f) => describeField(named[0]!, f)).join(', ')}; the header has ${header.filter((h) => h !== '').join(', ')}` }
  }
  const fits = datasets
    .filter((d) => d.match === undefined)
    .map((d) => bindLayout(d, header))
    .filter((b): b is { layout: Layout } => 'layout' in b)
    .sort((a, b) => Object.keys(b.layout.names).length - Object.keys(a.layout.names).length)
  if (fits.length === 0) {
    const wanted = datasets.map((d) => `${datasetName(d)}: ${REQUIRED[d.kind].map((f) => describeField(d, f)).join(' + ')}`).join('; ')
    return { reason: `the header (${header.filter((h) => h !== '').join(', ')}) fits no dataset (${wanted})` }
  }
  if (fits.length > 1 && Object.keys(fits[0]!.layout.names).length === Object.keys(fits[1]!.layout.names).length) {
    return { reason: `the header fits both ${datasetName(fits[0]!.layout.dataset)} and ${datasetName(fits[1]!.layout.dataset)}; give the datasets a file-name match` }
  }
  return fits[0]!
}

function describeField(d: DatasetConfig, f: Field): string {
  return candidates(d, f)[0] ?? f
}

/** Naive local date-time text in the forms county exports use -> `YYYY-MM-DD HH:mm:ss[.SSS]`, or null. */
export function normaliseLocalTime(text: string): string | null {
  const m = /^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?\s*[ T]?\s*(\d{1,2})[:：时](\d{1,2})(?:[:：分](\d{1,2})(\.\d{1,3})?秒?)?$/.exec(text.trim())
  if (m === null) return null
  const p = (s: string | undefined): string => (s ?? '0').padStart(2, '0')
  return `${m[1]}-${p(m[2])}-${p(m[3])} ${p(m[4])}:${p(m[5])}:${p(m[6])}${m[7] ?? ''}`
}

function timeValue(v: unknown): unknown {
  if (typeof v !== 'string') return v
  if (v.trim() === '') return undefined
  return normaliseLocalTime(v) ?? v
}

function countValue(v: unknown): unknown {
  if (typeof v === 'string') return v.trim() === '' ? undefined : v.trim().replace(/^(\d+)\.0+$/, '$1')
  return v
}

function feeValue(v: unknown, unit: 'yuan' | 'fen'): unknown {
  if (v === undefined || v === null) return undefined
  if (typeof v === 'string') {
    const s = v.trim().replace(/^[¥￥]\s*/, '').replace(/\s*元$/, '')
    if (s === '') return undefined
    if (unit === 'fen' && /^\d+$/.test(s)) return (Number(s) / 100).toFixed(2)
    return s
  }
  if (typeof v === 'number' && unit === 'fen' && Number.isSafeInteger(v)) return (v / 100).toFixed(2)
  return v
}

function textValue(v: unknown): unknown {
  if (typeof v === 'number') return String(v)
  if (typeof v === 'string' && v.trim() === '') return undefined
  return v
}

function flagValue(v: unknown): unknown {
  if (v === undefined || v === null) return 0
  if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') return v
  const s = String(v).trim().toLowerCase()
  if (['1', '是', 'y', 'yes', 'true'].includes(s)) return 1
  if (['0', '否', 'n', 'no', 'false', ''].includes(s)) return 0
  return v
}

/** 16-bit hash of a normalised plate: enough to part two cars entering in the same second. */
function plateTag(plate: unknown): string {
  if (typeof plate !== 'string' || normalisePlate(plate) === '') return 'none'
  return createHash('sha256').update('citysync-county-stay\x1f').update(normalisePlate(plate)).digest('hex').slice(0, 4)
}

export interface CountyMapContext extends MapContext {
  /** occurredAt for lot records (the file's time, or the row's updated_at). */
  lotTime: number
  /** The county, used as the lot's district when the row names none. */
  county: string
}

/** Plate-free raw row for the dead-letter store. */
function rawOf(raw: Record<string, unknown>, layout: Layout): Record<string, unknown> {
  return redactRow(raw, layout.names.plate)
}

/**
 * One row -> records and item errors. `get(field)` reads the row's value for a
 * field; `raw` is the row as received (header -> value); `where` names the row
 * in reasons ("file 2026-11-21.csv row 17").
 */
export function mapCountyRow(
  layout: Layout,
  get: (field: Field) => unknown,
  raw: Record<string, unknown>,
  where: string,
  ctx: CountyMapContext,
): SourceMessage<never>[] {
  const { dataset: d, names } = layout
  const rename: Record<string, string | undefined> = {
    parkCode: names.lotId,
    parkName: names.name,
    totalSpace: names.capacity,
    lng: names.lon,
    lat: names.lat,
    coordType: names.coordType,
    address: names.address,
    openTime: names.openingHours,
    freeSpace: names.free,
    reportTime: names.observedAt,
    recordNo: names.recordNo,
    plateNo: names.plate,
    plateColor: names.plateColor,
    gateNo: names.gate,
    inTime: names.entryTime,
    outTime: names.exitTime,
    fee: names.fee,
    isReupload: names.backfill,
  }
  const at = (f: Field): unknown => (names[f] === undefined ? undefined : get(f))
  const lotId = textValue(at('lotId'))
  const ctxLots: MapContext = { ...ctx, knownLots: ctx.knownLots ?? ANY_LOT }

  if (d.kind === 'lots') {
    const mapped = mapLot(
      {
        parkCode: lotId,
        parkName: textValue(at('name')),
        totalSpace: countValue(at('capacity')),
        lng: at('lon'),
        lat: at('lat'),
        coordType: textValue(at('coordType')),
        address: textValue(at('address')),
        openTime: textValue(at('openingHours')),
      },
      ctx.lotTime,
    )
    if (!mapped.ok) return [itemError('ParkingLot', mapped.fault.code, `${where}: ${renameFields(mapped.fault.reason, rename)}`, rawOf(raw, layout))]
    const district = textValue(at('district'))
    return [record('ParkingLot', { ...mapped.draft, district: typeof district === 'string' ? district : ctx.county })]
  }

  if (d.kind === 'occupancy') {
    const mapped = mapOccupancy(
      { parkCode: lotId, freeSpace: countValue(at('free')), totalSpace: countValue(at('capacity')) ?? null, reportTime: timeValue(at('observedAt')) },
      ctxLots,
    )
    return [mapped.ok ? record('ParkingOccupancy', mapped.draft) : itemError('ParkingOccupancy', mapped.fault.code, `${where}: ${renameFields(mapped.fault.reason, rename)}`, rawOf(raw, layout))]
  }

  const inTime = timeValue(at('entryTime'))
  const outTime = timeValue(at('exitTime'))
  const plate = textValue(at('plate'))
  const recordNo =
    textValue(at('recordNo')) ??
    (typeof lotId === 'string' && typeof inTime === 'string' && parseLocal(inTime, ctx.timezone) !== null
      ? `${lotId}-${inTime.slice(0, 19).replace(/\D/g, '')}-${plateTag(plate)}`
      : undefined)
  const base = {
    recordNo,
    parkCode: lotId,
    plateNo: plate,
    plateColor: plateColorName(textValue(at('plateColor'))),
    isReupload: flagValue(at('backfill')),
  }
  const fail = (code: string, reason: string, label: string): SourceMessage<never> =>
    itemError('ParkingPassage', code, `${where} ${label}: ${renameFields(reason, rename)}`, rawOf(raw, layout))
  // A row without a record number and without a usable entry time says nothing identifiable.
  if (recordNo === undefined && names.recordNo === undefined) {
    const entry = mapPassage({ ...base, recordNo: 'unknown', gateNo: textValue(at('gate')), inTime }, 'entry', ctxLots)
    return [entry.ok ? fail('missing_field', `${names.entryTime} is needed to identify the stay`, 'entry') : fail(entry.fault.code, entry.fault.reason, 'entry')]
  }
  const entry = mapPassage({ ...base, gateNo: textValue(at('gate')), inTime }, 'entry', ctxLots)
  if (!entry.ok) return [fail(entry.fault.code, entry.fault.reason, 'entry')]
  const out: SourceMessage<never>[] = [record('ParkingPassage', entry.draft)]
  if (outTime !== undefined) {
    const exit = mapPassage(
      { ...base, gateNo: textValue(at('exitGate') ?? at('gate')), inTime, outTime, fee: feeValue(at('fee'), d.feeUnit ?? 'yuan') },
      'exit',
      ctxLots,
    )
    out.push(exit.ok ? record('ParkingPassage', exit.draft) : fail(exit.fault.code, exit.fault.reason, 'exit'))
  }
  return out
}

/** JSON Schema of one dataset (files and tables share it; `extra` adds the table fields). */
export function datasetSchema(extra: Record<string, unknown> = {}, required: string[] = []): Record<string, unknown> {
  const column = { oneOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 }] }
  return {
    type: 'object',
    additionalProperties: false,
    required: ['kind', ...required],
    properties: {
      name: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,40}$' },
      kind: { enum: [...DATASET_KINDS] },
      match: { type: 'string', minLength: 1 },
      columns: {
        type: 'object',
        additionalProperties: false,
        properties: Object.fromEntries(ALL_FIELDS.map((f) => [f, column])),
      },
      feeUnit: { enum: ['yuan', 'fen'] },
      ...extra,
    },
  }
}
