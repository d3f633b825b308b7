import { randomUUID } from 'node:crypto'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KAFKA_BROKERS, kafkaReachable, requireService } from '../../infra/test/services.ts'
import { type BatchJournal, type BatchRange, type IncomingBatch, type OutgoingMessage } from './bus.ts'
import { kafkaConnection } from './kafka-config.ts'
import { KafkaBus } from './kafka-bus.ts'
import { ensureTopics } from './topics.ts'

// The Kafka bus against the real broker (npm run kafka:up), each run in its
// own topic namespace so runs never see each other's messages.

const available = await kafkaReachable()
const run = requireService('Kafka', available, `no broker at ${KAFKA_BROKERS.join(',')}; start one with npm run kafka:up`)
const prefix = `t${randomUUID().slice(0, 8)}.`
const log = pino({ level: 'warn' })
const TOPIC = 'citysync.test.events'

function bus(): KafkaBus {
  return new KafkaBus({ connection: kafkaConnection(KAFKA_BROKERS, { KAFKA_TOPIC_PREFIX: prefix }), log })
}

function messages(from: number, n: number, key = 'src-a'): OutgoingMessage[] {
  return Array.from({ length: n }, (_, i) => ({
    key,
    value: Buffer.from(`event-${from + i}`),
    headers: { 'citysync-source-id': key, 'citysync-trace-id': 'trace-1' },
  }))
}

class MemoryJournal implements BatchJournal {
  readonly ranges: BatchRange[] = []
  planned(r: Omit<BatchRange, 'lastOffset'>): Promise<number | undefined> {
    const hit = this.ranges.filter((x) => x.topic === r.topic && x.partition === r.partition && x.firstOffset === r.firstOffset && x.group === r.group)
    return Promise.resolve(hit.at(-1)?.lastOffset)
  }
  record(r: BatchRange): Promise<void> {
    this.ranges.push(r)
    return Promise.resolve()
  }
}

describe.runIf(run)('Kafka bus on a real broker', () => {
  const producer = bus()
  beforeAll(async () => {
    const admin = producer.client.admin()
    await admin.connect()
    await ensureTopics(admin, [{ name: TOPIC, partitions: 3, retentionMs: 3_600_000 }], 1, prefix)
    const topics = await admin.listTopics()
    expect(topics).toContain(prefix + TOPIC)
    await admin.disconnect()
  })
  afterAll(async () => {
    await producer.close()
    const admin = producer.client.admin()
    await admin.connect()
    await admin.deleteTopics({ topics: [prefix + TOPIC] }).catch(() => undefined)
    await admin.disconnect()
  })

  it('creates topics idempotently and grows partitions, never shrinks', async () => {
    const admin = producer.client.admin()
    await admin.connect()
    try {
      const again = await ensureTopics(admin, [{ name: TOPIC, partitions: 3, retentionMs: 3_600_000 }], 1, prefix)
      expect(again).toEqual([{ name: prefix + TOPIC, action: 'up to date', partitions: 3 }])
    } finally {
      await admin.disconnect()
    }
  })

  it('delivers every message once with key and headers, in order per key, and resumes after the committed offset', async () => {
    const group = `g-${randomUUID()}`
    await Promise.all([producer.publish(TOPIC, messages(0, 3000, 'src-a')), producer.publish(TOPIC, messages(0, 2000, 'src-b'))])

    const seen: { key: string; value: string; headers: Record<string, string> }[] = []
    const batches: IncomingBatch[] = []
    const journal = new MemoryJournal()
    const consumer = bus()
    const stop = new AbortController()
    const sub = consumer.subscribe({ group, topics: [TOPIC], maxBatchSize: 700, maxWaitMs: 100, signal: stop.signal, journal }, (b) => {
      batches.push(b)
      for (const m of b.messages) seen.push({ key: m.key, value: m.value.toString(), headers: m.headers })
      return Promise.resolve()
    })
    await waitUntil(() => seen.length >= 5000)
    stop.abort()
    await sub.done
    await consumer.close()

    expect(seen).toHaveLength(5000)
    for (const key of ['src-a', 'src-b']) {
      const values = seen.filter((s) => s.key === key).map((s) => Number(s.value.slice('event-'.length)))
      expect(values).toEqual(Array.from({ length: key === 'src-a' ? 3000 : 2000 }, (_, i) => i))
    }
    expect(seen[0]!.headers).toEqual({ 'citysync-source-id': seen[0]!.key, 'citysync-trace-id': 'trace-1' })
    expect(Math.max(...batches.map((b) => b.messages.length))).toBeLessThanOrEqual(700)
    expect(batches.every((b) => b.topic === TOPIC && b.scope.endsWith(prefix))).toBe(true)
    // Every batch was journalled before it was handled, with its exact range.
    expect(journal.ranges.map((r) => [r.partition, r.firstOffset, r.lastOffset])).toEqual(
      batches.map((b) => [b.partition, b.firstOffset, b.lastOffset]),
    )

    // Same group again: only what was published since.
    await producer.publish(TOPIC, messages(3000, 10, 'src-a'))
    const later: string[] = []
    const c2 = bus()
    const stop2 = new AbortController()
    const sub2 = c2.subscribe({ group, topics: [TOPIC], maxBatchSize: 700, maxWaitMs: 100, signal: stop2.signal }, (b) => {
      for (const m of b.messages) later.push(m.value.toString())
      return Promise.resolve()
    })
    await waitUntil(() => later.length >= 10)
    await new Promise((r) => setTimeout(r, 500))
    stop2.abort()
    await sub2.done
    await c2.close()
    expect(later).toEqual(Array.from({ length: 10 }, (_, i) => `event-${3000 + i}`))
  })

  it('re-cuts a batch exactly as a journalled earlier attempt did, and retries a failing handler without committing', async () => {
    const group = `g-${randomUUID()}`
    const key = `src-${randomUUID().slice(0, 6)}`
    await producer.publish(TOPIC, messages(0, 1000, key))
    // Which partition does this key live on, and from which offset?
    const probe = await firstBatchOf(group + '-probe', key)
    const journal = new MemoryJournal()
    // An earlier owner began a batch of 137 messages at the group's start position and died.
    journal.ranges.push({ group, scope: probe.scope, topic: TOPIC, partition: probe.partition, firstOffset: 0, lastOffset: 136 })

    const handled: IncomingBatch[] = []
    let failures = 0
    const consumer = bus()
    const stop = new AbortController()
    const sub = consumer.subscribe({ group, topics: [TOPIC], maxBatchSize: 5000, maxWaitMs: 100, signal: stop.signal, journal }, (b) => {
      if (b.partition === probe.partition && b.firstOffset === 137 && failures < 2) {
        failures++
        return Promise.reject(new Error('warehouse unavailable'))
      }
      handled.push(b)
      return Promise.resolve()
    })
    await waitUntil(() => handled.some((b) => b.partition === probe.partition && b.firstOffset === 137))
    stop.abort()
    await sub.done
    await consumer.close()
    const mine = handled.filter((b) => b.partition === probe.partition)
    expect(mine[0]).toMatchObject({ firstOffset: 0, lastOffset: 136 })
    expect(mine[1]!.firstOffset).toBe(137)
    expect(failures).toBe(2)
    // Nothing handled twice.
    const offsets = mine.flatMap((b) => b.messages.map((m) => m.offset))
    expect(new Set(offsets).size).toBe(offsets.length)
  })

  it('two members of one group share the partitions', async () => {
    const group = `g-${randomUUID()}`
    const got = new Map<string, Set<number>>()
    const members = [bus(), bus()]
    const stop = new AbortController()
    const subs = members.map((m, i) =>
      m.subscribe({ group, topics: [TOPIC], maxBatchSize: 1000, maxWaitMs: 100, signal: stop.signal }, (b) => {
        const s = got.get(`m${i}`) ?? new Set<number>()
        s.add(b.partition)
        got.set(`m${i}`, s)
        return Promise.resolve()
      }),
    )
    await new Promise((r) => setTimeout(r, 4000)) // both joined
    for (let k = 0; k < 12; k++) await producer.publish(TOPIC, messages(0, 50, `share-${k}`))
    await waitUntil(() => got.size === 2, 30_000)
    stop.abort()
    await Promise.all(subs.map((s) => s.done))
    await Promise.all(members.map((m) => m.close()))
    const [a, b] = [got.get('m0')!, got.get('m1')!]
    expect([...a].some((p) => b.has(p))).toBe(false)
  })
})

async function firstBatchOf(group: string, key: string): Promise<IncomingBatch> {
  const c = bus()
  const stop = new AbortController()
  let found: IncomingBatch | undefined
  const sub = c.subscribe({ group, topics: [TOPIC], maxBatchSize: 10_000, maxWaitMs: 100, signal: stop.signal }, (b) => {
    if (b.messages.some((m) => m.key === key)) found = b
    return Promise.resolve()
  })
  await waitUntil(() => found !== undefined)
  stop.abort()
  await sub.done
  await c.close()
  return found!
}

async function waitUntil(cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 50))
  }
}
