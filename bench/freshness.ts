// Freshness evaluation at scale: 100,000 entities (car parks) across 100
// sources, a fifth of them with opening hours, some silent, some late.
//
//   npx tsx bench/freshness.ts [entities] [sources]
//
// 1. The pure evaluation cycle (classify every source and entity, step the
//    hysteresis state machine): mean and worst of 10 cycles, heap retained.
// 2. The whole service cycle over chDB and SQLite: the warehouse read (one
//    query per table, grouped by entity), evaluation, alert and incident
//    bookkeeping, gauges. First cycle (full look-back) and incremental ones.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { ManualClock } from '../lib/clock.ts'
import { parseLocal } from '../lib/local-time.ts'
import { openMetadata } from '../lib/metadata/db.ts'
import { type SourceConfig } from '../lib/source-config.ts'
import { openWarehouse } from '../pipelines/warehouse/open.ts'
import { type EntityReading, evaluateCycle, type SourceContext, type SourceInput, type Trackers } from '../quality/evaluate.ts'
import { resolveSettings } from '../quality/freshness-config.ts'
import { emptyReading, FreshnessReader } from '../quality/reader.ts'
import { QualityService } from '../quality/service.ts'

const ENTITIES = Number(process.argv[2] ?? 100_000)
const SOURCES = Number(process.argv[3] ?? 100)
const PER_SOURCE = Math.ceil(ENTITIES / SOURCES)
const TZ = 'Asia/Shanghai'
const NOW = parseLocal('2026-11-21 10:30:00', TZ)!
const M = 60_000

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`
function gc(): void {
  ;(globalThis as { gc?: () => void }).gc?.()
}

function freshnessOf(i: number): SourceConfig['freshness'] {
  return i % 5 === 0 ? { maxDelay: '2h', calendar: { openingHours: 'Mo-Fr 07:00-22:00; Sa,Su 08:00-20:00', holidays: ['2026-10-01'] } } : { maxDelay: '2h' }
}

/** Entity j of source i: mostly fresh; every 50th silent for 3 hours, every 97th for 90 minutes. */
function lastEventOf(j: number): number {
  if (j % 50 === 0) return NOW - 180 * M
  if (j % 97 === 0) return NOW - 90 * M
  return NOW - (j % 30) * M
}

function pureInputs(): SourceInput[] {
  const inputs: SourceInput[] = []
  for (let i = 0; i < SOURCES; i++) {
    const ctx: SourceContext = {
      id: `src-${i}`, name: `Source ${i}`, kind: 'parking-lots', operator: `op-${i % 7}`, district: `d-${i % 5}`,
      paused: false, runState: 'idle', createdAt: NOW - 30 * 86_400_000,
      settings: resolveSettings({ freshness: freshnessOf(i), schedule: { every: '30s' }, timezone: TZ, config: {} }),
    }
    const entities: EntityReading[] = []
    for (let j = 0; j < PER_SOURCE; j++) {
      const t = lastEventOf(j)
      entities.push({ id: `L${i}-${j}`, kind: 'car-park', lastEventAt: t, lastArrivalAt: t + 2_000, maxAheadMs: null, openingHours: j % 10 === 0 ? 'Mo-Su 07:00-22:00' : null })
    }
    inputs.push({ ctx, reading: { ...emptyReading(), lastEventAt: NOW - M, lastArrivalAt: NOW - M + 2_000, liveRows24h: 10_000 }, entities })
  }
  return inputs
}

function pure(): void {
  gc()
  const before = process.memoryUsage().heapUsed
  const inputs = pureInputs()
  gc()
  const withInputs = process.memoryUsage().heapUsed
  const trackers: Trackers = new Map()
  const times: number[] = []
  let transitions = 0
  let late = 0
  for (let c = 0; c < 11; c++) {
    const t0 = performance.now()
    const out = evaluateCycle(NOW + c * M, inputs, trackers)
    const ms = performance.now() - t0
    if (c > 0) times.push(ms)
    transitions += out.transitions.length
    if (c === 10) late = out.results.reduce((n, r) => n + r.entityCounts.LATE, 0)
  }
  gc()
  const after = process.memoryUsage().heapUsed
  const mean = times.reduce((a, b) => a + b, 0) / times.length
  console.log(`pure evaluation: ${SOURCES} sources, ${SOURCES * PER_SOURCE} entities (${late} late, ${trackers.size} trackers kept)`)
  console.log(`  cycle: mean ${mean.toFixed(0)} ms, worst ${Math.max(...times).toFixed(0)} ms (first cycle excluded); ${transitions} transitions`)
  console.log(`  heap: inputs ${mb(withInputs - before)}, trackers and last results ${mb(after - withInputs)}; RSS ${mb(process.memoryUsage().rss)}`)
}

async function service(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'citysync-bench-freshness-'))
  try {
    const clock = new ManualClock(NOW - 30 * 86_400_000)
    const wh = await openWarehouse({ dataDir: join(dir, 'wh') })
    const metadata = await openMetadata({ dataDir: dir, clock })
    for (let i = 0; i < SOURCES; i++) {
      await metadata.sources.add({ id: `src-${i}`, kind: 'parking-lots', name: `Source ${i}`, operator: `op-${i % 7}`, district: `d-${i % 5}`, timezone: TZ, schedule: { every: '30s' }, freshness: freshnessOf(i), config: {} })
      await metadata.sources.setDesiredState(`src-${i}`, 'deployed', 'bench')
    }
    // Three occupancy reports per car park over the last hours, written by ClickHouse itself.
    const reports = 3
    const t0 = performance.now()
    await wh.command(`
      INSERT INTO parking_occupancy (sourceId, eventId, occurredAt, receivedAt, lotId, free, capacity, status)
      SELECT concat('src-', toString(intDiv(e, ${PER_SOURCE}))) AS sourceId,
             concat(toString(number)) AS eventId,
             fromUnixTimestamp64Milli(toInt64(${NOW} - multiIf(e % ${PER_SOURCE} % 50 = 0, 180, e % ${PER_SOURCE} % 97 = 0, 90, e % ${PER_SOURCE} % 30) * 60000 - r * 600000)) AS occurredAt,
             occurredAt + toIntervalSecond(2) AS receivedAt,
             concat('L', toString(intDiv(e, ${PER_SOURCE})), '-', toString(e % ${PER_SOURCE})) AS lotId,
             40, 100, 'open'
      FROM (SELECT number, intDiv(number, ${reports}) AS e, number % ${reports} AS r FROM numbers(${SOURCES * PER_SOURCE * reports}))`)
    await wh.command(`
      INSERT INTO ingest_log (batchId, sourceId, tableName, rows, backfillRows, minEventTime, maxEventTime, maxLiveEventTime, minReceivedAt, arrivedAt)
      SELECT concat('b', toString(number)), concat('src-', toString(number % ${SOURCES})), 'parking_occupancy', 1000, 0,
             fromUnixTimestamp64Milli(toInt64(${NOW} - 3600000)), fromUnixTimestamp64Milli(toInt64(${NOW} - 60000)), fromUnixTimestamp64Milli(toInt64(${NOW} - 60000)),
             fromUnixTimestamp64Milli(toInt64(${NOW} - 60000)), fromUnixTimestamp64Milli(toInt64(${NOW} - 60000 + intDiv(number, ${SOURCES}) * 1000))
      FROM numbers(${SOURCES * 30})`)
    console.log(`service cycle: ${SOURCES * PER_SOURCE * reports} occupancy rows for ${SOURCES * PER_SOURCE} car parks loaded into chDB in ${((performance.now() - t0) / 1000).toFixed(1)} s`)

    clock.set(NOW)
    const reader = new FreshnessReader(wh)
    let r0 = performance.now()
    await reader.read(NOW)
    const fullRead = performance.now() - r0
    r0 = performance.now()
    await reader.read(NOW + M)
    const incrementalRead = performance.now() - r0
    console.log(`  warehouse read alone: full look-back ${fullRead.toFixed(0)} ms, incremental ${incrementalRead.toFixed(0)} ms`)
    const q = new QualityService({ metadata, warehouse: wh, clock, log: pino({ level: 'silent' }) })
    gc()
    const rss0 = process.memoryUsage().rss
    const cycles: string[] = []
    for (let c = 0; c < 6; c++) {
      const s = await q.runOnce()
      cycles.push(`${s.cycleMs.toFixed(0)} ms${c === 0 ? ' (first: full look-back, alerts opened)' : ''}`)
      if (c === 0) console.log(`  first cycle: ${s.sources} sources, ${s.entities} entities, ${s.transitions} transitions, ${s.firing} firing alerts`)
      clock.advance(M)
    }
    gc()
    console.log(`  cycles: ${cycles.join(', ')}`)
    console.log(`  RSS ${mb(process.memoryUsage().rss)} (${mb(process.memoryUsage().rss - rss0)} more than before the first cycle), heap ${mb(process.memoryUsage().heapUsed)}`)
    await q.stop()
    await metadata.close()
    await wh.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

pure()
await service()
