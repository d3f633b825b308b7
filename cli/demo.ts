import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Logger } from 'pino'
import { BikeShareSimulator } from '../connectors/bike-share/simulator.ts'
import { countyDrop } from '../connectors/county-feeds/simulator.ts'
import { FerrySimulator } from '../connectors/ferry-ticketing/simulator.ts'
import { ParkingSimulator } from '../connectors/parking-lots/simulator.ts'
import { type Metadata } from '../lib/metadata/db.ts'
import { formatLocal } from '../lib/local-time.ts'
import { type SourceConfig } from '../lib/source-config.ts'

export interface Demo {
  sources: string[]
  stop(): Promise<void>
}

/** Two vendor car-park platforms, a ferry terminal, a bike-share operator and a county's file drop, each deployed as a source. */
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

async function deploy(metadata: Metadata, log: Logger, cfg: SourceConfig, simulator: string): Promise<void> {
  const existing = await metadata.sources.find(cfg.id)
  if (existing) await metadata.sources.update(cfg.id, cfg, undefined, 'demo')
  else await metadata.sources.add(cfg, 'demo')
  await metadata.sources.setDesiredState(cfg.id, 'deployed', 'demo')
  log.info({ sourceId: cfg.id, simulator }, 'demo source deployed')
}

export async function startDemo(metadata: Metadata, log: Logger, dataDir: string, now: number): Promise<Demo> {
  const stops: (() => Promise<void>)[] = []
  const startAt = demoOrigin(dataDir, now)
  const base = { operator: 'demo', timezone: 'Asia/Shanghai', freshness: { maxDelay: '2h' } }
  for (const d of DEMO) {
    const sim = new ParkingSimulator({ seed: d.seed, lots: d.lots, timezone: 'Asia/Shanghai', eventsPerMinute: 60, startAt, faults: { badRate: 0.005 } })
    const baseUrl = await sim.start(0)
    stops.push(() => sim.stop())
    await deploy(metadata, log, {
      ...base,
      id: d.id,
      kind: 'parking-lots',
      name: d.name,
      district: d.district,
      schedule: { every: '5s' },
      config: { baseUrl, pageSize: 500, streams: ['entries', 'exits', 'spaces'], futureToleranceMs: 300_000, lotsRefreshMs: 3_600_000 },
    }, baseUrl)
  }

  const ferry = new FerrySimulator({ seed: 5, startAt, scale: 0.3 })
  const ferryUrl = await ferry.start(0)
  stops.push(() => ferry.stop())
  await deploy(metadata, log, {
    ...base,
    id: 'demo-hengqin-ferry',
    kind: 'ferry-ticketing',
    name: '横琴·九洲港客运票务 (demo)',
    district: '横琴',
    schedule: { every: '30s' },
    config: { baseUrl: `${ferryUrl}/`, pageSize: 200, feeds: ['sailings', 'tickets', 'checkins'], lookbackMs: 900_000 },
  }, ferryUrl)

  const bikes = new BikeShareSimulator({ seed: 3, stations: 20, fleet: 120, startAt })
  const bikeUrl = await bikes.start(0)
  stops.push(() => bikes.stop())
  await deploy(metadata, log, {
    ...base,
    id: 'demo-nanshan-bike',
    kind: 'bike-share',
    name: '南山共享单车 (demo)',
    district: '南山区',
    schedule: { every: '15s' },
    config: { gbfsUrl: `${bikeUrl}/gbfs/2.3/gbfs.json`, language: 'zh', fleetSize: 120, trips: { baseUrl: `${bikeUrl}/`, pageSize: 500 } },
  }, bikeUrl)

  // A county sends yesterday's files (CSV in several encodings and XLSX) once, on the first start.
  const dropDir = join(dataDir, 'demo', 'county-drop')
  if (!existsSync(dropDir)) {
    mkdirSync(dropDir, { recursive: true })
    const day = formatLocal(startAt - 86_400_000, 'Asia/Shanghai').slice(0, 10)
    for (const f of await countyDrop({ day, seed: 11 })) writeFileSync(join(dropDir, f.name), f.bytes)
  }
  await deploy(metadata, log, {
    ...base,
    id: 'demo-rudong-county',
    kind: 'county-files',
    name: '如东县停车数据报送 (demo)',
    district: '如东县',
    schedule: { every: '10s' },
    freshness: { maxDelay: '26h' },
    config: {
      county: '如东县',
      dropDir,
      datasets: [
        { name: 'lots', kind: 'lots' },
        { name: 'occupancy', kind: 'occupancy', columns: { observedAt: ['上报时间', '统计时间'] } },
        { name: 'passages', kind: 'passages', columns: { lotId: '停车场编号', plate: '车牌号', entryTime: '入场时间', exitTime: '出场时间', fee: '收费金额' } },
      ],
      settleMs: 0,
    },
  }, dropDir)

  return {
    sources: [...DEMO.map((d) => d.id), 'demo-hengqin-ferry', 'demo-nanshan-bike', 'demo-rudong-county'],
    async stop() {
      await Promise.all(stops.map((s) => s()))
    },
  }
}
