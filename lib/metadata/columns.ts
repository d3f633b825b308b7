// How values cross the repository boundary. The API speaks epoch ms and plain
// JSON values; storage holds timestamptz / json in PostgreSQL and ISO-8601
// UTC text / JSON text in SQLite.

export type Dialect = 'sqlite' | 'pg'

export function timestampToDb(dialect: Dialect, ms: number): Date | string {
  return dialect === 'pg' ? new Date(ms) : new Date(ms).toISOString()
}

export function timestampFromDb(value: unknown): number | null {
  if (value === null || value === undefined) return null
  if (value instanceof Date) return value.getTime()
  if (typeof value === 'string') return Date.parse(value)
  throw new Error(`metadata timestamp of unexpected type ${typeof value}`)
}

export function requiredTimestamp(value: unknown): number {
  const ms = timestampFromDb(value)
  if (ms === null) throw new Error('metadata row lacks a required timestamp')
  return ms
}

/** Always serialised by us: pg would turn a JS array into a PostgreSQL array literal. */
export function jsonToDb(value: unknown): string | null {
  if (value === null || value === undefined) return null
  return JSON.stringify(value)
}

export function jsonFromDb(dialect: Dialect, value: unknown): unknown {
  if (value === null || value === undefined) return null
  // pg parses json columns itself; SQLite hands back the text.
  return dialect === 'pg' || typeof value !== 'string' ? value : (JSON.parse(value) as unknown)
}

export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === '23505' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE'
}

export function isForeignKeyViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === '23503' || code === 'SQLITE_CONSTRAINT_FOREIGNKEY'
}
