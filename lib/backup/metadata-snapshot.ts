// The metadata half of a backup: SQLite's online backup API (embedded mode) or
// pg_dump (PostgreSQL), with row counts and content hashes taken from exactly
// the same snapshot as the copy.
//
// PostgreSQL: one REPEATABLE READ transaction exports its snapshot, counts and
// hashes every table in it, and pg_dump runs on that snapshot (--snapshot)
// while the transaction stays open. SQLite: the counts are read from the copy.

import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pg from 'pg'
import { CitysyncError, errorMessage } from '../errors.ts'
import { type MetadataTable } from './manifest.ts'

export const SQLITE_FILE = 'metadata.sqlite'

export interface MetadataSnapshot {
  dialect: 'sqlite' | 'pg'
  schema: string | null
  migrations: string[]
  tables: MetadataTable[]
}

// ---- SQLite ---------------------------------------------------------------

function sqliteStats(file: string): Omit<MetadataSnapshot, 'dialect' | 'schema'> {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    const names = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`).all() as { name: string }[]).map((r) => r.name)
    const tables = names.map((name) => {
      const hashes = (db.prepare(`SELECT * FROM "${name.replace(/"/g, '""')}"`).raw().all() as unknown[][]).map((row) => md5(JSON.stringify(row)))
      return { name, rows: hashes.length, contentHash: md5(hashes.sort().join('')) }
    })
    const migrations = names.includes('knex_migrations')
      ? (db.prepare('SELECT name FROM knex_migrations ORDER BY id').all() as { name: string }[]).map((r) => r.name)
      : []
    return { tables, migrations }
  } finally {
    db.close()
  }
}

/** Copies `<dataDir>/metadata.sqlite` to `dest` with SQLite's online backup: writers may go on meanwhile. */
export async function snapshotSqlite(dataDir: string, dest: string): Promise<MetadataSnapshot> {
  const src = join(dataDir, SQLITE_FILE)
  if (!existsSync(src)) throw new CitysyncError('CITYSYNC_ERR_BACKUP_FAILED', [`no metadata store at ${src}`])
  const db = new Database(src, { fileMustExist: true })
  try {
    db.pragma('busy_timeout = 5000')
    await db.backup(dest)
  } finally {
    db.close()
  }
  // The copy inherits WAL mode; a backup is one self-contained file, without -wal and -shm beside it.
  const copy = new Database(dest, { fileMustExist: true })
  try {
    copy.pragma('journal_mode = DELETE')
  } finally {
    copy.close()
  }
  return { dialect: 'sqlite', schema: null, ...sqliteStats(dest) }
}

export function sqliteFileStats(file: string): MetadataSnapshot {
  return { dialect: 'sqlite', schema: null, ...sqliteStats(file) }
}

// ---- PostgreSQL -------------------------------------------------------------

/** Session settings that make a row's text rendering the same in every session. */
const CANONICAL_SESSION = [
  `SET LOCAL TimeZone = 'UTC'`,
  `SET LOCAL DateStyle = 'ISO, YMD'`,
  `SET LOCAL IntervalStyle = 'postgres'`,
  `SET LOCAL extra_float_digits = 3`,
  `SET LOCAL bytea_output = 'hex'`,
]

function pgIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`
}

async function pgStats(client: pg.Client, schema: string): Promise<Omit<MetadataSnapshot, 'dialect' | 'schema'>> {
  const { rows: names } = await client.query<{ name: string }>(
    `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name`,
    [schema],
  )
  const tables: MetadataTable[] = []
  for (const { name } of names) {
    const q = `SELECT count(*)::bigint AS n, coalesce(md5(string_agg(h, '' ORDER BY h)), '') AS h
               FROM (SELECT md5(t::text) AS h FROM ${pgIdent(schema)}.${pgIdent(name)} t) s`
    const { rows } = await client.query<{ n: string; h: string }>(q)
    tables.push({ name, rows: Number(rows[0]!.n), contentHash: rows[0]!.h === '' ? md5('') : rows[0]!.h })
  }
  const migrations = names.some((n) => n.name === 'knex_migrations')
    ? (await client.query<{ name: string }>(`SELECT name FROM ${pgIdent(schema)}.knex_migrations ORDER BY id`)).rows.map((r) => r.name)
    : []
  return { tables, migrations }
}

/** libpq connection for the pg_* tools: the URL without its password, which goes in the environment. */
function pgToolArgs(url: string): { dbname: string; env: NodeJS.ProcessEnv } {
  const u = new URL(url)
  const password = decodeURIComponent(u.password)
  u.password = ''
  return { dbname: u.toString(), env: { ...process.env, ...(password ? { PGPASSWORD: password } : {}) } }
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (c: Buffer) => (out += c.toString()))
    child.stderr.on('data', (c: Buffer) => (err += c.toString()))
    child.once('error', (e) => reject(new Error(`${cmd}: ${e.message} (is the PostgreSQL client installed?)`)))
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`))))
  })
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url })
  try {
    await client.connect()
  } catch (err) {
    throw new CitysyncError('CITYSYNC_ERR_METADATA_UNAVAILABLE', [`pg: ${errorMessage(err)}`], { cause: err })
  }
  return client
}

/** pg_dump (custom format) of citysync's schema, on the same snapshot its counts and hashes come from. */
export async function snapshotPg(url: string, dest: string): Promise<MetadataSnapshot> {
  const client = await connect(url)
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    for (const s of CANONICAL_SESSION) await client.query(s)
    const { rows } = await client.query<{ snap: string; schema: string }>('SELECT pg_export_snapshot() AS snap, current_schema() AS schema')
    const { snap, schema } = rows[0]!
    const stats = await pgStats(client, schema)
    const { dbname, env } = pgToolArgs(url)
    await run('pg_dump', ['--format=custom', '--no-owner', '--no-privileges', `--snapshot=${snap}`, `--schema=${schema}`, `--file=${dest}`, `--dbname=${dbname}`], env)
    await client.query('COMMIT')
    return { dialect: 'pg', schema, ...stats }
  } finally {
    await client.end()
  }
}

/** Tables already in the target schema; a restore needs none. */
export async function pgTablesIn(url: string, schema: string): Promise<string[]> {
  const client = await connect(url)
  try {
    const { rows } = await client.query<{ name: string }>(
      `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [schema],
    )
    return rows.map((r) => r.name)
  } finally {
    await client.end()
  }
}

/** Checks the archive's table of contents without restoring it. */
export async function checkPgDump(file: string): Promise<void> {
  await run('pg_restore', ['--list', file], process.env)
}

/** pg_restore into the (empty) schema, in one transaction, then the counts and hashes of what is there. */
export async function restorePg(url: string, schema: string, file: string): Promise<MetadataSnapshot> {
  const client = await connect(url)
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${pgIdent(schema)}`)
    const { dbname, env } = pgToolArgs(url)
    // --schema leaves out CREATE SCHEMA, which would fail for `public`, present in every database.
    await run('pg_restore', ['--no-owner', '--no-privileges', '--exit-on-error', '--single-transaction', `--schema=${schema}`, `--dbname=${dbname}`, file], env)
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    for (const s of CANONICAL_SESSION) await client.query(s)
    const stats = await pgStats(client, schema)
    await client.query('COMMIT')
    return { dialect: 'pg', schema, ...stats }
  } finally {
    await client.end()
  }
}

function md5(s: string): string {
  return createHash('md5').update(s).digest('hex')
}
