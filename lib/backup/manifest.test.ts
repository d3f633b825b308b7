import { describe, expect, it } from 'vitest'
import { deriveKeys } from '../crypto.ts'
import { isCitysyncError } from '../errors.ts'
import { backupId, backupTime, keyFingerprint, type Manifest, parseManifest } from './manifest.ts'
import { retentionPlan, STALE_PARTIAL_MS } from './retention.ts'
import { rowHashExpr, sqlString } from './sql.ts'

const T = Date.parse('2026-11-21T02:30:07.456Z')

function manifest(): Manifest {
  return {
    format: 'citysync-backup',
    formatVersion: 1,
    id: 'citysync-20261121T023007Z',
    citysyncVersion: '0.1.0',
    host: 'ops-1',
    startedAt: T,
    finishedAt: T + 5000,
    keyFingerprint: 'sm3:0123456789abcdef0123456789abcdef',
    metadata: {
      dialect: 'pg',
      schema: 'public',
      migrations: ['001-init'],
      file: { path: 'metadata/metadata.pgdump', bytes: 2048, sha256: 'a'.repeat(64) },
      tables: [{ name: 'sources', rows: 3, contentHash: 'b'.repeat(32) }],
      takenAt: T,
    },
    warehouse: {
      transport: 'server',
      method: 'native',
      engineVersion: '26.7.2.1',
      migrations: [1, 2, 3, 4],
      tables: [
        {
          name: 'parking_passage',
          rows: 10,
          contentHash: '12345678901234567890',
          columns: [{ name: 'eventId', type: 'String' }, { name: 'occurredAt', type: "DateTime64(3, 'UTC')" }],
          file: { path: 'warehouse/parking_passage.native.zst', bytes: 300, sha256: 'c'.repeat(64) },
        },
      ],
      startedAt: T + 100,
      finishedAt: T + 5000,
    },
  }
}

function problem(fn: () => unknown): string {
  try {
    fn()
    return 'accepted'
  } catch (err) {
    return isCitysyncError(err) ? `${err.code}: ${err.message}` : String(err)
  }
}

describe('backup names', () => {
  it('are the UTC start time to the second, and parse back', () => {
    expect(backupId(T)).toBe('citysync-20261121T023007Z')
    expect(backupTime('citysync-20261121T023007Z')).toBe(Date.parse('2026-11-21T02:30:07Z'))
    expect(backupTime('citysync-20261321T023007Z')).toBeUndefined()
    expect(backupTime('notes')).toBeUndefined()
  })

  it('fingerprint a key without revealing it, the same for the same key', () => {
    const fp = keyFingerprint(deriveKeys('a passphrase that is long enough'))
    expect(fp).toMatch(/^sm3:[0-9a-f]{32}$/)
    expect(keyFingerprint(deriveKeys('a passphrase that is long enough'))).toBe(fp)
    expect(keyFingerprint(deriveKeys('another passphrase, long enough'))).not.toBe(fp)
  })
})

describe('parseManifest', () => {
  it('round-trips a manifest', () => {
    expect(parseManifest(JSON.stringify(manifest()), '/b')).toEqual(manifest())
  })

  it('refuses paths outside the backup and odd identifiers', () => {
    const m = manifest()
    m.warehouse.tables[0]!.file.path = 'warehouse/../../etc/passwd'
    expect(problem(() => parseManifest(JSON.stringify(m), '/b'))).toBe(
      'CITYSYNC_ERR_BACKUP_INVALID: backup /b is unusable: warehouse.tables[0].file.path "warehouse/../../etc/passwd"',
    )
    const n = manifest()
    n.warehouse.tables[0]!.name = 'x; DROP TABLE y'
    expect(problem(() => parseManifest(JSON.stringify(n), '/b'))).toBe(
      'CITYSYNC_ERR_BACKUP_INVALID: backup /b is unusable: warehouse.tables[0].name "x; DROP TABLE y" is not a plain identifier',
    )
    const o = manifest() as unknown as { metadata: { tables: { rows: unknown }[] } }
    o.metadata.tables[0]!.rows = -1
    expect(problem(() => parseManifest(JSON.stringify(o), '/b'))).toBe('CITYSYNC_ERR_BACKUP_INVALID: backup /b is unusable: metadata.tables[0].rows must be a non-negative integer')
  })

  it('says when a backup comes from a newer format', () => {
    expect(problem(() => parseManifest(JSON.stringify({ ...manifest(), formatVersion: 2 }), '/b'))).toBe(
      'CITYSYNC_ERR_RESTORE_INCOMPATIBLE: backup /b cannot be restored by this version: manifest format 2 is newer than 1; restore with a newer citysync',
    )
    expect(problem(() => parseManifest('{"format":"other"}', '/b'))).toBe('CITYSYNC_ERR_BACKUP_INVALID: backup /b is unusable: not a citysync backup manifest (format "other")')
    expect(problem(() => parseManifest('not json', '/b'))).toMatch(/^CITYSYNC_ERR_BACKUP_INVALID: backup \/b is unusable: manifest is not JSON/)
  })
})

describe('row hash SQL', () => {
  it('casts every column to its backed-up type, quoting names and types', () => {
    expect(rowHashExpr([{ name: 'eventId', type: 'String' }, { name: 'occurredAt', type: "DateTime64(3, 'UTC')" }])).toBe(
      "toString(sum(cityHash64(tuple(CAST(`eventId`, 'String'), CAST(`occurredAt`, 'DateTime64(3, \\'UTC\\')')))))",
    )
    expect(sqlString("/backups/it's/x.native.zst")).toBe("'/backups/it\\'s/x.native.zst'")
  })
})

describe('retentionPlan', () => {
  const day = 86_400_000
  const now = Date.parse('2026-11-21T03:00:00Z')
  const at = (d: number): number => now - d * day

  it('keeps the N newest complete backups and drops unfinished ones older than a day', () => {
    const entries = [
      { name: 'citysync-a', time: at(4), complete: true },
      { name: 'citysync-b', time: at(3), complete: true },
      { name: '.citysync-c.partial', time: at(2), complete: false },
      { name: 'citysync-d', time: at(1), complete: true },
      { name: '.citysync-e.partial', time: now - STALE_PARTIAL_MS + 60_000, complete: false },
    ]
    expect(retentionPlan(entries, 2, now)).toEqual(['citysync-a', '.citysync-c.partial'])
    expect(retentionPlan(entries, 5, now)).toEqual(['.citysync-c.partial'])
  })

  it('refuses to keep fewer than one', () => {
    expect(problem(() => retentionPlan([], 0, now))).toBe('CITYSYNC_ERR_CONFIG_INVALID: invalid configuration: --keep must be a whole number of at least 1, got 0')
    expect(problem(() => retentionPlan([], Number.NaN, now))).toBe('CITYSYNC_ERR_CONFIG_INVALID: invalid configuration: --keep must be a whole number of at least 1, got NaN')
  })
})
