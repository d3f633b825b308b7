import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ParkingSimulator } from '../connectors/parking-lots/simulator.ts'
import { ADMIN_HEADERS, freePort, getJson, TEST_BOOTSTRAP_ENV, until } from '../infra/test/processes.ts'
import { ChdbWarehouse } from '../pipelines/warehouse/chdb-warehouse.ts'

// The delivery promise of embedded mode, end to end through real processes:
// SIGKILL `citysync start` while events flow, start it again, and every
// upstream record is in ClickHouse exactly once.

const ROOT = new URL('..', import.meta.url).pathname
const children: ChildProcess[] = []
const dirs: string[] = []

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

function env(dataDir: string): NodeJS.ProcessEnv {
  const { DATABASE_URL: _db, CLICKHOUSE_URL: _ch, KAFKA_BROKERS: _k, ...rest } = process.env
  return { ...rest, CITYSYNC_DATA_DIR: dataDir, LOG_LEVEL: 'warn', CITYSYNC_MASTER_KEY: 'crash-test-master-key', ...TEST_BOOTSTRAP_ENV }
}

function cli(dataDir: string, args: string[]): string {
  return execFileSync(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { cwd: ROOT, env: env(dataDir), encoding: 'utf8' })
}

function startCitysync(dataDir: string, port: number): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'start', '--no-demo', '--port', String(port)], {
    cwd: ROOT,
    env: env(dataDir),
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  children.push(child)
  return child
}

const exited = (c: ChildProcess): Promise<number | null> =>
  c.exitCode !== null || c.signalCode !== null ? Promise.resolve(c.exitCode) : new Promise((r) => c.once('exit', (code) => r(code)))

describe('crash safety of embedded mode', () => {
  it('SIGKILL while events flow, restart: every upstream record lands exactly once', async () => {
    // 3000 passages already waiting upstream, served slowly in small pages so the kill lands mid-flow.
    const sim = new ParkingSimulator({ seed: 42, lots: 4, eventsPerMinute: 300, maxEvents: 3000, startAt: Date.now() - 12 * 3600_000, faults: { slowMs: 40 } })
    const simUrl = await sim.start(0)
    try {
      sim.advance()
      const truth = sim.truth()
      expect(truth.length).toBe(3000)

      const dataDir = mkdtempSync(join(tmpdir(), 'citysync-crash-'))
      dirs.push(dataDir)
      const sourceFile = join(dataDir, 'source.json')
      writeFileSync(
        sourceFile,
        JSON.stringify({ id: 'crash-lots', kind: 'parking-lots', name: 'crash test lots', schedule: { every: '1s' }, config: { baseUrl: simUrl, pageSize: 50 } }),
      )
      // --force: deploy runs the connector's check, and the simulator cannot answer while execFileSync blocks this process.
      cli(dataDir, ['sources', 'add', sourceFile, '--deploy', '--force'])

      const port = await freePort()
      const status = `http://127.0.0.1:${port}/api/v1/sources/crash-lots/status`
      const first = startCitysync(dataDir, port)
      const landedAtKill = await until('rows to start landing', async () => {
        const s = await getJson<{ rowsLanded: number }>(status, ADMIN_HEADERS)
        return s && s.rowsLanded >= 300 ? s.rowsLanded : undefined
      })
      first.kill('SIGKILL')
      await exited(first)
      expect(landedAtKill).toBeLessThan(truth.length)

      const second = startCitysync(dataDir, port)
      const counts = sim.counts()
      await until('the cursor to reach the end of every stream', async () => {
        const c = await getJson<{ cursor: { in: number; out: number; space: number } | null }>(
          `http://127.0.0.1:${port}/api/v1/sources/crash-lots/cursor`,
          ADMIN_HEADERS,
        )
        return c?.cursor !== null && c?.cursor !== undefined && c.cursor.in === counts.in && c.cursor.out === counts.out && c.cursor.space === counts.space
      })
      second.kill('SIGTERM')
      expect(await exited(second)).toBe(0)

      const wh = new ChdbWarehouse(join(dataDir, 'clickhouse'))
      try {
        const rows = await wh.query<{ k: string }>(
          `SELECT concat(lotId, '/', direction, '/', recordNo) AS k FROM parking_passage WHERE sourceId = 'crash-lots'`,
        )
        const landed = rows.map((r) => r.k).sort()
        const expected = truth.map((t) => `${t.parkCode}/${t.type === 'in' ? 'entry' : 'exit'}/${t.recordNo}`).sort()
        expect(landed.length).toBe(expected.length) // exactly once: no duplicate rows, no FINAL needed
        expect(landed).toEqual(expected)
        const [occ] = await wh.query<{ n: number; u: number }>(
          `SELECT count() AS n, uniqExact(eventId) AS u FROM parking_occupancy WHERE sourceId = 'crash-lots'`,
        )
        expect(occ).toEqual({ n: sim.spaceTruth().length, u: sim.spaceTruth().length })
        const [dead] = await wh.query<{ n: number }>(`SELECT count() AS n FROM dead_letter WHERE sourceId = 'crash-lots'`)
        expect(dead!.n).toBe(0)
      } finally {
        await wh.close()
      }
    } finally {
      await sim.stop()
    }
  }, 180_000)
})
