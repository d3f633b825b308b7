import ExcelJS from 'exceljs'
import { describe, expect, it } from 'vitest'
import { emptyCounts } from './completeness.ts'
import { type FigureRow, type SyncReport } from './model.ts'
import { reportCsv, reportHtml, reportXlsx, sheetName } from './render.ts'
import { dailyBarsSvg, heatStripSvg } from './svg.ts'
import { labels } from './labels.ts'

function figureRow(over: Partial<FigureRow>): FigureRow {
  return {
    level: 'entity',
    sourceId: 'hq-lots',
    entityKind: 'car-park',
    entityId: 'P001',
    name: '横琴口岸P1停车场',
    records: 8640,
    rejected: 3,
    daysActive: 30,
    buckets: { ...emptyCounts(), expected: 8640, good: 8604, missing: 36, rate: 8604 / 8640 },
    completeness: 8604 / 8640,
    delays: 1,
    delayMinutes: 60.17,
    longestGapMinutes: 180,
    delayList: [{ lastDataAt: '2026-11-10T02:00:00.000Z', lateFrom: '2026-11-10T04:00:00.000Z', dataBackAt: '2026-11-10T05:00:10.000Z', lateMinutes: 60.17 }],
    incidents: [7],
    states: ['LATE'],
    abnormal: true,
    ...over,
  }
}

const dates = Array.from({ length: 30 }, (_, d) => `2026-11-${String(d + 1).padStart(2, '0')}`)

const report: SyncReport = {
  kind: 'sync',
  month: '2026-11',
  zone: 'Asia/Shanghai',
  from: '2026-10-31T16:00:00.000Z',
  to: '2026-11-30T16:00:00.000Z',
  until: '2026-11-30T16:00:00.000Z',
  partial: false,
  generatedAt: '2026-12-01T00:00:00.000Z',
  bucketMinutes: 5,
  summary: { month: '2026-11', sources: 1, entities: 1, carParks: 1, records: 8640, rejected: 3, buckets: { ...emptyCounts(), expected: 8640, good: 8604, missing: 36, rate: 8604 / 8640 }, completeness: 8604 / 8640, sourcesWithInterruptions: ['hq-lots'], delays: 1, hoursLate: 1 },
  previous: { month: '2026-10', sources: 1, entities: 1, carParks: 1, records: 8000, rejected: 0, buckets: emptyCounts(), completeness: 1, sourcesWithInterruptions: [], delays: 0, hoursLate: 0 },
  change: { completeness: -0.42, hoursLate: 1, sourcesWithInterruptions: 1, records: 640 },
  sources: [
    {
      id: 'hq-lots',
      name: '横琴 <平台> & "推送"',
      kind: 'parking-lots',
      operator: '横琴停车公司',
      district: '横琴',
      maxDelayMinutes: 120,
      row: figureRow({ level: 'source', entityKind: null, entityId: null, name: '横琴 <平台>' }),
      entities: [figureRow({})],
      heat: Array.from({ length: 30 * 24 }, (_, i) => (i % 24 < 2 ? -1 : i === 24 * 9 + 11 ? 0.5 : 1)),
      daily: dates.map((date) => ({ date, records: 288, rejected: date === '2026-11-15' ? 3 : 0 })),
      rejectedByCode: [{ code: 'invalid_value', count: 3 }],
    },
  ],
  incidents: [{ id: 7, sourceId: 'hq-lots', title: 'LATE', status: 'closed', occurredAt: '2026-11-10T04:00:00.000Z', recoveredAt: '2026-11-10T05:00:10.000Z', states: ['LATE'], entities: [], entityCount: 0, rootCause: '厂商服务器宕机' }],
  dates,
}

describe('renderers', () => {
  it('writes self-contained, escaped HTML with both pictures and the highlights', () => {
    const html = reportHtml(report, 'zh')
    expect(html).not.toMatch(/<script|<link|src=/)
    expect(html).toContain('横琴 &lt;平台&gt; &amp; &quot;推送&quot;')
    expect(html.match(/<svg/g)).toHaveLength(2)
    expect(html).toContain('<span class="state">延迟(LATE)</span>')
    expect(html).toContain('99.58%')
    expect(html).toContain('-0.42 个百分点')
    expect(html).toContain('#7 厂商服务器宕机')
    expect(reportHtml(report, 'en')).toContain('Data synchronisation monitoring report · 2026-11')
  })

  it('draws a heat strip cell per day and hour and a bar per day', () => {
    const l = labels('en')
    const heat = heatStripSvg(report.sources[0]!.heat, dates, l)
    expect(heat.match(/<rect x="\d+" y="\d+" width="13"/g)).toHaveLength(30 * 24)
    expect(heat).toContain('2026-11-10 11:00 50.0%')
    expect(heat).toContain('2026-11-01 00:00 no data expected')
    expect(dailyBarsSvg(report.sources[0]!.daily, l).match(/fill="#4575b4"/g)).toHaveLength(30)
  })

  it('writes CSV with a BOM, one line per row, completeness in percent', () => {
    const csv = reportCsv(report, 'zh')
    expect([...csv.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf])
    const lines = csv.toString('utf8').slice(1).trimEnd().split('\r\n')
    expect(lines).toHaveLength(3)
    expect(lines[0]!.split(',')).toContain('接入数据完整率(%)')
    expect(lines[2]).toBe('停车场/站点,hq-lots,"横琴 <平台> & ""推送""",停车场,P001,横琴口岸P1停车场,8640,3,30,8640,8604,0,36,0,0,99.58,1,60.17,180,延迟(LATE),#7 厂商服务器宕机')
  })

  it('writes XLSX sheets with safe unique names', async () => {
    const taken = new Set<string>()
    expect([sheetName('a/b:c*d?e[f]g\\h', taken), sheetName('A/B:C*D?E[F]G\\H', taken), sheetName('x'.repeat(40), taken)]).toEqual(['a_b_c_d_e_f_g_h', 'A_B_C_D_E_F_G_H~2', 'x'.repeat(31)])
    const wb = new ExcelJS.Workbook()
    await wb.xlsx.load((await reportXlsx(report, 'en')) as unknown as ArrayBuffer)
    expect(wb.worksheets.map((w) => w.name)).toEqual(['Summary', 'hq-lots', 'Incidents'])
    expect(wb.getWorksheet('hq-lots')!.getRow(3).getCell(16).value).toBe(8604 / 8640)
  })
})
