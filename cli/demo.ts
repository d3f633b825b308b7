import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Logger } from 'pino'
import { ParkingSimulator } from '../connectors/parking-lots/simulator.ts'
import { type Metadata } from '../lib/metadata/db.ts'
import { type SourceConfig } from '../lib/source-config.ts'

export interface Demo {
  sources: string[]
  stop(): Promise<void>
}

/** Two vendor platforms with realistic car parks, each registered and deployed as a source. */
const DEMO = [
  { id: 'demo-hengqin-parking', name: '横琴口岸停车场平台 (demo)', district: '横琴', seed: 7, lots: 5 },
  { id: 'demo-nantong-parking', name: '南通市区停车场平台 (demo)', district: '崇川区', seed: 11, lots: 4 },
] as const

/**
 * The simulated platforms start their history at a moment fixed once per data
 * directory, so after a restart they serve the same records under the same
 * sequence numbers and the saved cursors stay valid.
 */
function demoOrigin(dataDir: string, now: number): number {
  const file = join(dataDir, 'demo', 'origin.json')
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { origin: number }).origin
  } catch {
    mkdirSync(join(dataDir, 'demo'), { recursive: true })
    const origin = now - 3600_000 // an hour of history to show at once
    writeFileSync(file, JSON.stringify({ origin }))
    return origin
  }
}

export async function startDemo(metadata: Metadata, log: Logger, dataDir: string, now: number): Promise<Demo> {
  const sims: ParkingSimulator[] = []
  const startAt = demoOrigin(dataDir, now)
  for (const d of DEMO) {
    const sim = new ParkingSimulator({ seed: d.seed, lots: d.lots, timezone: 'Asia/Shanghai', eventsPerMinute: 60, startAt, faults: { badRate: 0.005 } })
    const baseUrl = await sim.start(0)
    sims.push(sim)
    const cfg: SourceConfig = {
      id: d.id,
      kind: 'parking-lots',
      name: d.name,
      operator: 'demo',
      district: d.district,
      timezone: 'Asia/Shanghai',
      schedule: { every: '5s' },
      freshness: { maxDelay: '2h' },
      config: { baseUrl, pageSize: 500, streams: ['entries', 'exits', 'spaces'], futureToleranceMs: 300_000, lotsRefreshMs: 3_600_000 },
    }
    const existing = await metadata.sources.find(d.id)
    if (existing) await metadata.sources.update(d.id, cfg, undefined, 'demo')
    else await metadata.sources.add(cfg, 'demo')
    await metadata.sources.setDesiredState(d.id, 'deployed', 'demo')
    log.info({ sourceId: d.id, simulator: baseUrl }, 'demo source deployed')
  }
  return {
    sources: DEMO.map((d) => d.id),
    async stop() {
      await Promise.all(sims.map((s) => s.stop()))
    },
  }
}
