import { execFileSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { REPO, spawnTs, type Spawned, startWarehouseProcess } from '../infra/test/processes.ts'
import { KAFKA_BROKERS, kafkaReachable, requireService } from '../infra/test/services.ts'
import { ServerWarehouse } from '../pipelines/warehouse/server-warehouse.ts'

// Faults of the infrastructure while events flow, through real processes:
// the broker restarts; ClickHouse is gone for 30 s. Nothing is restarted by
// hand on the citysync side, and ClickHouse must end with exactly the
// upstream's records.

const run = requireService('Kafka', await kafkaReachable(), `no broker at ${KAFKA_BROKERS.join(',')}; start one with npm run kafka:up`)
const procs: Spawned[] = []
const dirs: string[] = []
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill9()))
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

interface Site {
  dataDir: string
  env: NodeJS.ProcessEnv
  wh: ServerWarehouse
  whUrl: string
  whProc: Spawned
  cli(args: string[]): string
  start(args: string[]): Spawned
}

async function site(brokers: string, whPort = 0): Promise<Site> {
  const dataDir = mkdtempSync(join(tmpdir(), 'citysync-faults-'))
  dirs.push(dataDir)
  const warehouse = await startWarehouseProcess(join(dataDir, 'warehouse'), whPort)
  procs.push(warehouse.proc)
  const { DATABASE_URL: _db, ...rest } = process.env
  const env = {
    ...rest,
    CITYSYNC_DATA_DIR: dataDir,
    CLICKHOUSE_URL: warehouse.url,
    KAFKA_BROKERS: brokers,
    KAFKA_TOPIC_PREFIX: `f${randomUUID().slice(0, 8)}.`,
    KAFKA_SESSION_TIMEOUT_MS: '6000',
    CITYSYNC_MASTER_KEY: 'faults-test-master-key',
    LOG_LEVEL: 'info',
  }
  const s: Site = {
    dataDir,
    env,
    wh: new ServerWarehouse(warehouse.url),
    whUrl: warehouse.url,
    whProc: warehouse.proc,
    cli: (args) => execFileSync(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { cwd: REPO, env, encoding: 'utf8' }),
    start: (args) => {
      const p = spawnTs('cli/main.ts', args, env)
      procs.push(p)
      return p
    },
  }
  s.cli(['migrate'])
  return s
}

async function upstream(seed: number, events: number, lots: number): Promise<{ url: string; passages: number; spaces: number; lots: number }> {
  const sim = spawnTs('connectors/parking-lots/simulator-main.ts', ['--port', '0', '--seed', String(seed), '--lots', String(lots), '--events-per-minute', '2000', '--bulk', String(events)])
  procs.push(sim)
  const gen = await sim.waitFor(/generated (\d+) passages and (\d+) space reports/, 120_000)
  const url = await sim.waitFor(/at (http:\/\/[^/\s]+)/)
  return { url: url[1]!, passages: Number(gen[1]), spaces: Number(gen[2]), lots }
}

function deploy(s: Site, id: string, url: string): void {
  const file = join(s.dataDir, `${id}.json`)
  // Small pages: the flow lasts long enough for the fault to land in the middle of it.
  writeFileSync(file, JSON.stringify({ id, kind: 'parking-lots', name: id, schedule: { every: '1s' }, config: { baseUrl: url, pageSize: 200 } }))
  s.cli(['sources', 'add', file])
  s.cli(['sources', 'deploy', id])
}

interface Counts {
  passages: number
  ids: number
  spaces: number
  lots: number
  lotDuplicates: number
  dead: number
}

// Lots are snapshotted once per hour: a run across an hour boundary has two snapshots, so lots
// are counted by id, and duplicates separately.
async function counts(wh: ServerWarehouse, sourceId: string): Promise<Counts> {
  const [r] = await wh.query<Counts>(
    `SELECT (SELECT count() FROM parking_passage WHERE sourceId = {s:String}) AS passages,
            (SELECT uniqExact(eventId) FROM parking_passage WHERE sourceId = {s:String}) AS ids,
            (SELECT count() FROM parking_occupancy WHERE sourceId = {s:String}) AS spaces,
            (SELECT uniqExact(lotId) FROM parking_lot WHERE sourceId = {s:String}) AS lots,
            (SELECT count() - uniqExact(eventId) FROM parking_lot WHERE sourceId = {s:String}) AS lotDuplicates,
            (SELECT count() FROM dead_letter WHERE sourceId = {s:String}) AS dead`,
    { s: sourceId },
  )
  return r!
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await cond().catch(() => false)) return
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(500)
  }
}

function kafkaScript(script: 'up.sh' | 'down.sh', stateDir: string, port: number): string {
  return execFileSync('bash', [join(REPO, 'infra/kafka', script)], {
    env: { ...process.env, KAFKA_STATE_DIR: stateDir, KAFKA_PORT: String(port), KAFKA_CONTROLLER_PORT: String(port + 1) },
    encoding: 'utf8',
  })
}

describe.runIf(run)('infrastructure faults in the distributed mode', () => {
  it('the broker restarts while events flow: the connector and the pipeline recover on their own; nothing lost or doubled', async () => {
    // A broker of its own, so that restarting it disturbs no other test.
    const stateDir = mkdtempSync(join(tmpdir(), 'citysync-broker-'))
    dirs.push(stateDir)
    const port = 19092
    kafkaScript('up.sh', stateDir, port)
    try {
      const s = await site(`127.0.0.1:${port}`)
      const up = await upstream(21, 40_000, 10)
      deploy(s, 'restart-lots', up.url)
      const pipeline = s.start(['pipeline'])
      await pipeline.waitFor(/pipeline ready/)
      const connector = s.start(['connect', '--source', 'restart-lots'])
      await until('rows to land', async () => (await counts(s.wh, 'restart-lots')).passages > 2_000, 120_000)

      kafkaScript('down.sh', stateDir, port)
      const atStop = (await counts(s.wh, 'restart-lots')).passages
      await sleep(3_000)
      kafkaScript('up.sh', stateDir, port)

      await until('every upstream record to land', async () => {
        const c = await counts(s.wh, 'restart-lots')
        return c.passages >= up.passages && c.spaces >= up.spaces && c.lots >= up.lots
      }, 300_000)
      await sleep(2_000)
      expect(atStop).toBeLessThan(up.passages)
      expect(await counts(s.wh, 'restart-lots')).toEqual({ passages: up.passages, ids: up.passages, spaces: up.spaces, lots: up.lots, lotDuplicates: 0, dead: 0 })
      // Neither process was restarted.
      expect(connector.child.exitCode).toBeNull()
      expect(pipeline.child.exitCode).toBeNull()
      await connector.stop()
      await pipeline.stop()
      await s.wh.close()
    } finally {
      kafkaScript('down.sh', stateDir, port)
    }
  }, 600_000)

  it('ClickHouse is unreachable for 30 s: the pipeline pauses, retries, resumes; nothing lost or doubled', async () => {
    const s = await site(KAFKA_BROKERS.join(','))
    const up = await upstream(22, 40_000, 10)
    deploy(s, 'outage-lots', up.url)
    const pipeline = s.start(['pipeline'])
    await pipeline.waitFor(/pipeline ready/)
    const connector = s.start(['connect', '--source', 'outage-lots'])
    await until('rows to land', async () => (await counts(s.wh, 'outage-lots')).passages > 2_000, 120_000)

    // The warehouse dies (no clean shutdown) and comes back 30 s later on the same address.
    await s.whProc.kill9()
    const port = Number(new URL(s.whUrl).port)
    await sleep(30_000)
    const back = await startWarehouseProcess(join(s.dataDir, 'warehouse'), port)
    procs.push(back.proc)

    await until('every upstream record to land', async () => {
      const c = await counts(s.wh, 'outage-lots')
      return c.passages >= up.passages && c.spaces >= up.spaces && c.lots >= up.lots
    }, 300_000).catch(async (err: unknown) => {
      throw new Error(`${String(err)}; landed ${JSON.stringify(await counts(s.wh, 'outage-lots').catch(() => null))}\npipeline:\n${pipeline.output().slice(-3000)}\nconnector:\n${connector.output().slice(-2000)}`)
    })
    await sleep(2_000)
    expect(await counts(s.wh, 'outage-lots')).toEqual({ passages: up.passages, ids: up.passages, spaces: up.spaces, lots: up.lots, lotDuplicates: 0, dead: 0 })
    expect(pipeline.output()).toContain('partition paused, will retry')
    expect(pipeline.output()).toContain('partition resumed')
    expect(pipeline.child.exitCode).toBeNull()
    await connector.stop()
    await pipeline.stop()
    await s.wh.close()
  }, 600_000)
})
