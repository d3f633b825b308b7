// How long a backup, a verification and a restore take for a warehouse of N
// rows (default 10M), embedded stores (chDB in this process, SQLite).
//
//   node --import tsx bench/restore.ts [rows] [--keep]
//
// The warehouse is filled by ClickHouse itself (INSERT ... SELECT FROM
// numbers()) with rows shaped like real ones: 80 % passages (event ids,
// plate keys and SM4 ciphers as hex, masked plates, fees), 20 % occupancy
// reports. Then: `backup` through the open session (as the embedded process
// does), `restore --verify-only`, and a restore into a fresh data directory,
// each timed, with the sizes on disk.

import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createBackup } from '../lib/backup/backup.ts'
import { restoreBackup } from '../lib/backup/restore.ts'
import { deriveKeys } from '../lib/crypto.ts'
import { openMetadata } from '../lib/metadata/db.ts'
import { ChdbWarehouse } from '../pipelines/warehouse/chdb-warehouse.ts'
import { migrateWarehouse } from '../pipelines/warehouse/migrate.ts'

const args = process.argv.slice(2)
const total = Number(args.find((a) => /^\d+$/.test(a)) ?? 10_000_000)
const keepFiles = args.includes('--keep')
const passages = Math.round(total * 0.8)
const occupancy = total - passages
const KEY = 'benchmark master key, long enough'
const keys = deriveKeys(KEY)

const root = mkdtempSync(join(tmpdir(), 'citysync-bench-restore-'))
const src = join(root, 'src')
const dst = join(root, 'dst')
const target = join(root, 'backups')
const stores = (dataDir: string): { dataDir: string; clickhouseUrl: undefined; databaseUrl: undefined } => ({ dataDir, clickhouseUrl: undefined, databaseUrl: undefined })

const du = (path: string): string => execFileSync('du', ['-sh', path], { encoding: 'utf8' }).split('\t')[0]!
const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`
const line = (s: string): void => {
  process.stdout.write(s + '\n')
}

async function timed<T>(what: string, fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now()
  const value = await fn()
  const ms = performance.now() - t0
  line(`${what.padEnd(34)} ${secs(ms)}`)
  return { value, ms }
}

try {
  line(`warehouse of ${total.toLocaleString('en')} rows: ${passages.toLocaleString('en')} passages, ${occupancy.toLocaleString('en')} occupancy reports`)
  const md = await openMetadata({ dataDir: src })
  for (let i = 0; i < 50; i++) {
    const id = `lots-${i}`
    await md.sources.add({ id, kind: 'parking-lots', name: `Car parks ${i}`, operator: null, district: null, timezone: 'Asia/Shanghai', schedule: { every: '30s' }, freshness: { maxDelay: '2h' }, config: { baseUrl: 'http://127.0.0.1:4100/' } })
    await md.connectorState.saveCheckpoint(id, { in: i * 1000, out: i * 900, space: i * 50 }, Date.now())
  }
  await md.close()

  const wh = new ChdbWarehouse(join(src, 'clickhouse'))
  await migrateWarehouse(wh)
  await timed('fill (INSERT ... SELECT)', async () => {
    await wh.command(`INSERT INTO parking_passage SELECT
        'lots-' || toString(number % 50), hex(SHA256(toString(number))),
        toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number * 2500),
        toDateTime64('2026-01-01 00:00:05', 3, 'UTC') + toIntervalMillisecond(number * 2500),
        'P' || toString(number % 400), 'R' || toString(number), if(number % 2 = 0, 'entry', 'exit'), 'G' || toString(number % 4),
        hex(SHA256(toString(number % 300000))), hex(randomString(48)), '粤C***' || leftPad(toString(number % 100), 2, '0'), 'blue',
        number % 50 = 0, if(number % 2 = 1, toInt32(number % 5000), NULL),
        if(number % 2 = 1, toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number * 2500 - 7200000), NULL)
      FROM numbers(${passages})`)
    await wh.command(`INSERT INTO parking_occupancy SELECT
        'lots-' || toString(number % 50), hex(SHA256('o' || toString(number))),
        toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number * 10000),
        toDateTime64('2026-01-01 00:00:02', 3, 'UTC') + toIntervalMillisecond(number * 10000),
        'P' || toString(number % 400), toInt32(number % 500), 500, 'normal'
      FROM numbers(${occupancy})`)
  })
  line(`data directory on disk                ${du(join(src, 'clickhouse'))}`)

  const backup = await timed('backup (open session)', () => createBackup({ stores: stores(src), to: target, keys, version: 'bench', engine: wh }))
  await wh.close()
  const m = backup.value.manifest
  const bytes = m.warehouse.tables.reduce((s, t) => s + t.file.bytes, 0) + m.metadata.file.bytes
  line(`backup size                           ${(bytes / 1048576).toFixed(0)} MB (${du(backup.value.dir)} on disk)`)
  for (const t of m.warehouse.tables) if (t.rows > 0) line(`  ${t.name.padEnd(20)} ${String(t.rows).padStart(10)} rows ${(t.file.bytes / 1048576).toFixed(0).padStart(6)} MB`)

  const env = { CITYSYNC_MASTER_KEY: KEY }
  await timed('restore --verify-only', () => restoreBackup({ stores: stores(join(root, 'none')), backup: backup.value.dir, verifyOnly: true, env }))
  const restored = await timed('restore into a fresh data directory', () => restoreBackup({ stores: stores(dst), backup: backup.value.dir, env }))
  const rows = restored.value.tables.filter((t) => t.part === 'warehouse').reduce((s, t) => s + t.rows, 0)
  line(`restored and verified                 ${rows.toLocaleString('en')} warehouse rows, ${restored.value.tables.filter((t) => t.part === 'metadata').length} metadata tables`)
  line(`restored data directory on disk       ${du(join(dst, 'clickhouse'))}`)
} finally {
  if (keepFiles) line(`files kept in ${root}`)
  else rmSync(root, { recursive: true, force: true })
}
