// The monthly sync report at city scale: 10k car parks (20 sources × 500)
// reporting every 5 minutes for a month (86.4M occupancy rows), 1 % of them
// with a 3-hour outage, plus the ingest log of every source (a batch a
// minute) and some rejected records. The data is generated inside chDB
// (INSERT … SELECT, the completeness views fill as it lands); then the
// report is built and rendered, each step timed.
//
//   npx tsx bench/report.ts [--lots 10000] [--days 30] [--keep DIR]

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ManualClock } from '../lib/clock.ts'
import { openMetadata } from '../lib/metadata/db.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { buildSyncReport } from '../quality/report/model.ts'
import { parseMonth } from '../quality/report/period.ts'
import { reportCsv, reportHtml, reportXlsx } from '../quality/report/render.ts'

const { values } = parseArgs({ options: { lots: { type: 'string', default: '10000' }, days: { type: 'string', default: '30' }, keep: { type: 'string' } } })
const LOTS = Number(values.lots)
const DAYS = Number(values.days)
const PER_SOURCE = 500
const SOURCES = Math.ceil(LOTS / PER_SOURCE)
const TZ = 'Asia/Shanghai'
const month = parseMonth('2026-11', TZ)
const DAY = 86_400_000

const dir = values.keep ?? mkdtempSync(join(tmpdir(), 'citysync-bench-report-'))
const clock = new ManualClock(month.from - 30 * DAY)
const wh = await openWarehouse({ dataDir: join(dir, 'wh') })
const metadata = await openMetadata({ dataDir: join(dir, 'meta'), clock })

const mark = (): (() => number) => {
  const t0 = performance.now()
  return () => Math.round(performance.now() - t0)
}
const rss = (): number => Math.round(process.memoryUsage().rss / 1048576)

const [existing] = await wh.query<{ n: number }>('SELECT count() AS n FROM parking_occupancy')
if (Number(existing?.n ?? 0) === 0) {
  for (let s = 0; s < SOURCES; s++) {
    await metadata.sources.add({ id: `bench-${s}`, kind: 'parking-lots', name: `平台 ${s}`, operator: '运营方', district: '横琴', timezone: TZ, schedule: { every: '1m' }, freshness: { maxDelay: '2h' }, config: {} })
  }
  const load = mark()
  // Car parks: every fourth is open 07:00-22:00.
  await wh.command(`INSERT INTO parking_lot (sourceId, eventId, occurredAt, receivedAt, lotId, name, capacity, openingHours)
    SELECT concat('bench-', toString(intDiv(number, ${PER_SOURCE}))), concat('lot-', toString(number)), fromUnixTimestamp64Milli(toInt64(${month.from - DAY})), fromUnixTimestamp64Milli(toInt64(${month.from - DAY})),
           concat('P', toString(number)), concat('停车场 ', toString(number)), 200, if(number % 4 = 3, 'Mo-Su 07:00-22:00', '24/7')
    FROM numbers(${LOTS})`)
  // Occupancy every 5 minutes, 2 s after the fact; lots with number % 100 = 7 miss 10:00-13:00 on the 10th.
  const outFrom = month.from + 9 * DAY + 10 * 3_600_000
  const outTo = outFrom + 3 * 3_600_000
  // From the day before the month, so the car parks' clocks run into it.
  for (let d = -1; d < DAYS; d++) {
    const day0 = month.from + d * DAY
    await wh.command(`INSERT INTO parking_occupancy (sourceId, eventId, occurredAt, receivedAt, lotId, free, capacity, status)
      SELECT concat('bench-', toString(intDiv(lot, ${PER_SOURCE}))), toString(${(d + 1) * 288 * LOTS} + number), fromUnixTimestamp64Milli(t), fromUnixTimestamp64Milli(t + 2000), concat('P', toString(lot)), 50, 200, 'open'
      FROM (SELECT number, number % ${LOTS} AS lot, toInt64(${day0} + intDiv(number, ${LOTS}) * 300000) AS t FROM numbers(${288 * LOTS}))
      WHERE NOT (lot % 100 = 7 AND t > ${outFrom} AND t < ${outTo})`)
    // The ingest log: one batch a minute per source.
    await wh.command(`INSERT INTO ingest_log (batchId, sourceId, tableName, rows, backfillRows, minEventTime, maxEventTime, maxLiveEventTime, minReceivedAt, arrivedAt)
      SELECT concat('b', toString(${(d + 1) * 1440 * SOURCES} + number)), concat('bench-', toString(number % ${SOURCES})), 'parking_occupancy', 100, 0,
             fromUnixTimestamp64Milli(t - 60000), fromUnixTimestamp64Milli(t), fromUnixTimestamp64Milli(t), fromUnixTimestamp64Milli(t), fromUnixTimestamp64Milli(t + 2000)
      FROM (SELECT number, toInt64(${day0} + intDiv(number, ${SOURCES}) * 60000) AS t FROM numbers(${1440 * SOURCES}))`)
    if (d % 5 === 3) process.stderr.write(`  loaded ${d + 1} days (${load()} ms)\n`)
  }
  // Rejected records: 200 a day spread over the car parks.
  await wh.command(`INSERT INTO dead_letter (sourceId, eventId, occurredAt, receivedAt, stage, code, reason, family, raw)
    SELECT concat('bench-', toString(intDiv(lot, ${PER_SOURCE}))), concat('dl', toString(number)), fromUnixTimestamp64Milli(t), fromUnixTimestamp64Milli(t), 'connector', 'invalid_value', 'freeSpace above totalSpace', 'ParkingOccupancy',
           concat('{"parkCode":"P', toString(lot), '","freeSpace":999}')
    FROM (SELECT number, (number * 7919) % ${LOTS} AS lot, toInt64(${month.from} + number * 432000) AS t FROM numbers(${200 * DAYS}))`)
  process.stderr.write(`loaded in ${load()} ms\n`)
}
const [counts] = await wh.query<{ occupancy: number; activity: number; ingest: number }>(
  `SELECT (SELECT count() FROM parking_occupancy) AS occupancy, (SELECT count() FROM entity_activity) AS activity, (SELECT count() FROM ingest_log) AS ingest`,
)

const now = month.from + DAYS * DAY + 3_600_000
const runs: Record<string, number>[] = []
for (let i = 0; i < 3; i++) {
  const all = mark()
  const build = mark()
  const report = await buildSyncReport({ metadata, warehouse: wh }, { month: month.id, now, zone: TZ })
  const buildMs = build()
  const h = mark()
  const html = reportHtml(report, 'zh')
  const htmlMs = h()
  const c = mark()
  const csv = reportCsv(report, 'zh')
  const csvMs = c()
  const x = mark()
  const xlsx = await reportXlsx(report, 'zh')
  const xlsxMs = x()
  runs.push({ buildMs, htmlMs, csvMs, xlsxMs, totalMs: all(), htmlMB: Math.round(html.length / 1e5) / 10, xlsxMB: Math.round(xlsx.length / 1e5) / 10, csvMB: Math.round(csv.length / 1e5) / 10, rssMB: rss() })
  if (i === 0) {
    process.stdout.write(
      `report ${report.month}: ${report.summary.sources} sources, ${report.summary.entities} car parks, completeness ${(report.summary.completeness! * 100).toFixed(3)} %, ` +
        `${report.summary.delays} source delays, ${report.sources.reduce((n, s) => n + s.entities.filter((e) => e.delays > 0).length, 0)} car parks with delays, ${report.summary.rejected} rejected\n`,
    )
  }
}
process.stdout.write(`rows: ${Number(counts!.occupancy)} occupancy, ${Number(counts!.activity)} entity_activity, ${Number(counts!.ingest)} ingest_log\n`)
for (const r of runs) process.stdout.write(JSON.stringify(r) + '\n')

await metadata.close()
await wh.close()
if (values.keep === undefined) rmSync(dir, { recursive: true, force: true })
