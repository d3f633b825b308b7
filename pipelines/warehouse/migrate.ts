import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Warehouse } from './warehouse.ts'

export const CLICKHOUSE_MIGRATIONS_DIR = fileURLToPath(new URL('../../infra/clickhouse/migrations/', import.meta.url))

export interface Migration {
  version: number
  name: string
  checksum: string
  statements: string[]
}

/** `NNNN_name.sql` files; statements end with `;` at the end of a line. */
export function loadMigrations(dir = CLICKHOUSE_MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{4}_.+\.sql$/.test(f))
    .sort()
    .map((file) => {
      const text = readFileSync(join(dir, file), 'utf8')
      const statements = text
        .split(/;\s*$/m)
        .map((s) => s.replace(/^\s*--.*$/gm, '').trim())
        .filter((s) => s.length > 0)
      return {
        version: Number(file.slice(0, 4)),
        name: file.replace(/\.sql$/, ''),
        checksum: createHash('sha256').update(text).digest('hex'),
        statements,
      }
    })
}

/**
 * Applies pending migrations in order and records each in schema_migrations.
 * Statements are idempotent (IF NOT EXISTS), so a migration interrupted half
 * way is simply applied again.
 */
export async function migrateWarehouse(wh: Warehouse, dir = CLICKHOUSE_MIGRATIONS_DIR): Promise<string[]> {
  await wh.command(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32, name String, checksum String, appliedAt DateTime64(3, 'UTC')
  ) ENGINE = ReplacingMergeTree ORDER BY version`)
  const applied = new Set(
    (await wh.query<{ version: number }>('SELECT version FROM schema_migrations FINAL')).map((r) => r.version),
  )
  const done: string[] = []
  for (const m of loadMigrations(dir)) {
    if (applied.has(m.version)) continue
    for (const sql of m.statements) await wh.command(sql)
    await wh.insertJsonEachRow(
      'schema_migrations',
      Buffer.from(JSON.stringify({ version: m.version, name: m.name, checksum: m.checksum, appliedAt: Date.now() }) + '\n'),
    )
    done.push(m.name)
  }
  return done
}
