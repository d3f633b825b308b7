import knexFactory, { type Knex } from 'knex'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../../lib/clock.ts'
import { deriveKeys } from '../../lib/crypto.ts'
import { isCitysyncError } from '../../lib/errors.ts'
import { isSealed, openSecrets, sealSecrets } from '../../lib/source-config.ts'
import { type Ctx, type SourceMessage, record } from './connector.ts'
import {
  DB_CONNECTION_SCHEMA,
  type DbConnectionConfig,
  type DbCursor,
  type DbTableConfig,
  checkTable,
  dbTimeToMs,
  openVendorDb,
  pullTable,
} from './db-pull.ts'
import { VENDOR_MYSQL as MYSQL, VENDOR_POSTGRES as POSTGRES, vendorDbsAvailable } from './test-vendor-dbs.ts'

// The cursor contract of db-pull.ts against real MariaDB and PostgreSQL.

const available = await vendorDbsAvailable()
const runMy = available.mysql
const runPg = available.postgres

const TABLE = `cursor_probe_${process.pid}`
const ZONE = 'Asia/Shanghai'
const ROWS = 103

function ctxFor(): Ctx {
  return {
    sourceId: 'probe',
    timezone: ZONE,
    clock: new ManualClock('2026-11-22T00:00:00Z'),
    log: pino({ level: 'silent' }),
    signal: new AbortController().signal,
    fetch: () => Promise.reject(new Error('no HTTP here')),
  }
}

/** updated_at of row i: groups of 1..5 rows share a value, with microseconds. */
function stampOf(i: number): string {
  const group = Math.floor((i * 7) / 19)
  return `2026-11-21 08:${String(Math.floor(group / 60)).padStart(2, '0')}:${String(group % 60).padStart(2, '0')}.${String(1_000_001 + group).slice(1)}`
}

/** Date-time text with its fraction padded to microseconds (PostgreSQL drops trailing zeros). */
function micros(text: string): string {
  const [whole, frac = ''] = text.split('.')
  return `${whole}.${frac.padEnd(6, '0')}`
}

interface Read {
  ids: number[]
  cursors: DbCursor[]
}

async function readAll(db: Knex, conn: DbConnectionConfig, cfg: DbTableConfig, from: DbCursor | undefined): Promise<Read> {
  const out: Read = { ids: [], cursors: [] }
  const gen = pullTable(db, conn, cfg, from, ctxFor(), (row) => {
    out.ids.push(Number(row.id))
    return [record('ParkingOccupancy', { lotId: 'L', occurredAt: 0, free: 0, capacity: null, status: 'open' })]
  }, (c) => c)
  for await (const m of gen as AsyncIterable<SourceMessage<DbCursor>>) if (m.type === 'checkpoint') out.cursors.push(m.cursor)
  return out
}

for (const [name, conn, run] of [['MariaDB', MYSQL, runMy], ['PostgreSQL', POSTGRES, runPg]] as const) {
  describe.skipIf(!run)(`db-pull on ${name}`, () => {
    let db: Knex
    // Ids in the order (updated_at, id): what a correct reader sees.
    let ordered: number[]

    beforeAll(async () => {
      db = openVendorDb(conn, ZONE)
      await db.schema.dropTableIfExists(TABLE)
      await db.schema.createTable(TABLE, (t) => {
        t.integer('id').primary()
        t.datetime('updated_at', { useTz: false, precision: 6 }).notNullable()
        t.string('note', 20)
        t.datetime('seen_at', { useTz: conn.dialect === 'postgres', precision: 3 })
      })
      // Ids are inserted out of order, so that id order and insert order differ.
      const rows = Array.from({ length: ROWS }, (_, k) => {
        const id = ((k * 37) % ROWS) + 1
        return { id, updated_at: stampOf(id), note: `row ${id}` }
      })
      await db(TABLE).insert(rows)
      await db(TABLE).insert({ id: 1000, updated_at: '2026-11-21 09:00:00', note: 'zone probe', seen_at: conn.dialect === 'postgres' ? '2026-11-21 08:00:00+08' : '2026-11-21 08:00:00' })
      ordered = [...rows, { id: 1000, updated_at: '2026-11-21 09:00:00.000000' }]
        .sort((a, b) => (a.updated_at < b.updated_at ? -1 : a.updated_at > b.updated_at ? 1 : a.id - b.id))
        .map((r) => r.id)
    })

    afterAll(async () => {
      await db?.schema.dropTableIfExists(TABLE)
      await db?.destroy()
    })

    it('reads every row once in (updated_at, id) order, though ties straddle page boundaries', async () => {
      const cfg: DbTableConfig = { table: TABLE, pageSize: 10 }
      const r = await readAll(db, conn, cfg, undefined)
      expect(r.ids).toEqual(ordered)
      expect(r.ids).toHaveLength(ROWS + 1)
      expect(r.cursors).toHaveLength(11)
      // At least one page ends inside a group of rows sharing an updated_at.
      const straddling = r.cursors.filter((c) => {
        const next = ordered[ordered.indexOf(Number(c.id)) + 1]
        return next !== undefined && stampOf(next) === micros(c.updatedAt)
      })
      expect(straddling.length).toBeGreaterThanOrEqual(3)
      // The cursor keeps the column's full precision, as text.
      expect(micros(r.cursors[0]!.updatedAt)).toBe(stampOf(Number(r.cursors[0]!.id)))
      expect(r.cursors[0]!.updatedAt).toMatch(/^2026-11-21 08:00:0\d\.\d{5,6}$/)
      expect(r.cursors.at(-1)!.id).toBe(1000)
      expect(micros(r.cursors.at(-1)!.updatedAt)).toBe('2026-11-21 09:00:00.000000')
    })

    it('resumes after any saved cursor with exactly the rows after it', async () => {
      const cfg: DbTableConfig = { table: TABLE, pageSize: 7 }
      const full = await readAll(db, conn, cfg, undefined)
      for (const c of full.cursors) {
        const rest = await readAll(db, conn, cfg, c)
        expect(rest.ids).toEqual(ordered.slice(ordered.indexOf(Number(c.id)) + 1))
      }
      // From the last cursor: nothing, and no checkpoint.
      expect(await readAll(db, conn, cfg, full.cursors.at(-1))).toEqual({ ids: [], cursors: [] })
    })

    it('reads a late-updated row again at its new place, and only it', async () => {
      const cfg: DbTableConfig = { table: TABLE, pageSize: 50 }
      const before = await readAll(db, conn, cfg, undefined)
      await db(TABLE).whereIn('id', [5, 6, 77]).update({ updated_at: '2026-11-21 10:00:00.5' })
      const after = await readAll(db, conn, cfg, before.cursors.at(-1))
      expect(after.ids).toEqual([5, 6, 77])
      expect(after.cursors.map((c) => [micros(c.updatedAt), c.id])).toEqual([['2026-11-21 10:00:00.500000', 77]])
      await db(TABLE).where('id', 5).update({ updated_at: stampOf(5) })
      await db(TABLE).where('id', 6).update({ updated_at: stampOf(6) })
      await db(TABLE).where('id', 77).update({ updated_at: stampOf(77) })
    })

    it('selects the configured columns plus the cursor columns, and starts after startAfter', async () => {
      const seen: string[][] = []
      const gen = pullTable(db, conn, { table: TABLE, columns: ['note'], startAfter: '2026-11-21 08:00:30', pageSize: 500 }, undefined, ctxFor(), (row) => {
        seen.push(Object.keys(row).sort())
        return []
      }, (c) => c)
      for await (const m of gen) void m
      expect(seen.length).toBe(ordered.filter((id) => (id === 1000 ? '2026-11-21 09:00:00' : stampOf(id)) > '2026-11-21 08:00:30').length)
      expect(seen[0]).toEqual(['id', 'note', 'updated_at'])
    })

    it('reads naive date-times in the configured zone, zoned ones by their offset', async () => {
      const [row] = await db<{ updated_at: string; seen_at: string }>(TABLE).where('id', 1000).select('updated_at', 'seen_at')
      expect(dbTimeToMs(row!.updated_at, ZONE)).toBe(Date.parse('2026-11-21T01:00:00Z'))
      expect(dbTimeToMs(row!.seen_at, ZONE)).toBe(Date.parse('2026-11-21T00:00:00Z'))
      if (conn.dialect === 'postgres') expect(row!.seen_at).toBe('2026-11-21 00:00:00+00')
      else {
        const [[tz]] = (await db.raw('select @@session.time_zone as tz')) as [{ tz: string }[]]
        expect(tz).toEqual({ tz: '+08:00' })
      }
    })

    it('check() counts the rows; a missing table or column is a clear failure', async () => {
      expect(await checkTable(db, conn, { table: TABLE }, ZONE)).toMatchObject({ ok: true, message: `table ${TABLE}: ${ROWS + 1} rows` })
      const missing = await checkTable(db, conn, { table: `${TABLE}_nope` }, ZONE)
      expect(missing.ok).toBe(false)
      expect(missing.message).toMatch(new RegExp(`vendor database ${conn.dialect}://.*${TABLE}_nope`))
      expect((await checkTable(db, conn, { table: TABLE, updatedAtColumn: 'changed_at' }, ZONE)).ok).toBe(false)
    })

    it('throws CITYSYNC_ERR_CONNECTOR_DB when the query fails', async () => {
      const gen = pullTable(db, conn, { table: TABLE, idColumn: 'no_such_column' }, undefined, ctxFor(), () => [], (c) => c)
      const err = await (async () => {
        for await (const m of gen) void m
      })().catch((e: unknown) => e)
      expect(isCitysyncError(err, 'CITYSYNC_ERR_CONNECTOR_DB')).toBe(true)
    })
  })
}

describe.skipIf(!runMy)('db-pull credentials', () => {
  const user = `citysync_probe_${process.pid}`
  let admin: Knex
  beforeAll(async () => {
    admin = knexFactory({ client: 'mysql2', connection: { host: MYSQL.host, port: MYSQL.port, user: MYSQL.user, password: MYSQL.password, database: MYSQL.database } })
    await admin.raw(`DROP USER IF EXISTS '${user}'@'%'`)
    await admin.raw(`CREATE USER '${user}'@'%' IDENTIFIED BY 'pw-Probe-7'`)
    await admin.raw(`GRANT SELECT ON \`${MYSQL.database}\`.* TO '${user}'@'%'`)
    await admin.schema.dropTableIfExists(`${TABLE}_cred`)
    await admin.schema.createTable(`${TABLE}_cred`, (t) => {
      t.integer('id').primary()
      t.datetime('updated_at', { precision: 0 })
    })
    await admin(`${TABLE}_cred`).insert([{ id: 1, updated_at: '2026-11-21 08:00:00' }])
  })
  afterAll(async () => {
    await admin?.schema.dropTableIfExists(`${TABLE}_cred`)
    await admin?.raw(`DROP USER IF EXISTS '${user}'@'%'`)
    await admin?.destroy()
  })

  it('takes the password from the source config, sealed at rest and opened for the read', async () => {
    const schema = { type: 'object', properties: { connection: DB_CONNECTION_SCHEMA } }
    const { encKey } = deriveKeys('db pull credentials test key, long enough')
    const config = { connection: { ...MYSQL, user, password: 'pw-Probe-7' } }
    const sealed = sealSecrets(config, schema, encKey)
    const stored = sealed.connection as Record<string, unknown>
    expect(isSealed(stored.password)).toBe(true)
    expect(JSON.stringify(sealed)).not.toContain('pw-Probe-7')
    const opened = openSecrets(sealed, encKey) as typeof config

    const db = openVendorDb(opened.connection, ZONE)
    try {
      expect(await checkTable(db, opened.connection, { table: `${TABLE}_cred` }, ZONE)).toMatchObject({ ok: true, details: { rows: 1 } })
    } finally {
      await db.destroy()
    }
    const wrong = { ...opened.connection, password: 'not-it' }
    const bad = openVendorDb(wrong, ZONE)
    try {
      const check = await checkTable(bad, wrong, { table: `${TABLE}_cred` }, ZONE)
      expect(check.ok).toBe(false)
      expect(check.message).toMatch(/Access denied/)
      expect(check.message).not.toContain('not-it')
    } finally {
      await bad.destroy()
    }
  })
})
