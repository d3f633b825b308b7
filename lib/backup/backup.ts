// `citysync backup`: a consistent, timestamped copy of the metadata store and
// the warehouse, with a manifest, into a target folder; then retention.
//
// Order is the consistency argument: a connector's cursor is saved only after
// the records before it have landed, so a metadata snapshot taken FIRST holds
// cursors at or behind what a warehouse snapshot taken SECOND contains. After
// a restore, connectors re-read from their cursors and the sink drops what is
// already there: no gap, no duplicate.

import { chmod, mkdir, rename, rm } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { type Logger } from 'pino'
import { systemClock, type Clock } from '../clock.ts'
import { type DerivedKeys } from '../crypto.ts'
import { CitysyncError, errorMessage, isCitysyncError } from '../errors.ts'
import { fileEntry, fsyncPath, writeFileAtomic } from './files.ts'
import { backupId, keyFingerprint, MANIFEST_FILE, MANIFEST_VERSION, MANIFEST_FORMAT, type Manifest, type MetadataPart, type WarehousePart } from './manifest.ts'
import { snapshotPg, snapshotSqlite } from './metadata-snapshot.ts'
import { applyRetention, checkKeep } from './retention.ts'
import { appliedWarehouseMigrations, dataTables, engineVersion, exportTable, openWarehouseEngine, type WarehouseEngine } from './warehouse-snapshot.ts'

export const DEFAULT_KEEP = 7

export interface BackupOptions {
  /** Where the stores are: CITYSYNC_DATA_DIR, CLICKHOUSE_URL, DATABASE_URL. */
  stores: { dataDir: string; clickhouseUrl: string | undefined; databaseUrl: string | undefined }
  /** The target folder; each backup is a sub-folder named by its time. */
  to: string
  /** Complete backups to keep in `to` (default 7). */
  keep?: number
  keys: DerivedKeys
  version: string
  /** An open warehouse (a process that holds the embedded chDB backs up through its own session). */
  engine?: WarehouseEngine
  clock?: Clock
  log?: Logger
}

export interface BackupResult {
  dir: string
  manifest: Manifest
  /** Older backups removed by retention. */
  removed: string[]
}

export async function createBackup(o: BackupOptions): Promise<BackupResult> {
  const clock = o.clock ?? systemClock
  const keep = checkKeep(o.keep ?? DEFAULT_KEEP)
  const to = resolve(o.to)
  const startedAt = clock.now()
  const id = backupId(startedAt)
  const dir = join(to, id)
  const partial = join(to, `.${id}.partial`)
  // Opened first: an embedded warehouse held by a running process refuses before anything is written.
  const engine = o.engine ?? openWarehouseEngine(o.stores)
  try {
    await mkdir(to, { recursive: true })
    // mkdir without `recursive` fails if the folder exists: two backups in the same second do not mix.
    try {
      await mkdir(partial, { mode: 0o750 })
    } catch (err) {
      throw new CitysyncError('CITYSYNC_ERR_BACKUP_FAILED', [`${partial} exists: another backup is running (${errorMessage(err)})`], { cause: err })
    }
  } catch (err) {
    if (o.engine === undefined) await engine.close()
    throw err
  }
  try {
    await mkdir(join(partial, 'metadata'), { mode: 0o750 })
    await mkdir(join(partial, 'warehouse'))
    // A ClickHouse server writes the table files itself, as its own user (in the citysync group).
    await chmod(join(partial, 'warehouse'), engine.transport === 'server' ? 0o770 : 0o750)

    // 1. Metadata first (see above).
    const metadata = await backupMetadata(o.stores, partial, clock)
    o.log?.info({ backup: id, dialect: metadata.dialect, tables: metadata.tables.length }, 'metadata snapshot taken')

    // 2. Then the warehouse, a table at a time.
    const warehouse = await backupWarehouse(engine, partial, clock, o.log)

    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      formatVersion: MANIFEST_VERSION,
      id,
      citysyncVersion: o.version,
      host: hostname(),
      startedAt,
      finishedAt: clock.now(),
      keyFingerprint: keyFingerprint(o.keys),
      metadata,
      warehouse,
    }
    await writeFileAtomic(join(partial, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n')
    await rename(partial, dir)
    await fsyncPath(to)
    const removed = await applyRetention(to, keep, clock.now())
    o.log?.info({ backup: dir, removed }, 'backup complete')
    return { dir, manifest, removed }
  } catch (err) {
    await rm(partial, { recursive: true, force: true }).catch(() => undefined)
    if (isCitysyncError(err) && err.code !== 'CITYSYNC_ERR_WAREHOUSE_QUERY') throw err
    throw new CitysyncError('CITYSYNC_ERR_BACKUP_FAILED', [errorMessage(err)], { cause: err })
  } finally {
    if (o.engine === undefined) await engine.close()
  }
}

async function backupMetadata(stores: BackupOptions['stores'], root: string, clock: Clock): Promise<MetadataPart> {
  const takenAt = clock.now()
  if (stores.databaseUrl) {
    const path = 'metadata/metadata.pgdump'
    const snap = await snapshotPg(stores.databaseUrl, join(root, path))
    return { ...snap, file: await fileEntry(root, path), takenAt }
  }
  const path = 'metadata/metadata.sqlite'
  const snap = await snapshotSqlite(stores.dataDir, join(root, path))
  return { ...snap, file: await fileEntry(root, path), takenAt }
}

async function backupWarehouse(engine: WarehouseEngine, root: string, clock: Clock, log: Logger | undefined): Promise<WarehousePart> {
  const startedAt = clock.now()
  const [version, migrations, tables] = await Promise.all([engineVersion(engine), appliedWarehouseMigrations(engine), dataTables(engine)])
  const out: WarehousePart['tables'] = []
  for (const name of tables) {
    const path = `warehouse/${name}.native.zst`
    const abs = join(root, path)
    const t0 = clock.now()
    const { columns, stats } = await exportTable(engine, name, abs)
    const file = await fileEntry(root, path)
    out.push({ name, rows: stats.rows, contentHash: stats.contentHash, columns, file })
    log?.info({ table: name, rows: stats.rows, bytes: file.bytes, ms: clock.now() - t0 }, 'warehouse table backed up')
  }
  return { transport: engine.transport, method: 'native', engineVersion: version, migrations, tables: out, startedAt, finishedAt: clock.now() }
}
