import knexFactory from 'knex'
import { describe, expect, it } from 'vitest'
import { isCitysyncError } from '../../lib/errors.ts'
import { dbTimeToLocal, dbTimeToMs, pageQuery, parseDbCursor } from './db-pull.ts'

// The SQL is checked as text against both dialects; no database is needed to build it.
const my = knexFactory({ client: 'mysql2' })
const pg = knexFactory({ client: 'pg' })

describe('db-pull page query', () => {
  it('compares the (updated_at, id) tuple strictly, orders by it and limits to the page size', () => {
    const cursor = { updatedAt: '2026-11-21 08:00:00.123456', id: 42 }
    const q = pageQuery(my, { table: 'park_record', pageSize: 500 }, cursor, 'Asia/Shanghai').toSQL()
    expect(q.sql).toBe(
      'select * from `park_record` where `updated_at` is not null and (`updated_at` > ? or (`updated_at` = ? and `id` > ?)) order by `updated_at` asc, `id` asc limit ?',
    )
    expect(q.bindings).toEqual([cursor.updatedAt, cursor.updatedAt, 42, 500])
    const p = pageQuery(pg, { table: 'vendor.停车记录', updatedAtColumn: '更新时间', idColumn: '记录编号', columns: ['车牌号'] }, cursor, 'Asia/Shanghai').toSQL()
    expect(p.sql).toBe(
      'select "车牌号", "更新时间", "记录编号" from "vendor"."停车记录" where "更新时间" is not null and ("更新时间" > ? or ("更新时间" = ? and "记录编号" > ?)) order by "更新时间" asc, "记录编号" asc limit ?',
    )
  })

  it('starts at the beginning, or after startAfter, without a cursor', () => {
    expect(pageQuery(my, { table: 't' }, undefined, 'UTC').toSQL().sql).toBe('select * from `t` where `updated_at` is not null order by `updated_at` asc, `id` asc limit ?')
    const q = pageQuery(my, { table: 't', startAfter: '2026-11-01 00:00:00' }, undefined, 'UTC').toSQL()
    expect(q.bindings).toEqual(['2026-11-01 00:00:00', 1000])
  })

  it('refuses an unknown time zone', () => {
    expect(() => pageQuery(my, { table: 't', dbTimezone: 'Mars/Olympus' }, undefined, 'UTC')).toThrow(/not an IANA time zone/)
  })
})

describe('db-pull values', () => {
  it('reads naive date-times in the zone, zoned ones by their offset, fractions to the millisecond', () => {
    const at = Date.parse('2026-11-21T00:00:00Z')
    expect(dbTimeToMs('2026-11-21 08:00:00', 'Asia/Shanghai')).toBe(at)
    expect(dbTimeToMs('2026-11-21 08:00:00.123456', 'Asia/Shanghai')).toBe(at + 123)
    expect(dbTimeToMs('2026-11-21 00:00:00+00', 'Asia/Shanghai')).toBe(at)
    expect(dbTimeToMs('2026-11-21 08:00:00+08:00', 'UTC')).toBe(at)
    expect(dbTimeToMs('2026-11-20 19:00:00-05', 'UTC')).toBe(at)
    expect(dbTimeToMs(new Date(at), 'UTC')).toBe(at)
    expect(dbTimeToMs('2026-02-30 08:00:00', 'UTC')).toBeNull()
    expect(dbTimeToMs('yesterday', 'UTC')).toBeNull()
    expect(dbTimeToMs(12, 'UTC')).toBeNull()
    expect(dbTimeToLocal('2026-11-21 00:00:00.5+00', 'Asia/Shanghai')).toBe('2026-11-21 08:00:00.500')
    expect(dbTimeToLocal('2026-11-21 08:00:00', 'Asia/Shanghai')).toBe('2026-11-21 08:00:00')
  })

  it('accepts only cursors it wrote', () => {
    expect(parseDbCursor(undefined)).toBeUndefined()
    expect(parseDbCursor(null)).toBeUndefined()
    expect(parseDbCursor({ updatedAt: '2026-11-21 08:00:00', id: '12' })).toEqual({ updatedAt: '2026-11-21 08:00:00', id: '12' })
    for (const bad of [{ id: 1 }, { updatedAt: '', id: 1 }, { updatedAt: 'x', id: null }, 'abc']) {
      let err: unknown
      try {
        parseDbCursor(bad)
      } catch (e) {
        err = e
      }
      expect(isCitysyncError(err, 'CITYSYNC_ERR_CONFIG_INVALID'), JSON.stringify(bad)).toBe(true)
    }
  })
})
