// The manifest of a backup: what it holds, how big, how many rows, and the
// checksums a restore verifies. Written last, so a folder without one is an
// unfinished backup.
//
// Layout of a backup folder `<target>/citysync-YYYYMMDDTHHMMSSZ/`:
//   manifest.json
//   metadata/metadata.sqlite          SQLite online backup (embedded), or
//   metadata/metadata.pgdump          pg_dump --format=custom (PostgreSQL)
//   warehouse/<table>.native.zst      one ClickHouse Native file per table
//
// Checksums: `sha256` is over a file's bytes. `contentHash` is over rows,
// independent of files and physical layout: for a warehouse table the wrapping
// UInt64 sum of cityHash64 of every row (each column cast to its backed-up
// type), as decimal text; for a metadata table the md5 of the sorted md5s of
// the rows' text (PostgreSQL) or of their JSON (SQLite).

import { sm3Hmac, type DerivedKeys } from '../crypto.ts'
import { CitysyncError } from '../errors.ts'

export const MANIFEST_FILE = 'manifest.json'
export const MANIFEST_FORMAT = 'citysync-backup'
export const MANIFEST_VERSION = 1
export const BACKUP_NAME_RE = /^citysync-(\d{8}T\d{6}(?:\d{3})?Z)$/

export interface FileEntry {
  /** Relative to the backup folder, `/`-separated. */
  path: string
  bytes: number
  sha256: string
}

export interface MetadataTable {
  name: string
  rows: number
  contentHash: string
}

export interface MetadataPart {
  dialect: 'sqlite' | 'pg'
  /** PostgreSQL: the schema the tables live in. */
  schema: string | null
  /** Applied knex migrations, by name. */
  migrations: string[]
  file: FileEntry
  tables: MetadataTable[]
  /** When the snapshot was taken (epoch ms). */
  takenAt: number
}

export interface WarehouseColumn {
  name: string
  type: string
}

export interface WarehouseTable {
  name: string
  rows: number
  contentHash: string
  columns: WarehouseColumn[]
  file: FileEntry
}

export interface WarehousePart {
  transport: 'chdb' | 'server'
  method: 'native'
  /** ClickHouse version that wrote the files. */
  engineVersion: string
  /** Applied warehouse migrations (versions from schema_migrations). */
  migrations: number[]
  tables: WarehouseTable[]
  startedAt: number
  finishedAt: number
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT
  formatVersion: number
  id: string
  citysyncVersion: string
  host: string
  startedAt: number
  finishedAt: number
  /** SM3-HMAC fingerprint of the master key; the key itself is never in a backup. */
  keyFingerprint: string
  /** Taken first: every connector cursor in it is at or behind the warehouse. */
  metadata: MetadataPart
  warehouse: WarehousePart
}

/** `citysync-20261121T023000Z`: sorts by time, and the folder name is the id. */
export function backupId(at: number): string {
  return `citysync-${new Date(at).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z')}`
}

/** The time in a backup's name, or undefined for names that are not backups. */
export function backupTime(name: string): number | undefined {
  const m = BACKUP_NAME_RE.exec(name)
  if (!m) return undefined
  const s = m[1]!
  const iso = `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}T${s.slice(9, 11)}:${s.slice(11, 13)}:${s.slice(13, 15)}Z`
  const t = Date.parse(iso)
  return Number.isNaN(t) ? undefined : t
}

/** Identifies a master key without revealing it: a keyed hash under a key derived from it. */
export function keyFingerprint(keys: DerivedKeys): string {
  return `sm3:${sm3Hmac(keys.macKey, 'citysync/key-fingerprint/v1').slice(0, 32)}`
}

/**
 * Parses and checks a manifest's shape. Values are validated here, once, so
 * the restore can trust paths (no `..`, no absolute paths) and numbers.
 */
export function parseManifest(text: string, where: string): Manifest {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw invalid(where, `manifest is not JSON (${(err as Error).message})`)
  }
  const m = obj(raw, where, 'manifest')
  if (m.format !== MANIFEST_FORMAT) throw invalid(where, `not a citysync backup manifest (format ${JSON.stringify(m.format)})`)
  const formatVersion = int(m.formatVersion, where, 'formatVersion')
  if (formatVersion > MANIFEST_VERSION) {
    throw new CitysyncError('CITYSYNC_ERR_RESTORE_INCOMPATIBLE', [where, `manifest format ${formatVersion} is newer than ${MANIFEST_VERSION}; restore with a newer citysync`])
  }
  const md = obj(m.metadata, where, 'metadata')
  const wh = obj(m.warehouse, where, 'warehouse')
  const dialect = md.dialect
  if (dialect !== 'sqlite' && dialect !== 'pg') throw invalid(where, `metadata.dialect ${JSON.stringify(dialect)}`)
  const transport = wh.transport
  if (transport !== 'chdb' && transport !== 'server') throw invalid(where, `warehouse.transport ${JSON.stringify(transport)}`)
  if (wh.method !== 'native') throw invalid(where, `warehouse.method ${JSON.stringify(wh.method)}`)
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    formatVersion,
    id: str(m.id, where, 'id'),
    citysyncVersion: str(m.citysyncVersion, where, 'citysyncVersion'),
    host: str(m.host, where, 'host'),
    startedAt: int(m.startedAt, where, 'startedAt'),
    finishedAt: int(m.finishedAt, where, 'finishedAt'),
    keyFingerprint: str(m.keyFingerprint, where, 'keyFingerprint'),
    metadata: {
      dialect,
      schema: md.schema === null ? null : str(md.schema, where, 'metadata.schema'),
      migrations: arr(md.migrations, where, 'metadata.migrations').map((v, i) => str(v, where, `metadata.migrations[${i}]`)),
      file: fileEntry(md.file, where, 'metadata.file'),
      tables: arr(md.tables, where, 'metadata.tables').map((t, i) => {
        const o = obj(t, where, `metadata.tables[${i}]`)
        return { name: ident(o.name, where, `metadata.tables[${i}].name`), rows: int(o.rows, where, `metadata.tables[${i}].rows`), contentHash: str(o.contentHash, where, `metadata.tables[${i}].contentHash`) }
      }),
      takenAt: int(md.takenAt, where, 'metadata.takenAt'),
    },
    warehouse: {
      transport,
      method: 'native',
      engineVersion: str(wh.engineVersion, where, 'warehouse.engineVersion'),
      migrations: arr(wh.migrations, where, 'warehouse.migrations').map((v, i) => int(v, where, `warehouse.migrations[${i}]`)),
      tables: arr(wh.tables, where, 'warehouse.tables').map((t, i) => {
        const at = `warehouse.tables[${i}]`
        const o = obj(t, where, at)
        return {
          name: ident(o.name, where, `${at}.name`),
          rows: int(o.rows, where, `${at}.rows`),
          contentHash: str(o.contentHash, where, `${at}.contentHash`),
          columns: arr(o.columns, where, `${at}.columns`).map((c, j) => {
            const co = obj(c, where, `${at}.columns[${j}]`)
            return { name: ident(co.name, where, `${at}.columns[${j}].name`), type: columnType(co.type, where, `${at}.columns[${j}].type`) }
          }),
          file: fileEntry(o.file, where, `${at}.file`),
        }
      }),
      startedAt: int(wh.startedAt, where, 'warehouse.startedAt'),
      finishedAt: int(wh.finishedAt, where, 'warehouse.finishedAt'),
    },
  }
  if (!BACKUP_NAME_RE.test(manifest.id)) throw invalid(where, `id ${JSON.stringify(manifest.id)}`)
  return manifest
}

export function manifestFiles(m: Manifest): FileEntry[] {
  return [m.metadata.file, ...m.warehouse.tables.map((t) => t.file)]
}

function invalid(where: string, why: string): CitysyncError {
  return new CitysyncError('CITYSYNC_ERR_BACKUP_INVALID', [where, why])
}

function obj(v: unknown, where: string, at: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(where, `${at} must be an object`)
  return v as Record<string, unknown>
}

function arr(v: unknown, where: string, at: string): unknown[] {
  if (!Array.isArray(v)) throw invalid(where, `${at} must be an array`)
  return v
}

function str(v: unknown, where: string, at: string): string {
  if (typeof v !== 'string' || v.length === 0) throw invalid(where, `${at} must be a non-empty string`)
  return v
}

function int(v: unknown, where: string, at: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw invalid(where, `${at} must be a non-negative integer`)
  return v
}

/** Table and column names go into SQL (quoted), so they are held to a plain shape. */
function ident(v: unknown, where: string, at: string): string {
  const s = str(v, where, at)
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(s)) throw invalid(where, `${at} ${JSON.stringify(s)} is not a plain identifier`)
  return s
}

/** A ClickHouse type as system.columns renders it; it goes into CAST(x, 'type'). */
function columnType(v: unknown, where: string, at: string): string {
  const s = str(v, where, at)
  if (!/^[A-Za-z0-9_(), '=.-]+$/.test(s)) throw invalid(where, `${at} ${JSON.stringify(s)}`)
  return s
}

function fileEntry(v: unknown, where: string, at: string): FileEntry {
  const o = obj(v, where, at)
  const path = str(o.path, where, `${at}.path`)
  if (!/^(metadata|warehouse)\/[A-Za-z0-9_.-]+$/.test(path) || path.includes('..')) throw invalid(where, `${at}.path ${JSON.stringify(path)}`)
  const sha256 = str(o.sha256, where, `${at}.sha256`)
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw invalid(where, `${at}.sha256`)
  return { path, bytes: int(o.bytes, where, `${at}.bytes`), sha256 }
}
