import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../api/app.ts'
import { startEmbedded, VERSION, type Embedded } from '../cli/embedded.ts'
import { ParkingSimulator } from '../connectors/parking-lots/simulator.ts'
import { createBackup } from '../lib/backup/backup.ts'
import { manifestFiles, type Manifest } from '../lib/backup/manifest.ts'
import { loadConfig } from '../lib/config.ts'
import { kafkaConnection } from '../pipelines/bus/kafka-config.ts'
import { KafkaBus } from '../pipelines/bus/kafka-bus.ts'
import { type HttpReceiver, httpReceiver } from '../quality/test-receivers.ts'
import { freePort } from './test/processes.ts'
import { KAFKA_BROKERS, kafkaReachable, requireService } from './test/services.ts'

// GET /metrics after a known run: two parking sources through the whole
// embedded stack (simulated vendor platforms, connectors, the in-process bus,
// the sink, chDB, the quality service, a webhook receiver, a backup), scraped
// over real HTTP. Every figure is checked against what is known: the
// simulators' ground truth, the warehouse's rows, the freshness cycle, the
// receiver's requests, the backup's manifest.

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** The Prometheus text format, one sample per line (`name{a="b",…} value`). */
function parseMetrics(text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) throw new Error(`not a sample: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = JSON.parse(`"${l[2]!}"`) as string
    out.push({ name: m[1]!, labels, value: Number(m[3]) })
  }
  return out
}

function pick(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
}

function total(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  return pick(samples, name, labels).reduce((n, s) => n + s.value, 0)
}

/** The value of exactly one sample. */
function one(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = pick(samples, name, labels)
  if (found.length !== 1) throw new Error(`${name}${JSON.stringify(labels)}: ${found.length} samples`)
  return found[0]!.value
}

function tally(codes: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const c of codes) out[c] = (out[c] ?? 0) + 1
  return out
}

const dir = mkdtempSync(join(tmpdir(), 'citysync-metrics-'))
const backups = join(dir, 'backups')
let e: Embedded
let webhook: HttpReceiver
const sims: Record<string, ParkingSimulator> = {}
const env = { CITYSYNC_MASTER_KEY: process.env.CITYSYNC_MASTER_KEY, CITYSYNC_ALERTING_FILE: process.env.CITYSYNC_ALERTING_FILE }

beforeAll(async () => {
  webhook = await httpReceiver()
  const alerting = join(dir, 'alerting.json')
  writeFileSync(alerting, JSON.stringify({ receivers: [{ name: 'ops', channels: [{ type: 'webhook', url: `${webhook.url}/alerts` }] }], routes: [{ receivers: ['ops'] }] }))
  process.env.CITYSYNC_MASTER_KEY = 'metrics-test-master-key-0001'
  process.env.CITYSYNC_ALERTING_FILE = alerting
  e = await startEmbedded({ cfg: { ...loadConfig({ CITYSYNC_DATA_DIR: join(dir, 'data') }), port: 0 }, demo: false, log: pino({ level: 'silent' }), maxWaitMs: 50, backupDir: backups })
})

afterAll(async () => {
  await e?.close()
  for (const s of Object.values(sims)) await s.stop()
  await webhook?.close()
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete process.env[k]
    else process.env[k] = v
  }
  rmSync(dir, { recursive: true, force: true })
})

/**
 * A fixed-offset zone in which `at` falls at about `hour` o'clock. The simulator's traffic follows
 * the local hour (little at night, none in closed car parks), so the test places its sources'
 * history in the early afternoon whatever time of day it runs.
 */
function zoneAt(at: number, hour: number): string {
  let offset = (hour - new Date(at).getUTCHours() + 24) % 24
  if (offset > 12) offset -= 24
  // POSIX sign: Etc/GMT-8 is eight hours ahead of UTC.
  return offset === 0 ? 'Etc/GMT' : offset > 0 ? `Etc/GMT-${offset}` : `Etc/GMT+${-offset}`
}

async function addSource(id: string, sim: ParkingSimulator, timezone: string): Promise<void> {
  sims[id] = sim
  const url = await sim.start(0)
  sim.advance()
  await e.stores.metadata.sources.add({
    id, kind: 'parking-lots', name: id, operator: '横琴停车公司', district: '横琴', timezone,
    schedule: { every: '1s' }, freshness: { maxDelay: '2h' }, config: { baseUrl: url, pageSize: 100 },
  })
  await e.stores.metadata.sources.setDesiredState(id, 'deployed', 'test')
}

/** Until the source's cursor has read everything its simulator generated. */
async function drained(id: string): Promise<void> {
  const want = sims[id]!.counts()
  for (const deadline = Date.now() + 90_000; ; ) {
    const c = (await e.stores.metadata.connectorState.get(id)).cursor as { in: number; out: number; space: number } | null
    if (c !== null && c.in === want.in && c.out === want.out && c.space === want.space) return
    if (Date.now() > deadline) throw new Error(`${id}: cursor at ${JSON.stringify(c)}, upstream has ${JSON.stringify(want)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function scrape(): Promise<Sample[]> {
  const res = await fetch(`${e.url}/metrics`)
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
  return parseMetrics(await res.text())
}

describe('GET /metrics after a known embedded run', () => {
  it('shows ingest per source, dead letters per code, batches, lag, freshness, alert deliveries and the last backup, with the right values', async () => {
    const now = Date.now()
    // fresh-lots: recent traffic with bad records of every kind; old-lots: good records, all from 8 hours ago (late).
    const freshZone = zoneAt(now, 13)
    const oldZone = zoneAt(now - 8 * 3600_000, 12) // now is 20:00-20:59 there: before the 22:00 closing, so still expected
    await addSource('fresh-lots', new ParkingSimulator({ seed: 11, lots: 3, timezone: freshZone, eventsPerMinute: 200, maxEvents: 600, startAt: now - 5 * 60_000, faults: { badRate: 0.08, malformedSeqs: { in: [40] } } }), freshZone)
    await addSource('old-lots', new ParkingSimulator({ seed: 12, lots: 2, timezone: oldZone, eventsPerMinute: 200, maxEvents: 150, startAt: now - 8 * 3600_000 }), oldZone)
    await e.manager.reconcile()
    await drained('fresh-lots')
    await drained('old-lots')
    // Everything read has landed (a connector's cursor moves after its records land); one freshness cycle, its notification sent.
    const cycle = await e.quality.runOnce()
    await e.quality.deliveries.idle()
    expect(cycle.firing).toBeGreaterThan(0)
    // A backup taken through the running process's own warehouse session.
    const { manifest } = await createBackup({ stores: { dataDir: join(dir, 'data'), clickhouseUrl: undefined, databaseUrl: undefined }, to: backups, keys: e.stores.keys, version: VERSION, engine: e.stores.warehouse })
    await e.manager.stopAll()

    const m = await scrape()
    const wh = e.stores.warehouse

    // Rows landed per source and table: the simulators' truth, and every other table as the warehouse holds it.
    const fresh = sims['fresh-lots']!
    const old = sims['old-lots']!
    expect(one(m, 'citysync_source_rows_landed_total', { source: 'fresh-lots', table: 'parking_passage' })).toBe(fresh.truth().length)
    expect(one(m, 'citysync_source_rows_landed_total', { source: 'fresh-lots', table: 'parking_occupancy' })).toBe(fresh.spaceTruth().length)
    expect(one(m, 'citysync_source_rows_landed_total', { source: 'old-lots', table: 'parking_passage' })).toBe(old.truth().length)
    expect(one(m, 'citysync_source_rows_landed_total', { source: 'old-lots', table: 'parking_occupancy' })).toBe(old.spaceTruth().length)
    for (const source of ['fresh-lots', 'old-lots']) {
      for (const s of pick(m, 'citysync_source_rows_landed_total', { source })) {
        const [{ n }] = (await wh.query<{ n: number }>(`SELECT count() AS n FROM ${s.labels.table} WHERE sourceId = {source:String}`, { source })) as [{ n: number }]
        expect(s.value, `${source} ${s.labels.table}`).toBe(n)
      }
      expect(pick(m, 'citysync_source_rows_landed_total', { source }).map((s) => s.labels.table)).toEqual(expect.arrayContaining(['parking_passage', 'parking_occupancy', 'parking_lot', 'source_heartbeat']))
    }

    // Dead letters per source and code: the defects the simulator injected; none for the clean source.
    const bad = fresh.badRecords().filter((b) => b.code !== null)
    expect(bad.length).toBeGreaterThan(10)
    const byCode: Record<string, number> = {}
    for (const s of pick(m, 'citysync_dead_letters_total', { source: 'fresh-lots' })) byCode[s.labels.code!] = (byCode[s.labels.code!] ?? 0) + s.value
    expect(byCode).toEqual(tally(bad.map((b) => b.code!)))
    expect(Object.keys(byCode)).toEqual(expect.arrayContaining(['missing_field', 'wrong_type', 'unknown_lot', 'future_timestamp', 'malformed_json']))
    // Rejected by the connector, before the bus: stage connector.
    expect(one(m, 'citysync_dead_letters_total', { source: 'fresh-lots', stage: 'connector', code: 'missing_field' })).toBe(bad.filter((b) => b.code === 'missing_field').length)
    expect(pick(m, 'citysync_dead_letters_total', { source: 'old-lots' })).toEqual([])
    const [{ dead }] = (await wh.query<{ dead: number }>(`SELECT count() AS dead FROM dead_letter`)) as [{ dead: number }]
    expect(total(m, 'citysync_dead_letters_total')).toBe(dead)

    // Outcomes add up: every message handled is landed, a duplicate or a dead letter, and the batch sizes sum to them.
    const landed = one(m, 'citysync_sink_rows_total', { outcome: 'landed' })
    expect(landed).toBe(total(m, 'citysync_source_rows_landed_total'))
    expect(one(m, 'citysync_sink_rows_total', { outcome: 'dead_letter' })).toBe(dead)
    const handled = total(m, 'citysync_sink_rows_total')
    expect(total(m, 'citysync_sink_batch_messages_sum')).toBe(handled)
    const batches = total(m, 'citysync_sink_batch_messages_count')
    expect(batches).toBeGreaterThan(0)
    expect(batches).toBe(one(m, 'citysync_sink_batches_total'))
    expect(one(m, 'citysync_sink_batch_seconds_count')).toBe(batches)
    expect(one(m, 'citysync_sink_batch_seconds_sum')).toBeGreaterThan(0)
    // Histogram buckets are cumulative: +Inf holds every batch.
    expect(total(m, 'citysync_sink_batch_messages_bucket', { le: '+Inf' })).toBe(batches)
    const passageInserts = one(m, 'citysync_warehouse_insert_seconds_count', { table: 'parking_passage' })
    expect(passageInserts).toBeGreaterThan(0)
    expect(one(m, 'citysync_warehouse_insert_seconds_bucket', { table: 'parking_passage', le: '+Inf' })).toBe(passageInserts)
    expect(one(m, 'citysync_warehouse_insert_seconds_count', { table: 'ingest_log' })).toBeGreaterThan(0)

    // Consumer lag per topic-partition: nothing left, and the committed offset is every message of the topic.
    const passageTopic = { topic: 'citysync.parking.passage', partition: '0' }
    expect(one(m, 'citysync_kafka_consumer_lag', passageTopic)).toBe(0)
    expect(one(m, 'citysync_kafka_committed_offset', passageTopic)).toBe(one(m, 'citysync_sink_batch_messages_sum', { topic: 'citysync.parking.passage' }))
    for (const s of pick(m, 'citysync_kafka_consumer_lag')) expect(s.value, s.labels.topic).toBe(0)

    // Freshness per source and car park, from the cycle that ran: old-lots' car parks are late (their
    // passages are 8 hours old), while the source itself is fresh (its car parks' descriptions are read now).
    const results = new Map(e.quality.latest!.results.map((r) => [r.ctx.id, r]))
    for (const source of ['fresh-lots', 'old-lots']) {
      const r = results.get(source)!
      const v = r.verdict
      expect(pick(m, 'citysync_source_state', { source }).filter((s) => s.value === 1).map((s) => s.labels.state)).toEqual([v.state])
      expect(total(m, 'citysync_source_state', { source })).toBe(1)
      expect(one(m, 'citysync_source_data_age_seconds', { source })).toBe(v.eventAgeMs! / 1000)
      expect(one(m, 'citysync_source_arrival_age_seconds', { source })).toBe(v.arrivalAgeMs! / 1000)
      expect(one(m, 'citysync_source_delay_seconds', { source })).toBe(v.delayMs / 1000)
      expect(one(m, 'citysync_source_max_delay_seconds', { source })).toBe(7200)
      for (const [state, n] of Object.entries(r.entityCounts)) expect(one(m, 'citysync_source_entities', { source, state }), `${source} ${state}`).toBe(n)
    }
    expect(results.get('fresh-lots')!.verdict.state).toBe('OK')
    expect(one(m, 'citysync_source_entities', { source: 'old-lots', state: 'LATE' }) + one(m, 'citysync_source_entities', { source: 'old-lots', state: 'STALLED' })).toBe(2)
    const firing = await e.quality.store.firingAlerts()
    expect(firing.length).toBe(cycle.firing)
    for (const state of ['LATE', 'STALLED', 'STOPPED', 'SKEWED']) expect(one(m, 'citysync_alerts_firing', { state })).toBe(firing.filter((a) => a.state === state).length)
    expect(firing.every((a) => a.sourceId === 'old-lots')).toBe(true)

    // Alert deliveries per channel and outcome: what the receiver got.
    expect(webhook.requests.length).toBeGreaterThan(0)
    expect(one(m, 'citysync_alert_deliveries_total', { channel: 'webhook', outcome: 'delivered' })).toBe(webhook.requests.length)
    expect(pick(m, 'citysync_alert_deliveries_total', { outcome: 'failed' })).toEqual([])
    expect((webhook.requests[0]!.body as { alerts: { labels: Record<string, string> }[] }).alerts[0]!.labels.sourceId).toBe('old-lots')

    // The last backup, from its manifest.
    const mf: Manifest = manifest
    expect(one(m, 'citysync_backup_last_success_timestamp_seconds')).toBe(mf.finishedAt / 1000)
    expect(one(m, 'citysync_backup_last_duration_seconds')).toBe((mf.finishedAt - mf.startedAt) / 1000)
    expect(one(m, 'citysync_backup_last_size_bytes')).toBe(manifestFiles(mf).reduce((n, f) => n + f.bytes, 0))
    expect(one(m, 'citysync_backup_last_size_bytes')).toBeGreaterThan(0)
    expect(one(m, 'citysync_backup_last_warehouse_rows')).toBe(mf.warehouse.tables.reduce((n, t) => n + t.rows, 0))
    expect(one(m, 'citysync_backups_kept')).toBe(1)

    // The process itself, once.
    expect(pick(m, 'citysync_process_resident_memory_bytes')).toHaveLength(1)
  }, 180_000)
})

describe('GET /readyz and Kafka', () => {
  it('is not ready when KAFKA_BROKERS names brokers that do not answer, and says so quickly', async () => {
    const port = await freePort()
    const bus = new KafkaBus({ connection: kafkaConnection([`127.0.0.1:${port}`]), log: pino({ level: 'silent' }) })
    const app = await buildApp({ metadata: e.stores.metadata, warehouse: e.stores.warehouse, logger: pino({ level: 'silent' }), version: 'test', kafka: bus })
    try {
      const url = await app.listen({ port: 0, host: '127.0.0.1' })
      const t0 = Date.now()
      const res = await fetch(`${url}/readyz`)
      expect(Date.now() - t0).toBeLessThan(5_000)
      expect(res.status).toBe(503)
      const body = (await res.json()) as { status: string; checks: Record<string, string> }
      expect(body).toMatchObject({ status: 'not ready', checks: { warehouse: 'ok', metadata: 'ok' } })
      expect(body.checks.kafka).toMatch(/^down: /)
    } finally {
      await app.close()
      await bus.close()
    }
  })

  it('is ready with a broker that answers', async () => {
    if (!requireService('Kafka', await kafkaReachable(), `${KAFKA_BROKERS.join(',')}; npm run kafka:up`)) return
    const bus = new KafkaBus({ connection: kafkaConnection(KAFKA_BROKERS), log: pino({ level: 'silent' }) })
    const app = await buildApp({ metadata: e.stores.metadata, warehouse: e.stores.warehouse, logger: pino({ level: 'silent' }), version: 'test', kafka: bus })
    try {
      const url = await app.listen({ port: 0, host: '127.0.0.1' })
      const res = await fetch(`${url}/readyz`)
      expect(await res.json()).toEqual({ status: 'ready', checks: { warehouse: 'ok', metadata: 'ok', kafka: 'ok' } })
      expect(res.status).toBe(200)
    } finally {
      await app.close()
      await bus.close()
    }
  })
})
