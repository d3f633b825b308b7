import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../lib/clock.ts'
import { isCitysyncError } from '../../lib/errors.ts'
import { validateSourceConfig } from '../../lib/source-config.ts'
import { configSchemaFor, connectorFor } from '../registry.ts'
import { type Ctx } from '../sdk/connector.ts'
import { MAX_PUSH_ITEMS, isPushConnector, mapPushBatch, parkingPushConnector } from './push.ts'

const NOW = Date.parse('2026-11-21T10:00:00Z') // 18:00 in Asia/Shanghai
const opts = { timezone: 'Asia/Shanghai', now: NOW }
const config = { secret: 'push-shared-secret-4f9a1c' }

const entry = { type: 'in', seq: 7, recordNo: 'IN7', parkCode: 'P001', gateNo: 'E1', plateNo: '粤C12345', plateColor: 'BLUE', inTime: '2026-11-21 17:41:07', isReupload: 1 }

function codeOf(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    return isCitysyncError(err) ? `${err.code}: ${err.message}` : `not coded: ${String(err)}`
  }
  return 'no error'
}

describe('parking-push: batch mapping', () => {
  it('maps each vendor item type to its canonical draft, times read in the source zone', () => {
    const items = mapPushBatch(
      {
        records: [
          entry,
          { ...entry, type: 'out', outTime: '2026-11-21 17:55:30', fee: 12.5 },
          { type: 'space', parkCode: 'P001', freeSpace: '0', totalSpace: 400, reportTime: '2026-11-21 17:45:00' },
          { type: 'park', parkCode: 'P001', parkName: '横琴口岸P1', totalSpace: 400, lng: 113.54, lat: 22.13, openTime: '07:00-22:00' },
        ],
      },
      config,
      opts,
    )
    expect(items).toEqual([
      {
        ok: true,
        event: 'ParkingPassage',
        draft: {
          occurredAt: Date.parse('2026-11-21T09:41:07Z'),
          lotId: 'P001',
          recordNo: 'IN7',
          direction: 'entry',
          gateId: 'E1',
          plate: '粤C12345',
          plateType: 'blue',
          isBackfill: true,
          feeCents: null,
          entryAt: null,
        },
      },
      {
        ok: true,
        event: 'ParkingPassage',
        draft: {
          occurredAt: Date.parse('2026-11-21T09:55:30Z'),
          lotId: 'P001',
          recordNo: 'IN7',
          direction: 'exit',
          gateId: 'E1',
          plate: '粤C12345',
          plateType: 'blue',
          isBackfill: true,
          feeCents: 1250,
          entryAt: Date.parse('2026-11-21T09:41:07Z'),
        },
      },
      { ok: true, event: 'ParkingOccupancy', draft: { occurredAt: Date.parse('2026-11-21T09:45:00Z'), lotId: 'P001', free: 0, capacity: 400, status: 'full' } },
      {
        ok: true,
        event: 'ParkingLot',
        draft: {
          occurredAt: NOW,
          lotId: 'P001',
          name: '横琴口岸P1',
          capacity: 400,
          lat: 22.13,
          lon: 113.54,
          coordSystem: 'GCJ02',
          district: null,
          address: null,
          openingHours: 'Mo-Su 07:00-22:00',
        },
      },
    ])
  })

  it('rejects bad items one by one with a code, a reason that names the record, and the raw item with plates masked', () => {
    const items = mapPushBatch(
      {
        records: [
          { ...entry, inTime: '2026-11-21 18:30:00' },
          { ...entry, parkCode: 'P404' },
          { ...entry, type: undefined },
          [entry],
          { ...entry, type: 'out', outTime: '2026-11-21 17:00:00' },
          { type: 'park', parkCode: 'P404', parkName: 'x', totalSpace: 1 },
          { ...entry, fee: 'unknown', type: 'out', outTime: '2026-11-21 17:55:30' },
        ],
      },
      { ...config, lots: ['P001'], futureToleranceMs: 60_000 },
      opts,
    )
    expect(items.map((i) => (i.ok ? 'ok' : [i.event, i.code, i.reason]))).toEqual([
      ['ParkingPassage', 'future_timestamp', 'record 0 (entry seq 7): inTime 2026-11-21T10:30:00.000Z is 30.0 min ahead of now (tolerance 1.0 min)'],
      ['ParkingPassage', 'unknown_lot', 'record 1 (entry seq 7): parkCode "P404" is not among the lots of this source'],
      [null, 'missing_field', 'record 2: missing field type'],
      [null, 'wrong_type', 'record 3: must be an object'],
      ['ParkingPassage', 'invalid_value', 'record 4 (exit seq 7): inTime is after outTime'],
      ['ParkingLot', 'unknown_lot', 'record 5 (lot): parkCode "P404" is not among the lots of this source'],
      ['ParkingPassage', 'invalid_value', 'record 6 (exit seq 7): fee is not an amount in yuan: "unknown"'],
    ])
    const raws = items.map((i) => (i.ok ? '' : i.raw))
    expect(JSON.parse(raws[0]!)).toEqual({ ...entry, inTime: '2026-11-21 18:30:00', plateNo: '粤C·***45' })
    expect(raws.join('\n')).not.toContain('粤C12345')
  })

  it('takes every car park the batch names when the source lists none', () => {
    const items = mapPushBatch({ records: [{ ...entry, parkCode: 'ANY-LOT' }] }, config, opts)
    expect(items[0]).toMatchObject({ ok: true, draft: { lotId: 'ANY-LOT' } })
  })

  it('refuses a body that is not a batch, or one above the record limit', () => {
    expect(codeOf(() => mapPushBatch([entry], config, opts))).toBe('CITYSYNC_ERR_INGEST_BODY: push body unusable: expected an object {"records": [...]}')
    expect(codeOf(() => mapPushBatch({ records: {} }, config, opts))).toBe('CITYSYNC_ERR_INGEST_BODY: push body unusable: records must be an array')
    expect(codeOf(() => mapPushBatch({ records: [] }, config, opts))).toBe('CITYSYNC_ERR_INGEST_BODY: push body unusable: records is empty')
    const three = { records: [entry, entry, entry] }
    expect(codeOf(() => mapPushBatch(three, { ...config, maxItems: 2 }, opts))).toBe('CITYSYNC_ERR_INGEST_TOO_LARGE: push too large: 3 records, at most 2 per push')
    expect(mapPushBatch(three, { ...config, maxItems: 3 }, opts)).toHaveLength(3)
    const many = { records: Array.from({ length: MAX_PUSH_ITEMS + 1 }, () => entry) }
    expect(codeOf(() => mapPushBatch(many, { ...config, maxItems: 1e9 }, opts))).toBe(
      `CITYSYNC_ERR_INGEST_TOO_LARGE: push too large: ${MAX_PUSH_ITEMS + 1} records, at most ${MAX_PUSH_ITEMS} per push`,
    )
  })
})

describe('parking-push: the connector', () => {
  it('is registered, and is the only kind that accepts pushes', () => {
    expect(connectorFor('parking-push')).toBe(parkingPushConnector)
    expect(isPushConnector(connectorFor('parking-push'))).toBe(true)
    expect(isPushConnector(connectorFor('parking-lots'))).toBe(false)
    expect(isPushConnector(undefined)).toBe(false)
  })

  it("validates its config with defaults, and marks both secrets so they are sealed and masked", () => {
    const cfg = validateSourceConfig({ id: 'push-a', kind: 'parking-push', name: 'a', config: { secret: 'x'.repeat(16) } }, configSchemaFor)
    expect(cfg.config).toEqual({ secret: 'x'.repeat(16), algorithm: 'hmac-sha256', replayWindowSeconds: 300, maxItems: 1000, futureToleranceMs: 300000, lotsRefreshMs: 3600000 })
    const schema = parkingPushConnector.configSchema as { properties: Record<string, Record<string, unknown>> }
    expect(Object.entries(schema.properties).filter(([, p]) => p['x-secret'] === true).map(([k]) => k)).toEqual(['secret', 'previousSecret'])
    expect(
      codeOf(() =>
        validateSourceConfig(
          { id: 'push-a', kind: 'parking-push', name: 'a', config: { secret: 'short', algorithm: 'md5', replayWindowSeconds: 5, lots: [] } },
          configSchemaFor,
        ),
      ),
    ).toBe(
      'CITYSYNC_ERR_CONFIG_INVALID: invalid configuration: config.secret: must NOT have fewer than 16 characters; ' +
        'config.algorithm: must be one of "hmac-sha256", "hmac-sm3"; config.replayWindowSeconds: must be >= 30; config.lots: must NOT have fewer than 1 items',
    )
  })

  it('derives the signature settings from the config, the previous secret included', () => {
    expect(parkingPushConnector.push.auth({ secret: 'a'.repeat(16) })).toEqual({ secrets: ['a'.repeat(16)], algorithm: 'hmac-sha256', replayWindowMs: 300_000 })
    expect(parkingPushConnector.push.auth({ secret: 'a'.repeat(16), previousSecret: 'b'.repeat(16), algorithm: 'hmac-sm3', replayWindowSeconds: 60 })).toEqual({
      secrets: ['a'.repeat(16), 'b'.repeat(16)],
      algorithm: 'hmac-sm3',
      replayWindowMs: 60_000,
    })
  })

  it('checks without any upstream call and reads nothing (pushes arrive through the API)', async () => {
    const ctx: Ctx = {
      sourceId: 'push-a',
      timezone: 'Asia/Shanghai',
      clock: new ManualClock(NOW),
      log: pino({ level: 'silent' }),
      signal: new AbortController().signal,
      fetch: () => Promise.reject(new Error('no network for a push source')),
    }
    expect(await parkingPushConnector.check({ ...config, algorithm: 'hmac-sm3', lots: ['P001'] }, ctx)).toEqual({
      ok: true,
      message: 'accepts signed pushes at POST /api/v1/ingest/push-a (hmac-sm3, replay window 300 s, 1 car park)',
      details: { algorithm: 'hmac-sm3', replayWindowSeconds: 300, lots: ['P001'], secrets: 1 },
    })
    const read: unknown[] = []
    for await (const msg of parkingPushConnector.read(config, undefined, ctx)) read.push(msg)
    expect(read).toEqual([])
  })
})
