// The incident ledger (故障台账) as a table for the bureau: one row per
// incident with occurrence time, scope, handling, recovery time and root
// cause, as CSV (UTF-8 with BOM, so spreadsheet programs read the Chinese
// headers) or XLSX.

import ExcelJS from 'exceljs'
import { formatLocal } from '../lib/local-time.ts'
import { formatSpan } from './evaluate.ts'
import { type Alert, type Incident, type IncidentEvent } from './store.ts'

export const LEDGER_COLUMNS = [
  { key: 'id', header: '事件编号', width: 10 },
  { key: 'source', header: '数据源', width: 28 },
  { key: 'operator', header: '运营方', width: 18 },
  { key: 'district', header: '区域', width: 10 },
  { key: 'states', header: '故障类型', width: 16 },
  { key: 'occurredAt', header: '发生时间', width: 20 },
  { key: 'scope', header: '影响范围', width: 36 },
  { key: 'expectedMissing', header: '缺失记录(估计)', width: 14 },
  { key: 'handling', header: '处置过程', width: 60 },
  { key: 'recoveredAt', header: '恢复时间', width: 20 },
  { key: 'duration', header: '持续时长', width: 12 },
  { key: 'rootCause', header: '根本原因', width: 36 },
  { key: 'status', header: '状态', width: 10 },
  { key: 'alerts', header: '关联告警', width: 16 },
] as const

type LedgerKey = (typeof LEDGER_COLUMNS)[number]['key']
export type LedgerRow = Record<LedgerKey, string | number>

const STATUS_TEXT: Record<Incident['status'], string> = { open: '处理中', recovered: '已恢复', closed: '已关闭' }

export function ledgerRows(incidents: readonly Incident[], events: ReadonlyMap<number, IncidentEvent[]>, alerts: ReadonlyMap<number, Alert[]>, zone: string): LedgerRow[] {
  const local = (ms: number | null): string => (ms === null ? '' : formatLocal(ms, zone))
  return incidents.map((i) => {
    const scope = i.scope.entities.length === 0 ? '整个数据源' : `${i.scope.entityCount} 个：${i.scope.entities.slice(0, 20).join('、')}${i.scope.entityCount > 20 ? ' …' : ''}`
    const handling = (events.get(i.id) ?? [])
      .filter((e) => e.kind !== 'notified' || e.message.includes('failed'))
      .map((e) => `${local(e.at)} ${e.actor}: ${e.message}`)
      .join('\n')
    return {
      id: i.id,
      source: i.sourceName === null ? i.sourceId : `${i.sourceName} (${i.sourceId})`,
      operator: i.operator ?? '',
      district: i.district ?? '',
      states: i.scope.states.join(', '),
      occurredAt: local(i.occurredAt),
      scope,
      expectedMissing: i.scope.expectedMissing ?? '',
      handling,
      recoveredAt: local(i.recoveredAt),
      duration: i.recoveredAt === null ? '' : formatSpan(i.recoveredAt - i.occurredAt),
      rootCause: i.rootCause ?? '',
      status: STATUS_TEXT[i.status],
      alerts: (alerts.get(i.id) ?? []).map((a) => `#${a.id}`).join(' '),
    }
  })
}

function csvCell(v: string | number): string {
  const s = String(v)
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

export function ledgerCsv(rows: readonly LedgerRow[]): Buffer {
  const lines = [LEDGER_COLUMNS.map((c) => csvCell(c.header)).join(',')]
  for (const r of rows) lines.push(LEDGER_COLUMNS.map((c) => csvCell(r[c.key])).join(','))
  return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(lines.join('\r\n') + '\r\n', 'utf8')])
}

export async function ledgerXlsx(rows: readonly LedgerRow[], title = '数据中断事件台账'): Promise<Buffer> {
  const wb = new ExcelJS.Workbook()
  wb.creator = 'citysync'
  const ws = wb.addWorksheet(title)
  ws.columns = LEDGER_COLUMNS.map((c) => ({ key: c.key, header: c.header, width: c.width }))
  ws.getRow(1).font = { bold: true }
  ws.views = [{ state: 'frozen', ySplit: 1 }]
  for (const r of rows) ws.addRow(r).alignment = { vertical: 'top', wrapText: true }
  return Buffer.from(await wb.xlsx.writeBuffer())
}
