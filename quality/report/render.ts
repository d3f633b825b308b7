// The monthly sync report rendered: HTML (self-contained and printable, the
// pictures inline as SVG), XLSX (a summary sheet, one sheet per source, an
// incidents sheet), CSV (one row per source and car park) and JSON (the model).

import ExcelJS from 'exceljs'
import { formatLocal } from '../../lib/local-time.ts'
import { incidentStatusLabel, kindLabel, type Labels, labels, type Lang, percent, stateLabel } from './labels.ts'
import { type FigureRow, type SourceSection, type SyncReport } from './model.ts'
import { dailyBarsSvg, escapeXml, heatStripSvg } from './svg.ts'

export const FORMATS = ['html', 'xlsx', 'csv', 'json', 'pdf'] as const
export type ReportFormat = (typeof FORMATS)[number]

export const CONTENT_TYPES: Record<ReportFormat, string> = {
  html: 'text/html; charset=utf-8',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  csv: 'text/csv; charset=utf-8',
  json: 'application/json; charset=utf-8',
  pdf: 'application/pdf',
}

// ---------------------------------------------------------------------------
// Detail rows (CSV and XLSX)

interface Column {
  key: string
  label: (l: Labels) => string
  width: number
  value: (r: FigureRow, s: SourceSection, report: SyncReport, lang: Lang) => string | number | null
  /** XLSX number format. */
  format?: string
}

const local = (iso: string | null, zone: string): string => (iso === null ? '' : formatLocal(Date.parse(iso), zone).slice(0, 16))

export const DETAIL_COLUMNS: readonly Column[] = [
  { key: 'level', label: (l) => l.level, width: 10, value: (r, _s, _rep, lang) => (r.level === 'source' ? labels(lang).levelSource : labels(lang).levelEntity) },
  { key: 'sourceId', label: (l) => l.sourceId, width: 22, value: (r) => r.sourceId },
  { key: 'source', label: (l) => l.source, width: 24, value: (_r, s) => s.name },
  { key: 'kind', label: (l) => l.kind, width: 8, value: (r, _s, _rep, lang) => kindLabel(r.entityKind, lang) },
  { key: 'entityId', label: (l) => l.entityId, width: 12, value: (r) => r.entityId ?? '' },
  { key: 'name', label: (l) => l.name, width: 24, value: (r) => (r.level === 'source' ? '' : (r.name ?? '')) },
  { key: 'records', label: (l) => l.records, width: 12, value: (r) => r.records },
  { key: 'rejected', label: (l) => l.rejected, width: 10, value: (r) => r.rejected },
  { key: 'daysActive', label: (l) => l.daysActive, width: 10, value: (r) => r.daysActive },
  { key: 'expected', label: (l) => l.expected, width: 10, value: (r) => r.buckets.expected },
  { key: 'good', label: (l) => l.good, width: 10, value: (r) => r.buckets.good },
  { key: 'bad', label: (l) => l.bad, width: 8, value: (r) => r.buckets.bad },
  { key: 'missing', label: (l) => l.missing, width: 8, value: (r) => r.buckets.missing },
  { key: 'maintenance', label: (l) => l.maintenance, width: 8, value: (r) => r.buckets.maintenance },
  { key: 'quiet', label: (l) => l.quiet, width: 8, value: (r) => r.buckets.quiet },
  { key: 'completeness', label: (l) => l.completeness, width: 12, value: (r) => r.completeness, format: '0.00%' },
  { key: 'delays', label: (l) => l.delays, width: 10, value: (r) => r.delays },
  { key: 'delayMinutes', label: (l) => l.delayMinutes, width: 12, value: (r) => r.delayMinutes },
  { key: 'longestGapMinutes', label: (l) => l.longestGap, width: 12, value: (r) => r.longestGapMinutes },
  { key: 'states', label: (l) => l.states, width: 18, value: (r, _s, _rep, lang) => r.states.map((x) => stateLabel(x, lang)).join(' ') },
  {
    key: 'incidents',
    label: (l) => l.incidents,
    width: 36,
    value: (r, _s, rep) =>
      r.incidents
        .map((id) => {
          const i = rep.incidents.find((x) => x.id === id)
          return i?.rootCause ? `#${id} ${i.rootCause}` : `#${id}`
        })
        .join('; '),
  },
]

function cellText(v: string | number | null, col: Column): string {
  if (v === null) return ''
  if (col.key === 'completeness' && typeof v === 'number') return (v * 100).toFixed(2)
  return String(v)
}

function csvCell(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

/** UTF-8 with BOM (spreadsheet programs then read the Chinese headers); completeness in percent. */
export function reportCsv(report: SyncReport, lang: Lang): Buffer {
  const l = labels(lang)
  const lines = [DETAIL_COLUMNS.map((c) => csvCell(c.key === 'completeness' ? `${c.label(l)}(%)` : c.label(l))).join(',')]
  for (const s of report.sources) {
    for (const r of [s.row, ...s.entities]) lines.push(DETAIL_COLUMNS.map((c) => csvCell(cellText(c.value(r, s, report, lang), c))).join(','))
  }
  return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(lines.join('\r\n') + '\r\n', 'utf8')])
}

export function reportJson(report: SyncReport): Buffer {
  return Buffer.from(JSON.stringify(report, null, 2) + '\n', 'utf8')
}

// ---------------------------------------------------------------------------
// XLSX

/** Worksheet names: at most 31 characters, none of []:*?/\, unique. */
export function sheetName(wanted: string, taken: Set<string>): string {
  const base = wanted.replace(/[[\]:*?/\\]/g, '_').slice(0, 31) || 'sheet'
  let name = base
  for (let i = 2; taken.has(name.toLowerCase()); i++) name = `${base.slice(0, 31 - String(i).length - 1)}~${i}`
  taken.add(name.toLowerCase())
  return name
}

export function summaryLines(report: SyncReport, lang: Lang): [string, string | number | null, string?][] {
  const l = labels(lang)
  const s = report.summary
  const p = report.previous
  const c = report.change
  const lines: [string, string | number | null, string?][] = [
    [l.month, report.month],
    [l.zone, report.zone],
    [l.dataUntil, local(report.until, report.zone)],
    [l.generatedAt, local(report.generatedAt, report.zone)],
    [l.bucket, `${report.bucketMinutes} ${l.minutes}`],
    [l.sourcesCovered, s.sources],
    [l.entitiesCovered, s.entities],
    [l.carParks, s.carParks],
    [l.completeness, s.completeness, '0.00%'],
    [l.sourcesInterrupted, s.sourcesWithInterruptions.length],
    [l.hoursLate, s.hoursLate],
    [l.delaysTotal, s.delays],
    [l.records, s.records],
    [l.rejected, s.rejected],
    [l.expected, s.buckets.expected],
    [l.good, s.buckets.good],
    [l.bad, s.buckets.bad],
    [l.missing, s.buckets.missing],
    [l.maintenance, s.buckets.maintenance],
    [l.quiet, s.buckets.quiet],
  ]
  if (p !== null && c !== null) {
    lines.push(
      [`${l.previousMonth} ${p.month}: ${l.completeness}`, p.completeness, '0.00%'],
      [`${l.change}: ${l.completeness} (${l.pp})`, c.completeness],
      [`${l.previousMonth}: ${l.hoursLate}`, p.hoursLate],
      [`${l.change}: ${l.hoursLate}`, c.hoursLate],
      [`${l.change}: ${l.sourcesInterrupted}`, c.sourcesWithInterruptions],
      [`${l.change}: ${l.records}`, c.records],
    )
  }
  return lines
}

export async function reportXlsx(report: SyncReport, lang: Lang): Promise<Buffer> {
  const l = labels(lang)
  const wb = new ExcelJS.Workbook()
  wb.creator = 'citysync'
  const taken = new Set<string>()
  const summary = wb.addWorksheet(sheetName(l.sheetSummary, taken))
  summary.columns = [
    { header: l.syncTitle, key: 'k', width: 36 },
    { header: '', key: 'v', width: 22 },
  ]
  summary.getRow(1).font = { bold: true, size: 14 }
  for (const [k, v, fmt] of summaryLines(report, lang)) {
    const row = summary.addRow({ k, v })
    if (fmt !== undefined) row.getCell(2).numFmt = fmt
  }
  summary.addRow({})
  const head = summary.addRow({ k: `${l.sourcesInterrupted}: ${l.sourceId}`, v: report.summary.sourcesWithInterruptions.join(', ') || l.none })
  head.font = { bold: true }
  summary.addRow({})
  summary.addRow({ k: l.definitions, v: l.definitionText }).getCell(2).alignment = { wrapText: true, vertical: 'top' }

  for (const s of report.sources) {
    const ws = wb.addWorksheet(sheetName(s.id, taken))
    ws.columns = DETAIL_COLUMNS.map((c) => ({ key: c.key, header: c.label(l), width: c.width }))
    ws.getRow(1).font = { bold: true }
    ws.views = [{ state: 'frozen', ySplit: 1 }]
    for (const r of [s.row, ...s.entities]) {
      const values: Record<string, string | number | null> = {}
      for (const c of DETAIL_COLUMNS) values[c.key] = c.value(r, s, report, lang)
      const row = ws.addRow(values)
      const idx = DETAIL_COLUMNS.findIndex((c) => c.key === 'completeness') + 1
      row.getCell(idx).numFmt = '0.00%'
      if (r.level === 'source') row.font = { bold: true }
      if (r.abnormal) row.getCell(idx).fill = { type: 'pattern', pattern: 'solid', fgColor: { argb: 'FFFCE4E4' } }
    }
  }

  const inc = wb.addWorksheet(sheetName(l.sheetIncidents, taken))
  inc.columns = [
    { key: 'id', header: l.incidentId, width: 10 },
    { key: 'sourceId', header: l.sourceId, width: 22 },
    { key: 'title', header: l.title, width: 36 },
    { key: 'states', header: l.states, width: 18 },
    { key: 'occurredAt', header: l.occurredAt, width: 18 },
    { key: 'recoveredAt', header: l.recoveredAt, width: 18 },
    { key: 'scope', header: l.scope, width: 30 },
    { key: 'rootCause', header: l.rootCause, width: 40 },
    { key: 'status', header: l.status, width: 10 },
  ]
  inc.getRow(1).font = { bold: true }
  for (const i of report.incidents) {
    inc.addRow({
      id: i.id,
      sourceId: i.sourceId,
      title: i.title,
      states: i.states.map((x) => stateLabel(x, lang)).join(' '),
      occurredAt: local(i.occurredAt, report.zone),
      recoveredAt: local(i.recoveredAt, report.zone),
      scope: i.entities.length === 0 ? l.wholeSource : `${i.entityCount}: ${i.entities.slice(0, 20).join(', ')}`,
      rootCause: i.rootCause ?? '',
      status: incidentStatusLabel(i.status, lang),
    })
  }
  return Buffer.from(await wb.xlsx.writeBuffer())
}

// ---------------------------------------------------------------------------
// HTML

const CSS = `
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","Microsoft YaHei","PingFang SC",sans-serif;margin:24px;color:#222;font-size:12px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px;border-bottom:2px solid #4575b4;padding-bottom:2px}
h3{font-size:13px;margin:12px 0 4px}.meta{color:#555;margin-bottom:12px}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #ccc;padding:2px 5px;text-align:right;white-space:nowrap}
th{background:#f0f3f8}td.t{text-align:left;white-space:normal}
tr.src td{font-weight:bold;background:#f7f7f7}tr.abn td.rate{background:#fce4e4;color:#a50f15;font-weight:bold}
.state{display:inline-block;background:#d73027;color:#fff;border-radius:3px;padding:0 4px;margin-right:2px;font-size:11px}
.kpi{display:inline-block;border:1px solid #ccc;border-radius:4px;padding:6px 10px;margin:0 8px 8px 0;min-width:120px}
.kpi b{display:block;font-size:18px}.kpi.bad b{color:#a50f15}.pics{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.note{color:#555;font-size:11px;max-width:900px}
section.source{page-break-before:always}
@media print{body{margin:10mm}section.source{page-break-before:always}}
`

function h(s: string | number | null | undefined): string {
  return escapeXml(s === null || s === undefined ? '' : String(s))
}

function kpi(label: string, value: string, bad = false): string {
  return `<div class="kpi${bad ? ' bad' : ''}">${h(label)}<b>${h(value)}</b></div>`
}

function signed(x: number, digits = 2): string {
  return `${x > 0 ? '+' : ''}${Number.isInteger(x) ? x : x.toFixed(digits)}`
}

function figureCells(r: FigureRow, lang: Lang, report: SyncReport): string {
  const states = r.states.map((x) => `<span class="state">${h(stateLabel(x, lang))}</span>`).join('')
  const inc = r.incidents
    .map((id) => {
      const i = report.incidents.find((x) => x.id === id)
      return `#${id}${i?.rootCause ? ` ${h(i.rootCause)}` : ''}`
    })
    .join('<br>')
  return (
    `<td>${r.records}</td><td>${r.rejected}</td><td>${r.daysActive}</td><td>${r.buckets.expected}</td><td>${r.buckets.good}</td>` +
    `<td>${r.buckets.bad}</td><td>${r.buckets.missing}</td><td>${r.buckets.maintenance}</td><td>${r.buckets.quiet}</td>` +
    `<td class="rate">${h(percent(r.completeness))}</td><td>${r.delays}</td><td>${r.delayMinutes}</td><td>${r.longestGapMinutes}</td>` +
    `<td class="t">${states}</td><td class="t">${inc}</td>`
  )
}

export function reportHtml(report: SyncReport, lang: Lang): string {
  const l = labels(lang)
  const s = report.summary
  const out: string[] = []
  out.push(`<!DOCTYPE html><html lang="${lang === 'zh' ? 'zh-CN' : 'en'}"><head><meta charset="utf-8"><title>${h(`${l.syncTitle} ${report.month}`)}</title><style>${CSS}</style></head><body>`)
  out.push(`<h1>${h(l.syncTitle)} · ${h(report.month)}</h1>`)
  out.push(
    `<div class="meta">${h(l.zone)}: ${h(report.zone)} · ${h(l.dataUntil)}: ${h(local(report.until, report.zone))}${report.partial ? ` ${h(l.partial)}` : ''} · ${h(l.bucket)}: ${report.bucketMinutes} ${h(l.minutes)} · ${h(l.generatedAt)}: ${h(local(report.generatedAt, report.zone))}</div>`,
  )
  out.push(`<h2>${h(l.summary)}</h2><div>`)
  out.push(kpi(l.sourcesCovered, String(s.sources)))
  out.push(kpi(l.entitiesCovered, String(s.entities)))
  out.push(kpi(l.completeness, percent(s.completeness), s.completeness !== null && s.completeness < 0.95))
  out.push(kpi(l.sourcesInterrupted, String(s.sourcesWithInterruptions.length), s.sourcesWithInterruptions.length > 0))
  out.push(kpi(l.hoursLate, String(s.hoursLate), s.hoursLate > 0))
  out.push(kpi(l.records, String(s.records)))
  out.push(kpi(l.rejected, String(s.rejected), s.rejected > 0))
  out.push('</div>')
  if (report.previous !== null && report.change !== null) {
    const c = report.change
    out.push(
      `<table><tr><th></th><th>${h(report.month)}</th><th>${h(l.previousMonth)} ${h(report.previous.month)}</th><th>${h(l.change)}</th></tr>` +
        `<tr><td class="t">${h(l.completeness)}</td><td>${h(percent(s.completeness))}</td><td>${h(percent(report.previous.completeness))}</td><td>${c.completeness === null ? '—' : h(`${signed(c.completeness)} ${l.pp}`)}</td></tr>` +
        `<tr><td class="t">${h(l.hoursLate)}</td><td>${s.hoursLate}</td><td>${report.previous.hoursLate}</td><td>${h(signed(c.hoursLate))}</td></tr>` +
        `<tr><td class="t">${h(l.sourcesInterrupted)}</td><td>${s.sourcesWithInterruptions.length}</td><td>${report.previous.sourcesWithInterruptions.length}</td><td>${h(signed(c.sourcesWithInterruptions))}</td></tr>` +
        `<tr><td class="t">${h(l.records)}</td><td>${s.records}</td><td>${report.previous.records}</td><td>${h(signed(c.records))}</td></tr></table>`,
    )
  }
  if (s.sourcesWithInterruptions.length > 0) out.push(`<p>${h(l.sourcesInterrupted)}: ${s.sourcesWithInterruptions.map(h).join('、')}</p>`)

  // Overview: one line per source.
  out.push(`<table><tr><th>${h(l.source)}</th><th>${h(l.operator)}</th><th>${h(l.district)}</th><th>${h(l.entitiesCovered)}</th>${headCells(l)}</tr>`)
  for (const sec of report.sources) {
    out.push(`<tr class="${sec.row.abnormal ? 'abn' : ''}"><td class="t">${h(sec.name)} (${h(sec.id)})</td><td class="t">${h(sec.operator)}</td><td class="t">${h(sec.district)}</td><td>${sec.entities.length}</td>${figureCells(sec.row, lang, report)}</tr>`)
  }
  out.push('</table>')
  out.push(`<p class="note"><b>${h(l.definitions)}</b>: ${h(l.definitionText)}</p>`)

  for (const sec of report.sources) {
    out.push(`<section class="source"><h2>${h(sec.name)} (${h(sec.id)})</h2>`)
    out.push(`<div class="meta">${h(l.kind)}: ${h(sec.kind)} · ${h(l.operator)}: ${h(sec.operator ?? '')} · ${h(l.district)}: ${h(sec.district ?? '')} · ${h(l.maxDelay)}: ${sec.maxDelayMinutes} ${h(l.minutes)}</div>`)
    out.push(`<div class="pics"><div><h3>${h(l.heatTitle)}</h3>${heatStripSvg(sec.heat, report.dates, l)}</div><div><h3>${h(l.volumeTitle)}</h3>${dailyBarsSvg(sec.daily, l)}</div></div>`)
    if (sec.rejectedByCode.length > 0) out.push(`<p>${h(l.rejectedByCode)}: ${sec.rejectedByCode.map((c) => `${h(c.code)} ${c.count}`).join('，')}</p>`)
    out.push(`<table><tr><th>${h(l.entityId)}</th><th>${h(l.name)}</th>${headCells(l)}</tr>`)
    for (const r of [sec.row, ...sec.entities]) {
      const cls = `${r.level === 'source' ? 'src' : ''}${r.abnormal ? ' abn' : ''}`.trim()
      out.push(`<tr${cls ? ` class="${cls}"` : ''}><td class="t">${h(r.level === 'source' ? l.total : r.entityId)}</td><td class="t">${h(r.level === 'source' ? '' : r.name)}</td>${figureCells(r, lang, report)}</tr>`)
    }
    out.push('</table>')
    const delayed = [sec.row, ...sec.entities].filter((r) => r.delayList.length > 0)
    if (delayed.length > 0) {
      out.push(`<h3>${h(l.delayList)}</h3><table><tr><th>${h(l.entityId)}</th><th>${h(l.lastDataAt)}</th><th>${h(l.lateFrom)}</th><th>${h(l.dataBackAt)}</th><th>${h(l.delayMinutes)}</th></tr>`)
      for (const r of delayed) {
        for (const d of r.delayList) {
          out.push(`<tr><td class="t">${h(r.entityId ?? l.total)}</td><td>${h(local(d.lastDataAt, report.zone))}</td><td>${h(local(d.lateFrom, report.zone))}</td><td>${d.dataBackAt === null ? h(l.ongoing) : h(local(d.dataBackAt, report.zone))}</td><td>${d.lateMinutes}</td></tr>`)
        }
      }
      out.push('</table>')
    }
    out.push('</section>')
  }

  out.push(`<section class="source"><h2>${h(l.sheetIncidents)}</h2>`)
  if (report.incidents.length === 0) out.push(`<p>${h(l.none)}</p>`)
  else {
    out.push(`<table><tr><th>${h(l.incidentId)}</th><th>${h(l.source)}</th><th>${h(l.title)}</th><th>${h(l.states)}</th><th>${h(l.occurredAt)}</th><th>${h(l.recoveredAt)}</th><th>${h(l.scope)}</th><th>${h(l.rootCause)}</th><th>${h(l.status)}</th></tr>`)
    for (const i of report.incidents) {
      out.push(
        `<tr><td>#${i.id}</td><td class="t">${h(i.sourceId)}</td><td class="t">${h(i.title)}</td><td class="t">${i.states.map((x) => `<span class="state">${h(stateLabel(x, lang))}</span>`).join('')}</td>` +
          `<td>${h(local(i.occurredAt, report.zone))}</td><td>${h(local(i.recoveredAt, report.zone))}</td><td class="t">${h(i.entities.length === 0 ? l.wholeSource : `${i.entityCount}: ${i.entities.slice(0, 20).join('、')}`)}</td>` +
          `<td class="t">${h(i.rootCause ?? '')}</td><td>${h(incidentStatusLabel(i.status, lang))}</td></tr>`,
      )
    }
    out.push('</table>')
  }
  out.push('</section></body></html>')
  return out.join('\n')
}

function headCells(l: Labels): string {
  return [l.records, l.rejected, l.daysActive, l.expected, l.good, l.bad, l.missing, l.maintenance, l.quiet, l.completeness, l.delays, l.delayMinutes, l.longestGap, l.states, l.incidents]
    .map((x) => `<th>${h(x)}</th>`)
    .join('')
}
