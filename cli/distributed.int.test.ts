import { execFileSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { REPO, spawnTs, type Spawned, startWarehouseProcess } from '../infra/test/processes.ts'
import { KAFKA_BROKERS, kafkaReachable, requireService } from '../infra/test/services.ts'
import { type IncomingMessage } from '../pipelines/bus/bus.ts'
import { kafkaConnection } from '../pipelines/bus/kafka-config.ts'
import { KafkaBus } from '../pipelines/bus/kafka-bus.ts'
import { ServerWarehouse } from '../pipelines/warehouse/server-warehouse.ts'
import { pino } from 'pino'

// The delivery promise of the distributed mode, through real processes: a
// connector process publishing to the real Kafka broker, pipeline processes
// in one consumer group landing into a shared ClickHouse endpoint, killed
// with SIGKILL at random moments. ClickHouse must end with exactly the
// upstream's records: none lost, none twice.

const run = requireService('Kafka', await kafkaReachable(), `no broker at ${KAFKA_BROKERS.join(',')}; start one with npm run kafka:up`)
const procs: Spawned[] = []
const dirs: string[] = []
let warehouse: { url: string; proc: Spawned } | undefined
let wh: ServerWarehouse
const prefix = `d${randomUUID().slice(0, 8)}.`
const dataDir = mkdtempSync(join(tmpdir(), 'citysync-dist-'))
dirs.push(dataDir)

function env(): NodeJS.ProcessEnv {
  const { DATABASE_URL: _db, ...rest } = process.env
  return {
    ...rest,
    CITYSYNC_DATA_DIR: dataDir,
    CLICKHOUSE_URL: warehouse!.url,
    KAFKA_BROKERS: KAFKA_BROKERS.join(','),
    KAFKA_TOPIC_PREFIX: prefix,
    KAFKA_SESSION_TIMEOUT_MS: '6000',
    CITYSYNC_MASTER_KEY: 'distributed-test-master-key',
    LOG_LEVEL: 'info',
  }
}

function cli(args: string[]): string {
  return execFileSync(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { cwd: REPO, env: env(), encoding: 'utf8' })
}

function start(args: string[]): Spawned {
  const p = spawnTs('cli/main.ts', args, env())
  procs.push(p)
  return p
}

async function upstream(seed: number, events: number, lots: number): Promise<{ url: string; passages: number; spaces: number; lots: number }> {
  const sim = spawnTs('connectors/parking-lots/simulator-main.ts', ['--port', '0', '--seed', String(seed), '--lots', String(lots), '--events-per-minute', '2000', '--bulk', String(events)])
  procs.push(sim)
  const gen = await sim.waitFor(/generated (\d+) passages and (\d+) space reports/, 120_000)
  const url = await sim.waitFor(/at (http:\/\/[^/\s]+)/)
  return { url: url[1]!, passages: Number(gen[1]), spaces: Number(gen[2]), lots }
}

function addSource(id: string, url: string): void {
  const file = join(dataDir, `${id}.json`)
  writeFileSync(file, JSON.stringify({ id, kind: 'parking-lots', name: id, schedule: { every: '1s' }, config: { baseUrl: url, pageSize: 1000 } }))
  cli(['sources', 'add', file])
  cli(['sources', 'deploy', id])
}

interface Landed {
  passages: number
  passageIds: number
  passageKeys: number
  spaces: number
  spaceIds: number
  lots: number
  dead: number
}

async function landed(sourceId: string): Promise<Landed> {
  const [p] = await wh.query<{ n: number; ids: number; keys: number }>(
    `SELECT count() AS n, uniqExact(eventId) AS ids, uniqExact(lotId, direction, recordNo) AS keys FROM parking_passage WHERE sourceId = {s:String}`,
    { s: sourceId },
  )
  const [o] = await wh.query<{ n: number; ids: number }>(`SELECT count() AS n, uniqExact(eventId) AS ids FROM parking_occupancy WHERE sourceId = {s:String}`, { s: sourceId })
  // Lots are snapshotted once per hour (occurredAt on the hour): a run across an hour boundary has two snapshots.
  const [l] = await wh.query<{ n: number; rows: number; ids: number }>(
    `SELECT uniqExact(lotId) AS n, count() AS rows, uniqExact(eventId) AS ids FROM parking_lot WHERE sourceId = {s:String}`,
    { s: sourceId },
  )
  if (l!.rows !== l!.ids) {
    const rows = await wh.query(`SELECT eventId, toUnixTimestamp64Milli(receivedAt) AS r, toUnixTimestamp64Milli(occurredAt) AS o, _part FROM parking_lot WHERE sourceId = {s:String} ORDER BY eventId LIMIT 6`, { s: sourceId })
    const journal = await wh.query(`SELECT * FROM sink_batches WHERE topic = 'citysync.parking.lot'`)
    const log = await wh.query(`SELECT batchId, rows, arrivedAt FROM ingest_log WHERE sourceId = {s:String} AND tableName = 'parking_lot'`, { s: sourceId })
    throw new Error(`parking_lot holds ${l!.rows - l!.ids} duplicate rows: ${JSON.stringify({ rows, journal, log })}`)
  }
  const [d] = await wh.query<{ n: number }>(`SELECT count() AS n FROM dead_letter WHERE sourceId = {s:String}`, { s: sourceId })
  return { passages: p!.n, passageIds: p!.ids, passageKeys: p!.keys, spaces: o!.n, spaceIds: o!.ids, lots: l!.n, dead: d!.n }
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs: number, pollMs = 500): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, pollMs))
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe.runIf(run)('distributed mode over the real Kafka broker', () => {
  beforeAll(async () => {
    warehouse = await startWarehouseProcess(join(dataDir, 'warehouse'))
    procs.push(warehouse.proc)
    wh = new ServerWarehouse(warehouse.url)
    const out = cli(['migrate'])
    expect(out).toContain(`kafka topic ${prefix}citysync.parking.passage: created (6 partitions)`)
    expect(out).toContain(`kafka topic ${prefix}citysync.parking.passage.dlq: created (1 partitions)`)
  }, 180_000)

  afterAll(async () => {
    await wh?.close()
    await Promise.all(procs.map((p) => p.kill9()))
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  it('SIGKILL a pipeline 10 times while a connector publishes 300k events: ClickHouse holds exactly the upstream', async () => {
    // Each incarnation lands about 20k passages before its kill, so 300k outlast ten
    // cycles: with 200k the last kill could come after the last row had landed.
    const up = await upstream(7, 300_000, 50)
    addSource('kill-lots', up.url)
    let pipeline = start(['pipeline'])
    await pipeline.waitFor(/pipeline ready/)
    const connector = start(['connect', '--source', 'kill-lots'])
    await connector.waitFor(/connector ready/)

    const atKill: number[] = []
    for (let i = 0; i < 10; i++) {
      // Wait until this incarnation is landing rows, then kill it at an arbitrary point of its work.
      const before = (await landed('kill-lots')).passages
      await until('the pipeline to land rows', async () => (await landed('kill-lots')).passages > before, 120_000, 50)
      await sleep(Math.floor(Math.random() * 300))
      atKill.push((await landed('kill-lots')).passages)
      await pipeline.kill9()
      pipeline = start(['pipeline'])
      await pipeline.waitFor(/pipeline ready/)
    }

    const want = { passages: up.passages, passageIds: up.passages, passageKeys: up.passages, spaces: up.spaces, spaceIds: up.spaces, lots: up.lots, dead: 0 }
    await until('every upstream record to land', async () => {
      const l = await landed('kill-lots')
      return l.passages >= up.passages && l.spaces >= up.spaces && l.lots >= up.lots
    }, 300_000)
    await sleep(2_000) // anything still in flight would show up as an extra row
    expect(await landed('kill-lots')).toEqual(want)
    // Every kill hit a pipeline that was landing rows, before the end of the stream.
    console.log(`passages landed at each kill: ${atKill.join(', ')} of ${up.passages}`)
    expect(atKill.every((n, i) => n > 0 && n < up.passages && (i === 0 || n > atKill[i - 1]!))).toBe(true)
    await connector.stop()
    await pipeline.stop()
  }, 600_000)

  it('two pipelines share the partitions; when one is killed the other takes them over and totals stay exact', async () => {
    const up = await upstream(11, 60_000, 20)
    const a = start(['pipeline'])
    const b = start(['pipeline', '--metrics-port', '0'])
    await Promise.all([a.waitFor(/pipeline ready/), b.waitFor(/pipeline ready/)])
    addSource('pair-lots', up.url)
    const connector = start(['connect', '--source', 'pair-lots'])
    await until('rows to start landing', async () => (await landed('pair-lots')).passages > 5_000, 120_000)
    const assignedBefore = b.output().split('kafka partitions assigned').length - 1
    await a.kill9()
    await until('every upstream record to land', async () => {
      const l = await landed('pair-lots')
      return l.passages >= up.passages && l.spaces >= up.spaces && l.lots >= up.lots
    }, 300_000)
    await sleep(2_000)
    expect(await landed('pair-lots')).toEqual({ passages: up.passages, passageIds: up.passages, passageKeys: up.passages, spaces: up.spaces, spaceIds: up.spaces, lots: up.lots, dead: 0 })
    // The survivor is given a new assignment once the group notices its partner died
    // (its session times out); the rows may all have landed before that, when the
    // survivor already held the partitions that carried them.
    await until('the survivor to be reassigned', () => Promise.resolve(b.output().split('kafka partitions assigned').length - 1 > assignedBefore), 90_000)
    // Its metrics: rows landed, and no lag left on the passage partitions it committed.
    const metricsUrl = /"metrics":"(http:[^"]+)"/.exec(b.output())![1]!
    const text = await (await fetch(metricsUrl)).text()
    const landedRows = Number(/citysync_sink_rows_total\{outcome="landed"\} (\d+)/.exec(text)?.[1])
    expect(landedRows).toBeGreaterThan(0)
    expect(landedRows).toBeLessThanOrEqual(up.passages + up.spaces + 2 * up.lots)
    const lags = [...text.matchAll(/citysync_kafka_consumer_lag\{topic="citysync\.parking\.passage",partition="\d+"\} (\d+)/g)].map((m) => Number(m[1]))
    expect(lags.length).toBeGreaterThan(0)
    expect(lags.every((l) => l === 0)).toBe(true)
    await connector.stop()
    await b.stop()
  }, 600_000)

  it('a record the pipeline rejects goes to the family dead-letter topic, unchanged, with the reason in its headers, and to dead_letter', async () => {
    const bus = new KafkaBus({ connection: kafkaConnection(KAFKA_BROKERS, { KAFKA_TOPIC_PREFIX: prefix }), log: pino({ level: 'warn' }) })
    const pipeline = start(['pipeline'])
    try {
      await pipeline.waitFor(/pipeline ready/)
      const garbage = Buffer.from('not an avro event')
      await bus.publish('citysync.parking.passage', [{ key: 'dlq-src', value: garbage, headers: { 'citysync-source-id': 'dlq-src', 'citysync-trace-id': 't-dlq' } }])
      const got: IncomingMessage[] = []
      const stop = new AbortController()
      const sub = bus.subscribe({ group: `dlq-reader-${randomUUID()}`, topics: ['citysync.parking.passage.dlq'], maxBatchSize: 100, maxWaitMs: 100, signal: stop.signal }, (b) => {
        got.push(...b.messages.filter((m) => m.key === 'dlq-src'))
        return Promise.resolve()
      })
      await until('the rejected record on the dead-letter topic', () => Promise.resolve(got.length > 0), 60_000)
      stop.abort()
      await sub.done
      expect(got).toHaveLength(1)
      expect(got[0]!.value.equals(garbage)).toBe(true)
      expect(got[0]!.headers).toMatchObject({
        'citysync-source-id': 'dlq-src',
        'citysync-trace-id': 't-dlq',
        'citysync-dlq-code': 'undecodable',
        'citysync-dlq-origin': expect.stringMatching(/^citysync\.parking\.passage\/\d+\/\d+$/) as unknown,
      })
      expect(got[0]!.headers['citysync-dlq-reason']).toMatch(/wire|magic|schema/i)
      const [row] = await wh.query<{ n: number }>(`SELECT count() AS n FROM dead_letter WHERE sourceId = 'dlq-src' AND code = 'undecodable'`)
      expect(row!.n).toBe(1)
    } finally {
      await bus.close()
      await pipeline.stop()
    }
  }, 120_000)
})
