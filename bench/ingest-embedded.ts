// Connector → landed rows, embedded mode, on this machine.
//
//   npx tsx bench/ingest-embedded.ts [events=1000000] [lots=500]
//
// A simulated vendor platform, in its own process as a real upstream would be,
// serves `events` passage records (plus its free-space reports and lot list)
// over HTTP; a deployed parking-lots
// source reads them through the full pipeline (map, normalise, plate
// protection, Avro, in-process bus, sink, chDB). Prints throughput and peak RSS.

import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { loadConfig } from '../lib/config.ts'
import { startEmbedded } from '../cli/embedded.ts'
import { procStat, threadCpu, threadCpuDelta } from './proc.ts'

const events = Number(process.argv[2] ?? 1_000_000)
const lots = Number(process.argv[3] ?? 500)

const sim = spawn(
  process.execPath,
  ['--import', 'tsx', 'connectors/parking-lots/simulator-main.ts', '--port', '0', '--seed', '2026', '--lots', String(lots), '--events-per-minute', '2000', '--bulk', String(events)],
  { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'inherit'] },
)
const { passages, spaces, simUrl } = await new Promise<{ passages: number; spaces: number; simUrl: string }>((resolve, reject) => {
  let out = ''
  sim.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString()
    const gen = /generated (\d+) passages and (\d+) space reports/.exec(out)
    const url = /at (http:\/\/[^/\s]+)/.exec(out)
    if (gen && url) resolve({ passages: Number(gen[1]), spaces: Number(gen[2]), simUrl: url[1]! })
  })
  sim.once('exit', (code) => reject(new Error(`simulator exited with ${code}: ${out}`)))
})
const expected = passages + spaces + lots
console.log(`upstream: ${passages} passages, ${spaces} space reports, ${lots} lots, served by a separate process`)

const dataDir = mkdtempSync(join(tmpdir(), 'citysync-bench-'))
const cfg = { ...loadConfig({ CITYSYNC_DATA_DIR: dataDir }), port: 0 }
process.env.CITYSYNC_MASTER_KEY = 'bench-master-key-0123456789abcdef'
const e = await startEmbedded({ cfg, demo: false, log: pino({ level: 'warn' }) })
const rssBefore = process.memoryUsage().rss / 2 ** 20

await e.stores.metadata.sources.add({
  id: 'bench-lots',
  kind: 'parking-lots',
  name: 'bench',
  operator: null,
  district: null,
  timezone: 'Asia/Shanghai',
  schedule: { every: '1h' },
  freshness: { maxDelay: '2h' },
  config: { baseUrl: simUrl, pageSize: 1000 },
})
const t0 = performance.now()
const cpuS = (pid: number | 'self'): number => procStat(pid)?.cpuS ?? NaN
const cpu0 = { self: cpuS('self'), sim: cpuS(sim.pid!) }
const threads0 = threadCpu('self')
await e.stores.metadata.sources.setDesiredState('bench-lots', 'deployed', 'bench')
await e.manager.reconcile()

let last = 0
let heapPeak = 0
const progress = setInterval(() => {
  heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed)
  const landed = e.sink.stats.landed
  process.stderr.write(`\r  landed ${landed}/${expected}  (${Math.round((landed - last) / 1)} ev/s, RSS ${Math.round(process.memoryUsage().rss / 2 ** 20)} MB)   `)
  last = landed
}, 1000)
while (e.sink.stats.landed + e.sink.stats.deadLettered < expected) await new Promise((r) => setTimeout(r, 20))
const seconds = (performance.now() - t0) / 1000
const cpu = { self: cpuS('self') - cpu0.self, sim: cpuS(sim.pid!) - cpu0.sim }
const threads = threadCpuDelta(threads0, threadCpu('self'))
clearInterval(progress)
process.stderr.write('\n')

const [check] = await e.stores.warehouse.query<{ n: number }>(`SELECT count() AS n FROM parking_passage WHERE sourceId = 'bench-lots'`)
const peak = procStat('self')!.peakRssMb
console.log(`landed: ${e.sink.stats.landed} rows (${check!.n} passages in ClickHouse), dead-lettered ${e.sink.stats.deadLettered}, batches ${e.sink.stats.batches}`)
console.log(`throughput: ${(expected / seconds).toFixed(0)} events/s over ${seconds.toFixed(1)} s (connector read → rows landed)`)
const perEvent = (sec: number): string => `${((sec * 1e6) / expected).toFixed(1)} µs/event`
console.log(`cpu: citysync ${cpu.self.toFixed(1)} s (${perEvent(cpu.self)}, all threads), upstream simulator ${cpu.sim.toFixed(1)} s (${perEvent(cpu.sim)}); ${((cpu.self + cpu.sim) / seconds).toFixed(2)} of 2 cores busy`)
console.log(`cpu by thread: ${threads.join(', ')}`)
console.log(
  `cpu budget: two cores give ${((2 * 1e6 * seconds) / expected).toFixed(1)} µs per event at this rate, ${((2 * 1e6) / 100_000).toFixed(0)} µs at 100k events/s; used ${(((cpu.self + cpu.sim) * 1e6) / expected).toFixed(1)} µs (citysync and simulator)`,
)
console.log(`memory: main-thread JS heap peak ${(heapPeak / 2 ** 20).toFixed(0)} MB`)
console.log(`memory: peak RSS ${peak.toFixed(0)} MB of this process (RSS after start ${rssBefore.toFixed(0)} MB; the simulator runs in its own process)`)

await e.close()
sim.kill('SIGTERM')
rmSync(dataDir, { recursive: true, force: true })
