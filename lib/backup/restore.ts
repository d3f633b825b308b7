// `citysync restore BACKUP`: checks a backup against its manifest, then loads
// it into an empty data directory / database and checks what landed, table by
// table, against the manifest's row counts and content hashes.
//
// Nothing is written before every check that can be made up front has passed:
// manifest shape and version, every file's size and SHA-256, the master key's
// fingerprint, and that the targets are empty.

import { existsSync } from 'node:fs'
import { chmod, copyFile, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Logger } from 'pino'
import { systemClock, type Clock } from '../clock.ts'
import { deriveKeys, masterKeyBytes } from '../crypto.ts'
import { CitysyncError, errorMessage, isCitysyncError } from '../errors.ts'
import { DirectoryMigrationSource } from '../metadata/db.ts'
import { ChdbWarehouse } from '../../pipelines/warehouse/chdb-warehouse.ts'
import { loadMigrations, migrateWarehouse } from '../../pipelines/warehouse/migrate.ts'
import { openWarehouse } from '../../pipelines/warehouse/open.ts'
import { sha256File } from './files.ts'
import { sqlIdent } from './sql.ts'
import { keyFingerprint, MANIFEST_FILE, manifestFiles, type Manifest, type MetadataTable, parseManifest } from './manifest.ts'
import { checkPgDump, pgTablesIn, restorePg, SQLITE_FILE, sqliteFileStats } from './metadata-snapshot.ts'
import {
  dataTables,
  importTable,
  insertableColumns,
  materializedViews,
  openWarehouseEngine,
  statsOfFile,
  type WarehouseEngine,
} from './warehouse-snapshot.ts'

const METADATA_MIGRATIONS_DIR = fileURLToPath(new URL('../../infra/db/migrations/', import.meta.url))

export interface RestoreOptions {
  /** The targets: CITYSYNC_DATA_DIR, CLICKHOUSE_URL, DATABASE_URL. */
  stores: { dataDir: string; clickhouseUrl: string | undefined; databaseUrl: string | undefined }
  /** The backup folder (the one holding manifest.json). */
  backup: string
  /** Check the backup (files, checksums, rows) and the key; restore nothing. */
  verifyOnly?: boolean
  /** CITYSYNC_MASTER_KEY comes from here. */
  env: Record<string, string | undefined>
  /** A file holding the master key (hex, as `keys/master.key`). */
  keyFile?: string | undefined
  clock?: Clock
  log?: Logger
}

export interface TableResult {
  part: 'metadata' | 'warehouse'
  table: string
  rows: number
}

export interface RestoreResult {
  manifest: Manifest
  /** Files whose size and SHA-256 matched. */
  files: number
  /** Tables whose rows and content hash matched the manifest. */
  tables: TableResult[]
  /** How the key was checked: its source, or null when none was given (verify-only). */
  keySource: string | null
  restored: boolean
  ms: number
}

export async function readManifest(dir: string): Promise<Manifest> {
  const file = join(dir, MANIFEST_FILE)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new CitysyncError('CITYSYNC_ERR_BACKUP_INVALID', [dir, `no ${MANIFEST_FILE} (an unfinished backup, or not a backup folder): ${errorMessage(err)}`], { cause: err })
  }
  return parseManifest(text, dir)
}

export async function restoreBackup(o: RestoreOptions): Promise<RestoreResult> {
  const clock = o.clock ?? systemClock
  const t0 = clock.now()
  const dir = resolve(o.backup)
  const manifest = await readManifest(dir)
  await checkCompatible(manifest)
  if (!o.verifyOnly) checkTargetKind(manifest, o.stores)
  const files = await checkFiles(dir, manifest)
  o.log?.info({ backup: manifest.id, files }, 'files match the manifest')
  const key = await checkKey(manifest, o)

  if (o.verifyOnly) {
    const tables = await verifyContents(dir, manifest)
    return { manifest, files, tables, keySource: key?.source ?? null, restored: false, ms: clock.now() - t0 }
  }
  if (!key) {
    throw new CitysyncError('CITYSYNC_ERR_RESTORE_KEY_MISSING', [manifest.id, manifest.keyFingerprint])
  }

  // Targets must be empty before anything is written.
  if (manifest.metadata.dialect === 'sqlite') {
    const target = join(o.stores.dataDir, SQLITE_FILE)
    for (const f of [target, `${target}-wal`]) {
      if (existsSync(f)) throw new CitysyncError('CITYSYNC_ERR_RESTORE_NOT_EMPTY', [`${f} exists; restore into a new data directory`])
    }
  } else {
    const present = await pgTablesIn(o.stores.databaseUrl!, manifest.metadata.schema!)
    if (present.length > 0) {
      throw new CitysyncError('CITYSYNC_ERR_RESTORE_NOT_EMPTY', [
        `schema ${manifest.metadata.schema} of DATABASE_URL already has tables (${present.slice(0, 5).join(', ')}${present.length > 5 ? ', …' : ''}); restore into a new database`,
      ])
    }
  }
  const engine = openWarehouseEngine(o.stores)
  try {
    await checkWarehouseEmpty(engine)
    const tables: TableResult[] = []

    tables.push(...(await restoreMetadata(dir, manifest, o.stores)))
    o.log?.info({ backup: manifest.id, tables: manifest.metadata.tables.length }, 'metadata restored and verified')

    await migrateTarget(engine, o.stores)
    tables.push(...(await restoreWarehouse(dir, manifest, engine, o.log)))

    if (key.install !== undefined) {
      const keyDir = join(o.stores.dataDir, 'keys')
      await mkdir(keyDir, { recursive: true, mode: 0o700 })
      const keyFile = join(keyDir, 'master.key')
      if (!existsSync(keyFile)) {
        await writeFile(keyFile, `${key.install}\n`, { mode: 0o600, flag: 'wx' })
        await chmod(keyFile, 0o600)
      }
    }
    return { manifest, files, tables, keySource: key.source, restored: true, ms: clock.now() - t0 }
  } finally {
    await engine.close()
  }
}

/** Refuses a backup this version cannot take, before anything is checked or written. */
async function checkCompatible(m: Manifest): Promise<void> {
  const knownWh = new Set(loadMigrations().map((x) => x.version))
  const newerWh = m.warehouse.migrations.filter((v) => !knownWh.has(v))
  if (newerWh.length > 0) {
    throw new CitysyncError('CITYSYNC_ERR_RESTORE_INCOMPATIBLE', [m.id, `its warehouse has migrations ${newerWh.join(', ')} that this version does not know; restore with citysync ${m.citysyncVersion} or newer`])
  }
  const src = new DirectoryMigrationSource(METADATA_MIGRATIONS_DIR)
  const knownMd = new Set((await src.getMigrations()).map((f) => src.getMigrationName(f)))
  const newerMd = m.metadata.migrations.filter((n) => !knownMd.has(n))
  if (newerMd.length > 0) {
    throw new CitysyncError('CITYSYNC_ERR_RESTORE_INCOMPATIBLE', [m.id, `its metadata store has migrations ${newerMd.join(', ')} that this version does not know; restore with citysync ${m.citysyncVersion} or newer`])
  }
}

/** The configured targets must be of the backup's kind. */
function checkTargetKind(m: Manifest, stores: RestoreOptions['stores']): void {
  if (m.metadata.dialect === 'pg' && !stores.databaseUrl) {
    throw new CitysyncError('CITYSYNC_ERR_RESTORE_INCOMPATIBLE', [m.id, 'its metadata is a PostgreSQL dump: set DATABASE_URL to the (empty) database to restore into'])
  }
  if (m.metadata.dialect === 'sqlite' && stores.databaseUrl) {
    throw new CitysyncError('CITYSYNC_ERR_RESTORE_INCOMPATIBLE', [m.id, 'its metadata is an embedded SQLite store: unset DATABASE_URL to restore it into the data directory'])
  }
}

async function checkFiles(dir: string, m: Manifest): Promise<number> {
  let n = 0
  for (const f of manifestFiles(m)) {
    const abs = join(dir, f.path)
    let size: number
    try {
      size = (await stat(abs)).size
    } catch {
      throw new CitysyncError('CITYSYNC_ERR_BACKUP_CORRUPT', [m.id, `${f.path} is missing`])
    }
    if (size !== f.bytes) throw new CitysyncError('CITYSYNC_ERR_BACKUP_CORRUPT', [m.id, `${f.path} has ${size} bytes, the manifest says ${f.bytes}`])
    const sha = await sha256File(abs)
    if (sha !== f.sha256) throw new CitysyncError('CITYSYNC_ERR_BACKUP_CORRUPT', [m.id, `${f.path} has SHA-256 ${sha}, the manifest says ${f.sha256}`])
    n++
  }
  return n
}

interface RestoreKey {
  source: string
  /** Hex to write to `<dataDir>/keys/master.key` (embedded target, key given as a file). */
  install?: string
}

/**
 * The key a restored store will be opened with must be the one the backup was
 * made with, or sealed secrets and plate ciphers in it are unreadable: refuse
 * a mismatch. Sources, in order: CITYSYNC_MASTER_KEY, --key-file, the target
 * data directory's keys/master.key.
 */
async function checkKey(m: Manifest, o: RestoreOptions): Promise<RestoreKey | undefined> {
  let text: string | undefined
  let source: string
  let fromFile = false
  if (o.env.CITYSYNC_MASTER_KEY !== undefined && o.env.CITYSYNC_MASTER_KEY.trim() !== '') {
    text = o.env.CITYSYNC_MASTER_KEY
    source = 'CITYSYNC_MASTER_KEY'
  } else if (o.keyFile !== undefined) {
    text = await readFile(o.keyFile, 'utf8')
    source = o.keyFile
    fromFile = true
  } else {
    const inDir = join(o.stores.dataDir, 'keys', 'master.key')
    if (!existsSync(inDir)) return undefined
    text = await readFile(inDir, 'utf8')
    source = inDir
  }
  const bytes = masterKeyBytes(text)
  const fp = keyFingerprint(deriveKeys(bytes))
  if (fp !== m.keyFingerprint) {
    throw new CitysyncError('CITYSYNC_ERR_RESTORE_KEY_MISMATCH', [m.id, m.keyFingerprint, `${fp} (from ${source})`])
  }
  // Only an embedded target reads its key from the data directory; shared stores need CITYSYNC_MASTER_KEY.
  const embedded = !o.stores.databaseUrl && !o.stores.clickhouseUrl
  return fromFile && embedded ? { source, install: bytes.toString('hex') } : { source }
}

function compareTables(part: 'metadata' | 'warehouse', m: Manifest, expected: readonly MetadataTable[], got: readonly MetadataTable[], what: string): TableResult[] {
  const byName = new Map(got.map((t) => [t.name, t]))
  const problems: string[] = []
  for (const e of expected) {
    const g = byName.get(e.name)
    if (!g) problems.push(`${e.name}: missing`)
    else if (g.rows !== e.rows) problems.push(`${e.name}: ${g.rows} rows, expected ${e.rows}`)
    else if (g.contentHash !== e.contentHash) problems.push(`${e.name}: content hash ${g.contentHash}, expected ${e.contentHash}`)
  }
  if (problems.length > 0) {
    const code = what === 'backup' ? 'CITYSYNC_ERR_BACKUP_CORRUPT' : 'CITYSYNC_ERR_RESTORE_VERIFY'
    throw new CitysyncError(code, [what === 'backup' ? m.id : `${part} of ${m.id}`, problems.join('; ')])
  }
  return expected.map((e) => ({ part, table: e.name, rows: e.rows }))
}

/** --verify-only: reads every table of the backup back and compares counts and hashes. */
async function verifyContents(dir: string, m: Manifest): Promise<TableResult[]> {
  const out: TableResult[] = []
  if (m.metadata.dialect === 'sqlite') {
    out.push(...compareTables('metadata', m, m.metadata.tables, sqliteFileStats(join(dir, m.metadata.file.path)).tables, 'backup'))
  } else {
    // A dump's rows can only be counted by restoring it; its bytes are checked by SHA-256 and its archive here.
    await checkPgDump(join(dir, m.metadata.file.path))
  }
  // A scratch engine in a temporary folder reads the Native files; nothing of the live stores is touched.
  const scratch = await mkdtemp(join(tmpdir(), 'citysync-verify-'))
  const engine = new ChdbWarehouse(scratch)
  try {
    const got: MetadataTable[] = []
    for (const t of m.warehouse.tables) {
      const s = await statsOfFile(engine, join(dir, t.file.path), t.columns)
      got.push({ name: t.name, rows: s.rows, contentHash: s.contentHash })
    }
    out.push(...compareTables('warehouse', m, m.warehouse.tables, got, 'backup'))
  } finally {
    await engine.close()
    await rm(scratch, { recursive: true, force: true })
  }
  return out
}

async function checkWarehouseEmpty(engine: WarehouseEngine): Promise<void> {
  const full: string[] = []
  for (const t of await dataTables(engine)) {
    const [r] = await engine.query<{ n: number }>(`SELECT count() AS n FROM ${sqlIdent(t)}`)
    if (Number(r?.n ?? 0) > 0) full.push(`${t} (${r!.n} rows)`)
  }
  if (full.length > 0) throw new CitysyncError('CITYSYNC_ERR_RESTORE_NOT_EMPTY', [`the warehouse already holds rows: ${full.join(', ')}`])
}

async function restoreMetadata(dir: string, m: Manifest, stores: RestoreOptions['stores']): Promise<TableResult[]> {
  const src = join(dir, m.metadata.file.path)
  if (m.metadata.dialect === 'sqlite') {
    await mkdir(stores.dataDir, { recursive: true })
    const target = join(stores.dataDir, SQLITE_FILE)
    const tmp = `${target}.restoring`
    await copyFile(src, tmp)
    const checked = compareTables('metadata', m, m.metadata.tables, sqliteFileStats(tmp).tables, 'restore')
    await rename(tmp, target)
    return checked
  } else {
    const got = await restorePg(stores.databaseUrl!, m.metadata.schema!, src)
    return compareTables('metadata', m, m.metadata.tables, got.tables, 'restore')
  }
}

/** Tables come from this version's migrations (a backup from an older version lands in the newer schema). */
async function migrateTarget(engine: WarehouseEngine, stores: RestoreOptions['stores']): Promise<void> {
  if (engine instanceof ChdbWarehouse) {
    await migrateWarehouse(engine)
    return
  }
  const wh = await openWarehouse({ clickhouseUrl: stores.clickhouseUrl, dataDir: stores.dataDir })
  await wh.close()
}

async function restoreWarehouse(dir: string, m: Manifest, engine: WarehouseEngine, log: Logger | undefined): Promise<TableResult[]> {
  for (const t of m.warehouse.tables) {
    const have = new Set((await insertableColumns(engine, t.name)).map((c) => c.name))
    if (have.size === 0) throw new CitysyncError('CITYSYNC_ERR_RESTORE_INCOMPATIBLE', [m.id, `table ${t.name} does not exist in this version's warehouse`])
    const gone = t.columns.filter((c) => !have.has(c.name)).map((c) => c.name)
    if (gone.length > 0) throw new CitysyncError('CITYSYNC_ERR_RESTORE_INCOMPATIBLE', [m.id, `table ${t.name} no longer has column(s) ${gone.join(', ')}`])
  }
  // Views fire on inserts into their source tables; their target tables are restored from the backup instead.
  const views = await materializedViews(engine)
  for (const v of views) await engine.command(`DETACH TABLE ${sqlIdent(v)}`)
  // No merges until the rows are verified: a merge may collapse rows ReplacingMergeTree had not yet
  // collapsed when the backup was taken, and TTL merges drop expired ones.
  for (const t of m.warehouse.tables) await engine.command(`SYSTEM STOP MERGES ${sqlIdent(t.name)}`)
  const got: MetadataTable[] = []
  try {
    for (const t of m.warehouse.tables) {
      const s = await importTable(engine, t, join(dir, t.file.path))
      got.push({ name: t.name, rows: s.rows, contentHash: s.contentHash })
      log?.info({ table: t.name, rows: s.rows }, 'warehouse table restored')
    }
  } catch (err) {
    if (isCitysyncError(err)) throw err
    throw new CitysyncError('CITYSYNC_ERR_WAREHOUSE_QUERY', [errorMessage(err)], { cause: err })
  } finally {
    for (const t of m.warehouse.tables) await engine.command(`SYSTEM START MERGES ${sqlIdent(t.name)}`)
    for (const v of views) await engine.command(`ATTACH TABLE ${sqlIdent(v)}`)
  }
  return compareTables('warehouse', m, m.warehouse.tables, got, 'restore')
}
