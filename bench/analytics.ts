// Analytics at scale: passage events over many lots, generated straight into
// chDB (INSERT ... SELECT FROM numbers(), not through the pipeline), one full
// refresh of the derived tables, then the latency of the analysts' queries.
//
//   npx tsx bench/analytics.ts [--events 100000000] [--lots 10000] [--districts 16]
//                              [--runs 30] [--data DIR] [--reuse] [--skip-refresh | --incremental]
//
// Data: one year (2025) of visits, each an entry and an exit of the same plate
// key 10 min to 10 h apart, spread evenly over the lots; one exit in a hundred
// carries another plate key (an unmatched exit, and an entry that is capped).
// Lot capacities 10-100, districts by lot number. With --data DIR the data
// stays; --reuse skips the generation when DIR holds it, --skip-refresh the
// full refresh of the derived tables, --incremental runs an incremental
// refresh instead (on data refreshed by an older release: what the first run
// after an upgrade does, e.g. building the district sums).
//
// Queries (each run picks another district, month or lot; every query twice,
// cold and warm), timed end to end through the warehouse seam, JSON parse
// included:
//   occupancy and turnover, one district, one month, by day (and by hour)
//   occupancy and turnover, one lot, one year, by month (and by day)

import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { parkingOccupancy, parkingTurnover, type ParkingQuery } from '../api/analytics/parking.ts'
import { refreshParking } from '../api/analytics/refresh.ts'
import { parsePeriod, type Granularity } from '../api/analytics/time-range.ts'
import { parseLocal } from '../lib/local-time.ts'
import { ChdbWarehouse } from '../pipelines/warehouse/chdb-warehouse.ts'
import { migrateWarehouse } from '../pipelines/warehouse/migrate.ts'

const { values: args } = parseArgs({
  options: {
    events: { type: 'string', default: '100000000' },
    lots: { type: 'string', default: '10000' },
    districts: { type: 'string', default: '16' },
    runs: { type: 'string', default: '30' },
    data: { type: 'string' },
    reuse: { type: 'boolean', default: false },
    'skip-refresh': { type: 'boolean', default: false },
    incremental: { type: 'boolean', default: false },
  },
})
const EVENTS = Number(args.events)
const LOTS = Number(args.lots)
const DISTRICTS = Number(args.districts)
const RUNS = Number(args.runs)
const TZ = 'Asia/Shanghai'
const START = parseLocal('2025-01-01 00:00:00', TZ)!
const END = parseLocal('2026-01-01 00:00:00', TZ)!
const CAP = 24 * 3_600_000
const BATCH = 10_000_000

const dataDir = args.data ?? mkdtempSync(join(tmpdir(), 'citysync-bench-analytics-'))
const reuse = args.reuse && existsSync(join(dataDir, 'store'))
const wh = new ChdbWarehouse(dataDir)

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`
const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`
const ms = (x: number): string => `${x.toFixed(0)} ms`

async function generate(): Promise<void> {
  await wh.command(`
    INSERT INTO parking_lot (sourceId, eventId, occurredAt, receivedAt, lotId, name, capacity, lat, lon, coordSystem, district, address, openingHours)
    SELECT 'bench-parking', concat('lot-', toString(number)), fromUnixTimestamp64Milli(toInt64(${START - 86_400_000}), 'UTC'),
      fromUnixTimestamp64Milli(toInt64(${START - 86_400_000}), 'UTC'),
      concat('P', leftPad(toString(number), 5, '0')), concat('停车场', toString(number)), toUInt32(10 + cityHash64(number, 'capacity') % 91),
      NULL, NULL, NULL, concat('区', toString(number % ${DISTRICTS})), NULL, '24/7'
    FROM numbers(${LOTS})`)
  for (let offset = 0; offset < EVENTS; offset += BATCH) {
    const count = Math.min(BATCH, EVENTS - offset)
    const t0 = performance.now()
    await wh.command(`
      INSERT INTO parking_passage (sourceId, eventId, occurredAt, receivedAt, lotId, recordNo, direction, gateId, plateKey,
        plateCipher, plateMasked, plateType, isBackfill, feeCents, entryAt)
      SELECT 'bench-parking', toString(number), occurredAt, occurredAt, lotId, toString(number), direction, NULL, plateKey,
        NULL, NULL, NULL, false, fee, NULL
      FROM (
        SELECT number, intDiv(number, 2) AS v, number % 2 = 1 AS isExit,
          concat('P', leftPad(toString(v % ${LOTS}), 5, '0')) AS lotId,
          toInt64(${START} + cityHash64(v, 'entry') % ${END - START - 12 * 3_600_000}) AS entryMs,
          toInt64(600000 + cityHash64(v, 'duration') % ${10 * 3_600_000}) AS durationMs,
          fromUnixTimestamp64Milli(if(isExit, entryMs + durationMs, entryMs), 'UTC') AS occurredAt,
          if(isExit, 'exit', 'entry') AS direction,
          concat(hex(cityHash64(v, if(isExit AND v % 100 = 0, 'other', 'plate'))), hex(cityHash64(v, 'salt'))) AS plateKey,
          if(isExit, toNullable(toInt32(intDiv(durationMs, 1800000) * 300)), NULL) AS fee
        FROM numbers(${offset}, ${count})
      )`)
    console.log(`  passages ${offset + count}/${EVENTS}: ${s(performance.now() - t0)}`)
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

/**
 * Each query RUNS times with other inputs, twice: the first pass reads from
 * disk what the page cache does not hold yet (cold), the second is the steady
 * state of a warehouse in use (warm).
 */
async function timeIt(name: string, make: (i: number) => ParkingQuery, run: (q: ParkingQuery) => Promise<{ items: unknown[] }>): Promise<void> {
  const passes: number[][] = []
  let rows = 0
  for (let pass = 0; pass < 2; pass++) {
    const times: number[] = []
    for (let i = 0; i < RUNS; i++) {
      const q = make(i)
      const t0 = performance.now()
      rows = (await run(q)).items.length
      times.push(performance.now() - t0)
    }
    passes.push(times.sort((a, b) => a - b))
  }
  const [cold, warm] = passes as [number[], number[]]
  console.log(`| ${name} | ${ms(percentile(warm, 50))} | ${ms(percentile(warm, 95))} | ${ms(warm[warm.length - 1]!)} | ${ms(percentile(cold, 95))} | ${rows} |`)
}

function month(i: number): { from: string; to: string } {
  const m = (i % 12) + 1
  const next = m === 12 ? '2026-01-01' : `2025-${String(m + 1).padStart(2, '0')}-01`
  return { from: `2025-${String(m).padStart(2, '0')}-01`, to: next }
}

function districtMonth(i: number, granularity: Granularity): ParkingQuery {
  const { from, to } = month(i * 5)
  return {
    scope: { district: `区${(i * 7) % DISTRICTS}`, districtSources: [] },
    period: parsePeriod(from, to, granularity, TZ),
    granularity, byLot: false, timezone: TZ, maxRows: 100_000,
  }
}

function lotYear(i: number, granularity: Granularity): ParkingQuery {
  return {
    scope: { lot: `P${String((i * 7919) % LOTS).padStart(5, '0')}` },
    period: parsePeriod('2025-01-01', '2026-01-01', granularity, TZ),
    granularity, byLot: false, timezone: TZ, maxRows: 100_000,
  }
}

async function main(): Promise<void> {
  console.log(`analytics bench: ${EVENTS.toLocaleString('en')} passages, ${LOTS} lots, ${DISTRICTS} districts, data in ${dataDir}`)
  await migrateWarehouse(wh)
  if (!reuse) {
    const t0 = performance.now()
    const cpu0 = process.cpuUsage()
    await generate()
    const cpu = process.cpuUsage(cpu0)
    console.log(`generated in ${s(performance.now() - t0)} (CPU ${s((cpu.user + cpu.system) / 1000)})`)
  }
  if (!args['skip-refresh']) {
    const t0 = performance.now()
    const cpu0 = process.cpuUsage()
    const steps: Record<string, number> = {}
    const r = await refreshParking(wh, {
      now: END, timezone: TZ, sessionCapMs: CAP, full: !args.incremental, watermarkMarginMs: 0,
      onStep: (step, chunk, took) => {
        steps[step] = (steps[step] ?? 0) + took
        if (step === 'days' || step.startsWith('district')) console.log(`  refresh ${step === 'days' ? `chunk ${chunk}` : step}: ${s(performance.now() - t0)} so far`)
      },
    })
    const cpu = process.cpuUsage(cpu0)
    console.log(`${r.full ? 'full' : 'incremental'} refresh of ${r.lots} lots in ${r.chunks} chunks: ${s(performance.now() - t0)} (CPU ${s((cpu.user + cpu.system) / 1000)}); by step: ${Object.entries(steps).map(([k, v]) => `${k} ${s(v)}`).join(', ')}`)
  }
  const counts = await wh.query<Record<string, number>>(`
    SELECT (SELECT count() FROM parking_passage) AS passages, (SELECT count() FROM parking_session FINAL) AS sessions,
      (SELECT count() FROM parking_lot_hour FINAL) AS lotHours, (SELECT count() FROM parking_lot_day FINAL) AS lotDays,
      (SELECT count() FROM parking_district_hour FINAL) AS districtHours,
      (SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND table = 'parking_passage') AS passageBytes,
      (SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND table IN ('parking_session', 'parking_lot_hour', 'parking_lot_day', 'parking_district_hour')) AS derivedBytes`)
  const c = counts[0]!
  console.log(`rows: ${c.passages} passages, ${c.sessions} sessions, ${c.lotHours} lot-hours, ${c.lotDays} lot-days, ${c.districtHours} district-hours; on disk: passages ${mb(c.passageBytes!)}, derived ${mb(c.derivedBytes!)}`)
  const statuses = await wh.query<{ status: string; n: number }>(`SELECT status, count() AS n FROM parking_session FINAL GROUP BY status ORDER BY status`)
  console.log('sessions by status:', statuses.map((r) => `${r.status} ${r.n}`).join(', '))
  console.log(`load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`)

  console.log(`\n${RUNS} runs each, warm (second pass) and cold (first pass):\n`)
  console.log('| query | p50 | p95 | max | p95 cold | rows |')
  console.log('| --- | --- | --- | --- | --- | --- |')
  await timeIt('occupancy, one district, one month, by day', (i) => districtMonth(i, 'day'), (q) => parkingOccupancy(wh, q))
  await timeIt('turnover, one district, one month, by day', (i) => districtMonth(i, 'day'), (q) => parkingTurnover(wh, q))
  await timeIt('occupancy, one district, one month, by hour', (i) => districtMonth(i, 'hour'), (q) => parkingOccupancy(wh, q))
  await timeIt('turnover, one district, one month, by hour', (i) => districtMonth(i, 'hour'), (q) => parkingTurnover(wh, q))
  // The same two from the lots' hours instead of the district sums, for comparison.
  await timeIt('occupancy, one district, one month, by hour, from lot hours', (i) => ({ ...districtMonth(i, 'hour'), plan: 'lots' }), (q) => parkingOccupancy(wh, q))
  await timeIt('turnover, one district, one month, by hour, from lot hours', (i) => ({ ...districtMonth(i, 'hour'), plan: 'lots' }), (q) => parkingTurnover(wh, q))
  await timeIt('occupancy, one lot, one year, by month', (i) => lotYear(i, 'month'), (q) => parkingOccupancy(wh, q))
  await timeIt('turnover, one lot, one year, by month', (i) => lotYear(i, 'month'), (q) => parkingTurnover(wh, q))
  await timeIt('occupancy, one lot, one year, by day', (i) => lotYear(i, 'day'), (q) => parkingOccupancy(wh, q))
  await timeIt('turnover, one lot, one year, by day', (i) => lotYear(i, 'day'), (q) => parkingTurnover(wh, q))

  // What one refresh costs once the tables are built: a minute of new passages (~190 at this rate), then nothing new.
  const perMinute = Math.max(2, Math.round(EVENTS / (365 * 24 * 60)))
  await wh.command(`
    INSERT INTO parking_passage (sourceId, eventId, occurredAt, receivedAt, lotId, recordNo, direction, gateId, plateKey, plateCipher, plateMasked, plateType, isBackfill, feeCents, entryAt)
    SELECT 'bench-parking', concat('late-', toString(number)), fromUnixTimestamp64Milli(toInt64(${END - 30 * 60_000} + number), 'UTC'),
      now64(3), concat('P', leftPad(toString(cityHash64(number) % ${LOTS}), 5, '0')), concat('late-', toString(number)),
      if(number % 2 = 0, 'entry', 'exit'), NULL, hex(cityHash64(intDiv(number, 2), 'late')), NULL, NULL, NULL, false, NULL, NULL
    FROM numbers(${perMinute})`)
  let t0 = performance.now()
  let r = await refreshParking(wh, { now: END + 60_000, timezone: TZ, sessionCapMs: CAP, watermarkMarginMs: 0 })
  console.log(`\nincremental refresh after ${perMinute} new passages: ${r.lots} lots, ${s(performance.now() - t0)}`)
  t0 = performance.now()
  r = await refreshParking(wh, { now: END + 120_000, timezone: TZ, sessionCapMs: CAP, watermarkMarginMs: 0 })
  console.log(`incremental refresh with nothing new (series extended to now): ${r.lots} lots, ${s(performance.now() - t0)}`)
  console.log(`peak RSS ${mb(process.resourceUsage().maxRSS * 1024)}; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`)
  await wh.close()
  if (args.data === undefined) rmSync(dataDir, { recursive: true, force: true })
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
