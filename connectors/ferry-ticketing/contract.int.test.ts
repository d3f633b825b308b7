import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import PQueue from 'p-queue'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../../lib/clock.ts'
import { deriveKeys, protectPlate } from '../../lib/crypto.ts'
import { parseLocal } from '../../lib/local-time.ts'
import { type Metadata, openMetadata } from '../../lib/metadata/db.ts'
import { MemoryBus } from '../../pipelines/bus/memory-bus.ts'
import { WorkerEncoder } from '../../pipelines/draft-encoder.ts'
import { Publisher } from '../../pipelines/publisher.ts'
import { WarehouseSink } from '../../pipelines/warehouse-sink.ts'
import { openWarehouse } from '../../pipelines/warehouse/open.ts'
import { type Warehouse } from '../../pipelines/warehouse/warehouse.ts'
import { SchemaCatalogue } from '../../schemas/catalogue.ts'
import { connectorFor } from '../registry.ts'
import { stateStore } from '../sdk/manager.ts'
import { type RetryPolicy, SourceRunner } from '../sdk/runtime.ts'
import { type FerryCursor } from './cursor.ts'
import { ID_FIELD } from './map.ts'
import { type Expected, FerrySimulator } from './simulator.ts'

// The connector's contract, end to end: the simulated ticketing system over
// real HTTP with every quirk of a real feed, the real runtime (cursor in the
// SQLite metadata store, retries with backoff), publisher (worker encoder),
// in-process bus and warehouse sink, landing in chDB. Polled every 15 minutes
// of simulated time for 31 hours; what lands must be exactly what the
// simulator's ground truth says a reader polling at those instants gets.

const TZ = 'Asia/Shanghai'
const SOURCE = 'hengqin-ferry'
const MIN = 60_000
const local = (text: string) => parseLocal(text, TZ)!
const log = pino({ level: 'silent' })

const dir = mkdtempSync(join(tmpdir(), 'citysync-ferry-'))
const clock = new ManualClock(local('2026-11-20 18:00:00'))
const sim = new FerrySimulator({ seed: 7, clock, serviceDays: 2, scale: 0.3, faults: { badRate: 0.03 } })
const keys = deriveKeys('ferry-contract-test-master-key-01')
const catalogue = SchemaCatalogue.load()
const bus = new MemoryBus()
const encoder = new WorkerEncoder(keys)
const sinkStop = new AbortController()
let metadata: Metadata
let wh: Warehouse
let sink: WarehouseSink
let subscription: { done: Promise<void> }
let url: string

beforeAll(async () => {
  url = await sim.start()
  metadata = await openMetadata({ dataDir: dir })
  wh = await openWarehouse({ dataDir: dir })
  sink = new WarehouseSink({ warehouse: wh, catalogue, clock, log })
  subscription = sink.subscribe(bus, sinkStop.signal, { maxWaitMs: 20 })
  await metadata.sources.add({
    id: SOURCE,
    kind: 'ferry-ticketing',
    name: '横琴·九洲港客运票务',
    operator: null,
    district: '横琴',
    timezone: TZ,
    schedule: { every: '15m' },
    freshness: { maxDelay: '2h' },
    config: { baseUrl: url, pageSize: 100 },
  })
})

afterAll(async () => {
  await encoder.close()
  sinkStop.abort()
  await subscription.done
  await bus.close()
  await wh.close()
  await metadata.close()
  await sim.stop()
  rmSync(dir, { recursive: true, force: true })
})

function runner(opts: { retry?: RetryPolicy; requestTimeoutMs?: number } = {}): SourceRunner {
  return new SourceRunner({
    source: { id: SOURCE, timezone: TZ, schedule: { everyMs: 15 * MIN }, config: { baseUrl: url, pageSize: 100 } },
    connector: connectorFor('ferry-ticketing')!,
    state: stateStore(metadata),
    publisher: new Publisher({ sourceId: SOURCE, bus, catalogue, clock, protectPlate: (p) => protectPlate(p, keys), encoder }),
    clock,
    log,
    queue: new PQueue({ concurrency: 1 }),
    ...opts,
  })
}

async function until(what: string, fn: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !(await fn()); ) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

const RETRY: RetryPolicy = { baseMs: 20, maxMs: 200, failAfter: 1000 }

/**
 * Runs the source on its real schedule loop (with backoff) until it has failed
 * `failures` times, then lets upstream recover and waits for the retry that
 * succeeds. Returns the state seen while failing.
 */
async function failThenRecover(r: SourceRunner, failures: number, error: RegExp, recover: () => void) {
  const state = () => metadata.connectorState.get(SOURCE)
  r.start()
  await until('the source to fail and back off', async () => (await state()).consecutiveFailures >= failures)
  const failed = await state()
  expect(failed.lastError).toMatch(error)
  expect(['backoff', 'running']).toContain(failed.runState)
  recover()
  await until('the source to recover', async () => (await state()).consecutiveFailures === 0)
  await r.stop()
  return failed
}

const count = async (sql: string): Promise<number> => Number((await wh.query<{ n: number }>(sql))[0]!.n)
const tally = (codes: string[]) => codes.reduce<Record<string, number>>((a, c) => ({ ...a, [c]: (a[c] ?? 0) + 1 }), {})

describe('ferry-ticketing contract (simulator over HTTP -> runtime -> pipeline -> chDB)', () => {
  const polls: number[] = []
  let truth: Expected
  let olderCursor: FerryCursor | undefined

  it('lands exactly the ground truth of 31 hours of polling, through an outage and a slow spell', async () => {
    const main = runner({ requestTimeoutMs: 5_000 })
    const outageAt = local('2026-11-21 09:00:00')
    const slowAt = local('2026-11-21 16:30:00')
    for (; clock.now() <= local('2026-11-22 01:00:00'); clock.advance(15 * MIN)) {
      polls.push(clock.now())
      if (clock.now() === outageAt) {
        // Down after three answers (terminals, a sailings page, a tickets page): the read
        // fails midway, what it read lands and is checkpointed, the runtime backs off and retries.
        const before = (await metadata.connectorState.get(SOURCE)).cursor as FerryCursor
        sim.outageAfter(3)
        const failed = await failThenRecover(runner({ retry: RETRY }), 2, /HTTP 503 \(系统维护中，请稍后再试\)/, () => sim.outage(false))
        const during = failed.cursor as FerryCursor
        expect(during.sailings).not.toEqual(before.sailings)
        expect(during.tickets).not.toEqual(before.tickets)
        expect(during.checkins).toEqual(before.checkins)
        continue
      }
      if (clock.now() === slowAt) {
        sim.setSlowMs(600)
        await failThenRecover(runner({ retry: RETRY, requestTimeoutMs: 150 }), 1, /did not answer within 150 ms/, () => sim.setSlowMs(0))
        continue
      }
      await main.runOnce()
      if (clock.now() === local('2026-11-21 07:00:00')) olderCursor = (await metadata.connectorState.get(SOURCE)).cursor as FerryCursor
    }
    truth = sim.expected(polls)

    // Every quirk was in what was read.
    const served = sim.served(polls)
    expect(served.filter((v) => v.late).length).toBeGreaterThan(50)
    expect(served.filter((v) => v.backfill && v.endpoint === 'tickets').length).toBeGreaterThan(3)
    expect(served.filter((v) => v.backfill && v.endpoint === 'checkins').length).toBeGreaterThan(10)
    expect(served.some((v) => v.item.seats === 'unknown')).toBe(true)
    expect(served.some((v) => v.item.ticketPrice === 'unknown')).toBe(true)
    expect(served.some((v) => typeof v.item.checkTime === 'number' && v.item.checkTime < 1e11)).toBe(true)
    expect(served.some((v) => typeof v.item.actualDepartTime === 'number' && v.item.actualDepartTime < 1e11)).toBe(true)
    expect(served.some((v) => v.item.gateNo === 'G3')).toBe(true)
    expect(sim.repeatedRows).toBeGreaterThan(10)
    expect(sim.requests('/ferry/open/v1/tickets/query')).toBeGreaterThan(0)

    // Exact counts. No row twice, even before merges: plain count = FINAL = distinct event ids.
    const expected = { ferry_sailing: truth.sailings.length, ferry_ticket: truth.tickets.length, ferry_checkin: truth.checkIns.length }
    expect(expected).toEqual({ ferry_sailing: 181, ferry_ticket: 2912, ferry_checkin: 2252 })
    for (const [table, n] of Object.entries(expected)) {
      expect(await count(`SELECT count() AS n FROM ${table} WHERE sourceId = '${SOURCE}'`), table).toBe(n)
      expect(await count(`SELECT count() AS n FROM ${table} FINAL WHERE sourceId = '${SOURCE}'`), table).toBe(n)
      expect(await count(`SELECT uniqExact(eventId) AS n FROM ${table} WHERE sourceId = '${SOURCE}'`), table).toBe(n)
    }

    // And exactly the truth's content, times in UTC.
    const sailings = await wh.query<{ k: string }>(
      `SELECT concat(sailingId, '|', status, '|', toString(toUnixTimestamp64Milli(occurredAt)), '|', toString(toUnixTimestamp64Milli(scheduledDeparture)), '|',
              ifNull(toString(toUnixTimestamp64Milli(actualDeparture)), '-'), '|', ifNull(toString(capacity), '-'), '|', ifNull(vesselName, '-'), '|', route) AS k
       FROM ferry_sailing FINAL WHERE sourceId = '${SOURCE}'`,
    )
    expect(sailings.map((r) => r.k).sort()).toEqual(
      truth.sailings
        .map((d) => `${d.sailingId}|${d.status}|${d.occurredAt}|${d.scheduledDeparture}|${d.actualDeparture ?? '-'}|${d.capacity ?? '-'}|${d.vesselName ?? '-'}|${d.route}`)
        .sort(),
    )
    const tickets = await wh.query<{ k: string }>(
      `SELECT concat(ticketId, '|', status, '|', sailingId, '|', terminalId, '|', toString(toUnixTimestamp64Milli(occurredAt)), '|',
              ifNull(toString(priceCents), '-'), '|', ifNull(channel, '-'), '|', ticketType) AS k
       FROM ferry_ticket FINAL WHERE sourceId = '${SOURCE}'`,
    )
    expect(tickets.map((r) => r.k).sort()).toEqual(
      truth.tickets.map((d) => `${d.ticketId}|${d.status}|${d.sailingId}|${d.terminalId}|${d.occurredAt}|${d.priceCents ?? '-'}|${d.channel ?? '-'}|${d.ticketType}`).sort(),
    )
    const checkIns = await wh.query<{ k: string }>(
      `SELECT concat(checkInId, '|', ticketId, '|', sailingId, '|', terminalId, '|', ifNull(gate, '-'), '|', toString(toUnixTimestamp64Milli(occurredAt))) AS k
       FROM ferry_checkin FINAL WHERE sourceId = '${SOURCE}'`,
    )
    expect(checkIns.map((r) => r.k).sort()).toEqual(
      truth.checkIns.map((d) => `${d.checkInId}|${d.ticketId}|${d.sailingId}|${d.terminalId}|${d.gate ?? '-'}|${d.occurredAt}`).sort(),
    )
    const statuses = await wh.query<{ status: string; n: number }>(
      `SELECT status, count() AS n FROM ferry_ticket FINAL WHERE sourceId = '${SOURCE}' GROUP BY status ORDER BY status`,
    )
    expect(statuses.map((s) => s.status)).toEqual(['changed', 'refunded', 'sold'])

    // Dead letters: one per defective row version read, with its reason and raw row; nothing else.
    const dead = await wh.query<{ stage: string; code: string; family: string; reason: string; raw: string }>(
      `SELECT stage, code, family, reason, raw FROM dead_letter WHERE sourceId = '${SOURCE}'`,
    )
    expect(dead).toHaveLength(truth.rejected.length)
    expect(dead.length).toBe(199)
    expect(tally(dead.map((d) => d.code))).toEqual(tally(truth.rejected.map((r) => r.code)))
    expect(Object.keys(tally(dead.map((d) => d.code))).sort()).toEqual(['future_timestamp', 'invalid_value', 'missing_field', 'unknown_terminal', 'unknown_ticket'])
    expect(dead.every((d) => d.stage === 'connector')).toBe(true)
    const family = { sailings: 'FerrySailing', tickets: 'FerryTicket', checkins: 'FerryCheckIn' } as const
    const label = { sailings: 'sailing', tickets: 'ticket', checkins: 'check-in' } as const
    for (const r of truth.rejected) {
      const d = dead.find((x) => x.code === r.code && x.reason.startsWith(`${label[r.endpoint]} ${r.id}`))
      expect(d, `${r.endpoint} ${r.id} ${r.defect}`).toBeDefined()
      expect(d!.family).toBe(family[r.endpoint])
      expect((JSON.parse(d!.raw) as Record<string, unknown>)[ID_FIELD[r.endpoint]]).toBe(r.id) // the row as the system sent it
    }

    // The ingest log accounts for every landed row.
    const logged = await wh.query<{ tableName: string; rows: number }>(
      `SELECT tableName, sum(rows) AS rows FROM ingest_log WHERE sourceId = '${SOURCE}' AND tableName LIKE 'ferry_%' GROUP BY tableName ORDER BY tableName`,
    )
    expect(Object.fromEntries(logged.map((l) => [l.tableName, Number(l.rows)]))).toEqual(expected)
  }, 240_000)

  it('re-reading from an older cursor lands no duplicates', async () => {
    expect(olderCursor?.tickets).toBeDefined()
    const before = {
      sailing: await count(`SELECT count() AS n FROM ferry_sailing WHERE sourceId = '${SOURCE}'`),
      ticket: await count(`SELECT count() AS n FROM ferry_ticket WHERE sourceId = '${SOURCE}'`),
      checkin: await count(`SELECT count() AS n FROM ferry_checkin WHERE sourceId = '${SOURCE}'`),
      deadIds: await count(`SELECT uniqExact(eventId) AS n FROM dead_letter WHERE sourceId = '${SOURCE}'`),
      deadRows: await count(`SELECT count() AS n FROM dead_letter WHERE sourceId = '${SOURCE}'`),
    }
    const duplicatesBefore = sink.stats.duplicates
    await metadata.connectorState.saveCheckpoint(SOURCE, olderCursor, clock.now())
    const outcome = await runner().runOnce()
    expect(outcome.records).toBeGreaterThan(2000) // the day since 06:45 read again
    // Records and rejections read again are both recognised by their event ids.
    expect(sink.stats.duplicates - duplicatesBefore).toBe(outcome.records + outcome.rejected)
    expect({
      sailing: await count(`SELECT count() AS n FROM ferry_sailing WHERE sourceId = '${SOURCE}'`),
      ticket: await count(`SELECT count() AS n FROM ferry_ticket WHERE sourceId = '${SOURCE}'`),
      checkin: await count(`SELECT count() AS n FROM ferry_checkin WHERE sourceId = '${SOURCE}'`),
      deadIds: await count(`SELECT uniqExact(eventId) AS n FROM dead_letter WHERE sourceId = '${SOURCE}'`),
    }).toEqual({ sailing: before.sailing, ticket: before.ticket, checkin: before.checkin, deadIds: before.deadIds })
    // Rejections read again are the same dead letters: recorded once.
    expect(outcome.rejected).toBeGreaterThan(0)
    expect(await count(`SELECT count() AS n FROM dead_letter WHERE sourceId = '${SOURCE}'`)).toBe(before.deadRows)
    expect(await count(`SELECT count() AS n FROM dead_letter WHERE sourceId = '${SOURCE}' AND code = 'duplicate_record'`)).toBe(0)
    // The cursor is back where it was.
    const cursor = (await metadata.connectorState.get(SOURCE)).cursor as FerryCursor
    expect(cursor.checkins?.after).toBe(sim.allVersions('checkins').filter((v) => v.visibleAt <= clock.now()).map((v) => v.item.updateTime as string).sort().at(-1))
  }, 120_000)
})
