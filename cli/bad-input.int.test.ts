import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, describe, expect, it } from 'vitest'
import { ParkingSimulator } from '../connectors/parking-lots/simulator.ts'
import { loadConfig } from '../lib/config.ts'
import { startEmbedded } from './embedded.ts'

// Bad input from a source, through the whole embedded pipeline: the source
// keeps going, every valid record lands once, every bad one is in the
// dead-letter table with its reason, and nothing else is.

const dir = mkdtempSync(join(tmpdir(), 'citysync-bad-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const LABEL = { in: 'entry', out: 'exit', space: 'space' } as const

describe('bad input never stops a source', () => {
  it('lands the good, dead-letters the bad with reasons', async () => {
    const sim = new ParkingSimulator({
      seed: 9, lots: 3, eventsPerMinute: 200, maxEvents: 2500, startAt: Date.now() - 6 * 3600_000,
      faults: { badRate: 0.05, malformedSeqs: { in: [17, 400], out: [33] } },
    })
    const simUrl = await sim.start(0)
    process.env.CITYSYNC_MASTER_KEY = 'bad-input-test-master-key-0001'
    const e = await startEmbedded({ cfg: { ...loadConfig({ CITYSYNC_DATA_DIR: dir }), port: 0 }, demo: false, log: pino({ level: 'silent' }), maxWaitMs: 50 })
    try {
      sim.advance()
      await e.stores.metadata.sources.add({
        id: 'bad-lots', kind: 'parking-lots', name: 'bad lots', operator: null, district: null, timezone: 'Asia/Shanghai',
        schedule: { every: '1s' }, freshness: { maxDelay: '2h' }, config: { baseUrl: simUrl, pageSize: 100 },
      })
      await e.stores.metadata.sources.setDesiredState('bad-lots', 'deployed', 'test')
      await e.manager.reconcile()
      const counts = sim.counts()
      for (const deadline = Date.now() + 60_000; ; ) {
        const c = (await e.stores.metadata.connectorState.get('bad-lots')).cursor as { in: number; out: number; space: number } | null
        if (c && c.in === counts.in && c.out === counts.out && c.space === counts.space) break
        if (Date.now() > deadline) throw new Error(`cursor stuck at ${JSON.stringify(c)}, upstream has ${JSON.stringify(counts)}`)
        await new Promise((r) => setTimeout(r, 100))
      }
      const wh = e.stores.warehouse

      const landed = (await wh.query<{ k: string }>(`SELECT concat(lotId, '/', direction, '/', recordNo) AS k FROM parking_passage WHERE sourceId = 'bad-lots'`)).map((r) => r.k)
      const truth = sim.truth().map((t) => `${t.parkCode}/${t.type === 'in' ? 'entry' : 'exit'}/${t.recordNo}`)
      expect(new Set(landed).size).toBe(landed.length)
      expect(landed.sort()).toEqual(truth.sort())

      const dead = await wh.query<{ code: string; reason: string; raw: string }>(`SELECT code, reason, raw FROM dead_letter WHERE sourceId = 'bad-lots'`)
      const bad = sim.badRecords().filter((b) => b.code !== null)
      expect(bad.length).toBeGreaterThan(50)
      const tally = (codes: string[]) => codes.reduce<Record<string, number>>((acc, c) => ({ ...acc, [c]: (acc[c] ?? 0) + 1 }), {})
      expect(tally(dead.map((d) => d.code))).toEqual(tally(bad.map((b) => b.code!)))
      expect(Object.keys(tally(dead.map((d) => d.code)))).toEqual(
        expect.arrayContaining(['missing_field', 'wrong_type', 'invalid_value', 'unknown_lot', 'future_timestamp', 'malformed_json', 'duplicate_record']),
      )
      // Each connector-side rejection names the item it refused.
      for (const b of bad.filter((x) => x.stage === 'connector')) {
        expect(dead.some((d) => d.code === b.code && d.reason.startsWith(`${LABEL[b.type]} seq ${b.seq}:`)), `${b.type} seq ${b.seq} ${b.defect}`).toBe(true)
      }
      for (const b of bad.filter((x) => x.code === 'duplicate_record')) {
        expect(dead.some((d) => d.code === 'duplicate_record' && d.reason.includes(`recordNo=${b.recordNo}`))).toBe(true)
      }
      expect(dead.every((d) => d.reason.length > 10 && d.raw.length > 0)).toBe(true)
      expect(dead.some((d) => /粤[A-Z]\d{5}/.test(d.raw))).toBe(false) // plates masked in raw payloads

      // A store without users: the embedded process's bootstrap token is the admin credential.
      const status = await e.app.inject({ url: '/api/v1/sources/bad-lots/status', headers: { authorization: `Bearer ${e.bootstrapToken}` } })
      expect(status.json()).toMatchObject({ rowsRejected: dead.length, lastError: null })

      // The operator sees the same rejections, newest first, page by page and by code.
      const auth = { authorization: `Bearer ${e.bootstrapToken}` }
      const page = (await e.app.inject({ url: '/api/v1/sources/bad-lots/errors?limit=20', headers: auth })).json<{ items: { code: string; reason: string; receivedAt: string }[]; total: number; next: number | null }>()
      expect(page.total).toBe(dead.length)
      expect(page.items).toHaveLength(20)
      expect(page.next).toBe(20)
      expect(page.items.map((i) => i.receivedAt)).toEqual([...page.items.map((i) => i.receivedAt)].sort().reverse())
      const code = dead[0]!.code
      const byCode = (await e.app.inject({ url: `/api/v1/sources/bad-lots/errors?limit=1000&code=${code}`, headers: auth })).json<{ items: { code: string }[]; total: number }>()
      expect(byCode.total).toBe(dead.filter((d) => d.code === code).length)
      expect(byCode.items.every((i) => i.code === code)).toBe(true)
      expect((await e.app.inject({ url: '/api/v1/sources/no-such-source/errors', headers: auth })).statusCode).toBe(404)
    } finally {
      await e.close()
      await sim.stop()
    }
  }, 120_000)
})
