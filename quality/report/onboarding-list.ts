// The quarterly county onboarding progress list (县市区停车场接入进展清单): per
// county, its car parks by onboarding status with their dates and notes as
// they stood at the end of the quarter (replayed from the history, so a past
// quarter reads as it was), and every change made during the quarter.

import ExcelJS from 'exceljs'
import { type Knex } from 'knex'
import { promoteOnFirstData } from '../../connectors/county-feeds/onboarding.ts'
import { jsonFromDb, requiredTimestamp, timestampToDb } from '../../lib/metadata/columns.ts'
import { type Metadata } from '../../lib/metadata/db.ts'
import { formatLocal } from '../../lib/local-time.ts'
import { ONBOARDING_STATUSES, type OnboardingStatus } from '../../lib/metadata/onboarding.ts'
import { DEFAULT_TIMEZONE } from '../../lib/source-config.ts'
import { type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { type Labels, labels, type Lang } from './labels.ts'
import { parseQuarter } from './period.ts'
import { escapeXml } from './svg.ts'

export interface OnboardingLot {
  lotId: string
  county: string
  name: string | null
  sourceId: string | null
  status: OnboardingStatus
  plannedDate: string | null
  connectedDate: string | null
  onboardedDate: string | null
  suspendedDate: string | null
  note: string | null
  /** First recorded during the quarter. */
  newInQuarter: boolean
  changedInQuarter: boolean
}

export interface OnboardingChangeRow {
  lotId: string
  county: string
  name: string | null
  at: string
  actor: string
  from: OnboardingStatus | null
  to: OnboardingStatus
  changes: Record<string, { from: unknown; to: unknown }>
}

export interface CountySection {
  county: string
  counts: Record<OnboardingStatus, number>
  total: number
  onboardedInQuarter: number
  lots: OnboardingLot[]
  changes: OnboardingChangeRow[]
}

export interface OnboardingList {
  kind: 'onboarding'
  quarter: string
  zone: string
  from: string
  to: string
  generatedAt: string
  /** Car parks moved to onboarded automatically (first good data) when the list was made. */
  promoted: string[]
  totals: Record<OnboardingStatus, number> & { total: number; onboardedInQuarter: number; newInQuarter: number }
  counties: CountySection[]
}

const FIELDS = ['county', 'name', 'sourceId', 'status', 'plannedDate', 'connectedDate', 'onboardedDate', 'suspendedDate', 'note'] as const

function text(v: unknown): string {
  if (v === null || v === undefined) return ''
  return typeof v === 'string' ? v : JSON.stringify(v)
}

function zeroCounts(): Record<OnboardingStatus, number> {
  return { planned: 0, connecting: 0, onboarded: 0, suspended: 0 }
}

interface HistoryRow {
  id: number | string
  lot_id: string
  at: unknown
  actor: string
  from_status: OnboardingStatus | null
  to_status: OnboardingStatus
  changes: unknown
}

export async function buildOnboardingList(
  deps: { metadata: Metadata; warehouse: Warehouse },
  o: { quarter: string; now: number; zone?: string; promote?: boolean },
): Promise<OnboardingList> {
  const zone = o.zone ?? DEFAULT_TIMEZONE
  const q = parseQuarter(o.quarter, zone)
  const { metadata } = deps
  const promoted = o.promote === false ? [] : (await promoteOnFirstData(metadata, deps.warehouse, { zone })).map((p) => p.lotId)
  const knex: Knex = metadata.knex
  const rows = (await knex('county_lot_onboarding_history').where('at', '<', timestampToDb(metadata.dialect, q.to)).orderBy('id')) as HistoryRow[]

  const state = new Map<string, Record<string, unknown> & { firstAt: number; changed: boolean }>()
  const changes: OnboardingChangeRow[] = []
  for (const r of rows) {
    const at = requiredTimestamp(r.at)
    const diff = (jsonFromDb(metadata.dialect, r.changes) ?? {}) as Record<string, { from: unknown; to: unknown }>
    let s = state.get(r.lot_id)
    if (s === undefined) state.set(r.lot_id, (s = { firstAt: at, changed: false }))
    for (const f of FIELDS) if (diff[f] !== undefined) s[f] = diff[f].to
    s.status = r.to_status
    if (at >= q.from) {
      s.changed = true
      changes.push({ lotId: r.lot_id, county: text(s.county), name: (s.name as string | null) ?? null, at: new Date(at).toISOString(), actor: r.actor, from: r.from_status, to: r.to_status, changes: diff })
    }
  }

  const counties = new Map<string, CountySection>()
  const totals = { ...zeroCounts(), total: 0, onboardedInQuarter: 0, newInQuarter: 0 }
  for (const [lotId, s] of [...state].sort((a, b) => a[0].localeCompare(b[0]))) {
    const county = text(s.county)
    let c = counties.get(county)
    if (c === undefined) counties.set(county, (c = { county, counts: zeroCounts(), total: 0, onboardedInQuarter: 0, lots: [], changes: [] }))
    const lot: OnboardingLot = {
      lotId,
      county,
      name: (s.name as string | null | undefined) ?? null,
      sourceId: (s.sourceId as string | null | undefined) ?? null,
      status: s.status as OnboardingStatus,
      plannedDate: (s.plannedDate as string | null | undefined) ?? null,
      connectedDate: (s.connectedDate as string | null | undefined) ?? null,
      onboardedDate: (s.onboardedDate as string | null | undefined) ?? null,
      suspendedDate: (s.suspendedDate as string | null | undefined) ?? null,
      note: (s.note as string | null | undefined) ?? null,
      newInQuarter: s.firstAt >= q.from,
      changedInQuarter: s.changed,
    }
    c.lots.push(lot)
    c.counts[lot.status]++
    c.total++
    totals[lot.status]++
    totals.total++
    if (lot.newInQuarter) totals.newInQuarter++
    const fromDate = formatLocal(q.from, zone).slice(0, 10)
    const toDate = formatLocal(q.to, zone).slice(0, 10)
    if (lot.status === 'onboarded' && lot.onboardedDate !== null && lot.onboardedDate >= fromDate && lot.onboardedDate < toDate) {
      c.onboardedInQuarter++
      totals.onboardedInQuarter++
    }
  }
  for (const ch of changes) counties.get(ch.county)?.changes.push(ch)
  const order = (st: OnboardingStatus): number => ONBOARDING_STATUSES.indexOf(st)
  for (const c of counties.values()) c.lots.sort((a, b) => order(b.status) - order(a.status) || a.lotId.localeCompare(b.lotId))
  return {
    kind: 'onboarding',
    quarter: q.id,
    zone,
    from: new Date(q.from).toISOString(),
    to: new Date(q.to).toISOString(),
    generatedAt: new Date(o.now).toISOString(),
    promoted,
    totals,
    counties: [...counties.values()].sort((a, b) => a.county.localeCompare(b.county, 'zh')),
  }
}

// ---------------------------------------------------------------------------
// Rendering

export function statusLabel(s: OnboardingStatus, l: Labels): string {
  return { planned: l.statusPlanned, connecting: l.statusConnecting, onboarded: l.statusOnboarded, suspended: l.statusSuspended }[s]
}

function changeText(c: OnboardingChangeRow, l: Labels): string {
  return Object.entries(c.changes)
    .filter(([k]) => k !== 'status')
    .map(([k, v]) => `${k}: ${text(v.from) || '—'} → ${text(v.to) || '—'}`)
    .join('; ') || (c.from === null ? l.newInQuarter : '')
}

const LOT_COLUMNS = ['county', 'lotId', 'name', 'status', 'plannedDate', 'connectedDate', 'onboardedDate', 'suspendedDate', 'note', 'sourceId'] as const

function lotHeader(l: Labels): string[] {
  return [l.county, l.lotId, l.name, l.status, l.plannedDate, l.connectedDate, l.onboardedDate, l.suspendedDate, l.note, l.sourceId]
}

function lotValues(lot: OnboardingLot, l: Labels): string[] {
  return LOT_COLUMNS.map((k) => (k === 'status' ? statusLabel(lot.status, l) : String(lot[k] ?? '')))
}

function csvCell(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

export function onboardingCsv(list: OnboardingList, lang: Lang): Buffer {
  const l = labels(lang)
  const lines = [[...lotHeader(l), l.changesInQuarter].map(csvCell).join(',')]
  for (const c of list.counties) for (const lot of c.lots) lines.push([...lotValues(lot, l), lot.changedInQuarter ? '✓' : ''].map(csvCell).join(','))
  return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(lines.join('\r\n') + '\r\n', 'utf8')])
}

export async function onboardingXlsx(list: OnboardingList, lang: Lang): Promise<Buffer> {
  const l = labels(lang)
  const wb = new ExcelJS.Workbook()
  wb.creator = 'citysync'
  const sum = wb.addWorksheet(l.sheetCounties)
  sum.addRow([`${l.onboardingTitle} ${list.quarter}`]).font = { bold: true, size: 14 }
  sum.addRow([l.county, ...ONBOARDING_STATUSES.map((s) => statusLabel(s, l)), l.total, l.onboardedInQuarter]).font = { bold: true }
  for (const c of list.counties) sum.addRow([c.county, ...ONBOARDING_STATUSES.map((s) => c.counts[s]), c.total, c.onboardedInQuarter])
  sum.addRow([l.total, ...ONBOARDING_STATUSES.map((s) => list.totals[s]), list.totals.total, list.totals.onboardedInQuarter]).font = { bold: true }
  sum.getColumn(1).width = 16

  const lots = wb.addWorksheet(l.sheetLots)
  lots.addRow([...lotHeader(l), l.changesInQuarter]).font = { bold: true }
  for (const c of list.counties) for (const lot of c.lots) lots.addRow([...lotValues(lot, l), lot.changedInQuarter ? '✓' : ''])
  lots.views = [{ state: 'frozen', ySplit: 1 }]
  lots.columns.forEach((col, i) => (col.width = [12, 14, 28, 10, 12, 12, 12, 12, 36, 22, 10][i] ?? 12))

  const ch = wb.addWorksheet(l.sheetChanges)
  ch.addRow([l.changedAt, l.county, l.lotId, l.name, l.fromStatus, l.toStatus, l.changedFields, l.actor]).font = { bold: true }
  for (const c of list.counties) {
    for (const x of c.changes) ch.addRow([formatLocal(Date.parse(x.at), list.zone).slice(0, 16), c.county, x.lotId, x.name ?? '', x.from === null ? '' : statusLabel(x.from, l), statusLabel(x.to, l), changeText(x, l), x.actor])
  }
  ch.columns.forEach((col, i) => (col.width = [18, 12, 14, 28, 10, 10, 50, 20][i] ?? 12))
  return Buffer.from(await wb.xlsx.writeBuffer())
}

export function onboardingHtml(list: OnboardingList, lang: Lang): string {
  const l = labels(lang)
  const h = (s: string | number | null | undefined): string => escapeXml(s === null || s === undefined ? '' : String(s))
  const out: string[] = []
  out.push(
    `<!DOCTYPE html><html lang="${lang === 'zh' ? 'zh-CN' : 'en'}"><head><meta charset="utf-8"><title>${h(`${l.onboardingTitle} ${list.quarter}`)}</title><style>` +
      'body{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:24px;font-size:12px;color:#222}h1{font-size:20px}h2{font-size:15px;margin-top:20px;border-bottom:2px solid #4575b4}' +
      'table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #ccc;padding:2px 6px;text-align:left}th{background:#f0f3f8}td.n{text-align:right}tr.chg td{background:#fff7e0}' +
      '.s-onboarded{color:#1a9850;font-weight:bold}.s-connecting{color:#d98c00}.s-suspended{color:#a50f15}.s-planned{color:#555}' +
      '</style></head><body>',
  )
  out.push(`<h1>${h(l.onboardingTitle)} · ${h(list.quarter)}</h1><p>${h(l.generatedAt)}: ${h(formatLocal(Date.parse(list.generatedAt), list.zone).slice(0, 16))} (${h(list.zone)})</p>`)
  out.push(`<table><tr><th>${h(l.county)}</th>${ONBOARDING_STATUSES.map((s) => `<th>${h(statusLabel(s, l))}</th>`).join('')}<th>${h(l.total)}</th><th>${h(l.onboardedInQuarter)}</th></tr>`)
  for (const c of list.counties) out.push(`<tr><td>${h(c.county)}</td>${ONBOARDING_STATUSES.map((s) => `<td class="n">${c.counts[s]}</td>`).join('')}<td class="n">${c.total}</td><td class="n">${c.onboardedInQuarter}</td></tr>`)
  out.push(`<tr><th>${h(l.total)}</th>${ONBOARDING_STATUSES.map((s) => `<th>${list.totals[s]}</th>`).join('')}<th>${list.totals.total}</th><th>${list.totals.onboardedInQuarter}</th></tr></table>`)
  for (const c of list.counties) {
    out.push(`<h2>${h(c.county)}</h2><table><tr>${lotHeader(l).slice(1).map((x) => `<th>${h(x)}</th>`).join('')}</tr>`)
    for (const lot of c.lots) {
      const v = lotValues(lot, l).slice(1)
      out.push(`<tr${lot.changedInQuarter ? ' class="chg"' : ''}>${v.map((x, i) => (i === 2 ? `<td class="s-${lot.status}">${h(x)}</td>` : `<td>${h(x)}</td>`)).join('')}</tr>`)
    }
    out.push('</table>')
    out.push(`<h3>${h(l.changesInQuarter)}</h3>`)
    if (c.changes.length === 0) out.push(`<p>${h(l.noChanges)}</p>`)
    else {
      out.push(`<table><tr><th>${h(l.changedAt)}</th><th>${h(l.lotId)}</th><th>${h(l.name)}</th><th>${h(l.fromStatus)}</th><th>${h(l.toStatus)}</th><th>${h(l.changedFields)}</th><th>${h(l.actor)}</th></tr>`)
      for (const x of c.changes) {
        out.push(`<tr><td>${h(formatLocal(Date.parse(x.at), list.zone).slice(0, 16))}</td><td>${h(x.lotId)}</td><td>${h(x.name)}</td><td>${h(x.from === null ? '' : statusLabel(x.from, l))}</td><td>${h(statusLabel(x.to, l))}</td><td>${h(changeText(x, l))}</td><td>${h(x.actor)}</td></tr>`)
      }
      out.push('</table>')
    }
  }
  out.push('</body></html>')
  return out.join('\n')
}
