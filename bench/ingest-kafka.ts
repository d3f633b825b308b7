// Connector → Kafka → pipeline → ClickHouse, distributed mode, on this machine.
//
//   npm run kafka:up
//   npx tsx bench/ingest-kafka.ts [events=2000000] [lots=500] [brokers=127.0.0.1:9092]
//
// Real processes, as in production: a simulated vendor platform, a ClickHouse
// HTTP endpoint (chDB), `citysync connect --source` and `citysync pipeline`.
// Prints the end-to-end rate, each stage's rate (connector until everything is
// in Kafka; pipeline until everything is in ClickHouse), peak RSS and CPU per
// process, and, in the same run, two ceilings for the same data: the broker's
// raw consume rate measured with kcat, and the raw ClickHouse insert rate of
// the landed rows through the same HTTP endpoint.

import { execFileSync, spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Kafka, logLevel } from 'kafkajs'
import { REPO, spawnTs, type Spawned, startWarehouseProcess } from '../infra/test/processes.ts'
import { type AvroBlock } from '../pipelines/warehouse/avro-container.ts'
import { ServerWarehouse } from '../pipelines/warehouse/server-warehouse.ts'
import { SchemaCatalogue, WIRE_HEADER_SIZE, wireHeader } from '../schemas/catalogue.ts'
import { procStat, type ProcStat, threadCpu, threadCpuDelta } from './proc.ts'

const events = Number(process.argv[2] ?? 2_000_000)
const lots = Number(process.argv[3] ?? 500)
const brokers = process.argv[4] ?? process.env.KAFKA_BROKERS ?? '127.0.0.1:9092'
// Checked first: the broker ceiling is measured with kcat after the run.
if (spawnSync('bash', ['-c', 'command -v kcat']).status !== 0) {
  console.error('kcat is not installed: the broker ceiling needs it (apt-get install kcat)')
  process.exit(2)
}
const prefix = `bench${randomUUID().slice(0, 6)}.`
const dataDir = mkdtempSync(join(tmpdir(), 'citysync-bench-kafka-'))
const procs: Spawned[] = []

function env(whUrl: string): NodeJS.ProcessEnv {
  const { DATABASE_URL: _db, ...rest } = process.env
  return {
    ...rest,
    CITYSYNC_DATA_DIR: dataDir,
    CLICKHOUSE_URL: whUrl,
    KAFKA_BROKERS: brokers,
    KAFKA_TOPIC_PREFIX: prefix,
    CITYSYNC_MASTER_KEY: 'bench-master-key-0123456789abcdef',
    LOG_LEVEL: 'info',
  }
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en')

try {
  const sim = spawnTs('connectors/parking-lots/simulator-main.ts', ['--port', '0', '--seed', '2026', '--lots', String(lots), '--events-per-minute', '2000', '--bulk', String(events)])
  procs.push(sim)
  const gen = await sim.waitFor(/generated (\d+) passages and (\d+) space reports/, 600_000)
  const simUrl = (await sim.waitFor(/at (http:\/\/[^/\s]+)/))[1]!
  const passages = Number(gen[1])
  const spaces = Number(gen[2])
  const expected = passages + spaces + lots
  console.log(`upstream: ${fmt(passages)} passages, ${fmt(spaces)} space reports, ${lots} lots (simulator in its own process)`)

  const warehouse = await startWarehouseProcess(join(dataDir, 'warehouse'))
  procs.push(warehouse.proc)
  const e = env(warehouse.url)
  const cli = (args: string[]): string => execFileSync(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { cwd: REPO, env: e, encoding: 'utf8' })
  cli(['migrate'])
  writeFileSync(join(dataDir, 'source.json'), JSON.stringify({ id: 'bench-lots', kind: 'parking-lots', name: 'bench', schedule: { every: '1h' }, config: { baseUrl: simUrl, pageSize: 1000 } }))
  cli(['sources', 'add', join(dataDir, 'source.json')])
  cli(['sources', 'deploy', 'bench-lots'])

  const pipeline = spawnTs('cli/main.ts', ['pipeline'], e, process.env.BENCH_PROFILE === 'pipeline' ? ['--cpu-prof', '--cpu-prof-dir=profiles'] : [])
  procs.push(pipeline)
  await pipeline.waitFor(/pipeline ready/)

  const kafka = new Kafka({ clientId: 'bench', brokers: brokers.split(','), logLevel: logLevel.NOTHING })
  const admin = kafka.admin()
  await admin.connect()
  const topics = ['citysync.parking.passage', 'citysync.parking.occupancy', 'citysync.parking.lot'].map((t) => prefix + t)
  const inKafka = async (): Promise<number> => {
    let n = 0
    for (const t of topics) for (const p of await admin.fetchTopicOffsets(t)) n += Number(p.high)
    return n
  }
  const wh = new ServerWarehouse(warehouse.url)
  const landed = async (): Promise<number> => {
    const [r] = await wh.query<{ n: number }>(
      `SELECT (SELECT count() FROM parking_passage WHERE sourceId = 'bench-lots') + (SELECT count() FROM parking_occupancy WHERE sourceId = 'bench-lots') + (SELECT count() FROM parking_lot WHERE sourceId = 'bench-lots') AS n`,
    )
    return r!.n
  }

  // The broker started by `npm run kafka:up` (a remote cluster has no pid here) and the
  // simulator are on the same two cores: their CPU is part of the budget.
  let brokerPid: number | undefined
  try {
    brokerPid = Number(readFileSync(join(REPO, 'infra/kafka/.cache/run/kafka.pid'), 'utf8').trim())
  } catch {
    brokerPid = undefined
  }
  const others = [
    ['broker', brokerPid],
    ['simulator', sim.child.pid],
  ] as const
  const othersCpu0 = new Map(others.map(([name, pid]) => [name, pid ? (procStat(pid)?.cpuS ?? NaN) : NaN]))
  // Pipeline and warehouse started (and migrated) before the clock: their CPU so far is not the run's.
  const startedCpu = [pipeline, warehouse.proc].reduce((n, p) => n + (p.child.pid ? (procStat(p.child.pid)?.cpuS ?? 0) : 0), 0)
  const t0 = performance.now()
  // BENCH_PROFILE=connector|pipeline writes a CPU profile of that process to ./profiles.
  const prof = (role: string): string[] => (process.env.BENCH_PROFILE === role ? ['--cpu-prof', '--cpu-prof-dir=profiles'] : [])
  const connector = spawnTs('cli/main.ts', ['connect', '--source', 'bench-lots'], e, prof('connector'))
  procs.push(connector)
  const stats = new Map<string, ProcStat>()
  const threads = new Map<string, Map<string, number>>()
  let producedAt = 0
  let lastLanded = 0
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000))
    for (const [name, p] of [['connector', connector], ['pipeline', pipeline], ['warehouse', warehouse.proc]] as const) {
      const s = p.child.pid ? procStat(p.child.pid) : undefined
      if (s) stats.set(name, s)
      if (p.child.pid) {
        const t = threadCpu(p.child.pid)
        if (t.size > 0) threads.set(name, t)
      }
    }
    const k = await inKafka()
    if (!producedAt && k >= expected) producedAt = performance.now()
    const l = await landed()
    process.stderr.write(`\r  in Kafka ${fmt(k)}/${fmt(expected)}   landed ${fmt(l)} (${fmt(l - lastLanded)} ev/s)     `)
    lastLanded = l
    if (l >= expected) break
  }
  const landedAt = performance.now()
  process.stderr.write('\n')
  const total = (landedAt - t0) / 1000
  const produceS = (producedAt - t0) / 1000
  console.log(`end to end: ${fmt(expected / total)} events/s (${fmt(expected)} events in ${total.toFixed(1)} s, connector start → last row in ClickHouse)`)
  console.log(`  connector → Kafka: ${fmt(expected / produceS)} events/s (all acknowledged after ${produceS.toFixed(1)} s)`)
  console.log(`  Kafka → ClickHouse: landing kept up until ${total.toFixed(1)} s (${((total - produceS)).toFixed(1)} s after the last event was in Kafka)`)
  const [b] = await wh.query<{ n: number; rows: number; maxRows: number }>(
    `SELECT count() AS n, avg(lastOffset - firstOffset + 1) AS rows, max(lastOffset - firstOffset + 1) AS maxRows FROM sink_batches FINAL WHERE topic = 'citysync.parking.passage'`,
  )
  console.log(`  sink batches of the passage topic: ${fmt(b!.n)}, ${fmt(b!.rows)} messages on average, largest ${fmt(b!.maxRows)}`)
  for (const [name, s] of stats) {
    console.log(`  ${name.padEnd(9)} peak RSS ${fmt(s.peakRssMb)} MB, CPU ${s.cpuS.toFixed(1)} s: ${threadCpuDelta(new Map<string, number>(), threads.get(name) ?? new Map<string, number>(), 0.3).join(', ')}`)
  }

  let allCpu = -startedCpu
  for (const s of stats.values()) allCpu += s.cpuS
  for (const [name, pid] of others) {
    const used = (pid ? (procStat(pid)?.cpuS ?? NaN) : NaN) - othersCpu0.get(name)!
    if (Number.isFinite(used)) {
      allCpu += used
      console.log(`  ${name.padEnd(9)} CPU ${used.toFixed(1)} s during the run`)
    }
  }
  console.log(
    `  CPU per event, all processes above: ${((allCpu * 1e6) / expected).toFixed(1)} µs (two cores give ${((2 * 1e6) / (expected / total)).toFixed(1)} µs per event at this rate, ${((2 * 1e6) / 50_000).toFixed(0)} µs at 50k events/s)`,
  )

  // Ceiling 1: the broker's raw consume rate for the same passage topic, with kcat.
  const kcat = spawnSync('bash', ['-c', `time -p kcat -C -b ${brokers} -t ${prefix}citysync.parking.passage -o beginning -e -q -f '%o\\n' | wc -l`], { encoding: 'utf8' })
  const kcatCount = Number(kcat.stdout.trim())
  const kcatS = Number(/real ([\d.]+)/.exec(kcat.stderr)?.[1] ?? NaN)
  const kafkaCeiling = kcatCount / kcatS
  console.log(`ceiling, broker consume (kcat): ${fmt(kafkaCeiling)} messages/s (${fmt(kcatCount)} passages in ${kcatS.toFixed(1)} s)`)

  // Ceiling 2: raw ClickHouse inserts of the same rows through the same endpoint, as
  // the sink sends them: the passage messages' Avro bodies, read back from Kafka
  // with kcat, in containers of 10k rows (a full sink batch of one partition).
  // Only the inserts are timed.
  await wh.command('CREATE TABLE IF NOT EXISTS passage_ceiling AS parking_passage')
  const sample = Math.min(passages, 500_000)
  const dump = spawnSync('kcat', ['-C', '-b', brokers, '-t', `${prefix}citysync.parking.passage`, '-o', 'beginning', '-c', String(sample), '-e', '-q', '-f', '%S\n%s'], { maxBuffer: 2 ** 30 })
  const values: Buffer[] = []
  for (let at = 0; at < dump.stdout.length; ) {
    const nl = dump.stdout.indexOf(10, at)
    const size = Number(dump.stdout.toString('latin1', at, nl))
    values.push(dump.stdout.subarray(nl + 1, nl + 1 + size))
    at = nl + 1 + size
  }
  const catalogue = SchemaCatalogue.load()
  const blocks: AvroBlock[] = []
  for (let i = 0; i < values.length; i += 10_000) {
    const datums = values.slice(i, i + 10_000).map((v) => v.subarray(WIRE_HEADER_SIZE))
    const writer = catalogue.writerSchema(wireHeader(values[i]!).schemaId)!
    blocks.push({ schema: writer.text, columns: writer.fields, datums, bytes: datums.reduce((n, d) => n + d.length, 0) })
  }
  const ti = performance.now()
  for (const [i, b] of blocks.entries()) await wh.insertAvro('passage_ceiling', b, { dedupToken: `ceiling-${i}` })
  const insertS = (performance.now() - ti) / 1000
  const chCeiling = values.length / insertS
  console.log(`ceiling, ClickHouse insert (Avro, 10k rows per insert, same endpoint): ${fmt(chCeiling)} rows/s (${fmt(values.length)} of the passages in ${insertS.toFixed(1)} s)`)
  const lower = Math.min(kafkaCeiling, chCeiling)
  console.log(`end to end is ${((100 * expected) / total / lower).toFixed(0)}% of the lower ceiling (${fmt(lower)}/s)`)

  await connector.stop()
  await pipeline.stop()
  await admin.deleteTopics({ topics: [...topics, ...topics.map((t) => `${t}.dlq`)] }).catch(() => undefined)
  await admin.disconnect()
  await wh.close()
} finally {
  await Promise.all(procs.map((p) => p.kill9()))
  rmSync(dataDir, { recursive: true, force: true })
}
