// Kafka client comparison behind the bus's needs: kafkajs vs node-rdkafka.
//
//   npx tsx bench/kafka-clients.ts [messages=300000] [brokers=127.0.0.1:9092]
//
// Each client, in its own child process (so CPU and RSS are its own):
//  - produces `messages` realistic ParkingPassage events (Confluent-wire Avro,
//    ~300 bytes with key and headers) to a fresh 6-partition topic with the
//    settings the bus uses: idempotent, acks=all;
//  - consumes them all back in a fresh consumer group, manual commits.
// Prints messages/s and CPU seconds per stage.

import { execFileSync, spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Kafka as KafkaJs, logLevel } from 'kafkajs'
import Kafka from 'node-rdkafka'
import { SchemaCatalogue } from '../schemas/catalogue.ts'

const role = process.env.BENCH_ROLE
const messages = Number(process.argv[2] ?? 300_000)
const brokers = process.argv[3] ?? process.env.KAFKA_BROKERS ?? '127.0.0.1:9092'

interface Figures {
  client: string
  produceMsgPerS: number
  produceCpuS: number
  consumeMsgPerS: number
  consumeCpuS: number
  bytesPerMessage: number
  peakRssMb: number
}

function peakRssMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))
  return m ? Number(m[1]) / 1024 : 0
}

function cpuS(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start)
  return (d.user + d.system) / 1e6
}

function sampleMessages(): { key: string; value: Buffer; headers: Record<string, string> }[] {
  const cat = SchemaCatalogue.load()
  const out = []
  for (let i = 0; i < 1000; i++) {
    const sourceId = `hengqin-lots-${i % 40}`
    const value = cat.encode('ParkingPassage', {
      sourceId,
      eventId: randomUUID().replaceAll('-', '') + randomUUID().replaceAll('-', '').slice(0, 32),
      occurredAt: 1_790_000_000_000 + i * 1000,
      receivedAt: 1_790_000_000_500 + i * 1000,
      lotId: `HQ-${String(i % 500).padStart(4, '0')}`,
      recordNo: `R${20261122000000 + i}`,
      direction: i % 2 ? 'exit' : 'entry',
      gateId: `G${i % 4}`,
      plateKey: randomUUID().replaceAll('-', '') + randomUUID().replaceAll('-', ''),
      plateCipher: randomUUID().replaceAll('-', '') + randomUUID().replaceAll('-', '') + randomUUID().replaceAll('-', ''),
      plateMasked: '粤C·***45',
      plateType: 'blue',
      isBackfill: false,
      feeCents: i % 2 ? 1500 : null,
      entryAt: i % 2 ? 1_789_999_000_000 : null,
    })
    out.push({ key: sourceId, value, headers: { 'citysync-source': sourceId, 'citysync-schema': '3', 'citysync-trace': randomUUID() } })
  }
  return out
}

function createTopic(topic: string): void {
  const cache = fileURLToPath(new URL('../infra/kafka/.cache/lib/*', import.meta.url))
  execFileSync('java', ['-cp', cache, 'org.apache.kafka.tools.TopicCommand', '--bootstrap-server', brokers, '--create', '--topic', topic, '--partitions', '6', '--replication-factor', '1'], { stdio: 'ignore' })
}

async function benchKafkajs(topic: string): Promise<Figures> {
  const samples = sampleMessages()
  const kafka = new KafkaJs({ clientId: 'bench', brokers: brokers.split(','), logLevel: logLevel.NOTHING })
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  let cpu = process.cpuUsage()
  let t0 = performance.now()
  const batch = 2000
  // Several sends in flight, as a connector publishing pages would have.
  const inflight: Promise<unknown>[] = []
  for (let i = 0; i < messages; i += batch) {
    const msgs = []
    for (let j = i; j < Math.min(messages, i + batch); j++) {
      const s = samples[j % samples.length]!
      msgs.push({ key: s.key, value: s.value, headers: s.headers })
    }
    inflight.push(producer.send({ topic, acks: -1, messages: msgs }))
    if (inflight.length >= 8) await inflight.shift()
  }
  await Promise.all(inflight)
  const produceS = (performance.now() - t0) / 1000
  const produceCpuS = cpuS(cpu)
  await producer.disconnect()

  const consumer = kafka.consumer({ groupId: `bench-${randomUUID()}`, maxBytes: 16 * 2 ** 20 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  let seen = 0
  cpu = process.cpuUsage()
  t0 = performance.now()
  await new Promise<void>((resolve) => {
    void consumer.run({
      autoCommit: false,
      eachBatch: async (payload) => {
        const b = payload.batch
        for (const m of b.messages) {
          seen += m.value?.length ? 1 : 0
          payload.resolveOffset(m.offset)
        }
        await consumer.commitOffsets([{ topic: b.topic, partition: b.partition, offset: String(Number(b.lastOffset()) + 1) }])
        await payload.heartbeat()
        if (seen >= messages) resolve()
      },
    })
  })
  const consumeS = (performance.now() - t0) / 1000
  const consumeCpuS = cpuS(cpu)
  await consumer.disconnect()
  return {
    client: 'kafkajs 2.2.4',
    produceMsgPerS: messages / produceS,
    produceCpuS,
    consumeMsgPerS: messages / consumeS,
    consumeCpuS,
    bytesPerMessage: samples[0]!.value.length + samples[0]!.key.length + 80,
    peakRssMb: peakRssMb(),
  }
}

async function benchRdkafka(topic: string): Promise<Figures> {
  const samples = sampleMessages()
  const producer = new Kafka.Producer(
    {
      'metadata.broker.list': brokers,
      'enable.idempotence': true,
      'linger.ms': 5,
      'batch.num.messages': 10000,
      'queue.buffering.max.messages': 200000,
      dr_cb: true,
    },
    { 'request.required.acks': -1 },
  )
  await new Promise<void>((resolve, reject) => {
    producer.once('ready', () => resolve())
    producer.once('event.error', reject)
    producer.connect()
  })
  producer.setPollInterval(10)
  let acked = 0
  let failed = 0
  let allAcked: () => void = () => undefined
  const done = new Promise<void>((r) => (allAcked = r))
  producer.on('delivery-report', (err) => {
    if (err) failed++
    else acked++
    if (acked + failed >= messages) allAcked()
  })
  let cpu = process.cpuUsage()
  let t0 = performance.now()
  for (let i = 0; i < messages; i++) {
    const s = samples[i % samples.length]!
    const headers = Object.entries(s.headers).map(([k, v]) => ({ [k]: v }))
    for (;;) {
      try {
        producer.produce(topic, null, s.value, s.key, Date.now(), undefined, headers)
        break
      } catch {
        // Local queue full: let delivery reports drain it.
        await new Promise((r) => setTimeout(r, 5))
      }
    }
  }
  await done
  const produceS = (performance.now() - t0) / 1000
  const produceCpuS = cpuS(cpu)
  if (failed) throw new Error(`${failed} deliveries failed`)
  await new Promise<void>((r) => producer.disconnect(() => r()))

  const consumer = new Kafka.KafkaConsumer(
    { 'metadata.broker.list': brokers, 'group.id': `bench-${randomUUID()}`, 'enable.auto.commit': false, 'fetch.wait.max.ms': 100, 'queued.min.messages': 200000 },
    { 'auto.offset.reset': 'earliest' },
  )
  await new Promise<void>((resolve, reject) => {
    consumer.once('ready', () => resolve())
    consumer.once('event.error', reject)
    consumer.connect()
  })
  consumer.subscribe([topic])
  let seen = 0
  cpu = process.cpuUsage()
  t0 = performance.now()
  while (seen < messages) {
    const got = await new Promise<Kafka.Message[]>((resolve, reject) =>
      consumer.consume(5000, (err, ms) => (err ? reject(new Error(err.message)) : resolve(ms))),
    )
    if (got.length === 0) continue
    const last = new Map<number, number>()
    for (const m of got) {
      seen += m.value?.length ? 1 : 0
      last.set(m.partition, m.offset)
    }
    consumer.commit([...last].map(([partition, offset]) => ({ topic, partition, offset: offset + 1 })))
  }
  const consumeS = (performance.now() - t0) / 1000
  const consumeCpuS = cpuS(cpu)
  await new Promise<void>((r) => consumer.disconnect(() => r()))
  return {
    client: `node-rdkafka (librdkafka ${Kafka.librdkafkaVersion})`,
    produceMsgPerS: messages / produceS,
    produceCpuS,
    consumeMsgPerS: messages / consumeS,
    consumeCpuS,
    bytesPerMessage: samples[0]!.value.length + samples[0]!.key.length + 80,
    peakRssMb: peakRssMb(),
  }
}

if (role) {
  const topic = process.env.BENCH_TOPIC!
  const figures = role === 'kafkajs' ? await benchKafkajs(topic) : await benchRdkafka(topic)
  process.stdout.write(JSON.stringify(figures) + '\n')
  process.exit(0)
} else {
  console.log(`${messages} messages per client, broker ${brokers}, 6 partitions, idempotent producer, acks=all`)
  for (const client of ['kafkajs', 'rdkafka']) {
    const topic = `bench-clients-${client}-${Date.now()}`
    createTopic(topic)
    const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), String(messages), brokers], {
      env: { ...process.env, BENCH_ROLE: client, BENCH_TOPIC: topic },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const f = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Figures
    console.log(
      `${f.client.padEnd(34)} produce ${Math.round(f.produceMsgPerS).toLocaleString('en')} msg/s (${f.produceCpuS.toFixed(1)} CPU s)` +
        `  consume ${Math.round(f.consumeMsgPerS).toLocaleString('en')} msg/s (${f.consumeCpuS.toFixed(1)} CPU s)` +
        `  ~${f.bytesPerMessage} B/msg  peak RSS ${Math.round(f.peakRssMb)} MB`,
    )
    execFileSync('java', ['-cp', fileURLToPath(new URL('../infra/kafka/.cache/lib/*', import.meta.url)), 'org.apache.kafka.tools.TopicCommand', '--bootstrap-server', brokers, '--delete', '--topic', topic], { stdio: 'ignore' })
  }
}
