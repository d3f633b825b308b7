import { cp, mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../clock.ts'
import { deriveKeys, masterKeyBytes } from '../crypto.ts'
import { isCitysyncError } from '../errors.ts'
import { openMetadata } from '../metadata/db.ts'
import { ChdbWarehouse } from '../../pipelines/warehouse/chdb-warehouse.ts'
import { migrateWarehouse } from '../../pipelines/warehouse/migrate.ts'
import { toJsonEachRow } from '../../pipelines/warehouse/warehouse.ts'
import { createBackup } from './backup.ts'
import { keyFingerprint } from './manifest.ts'
import { readManifest, restoreBackup } from './restore.ts'
import { applyRetention, listBackups } from './retention.ts'
import { statsOfTable } from './warehouse-snapshot.ts'

// Backup and restore in this process: chDB (embedded warehouse) and SQLite.
// chDB binds one data directory per process at a time, so the source
// warehouse is closed before the restore opens the new one.

const PASSPHRASE = 'backup test passphrase, long enough'
const OTHER_KEY = 'another passphrase that is long enough'
const keys = deriveKeys(PASSPHRASE)
const env = { CITYSYNC_MASTER_KEY: PASSPHRASE }
const T0 = Date.parse('2026-11-21T02:30:00Z')
const dirs: string[] = []

async function tmp(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix))
  dirs.push(d)
  return d
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'resolved'
  } catch (err) {
    return isCitysyncError(err) ? `${err.code}: ${err.message}` : `other: ${String(err)}`
  }
}

function passage(i: number): Record<string, unknown> {
  const at = T0 - 86_400_000 + i * 1000
  return {
    sourceId: i % 3 === 0 ? 'lots-b' : 'lots-a',
    eventId: `ev-${i}`,
    occurredAt: at,
    receivedAt: at + 2000,
    lotId: `P${i % 7}`,
    recordNo: `R${i}`,
    direction: i % 2 === 0 ? 'entry' : 'exit',
    gateId: i % 5 === 0 ? null : `G${i % 4}`,
    plateKey: `k${i % 100}`,
    plateCipher: i % 11 === 0 ? null : `c${i}`,
    plateMasked: '粤C***45',
    plateType: i % 13 === 0 ? null : 'blue',
    isBackfill: i % 17 === 0,
    feeCents: i % 2 === 1 ? i * 10 : null,
    entryAt: i % 2 === 1 ? at - 3_600_000 : null,
  }
}

describe('backup and restore, embedded stores', () => {
  let srcDir: string
  let target: string
  let backupDir: string
  let before: { rows: number; contentHash: string }
  const clock = new ManualClock(T0)

  beforeAll(async () => {
    srcDir = await tmp('citysync-bk-src-')
    target = await tmp('citysync-bk-target-')
    const metadata = await openMetadata({ dataDir: srcDir })
    await metadata.sources.add({
      id: 'lots-a', kind: 'parking-lots', name: '横琴停车', operator: null, district: '横琴', timezone: 'Asia/Shanghai',
      schedule: { every: '30s' }, freshness: { maxDelay: '2h' }, config: { baseUrl: 'http://127.0.0.1:4100/' },
    })
    await metadata.connectorState.saveCheckpoint('lots-a', { in: 1200, out: 1100, space: 40 }, T0)
    await metadata.close()

    const wh = new ChdbWarehouse(join(srcDir, 'clickhouse'))
    await migrateWarehouse(wh)
    const rows = Array.from({ length: 5000 }, (_, i) => passage(i))
    await wh.insertJsonEachRow('parking_passage', toJsonEachRow(rows.slice(0, 3000)))
    await wh.insertJsonEachRow('parking_passage', toJsonEachRow(rows.slice(3000)))
    // The same three rows again, in a block of their own: not yet merged away by ReplacingMergeTree.
    await wh.insertJsonEachRow('parking_passage', toJsonEachRow(rows.slice(0, 3)))
    await wh.insertJsonEachRow('dead_letter', toJsonEachRow([{ sourceId: 'lots-a', eventId: 'bad-1', occurredAt: T0, receivedAt: T0, stage: 'connector', code: 'missing_field', reason: 'inTime missing', family: 'ParkingPassage', raw: '{"recordNo":"R9"}' }]))
    before = await statsOfTable(wh, 'parking_passage', [
      { name: 'sourceId', type: 'LowCardinality(String)' }, { name: 'eventId', type: 'String' },
    ])
    // Backed up through the open session, as a process that holds the embedded warehouse does.
    const r = await createBackup({ stores: { dataDir: srcDir, clickhouseUrl: undefined, databaseUrl: undefined }, to: target, keys, version: 'test', engine: wh, clock })
    backupDir = r.dir
    await wh.close()
  })

  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })

  it('writes a manifest with exact row counts, checksums and the key fingerprint', async () => {
    const m = await readManifest(backupDir)
    expect(m.id).toBe('citysync-20261121T023000Z')
    expect(backupDir).toBe(join(target, 'citysync-20261121T023000Z'))
    expect(m.keyFingerprint).toBe(keyFingerprint(keys))
    expect(m.metadata.dialect).toBe('sqlite')
    expect(m.metadata.file.path).toBe('metadata/metadata.sqlite')
    expect(m.metadata.tables.find((t) => t.name === 'sources')?.rows).toBe(1)
    expect(m.metadata.tables.find((t) => t.name === 'connector_state')?.rows).toBe(1)
    expect(m.metadata.migrations[0]).toBe('001-init')
    const pp = m.warehouse.tables.find((t) => t.name === 'parking_passage')!
    expect(pp.rows).toBe(5003)
    expect(pp.file.path).toBe('warehouse/parking_passage.native.zst')
    expect(pp.columns.map((c) => c.name)).toEqual(['sourceId', 'eventId', 'occurredAt', 'receivedAt', 'lotId', 'recordNo', 'direction', 'gateId', 'plateKey', 'plateCipher', 'plateMasked', 'plateType', 'isBackfill', 'feeCents', 'entryAt'])
    expect(m.warehouse.tables.find((t) => t.name === 'dead_letter')?.rows).toBe(1)
    expect(m.warehouse.tables.find((t) => t.name === 'parking_occupancy')?.rows).toBe(0)
    expect(m.warehouse.tables.some((t) => t.name === 'schema_migrations')).toBe(false)
    expect(m.warehouse.migrations).toEqual(expect.arrayContaining([1, 2, 3, 4]))
    expect(before.rows).toBe(5003)
    // Only the folder of the finished backup; no leftovers, no key.
    expect(await readdir(target)).toEqual(['citysync-20261121T023000Z'])
    expect(await readdir(join(backupDir, 'metadata'))).toEqual(['metadata.sqlite'])
    expect(existsSync(join(backupDir, 'keys'))).toBe(false)
  })

  it('--verify-only reads every table back and checks the key', async () => {
    const r = await restoreBackup({ stores: { dataDir: await tmp('citysync-bk-none-'), clickhouseUrl: undefined, databaseUrl: undefined }, backup: backupDir, verifyOnly: true, env })
    expect(r.restored).toBe(false)
    expect(r.files).toBe(1 + r.manifest.warehouse.tables.length)
    expect(r.keySource).toBe('CITYSYNC_MASTER_KEY')
    expect(r.tables.find((t) => t.part === 'warehouse' && t.table === 'parking_passage')?.rows).toBe(5003)
    expect(r.tables.find((t) => t.part === 'metadata' && t.table === 'connector_state')?.rows).toBe(1)
  })

  it('refuses a damaged backup, a wrong key and a missing key before writing anything', async () => {
    const damaged = join(await tmp('citysync-bk-damaged-'), 'citysync-20261121T023000Z')
    await cp(backupDir, damaged, { recursive: true })
    const fh = await open(join(damaged, 'warehouse', 'parking_passage.native.zst'), 'r+')
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, 100)
    b[0] = b[0]! ^ 0xff
    await fh.write(b, 0, 1, 100)
    await fh.close()
    const fresh = { dataDir: await tmp('citysync-bk-fresh-'), clickhouseUrl: undefined, databaseUrl: undefined }
    expect(await codeOf(restoreBackup({ stores: fresh, backup: damaged, env }))).toMatch(
      /^CITYSYNC_ERR_BACKUP_CORRUPT: backup citysync-20261121T023000Z does not match its manifest: warehouse\/parking_passage.native.zst has SHA-256 [0-9a-f]{64}, the manifest says [0-9a-f]{64}$/,
    )
    expect(await codeOf(restoreBackup({ stores: fresh, backup: backupDir, env: { CITYSYNC_MASTER_KEY: OTHER_KEY } }))).toBe(
      `CITYSYNC_ERR_RESTORE_KEY_MISMATCH: backup citysync-20261121T023000Z was made with master key ${keyFingerprint(keys)}, but the key given is ${keyFingerprint(deriveKeys(OTHER_KEY))} (from CITYSYNC_MASTER_KEY): plates and secrets in it could not be read`,
    )
    expect(await codeOf(restoreBackup({ stores: fresh, backup: backupDir, env: {} }))).toBe(
      `CITYSYNC_ERR_RESTORE_KEY_MISSING: backup citysync-20261121T023000Z was made with master key ${keyFingerprint(keys)}, which is not in the backup: set CITYSYNC_MASTER_KEY or pass --key-file`,
    )
    // A backup from a newer release (a migration this one does not know) is refused.
    const newer = join(await tmp('citysync-bk-newer-'), 'citysync-20261121T023000Z')
    await cp(backupDir, newer, { recursive: true })
    const m = JSON.parse(await readFile(join(newer, 'manifest.json'), 'utf8')) as { warehouse: { migrations: number[] } }
    m.warehouse.migrations.push(9999)
    await writeFile(join(newer, 'manifest.json'), JSON.stringify(m))
    expect(await codeOf(restoreBackup({ stores: fresh, backup: newer, env }))).toBe(
      'CITYSYNC_ERR_RESTORE_INCOMPATIBLE: backup citysync-20261121T023000Z cannot be restored by this version: its warehouse has migrations 9999 that this version does not know; restore with citysync test or newer',
    )
    expect(await readdir(fresh.dataDir)).toEqual([])
  })

  it('restores into a fresh data directory with the same rows, and refuses a second time', async () => {
    const dataDir = await tmp('citysync-bk-restored-')
    const stores = { dataDir, clickhouseUrl: undefined, databaseUrl: undefined }
    const keyFile = join(dataDir, '..', `${dataDir.split('/').pop()}.key`)
    await writeFile(keyFile, 'not a key\n')
    expect(await codeOf(restoreBackup({ stores, backup: backupDir, env: {}, keyFile }))).toMatch(/^CITYSYNC_ERR_CONFIG_INVALID/)
    await writeFile(keyFile, masterKeyBytes(PASSPHRASE).toString('hex') + '\n')
    dirs.push(keyFile)

    const r = await restoreBackup({ stores, backup: backupDir, env: {}, keyFile })
    expect(r.restored).toBe(true)
    expect(r.keySource).toBe(keyFile)
    expect(r.tables.find((t) => t.part === 'warehouse' && t.table === 'parking_passage')?.rows).toBe(5003)
    // The key went into the new data directory, where embedded mode reads it.
    expect(existsSync(join(dataDir, 'keys', 'master.key'))).toBe(true)

    const metadata = await openMetadata({ dataDir })
    expect((await metadata.connectorState.get('lots-a')).cursor).toEqual({ in: 1200, out: 1100, space: 40 })
    expect((await metadata.sources.get('lots-a')).name).toBe('横琴停车')
    await metadata.close()

    // A second restore into the same directory is refused; the first is untouched.
    expect(await codeOf(restoreBackup({ stores, backup: backupDir, env }))).toMatch(/^CITYSYNC_ERR_RESTORE_NOT_EMPTY: restore needs an empty target: .*metadata.sqlite exists/)

    const wh = new ChdbWarehouse(join(dataDir, 'clickhouse'))
    try {
      const after = await statsOfTable(wh, 'parking_passage', [
        { name: 'sourceId', type: 'LowCardinality(String)' }, { name: 'eventId', type: 'String' },
      ])
      expect(after).toEqual(before)
      const [c] = await wh.query<{ n: number; u: number; f: number }>(
        'SELECT count() AS n, uniqExact(eventId) AS u, (SELECT count() FROM parking_passage FINAL) AS f FROM parking_passage',
      )
      // The three rows that had not been merged away yet are restored as they were; FINAL collapses them.
      expect(c).toEqual({ n: 5003, u: 5000, f: 5000 })
    } finally {
      await wh.close()
    }
  })

  it('keeps the N newest backups', async () => {
    const many = await tmp('citysync-bk-many-')
    for (const id of ['citysync-20261118T023000Z', 'citysync-20261119T023000Z', 'citysync-20261120T023000Z', 'citysync-20261121T023000Z']) {
      await mkdir(join(many, id))
      await writeFile(join(many, id, 'manifest.json'), '{}')
    }
    await mkdir(join(many, '.citysync-20261119T120000Z.partial'))
    await mkdir(join(many, 'unrelated'))
    expect(await applyRetention(many, 2, T0)).toEqual(['citysync-20261119T023000Z', 'citysync-20261118T023000Z', '.citysync-20261119T120000Z.partial'])
    expect((await listBackups(many)).map((b) => b.name)).toEqual(['citysync-20261120T023000Z', 'citysync-20261121T023000Z'])
    expect((await readdir(many)).sort()).toEqual(['citysync-20261120T023000Z', 'citysync-20261121T023000Z', 'unrelated'])
  })
})
