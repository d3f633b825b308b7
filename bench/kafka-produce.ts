// What one node-rdkafka produce call costs, by what it carries.
//
//   npm run kafka:up
//   npx tsx bench/kafka-produce.ts [messages=300000] [brokers=127.0.0.1:9092]
//
// Each variant runs in its own child process, on a fresh 6-partition topic,
// with the bus's producer settings (idempotent, acks=all, linger 5 ms): the
// same 300-byte value, with and without the four headers the publisher sets,
// the per-message opaque the bus uses to find a message's publish call, and
// the delivery report. Prints CPU of all threads per message, and messages/s.

import { execFileSync, spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import RdKafka from 'node-rdkafka'

const VARIANTS = {
  'key, 4 headers, opaque, delivery report (as the bus calls it)': { headers: true, opaque: true, reports: true },
  'key, 4 headers, delivery report': { headers: true, opaque: false, reports: true },
  'key, opaque, delivery report': { headers: false, opaque: true, reports: true },
  'key, delivery report': { headers: false, opaque: false, reports: true },
  'key only, no delivery report': { headers: false, opaque: false, reports: false },
} as const
type Variant = keyof typeof VARIANTS

const messages = Number(process.argv[2] ?? 300_000)
const brokers = process.argv[3] ?? process.env.KAFKA_BROKERS ?? '127.0.0.1:9092'
const variant = process.env.BENCH_VARIANT as Variant | undefined

if (variant === undefined) {
  console.log(`${messages} messages of 300 bytes per variant, each in its own process`)
  const names = Object.keys(VARIANTS)
  // BENCH_REVERSE=1 runs them in the opposite order, to tell order effects from costs.
  if (process.env.BENCH_REVERSE === '1') names.reverse()
  for (const name of names) {
    const run = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), String(messages), brokers], {
      env: { ...process.env, BENCH_VARIANT: name },
      encoding: 'utf8',
    })
    if (run.status !== 0) throw new Error(`${name}: ${run.stderr}`)
    console.log(`${name}: ${run.stdout.trim()}`)
  }
} else {
  const { headers, opaque, reports } = VARIANTS[variant]
  const topic = `bench-produce-${randomUUID().slice(0, 8)}`
  const lib = fileURLToPath(new URL('../infra/kafka/.cache/lib/*', import.meta.url))
  execFileSync('java', ['-cp', lib, 'org.apache.kafka.tools.TopicCommand', '--bootstrap-server', brokers, '--create', '--topic', topic, '--partitions', '6', '--replication-factor', '1'], { stdio: 'ignore' })
  const producer = new RdKafka.Producer(
    {
      'metadata.broker.list': brokers,
      'enable.idempotence': true,
      'linger.ms': 5,
      'batch.num.messages': 10_000,
      'queue.buffering.max.messages': 100_000,
      'queue.buffering.max.kbytes': 64 * 1024,
      dr_cb: reports,
    },
    { 'request.required.acks': -1 },
  )
  await new Promise<void>((resolve, reject) => producer.connect({}, (err) => (err ? reject(new Error(err.message)) : resolve())))
  producer.setPollInterval(10)
  let reported = 0
  let allReported!: () => void
  const done = new Promise<void>((resolve) => (allReported = resolve))
  producer.on('delivery-report', () => {
    if (++reported === messages) allReported()
  })
  const value = Buffer.alloc(300, 7)
  const key = 'hengqin-lots-1'
  const keyBytes = Buffer.from(key)
  const trace = randomUUID()
  const handle = { remaining: messages }
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  for (let i = 0; i < messages; i++) {
    for (;;) {
      try {
        if (headers) {
          const h: RdKafka.MessageHeader[] = [{ 'citysync-source-id': key }, { 'citysync-schema-id': '3' }, { 'citysync-trace-id': trace }, { 'citysync-content-hash': `k${i % 977}:q${i % 131}` }]
          producer.produce(topic, null, value, key, Date.now(), opaque ? handle : undefined, h)
        } else if (opaque) producer.produce(topic, null, value, key, Date.now(), handle)
        else producer.produce(topic, null, value, keyBytes, Date.now())
        break
      } catch {
        await new Promise((r) => setTimeout(r, 5)) // local queue full
      }
    }
  }
  if (reports) await done
  else await new Promise<void>((resolve) => producer.flush(60_000, () => resolve()))
  const cpu = process.cpuUsage(cpu0)
  const seconds = (performance.now() - t0) / 1000
  console.log(`${((cpu.user + cpu.system) / messages).toFixed(1)} µs CPU per message (all threads), ${Math.round(messages / seconds).toLocaleString('en')} messages/s`)
  producer.disconnect()
}
