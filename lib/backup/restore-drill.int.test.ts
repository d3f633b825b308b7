import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { ParkingSimulator } from '../../connectors/parking-lots/simulator.ts'
import { ADMIN_HEADERS, freePort, getJson, REPO, type Spawned, spawnTs, startWarehouseProcess, TEST_BOOTSTRAP_ENV, until } from '../../infra/test/processes.ts'
import { POSTGRES_URL, postgresReachable, requireService } from '../../infra/test/services.ts'
import { ServerWarehouse } from '../../pipelines/warehouse/server-warehouse.ts'
import { ManualClock } from '../clock.ts'

// The restore drill, through real processes: ingest, back up, keep ingesting,
// lose everything, restore into a fresh warehouse and a fresh PostgreSQL
// database, restart, ingest the rest. Every upstream record must be in
// ClickHouse exactly once: count() = uniqExact(eventId) = count() FINAL =
// the simulator's ground truth.
//
// Two deployments: embedded (chDB in the citysync process, so the process
// backs itself up on its schedule while rows keep landing; `citysync backup`
// from outside is refused) and a shared warehouse over CLICKHOUSE_URL (the
// backup is taken while rows keep landing, which is where cursor/data
// consistency matters).

const runPg = requireService('PostgreSQL', await postgresReachable(), POSTGRES_URL)
const MASTER_KEY = 'restore drill master key, long enough'
const children: Spawned[] = []
const dirs: string[] = []
const databases: string[] = []

function dbUrl(name: string): string {
  const u = new URL(POSTGRES_URL)
  u.pathname = `/${name}`
  return u.toString()
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: POSTGRES_URL })
  await c.connect()
  try {
    return await fn(c)
  } finally {
    await c.end()
  }
}

async function freshDatabase(tag: string): Promise<string> {
  const name = `citysync_drill_${tag}_${randomBytes(4).toString('hex')}`
  await admin((c) => c.query(`CREATE DATABASE ${name}`))
  databases.push(name)
  return name
}

async function dropDatabase(name: string): Promise<void> {
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
}

afterAll(async () => {
  for (const c of children) await c.kill9()
  for (const d of databases) await dropDatabase(d).catch(() => undefined)
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(d)
  return d
}

interface Stores {
  dataDir: string
  databaseUrl: string
  clickhouseUrl?: string
}

function envOf(s: Stores): NodeJS.ProcessEnv {
  // Blank values count as unset: nothing of this shell's own configuration leaks in.
  return {
    ...process.env,
    CITYSYNC_DATA_DIR: s.dataDir,
    DATABASE_URL: s.databaseUrl,
    CLICKHOUSE_URL: s.clickhouseUrl ?? '',
    KAFKA_BROKERS: '',
    CITYSYNC_MASTER_KEY: MASTER_KEY,
    LOG_LEVEL: 'warn',
    ...TEST_BOOTSTRAP_ENV,
  }
}

/** The CLI as a child process, without blocking this one (the simulator answers from here). */
function cli(s: Stores, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { cwd: REPO, env: envOf(s), maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`citysync ${args.join(' ')}: ${stderr || err.message}`))
      else resolve(stdout)
    })
  })
}

function startCitysync(s: Stores, port: number, env: NodeJS.ProcessEnv = {}): Spawned {
  const p = spawnTs('cli/main.ts', ['start', '--no-demo', '--port', String(port)], { ...envOf(s), CITYSYNC_BACKUP_SCHEDULE: 'off', ...env })
  children.push(p)
  return p
}

type Cursor = { in: number; out: number; space: number }

async function cursorAtEnd(port: number, sim: ParkingSimulator): Promise<void> {
  sim.advance()
  const counts = sim.counts()
  await until(`the cursor to reach ${JSON.stringify(counts)}`, async () => {
    const c = await getJson<{ cursor: Cursor | null }>(`http://127.0.0.1:${port}/api/v1/sources/drill-lots/cursor`, ADMIN_HEADERS)
    return c?.cursor?.in === counts.in && c.cursor.out === counts.out && c.cursor.space === counts.space
  }, 240_000)
}

interface Counts {
  n: number
  u: number
  f: number
}

async function passageCounts(wh: ServerWarehouse): Promise<Counts> {
  const [c] = await wh.query<Counts>(
    `SELECT count() AS n, uniqExact(eventId) AS u, (SELECT count() FROM parking_passage FINAL WHERE sourceId = 'drill-lots') AS f
     FROM parking_passage WHERE sourceId = 'drill-lots'`,
  )
  return c!
}

async function landedKeys(wh: ServerWarehouse): Promise<string[]> {
  const rows = await wh.query<{ k: string }>(`SELECT concat(lotId, '/', direction, '/', recordNo) AS k FROM parking_passage WHERE sourceId = 'drill-lots'`)
  return rows.map((r) => r.k).sort()
}

function truthKeys(sim: ParkingSimulator): string[] {
  return sim
    .truth()
    .map((t) => `${t.parkCode}/${t.type === 'in' ? 'entry' : 'exit'}/${t.recordNo}`)
    .sort()
}

interface BackupJson {
  dir: string
  manifest: { warehouse: { tables: { name: string; rows: number }[] }; metadata: { tables: { name: string; rows: number }[] } }
}

interface RestoreJson {
  restored: boolean
  tables: { part: string; table: string; rows: number }[]
  ms: number
}

/**
 * Simulated upstream, released in steps by moving its clock. History starts at 09:00 in Shanghai
 * at least 20 h ago: the simulator's traffic follows the local hour, and a night start would send
 * too little for the drill's phases.
 */
function simulator(slowMs: number): { sim: ParkingSimulator; clock: ManualClock; start: number } {
  const latest = Date.now() - 20 * 3600_000
  let start = Math.floor(latest / 86_400_000) * 86_400_000 + 3600_000 // 01:00 UTC = 09:00 Asia/Shanghai
  if (start > latest) start -= 86_400_000
  const clock = new ManualClock(start)
  const sim = new ParkingSimulator({ seed: 7, lots: 4, eventsPerMinute: 100, clock, startAt: start, faults: { slowMs } })
  return { sim, clock, start }
}

async function addSource(s: Stores, simUrl: string, pageSize: number): Promise<void> {
  const file = join(s.dataDir, 'drill-source.json')
  writeFileSync(file, JSON.stringify({ id: 'drill-lots', kind: 'parking-lots', name: 'restore drill lots', schedule: { every: '1s' }, config: { baseUrl: simUrl, pageSize } }))
  await cli(s, ['sources', 'add', file, '--deploy', '--force'])
}

describe.runIf(runPg)('restore drill', () => {
  it('embedded: ingest, back up, ingest more, lose everything, restore into a fresh data directory and database, restart, ingest the rest', async () => {
    const { sim, clock, start } = simulator(15)
    const simUrl = await sim.start(0)
    try {
      const src: Stores = { dataDir: tmp('citysync-drill-src-'), databaseUrl: dbUrl(await freshDatabase('src')) }
      const backups = tmp('citysync-drill-backups-')
      const port = await freePort()
      await addSource(src, simUrl, 100)

      // 1. Ingest the first 30 minutes of upstream history, the process backing
      //    itself up every 2 s while rows land (keeping the newest 2); stopped
      //    as soon as a backup holds some passages, i.e. mid-flow.
      clock.set(start + 30 * 60_000)
      const proc1 = startCitysync(src, port, { CITYSYNC_BACKUP_SCHEDULE: '*/2 * * * * *', CITYSYNC_BACKUP_DIR: backups, CITYSYNC_BACKUP_KEEP: '2' })
      const complete = (): string[] => readdirSync(backups).filter((n) => n.startsWith('citysync-')).sort()
      const passagesIn = (name: string): number =>
        (JSON.parse(readFileSync(join(backups, name, 'manifest.json'), 'utf8')) as BackupJson['manifest']).warehouse.tables.find((t) => t.name === 'parking_passage')?.rows ?? 0
      await until('a backup holding passages, taken while rows land', () => Promise.resolve(complete().some((n) => passagesIn(n) > 0)), 120_000)
      // From outside, the embedded warehouse is the running process's alone: refused, nothing written.
      const refused = tmp('citysync-drill-refused-')
      await expect(cli(src, ['backup', '--to', refused])).rejects.toThrow(
        /citysync: CITYSYNC_ERR_BACKUP_BUSY: the embedded warehouse .*\/clickhouse is open in another process \(a running `citysync start`\?\)/,
      )
      expect(readdirSync(refused)).toEqual([])
      expect(await proc1.stop()).toBe(0)
      expect(complete().length).toBeLessThanOrEqual(2) // retention

      // 2. The newest backup: whatever it holds, its manifest says, and the restore must give exactly that.
      const newest = complete().at(-1)!
      const b: BackupJson = { dir: join(backups, newest), manifest: JSON.parse(readFileSync(join(backups, newest, 'manifest.json'), 'utf8')) as BackupJson['manifest'] }
      const phase1 = passagesIn(newest)
      expect(phase1).toBeGreaterThan(0)
      expect(phase1).toBeLessThanOrEqual(sim.truth().length)

      // 3. Keep ingesting after the backup: these rows are lost with the machine.
      clock.set(start + 40 * 60_000)
      let proc = startCitysync(src, port)
      await cursorAtEnd(port, sim)
      expect(await proc.stop()).toBe(0)

      // 4. Lose everything: data directory and database.
      rmSync(src.dataDir, { recursive: true, force: true })
      await dropDatabase(new URL(src.databaseUrl).pathname.slice(1))

      // 5. Restore into a fresh data directory and a fresh database.
      const dst: Stores = { dataDir: tmp('citysync-drill-dst-'), databaseUrl: dbUrl(await freshDatabase('dst')) }
      const r = JSON.parse(await cli(dst, ['restore', b.dir, '--json'])) as RestoreJson
      expect(r.restored).toBe(true)
      expect(r.tables.find((t) => t.part === 'warehouse' && t.table === 'parking_passage')?.rows).toBe(phase1)
      expect(r.tables.find((t) => t.part === 'metadata' && t.table === 'connector_state')?.rows).toBe(1)

      // 6. Restart and ingest the rest: the lost stretch is read again from the restored cursor.
      clock.set(start + 50 * 60_000)
      proc = startCitysync(dst, port)
      await cursorAtEnd(port, sim)
      expect(await proc.stop()).toBe(0)

      const truth = truthKeys(sim)
      expect(truth.length).toBeGreaterThan(phase1)
      const wh = await startWarehouseProcess(join(dst.dataDir, 'clickhouse'))
      children.push(wh.proc)
      const w = new ServerWarehouse(wh.url)
      try {
        expect(await passageCounts(w)).toEqual({ n: truth.length, u: truth.length, f: truth.length })
        expect(await landedKeys(w)).toEqual(truth)
        const [occ] = await w.query<{ n: number; u: number }>(`SELECT count() AS n, uniqExact(eventId) AS u FROM parking_occupancy WHERE sourceId = 'drill-lots'`)
        expect(occ).toEqual({ n: sim.spaceTruth().length, u: sim.spaceTruth().length })
        const [dead] = await w.query<{ n: number }>(`SELECT count() AS n FROM dead_letter WHERE sourceId = 'drill-lots'`)
        expect(dead!.n).toBe(0)
      } finally {
        await w.close()
        await wh.proc.stop()
      }
    } finally {
      await sim.stop()
    }
  }, 600_000)

  it('shared warehouse: a backup taken while rows land restores with cursors behind the data, and the restart lands no duplicate', async () => {
    const { sim, clock, start } = simulator(40)
    const simUrl = await sim.start(0)
    try {
      const whA = await startWarehouseProcess(tmp('citysync-drill-wh-a-'))
      children.push(whA.proc)
      const src: Stores = { dataDir: tmp('citysync-drill-src-'), databaseUrl: dbUrl(await freshDatabase('src')), clickhouseUrl: whA.url }
      const backups = tmp('citysync-drill-backups-')
      const port = await freePort()
      await addSource(src, simUrl, 50)

      // 1. Ingest; back up while rows are still landing.
      clock.set(start + 45 * 60_000)
      const first = startCitysync(src, port)
      await until('rows to start landing', async () => {
        const s = await getJson<{ rowsLanded: number }>(`http://127.0.0.1:${port}/api/v1/sources/drill-lots/status`, ADMIN_HEADERS)
        return s !== undefined && s.rowsLanded >= 1000 ? s.rowsLanded : undefined
      }, 240_000)
      // The upstream slows to a trickle meanwhile, so pages keep landing during the backup and the rest after it.
      sim.setSlowMs(1500)
      const b = JSON.parse(await cli(src, ['backup', '--to', backups, '--json'])) as BackupJson
      sim.setSlowMs(20)
      const inBackup = b.manifest.warehouse.tables.find((t) => t.name === 'parking_passage')!.rows
      await cursorAtEnd(port, sim)
      const phase1 = sim.truth().length
      expect(inBackup).toBeGreaterThan(0)
      expect(inBackup).toBeLessThan(phase1)
      expect(await first.stop()).toBe(0)

      // 2. Lose the warehouse and the database.
      await whA.proc.kill9()
      await dropDatabase(new URL(src.databaseUrl).pathname.slice(1))

      // The timer's check: the whole backup read back, no store touched.
      const v = JSON.parse(await cli(src, ['restore', b.dir, '--verify-only', '--json'])) as RestoreJson
      expect(v.restored).toBe(false)
      expect(v.tables.find((t) => t.part === 'warehouse' && t.table === 'parking_passage')?.rows).toBe(inBackup)

      // 3. Restore into a fresh warehouse and database.
      const whB = await startWarehouseProcess(tmp('citysync-drill-wh-b-'))
      children.push(whB.proc)
      const dst: Stores = { dataDir: tmp('citysync-drill-dst-'), databaseUrl: dbUrl(await freshDatabase('dst')), clickhouseUrl: whB.url }
      const r = JSON.parse(await cli(dst, ['restore', b.dir, '--json'])) as RestoreJson
      expect(r.tables.find((t) => t.part === 'warehouse' && t.table === 'parking_passage')?.rows).toBe(inBackup)

      const w = new ServerWarehouse(whB.url)
      try {
        // The metadata snapshot was taken first, so the restored cursor is at or behind the restored rows:
        // every record up to the cursor is in the warehouse.
        const restoredCursor = await admin(async () => {
          const c = new pg.Client({ connectionString: dst.databaseUrl })
          await c.connect()
          try {
            const { rows } = await c.query<{ cursor: Cursor }>(`SELECT cursor FROM connector_state WHERE source_id = 'drill-lots'`)
            return rows[0]!.cursor
          } finally {
            await c.end()
          }
        })
        const landed = new Set(await landedKeys(w))
        const upToCursor = sim.truth().filter((t) => t.seq <= (t.type === 'in' ? restoredCursor.in : restoredCursor.out))
        expect(upToCursor.length).toBeGreaterThan(0)
        expect(upToCursor.filter((t) => !landed.has(`${t.parkCode}/${t.type === 'in' ? 'entry' : 'exit'}/${t.recordNo}`))).toEqual([])
        expect(landed.size).toBeGreaterThanOrEqual(upToCursor.length)

        // 4. Restart and ingest the rest.
        clock.set(start + 60 * 60_000)
        const second = startCitysync(dst, port)
        await cursorAtEnd(port, sim)
        expect(await second.stop()).toBe(0)

        const truth = truthKeys(sim)
        expect(await passageCounts(w)).toEqual({ n: truth.length, u: truth.length, f: truth.length })
        expect(await landedKeys(w)).toEqual(truth)
        const [occ] = await w.query<{ n: number; u: number }>(`SELECT count() AS n, uniqExact(eventId) AS u FROM parking_occupancy WHERE sourceId = 'drill-lots'`)
        expect(occ).toEqual({ n: sim.spaceTruth().length, u: sim.spaceTruth().length })
        const [dead] = await w.query<{ n: number }>(`SELECT count() AS n FROM dead_letter WHERE sourceId = 'drill-lots'`)
        expect(dead!.n).toBe(0)
      } finally {
        await w.close()
      }
    } finally {
      await sim.stop()
    }
  }, 600_000)
})
