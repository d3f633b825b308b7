import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { type Clock, ManualClock } from '../../lib/clock.ts'
import { type CitysyncError, isCitysyncError } from '../../lib/errors.ts'
import { compileConnectorSchema } from '../../lib/source-config.ts'
import { type Draft } from '../../schemas/events.ts'
import { type Ctx, type ItemErrorMessage, type RecordMessage, type SourceMessage } from '../sdk/connector.ts'
import { type ParkingLotsConfig, type ParkingLotsCursor, parkingLotsConnector } from './connector.ts'
import { ParkingSimulator, type ParkingSimulatorOptions } from './simulator.ts'

const START = '2026-11-21T00:00:00Z' // 08:00 in Shanghai
const HOUR = 3_600_000
type Msg = SourceMessage<ParkingLotsCursor>

const running: ParkingSimulator[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()))
})

function makeCtx(clock: Clock, fetchImpl: typeof fetch = fetch): { ctx: Ctx; abort: () => void } {
  const ac = new AbortController()
  const ctx: Ctx = {
    sourceId: 'test-parking',
    timezone: 'Asia/Shanghai',
    clock,
    log: pino({ level: 'silent' }),
    signal: ac.signal,
    fetch: (url, init = {}) => {
      const { timeoutMs, ...rest } = init
      return fetchImpl(url, { ...rest, signal: AbortSignal.any([ac.signal, AbortSignal.timeout(timeoutMs ?? 5000)]) })
    },
  }
  return { ctx, abort: () => ac.abort() }
}

async function collect(iter: AsyncIterable<Msg>): Promise<Msg[]> {
  const out: Msg[] = []
  for await (const m of iter) out.push(m)
  return out
}

/** A simulator with a finished, finite ground truth, started on a local port. */
async function finiteSim(options: ParkingSimulatorOptions = {}) {
  const clock = new ManualClock(START)
  const sim = new ParkingSimulator({ seed: 1, clock, eventsPerMinute: 5, maxEvents: 3000, ...options })
  running.push(sim)
  clock.advance(2 * 24 * HOUR)
  sim.advance()
  const url = await sim.start()
  return { sim, clock, url }
}

const passages = (ms: Msg[]) =>
  ms.filter((m): m is RecordMessage => m.type === 'record' && m.event === 'ParkingPassage').map((m) => m.draft as Draft<'ParkingPassage'>)
const occupancies = (ms: Msg[]) =>
  ms.filter((m): m is RecordMessage => m.type === 'record' && m.event === 'ParkingOccupancy').map((m) => m.draft as Draft<'ParkingOccupancy'>)
const errors = (ms: Msg[]) => ms.filter((m): m is ItemErrorMessage => m.type === 'itemError')
const cursors = (ms: Msg[]) => ms.flatMap((m) => (m.type === 'checkpoint' ? [m.cursor] : []))

const LABEL = { in: 'entry', out: 'exit', space: 'space' } as const
const DIRECTION = { in: 'entry', out: 'exit' } as const

function expectMonotonic(cs: ParkingLotsCursor[]): void {
  for (let i = 1; i < cs.length; i++) {
    for (const k of ['in', 'out', 'space'] as const) expect(cs[i]![k]).toBeGreaterThanOrEqual(cs[i - 1]![k])
  }
}

describe('parkingLotsConnector.read against the simulator', () => {
  it('delivers every true passage once, every defect as its item error, and a final cursor at the end', async () => {
    const { sim, clock, url } = await finiteSim({ faults: { badRate: 0.05 } })
    const { ctx } = makeCtx(clock)
    const msgs = await collect(parkingLotsConnector.read({ baseUrl: url, pageSize: 100 }, undefined, ctx))

    const lots = msgs.filter((m) => m.type === 'record' && m.event === 'ParkingLot')
    expect(lots).toHaveLength(5)
    expect(lots[0]).toMatchObject({ draft: { lotId: 'HQ01', occurredAt: Math.floor(clock.now() / HOUR) * HOUR, coordSystem: 'GCJ02' } })

    // Passages: each true record once; an exact repeat or a conflicting
    // duplicate adds one more record with the same key (the pipeline's to dedupe).
    const truth = sim.truth()
    const bad = sim.badRecords()
    const key = (direction: string, lot: string, recordNo: string) => `${direction}|${lot}|${recordNo}`
    const got = new Map<string, Draft<'ParkingPassage'>[]>()
    for (const p of passages(msgs)) {
      const k = key(p.direction, p.lotId, p.recordNo)
      got.set(k, [...(got.get(k) ?? []), p])
    }
    const extra = new Map<string, number>()
    for (const b of bad.filter((b) => b.stage === 'pipeline')) {
      const k = key(DIRECTION[b.type as 'in' | 'out'], b.parkCode, b.recordNo!)
      extra.set(k, (extra.get(k) ?? 0) + 1)
    }
    expect(extra.size).toBeGreaterThan(0)
    for (const t of truth) {
      const k = key(DIRECTION[t.type], t.parkCode, t.recordNo)
      const records = got.get(k) ?? []
      expect(records.length, k).toBe(1 + (extra.get(k) ?? 0))
      expect(records[0]).toMatchObject({ occurredAt: t.occurredAt, isBackfill: t.isReupload, feeCents: t.feeCents })
    }
    const exact = bad.filter((b) => b.defect === 'exact_duplicate')
    const conflicts = bad.filter((b) => b.defect === 'duplicate_conflict')
    expect(exact.length).toBeGreaterThan(0)
    expect(conflicts.length).toBeGreaterThan(0)
    for (const b of exact) {
      const [first, second] = got.get(key(DIRECTION[b.type as 'in' | 'out'], b.parkCode, b.recordNo!))!
      expect(second).toEqual(first)
    }
    for (const b of conflicts) {
      const [first, second] = got.get(key(DIRECTION[b.type as 'in' | 'out'], b.parkCode, b.recordNo!))!
      expect(second).not.toEqual(first)
    }
    expect(passages(msgs)).toHaveLength(truth.length + exact.length + conflicts.length)
    expect(passages(msgs).some((p) => p.isBackfill)).toBe(true)

    // Occupancy matches the valid space reports.
    const spaceTruth = sim.spaceTruth()
    expect(occupancies(msgs).map((o) => [o.lotId, o.free, o.capacity, o.occurredAt])).toEqual(
      spaceTruth.map((s) => [s.parkCode, s.freeSpace, s.totalSpace, s.reportTime]),
    )

    // Every defect the connector owns comes back as an item error with its code.
    const errs = errors(msgs)
    const expected = bad.filter((b) => b.stage === 'connector')
    expect(new Set(expected.map((b) => b.code))).toEqual(
      new Set(['missing_field', 'wrong_type', 'invalid_value', 'unknown_lot', 'future_timestamp']),
    )
    expect(errs).toHaveLength(expected.length)
    for (const b of expected) {
      const prefix = `${LABEL[b.type]} seq ${b.seq}: `
      const e = errs.find((x) => x.reason.startsWith(prefix))
      expect(e, `${b.type} ${b.seq} ${b.defect}`).toMatchObject({
        code: b.code,
        event: b.type === 'space' ? 'ParkingOccupancy' : 'ParkingPassage',
      })
      expect((JSON.parse(e!.raw) as { seq: number }).seq).toBe(b.seq)
    }
    // Raw payloads carry no plate in clear.
    for (const e of errs) {
      const plate = (JSON.parse(e.raw) as { plateNo?: string }).plateNo
      if (plate !== undefined) expect(plate).toContain('***')
    }

    const cs = cursors(msgs)
    expectMonotonic(cs)
    expect(cs.at(-1)).toEqual(sim.counts())
    expect(msgs.at(-1)?.type).toBe('checkpoint')
  })

  it('resumes from a cursor with only what comes after it', async () => {
    const { sim, clock, url } = await finiteSim()
    const { ctx } = makeCtx(clock)
    const cursor = { in: 1000, out: 400, space: 100 }
    const msgs = await collect(parkingLotsConnector.read({ baseUrl: url, pageSize: 250 }, cursor, ctx))
    const truth = sim.truth().filter((t) => t.seq > cursor[t.type])
    expect(passages(msgs).map((p) => `${p.direction}|${p.recordNo}`).sort()).toEqual(
      truth.map((t) => `${DIRECTION[t.type]}|${t.recordNo}`).sort(),
    )
    expect(occupancies(msgs)).toHaveLength(sim.counts().space - 100)
    expect(cursors(msgs).at(-1)).toEqual(sim.counts())

    // Caught up: a read from the final cursor yields only the lots and no checkpoint.
    const again = await collect(parkingLotsConnector.read({ baseUrl: url }, sim.counts(), ctx))
    expect(again.map((m) => m.type)).toEqual(['record', 'record', 'record', 'record', 'record'])
  })

  it('reads only the configured streams', async () => {
    const { clock, url } = await finiteSim()
    const { ctx } = makeCtx(clock)
    const msgs = await collect(parkingLotsConnector.read({ baseUrl: url, streams: ['spaces'] }, undefined, ctx))
    expect(passages(msgs)).toHaveLength(0)
    expect(occupancies(msgs).length).toBeGreaterThan(0)
    expect(cursors(msgs).at(-1)).toMatchObject({ in: 0, out: 0 })
  })

  it('isolates a malformed item by bisection and moves past it', async () => {
    const { sim, clock, url } = await finiteSim({ faults: { malformedSeqs: { in: [37, 38, 250], out: [1] } } })
    const { ctx } = makeCtx(clock)
    const msgs = await collect(parkingLotsConnector.read({ baseUrl: url, pageSize: 100 }, undefined, ctx))
    const errs = errors(msgs)
    // Streams are read a page (or a skipped item) each in turn; within a stream, in order.
    const described = errs.map((e) => `${e.code} ${e.reason.split(':')[0]}`)
    expect(described.filter((d) => d.includes('entry'))).toEqual(['malformed_json entry seq 37', 'malformed_json entry seq 38', 'malformed_json entry seq 250'])
    expect(described.filter((d) => !d.includes('entry'))).toEqual(['malformed_json exit seq 1'])
    for (const e of errs) {
      expect(e.event).toBe('ParkingPassage')
      expect(e.raw.length).toBeLessThanOrEqual(64 * 1024)
      expect(e.raw).toMatch(/"plateNo":"[^"]*\*\*\*/)
      expect(e.raw).not.toMatch(/"plateNo":"[^"*]{7,}"/)
    }
    const seen = new Set(passages(msgs).map((p) => `${p.direction}|${p.recordNo}`))
    const truth = sim.truth()
    expect(seen.size).toBe(truth.length)
    for (const t of truth) expect(seen.has(`${DIRECTION[t.type]}|${t.recordNo}`)).toBe(true)
    const cs = cursors(msgs)
    expectMonotonic(cs)
    expect(cs.at(-1)).toEqual(sim.counts())
    // The skip is checkpointed on its own, right after the item error.
    const at = msgs.indexOf(errs.find((e) => e.reason.startsWith('entry seq 37'))!)
    expect(msgs.slice(at + 1, at + 3).find((m) => m.type === 'checkpoint')).toMatchObject({ cursor: { in: 37 } })
    // Bisection costs a few requests per bad item, not one per item.
    expect(sim.requests('/openapi/v1/records')).toBeLessThan(120)
  })

  it('throws CITYSYNC_ERR_CONNECTOR_HTTP during an outage, and check() reports it', async () => {
    const { sim, clock, url } = await finiteSim()
    const { ctx } = makeCtx(clock)
    sim.outage(true)
    const err = await collect(parkingLotsConnector.read({ baseUrl: url }, undefined, ctx)).catch((e: unknown) => e)
    expect(isCitysyncError(err, 'CITYSYNC_ERR_CONNECTOR_HTTP')).toBe(true)
    expect((err as CitysyncError).message).toMatch(/HTTP 503 \(service unavailable\)/)
    expect((err as CitysyncError).cause).toEqual({ status: 503, vendorCode: 503 })
    const check = await parkingLotsConnector.check({ baseUrl: url }, ctx)
    expect(check).toMatchObject({ ok: false })
    expect(check.message).toMatch(/503/)
    sim.outage(false)
    expect(await parkingLotsConnector.check({ baseUrl: url }, ctx)).toMatchObject({
      ok: true,
      message: '5 car parks found',
      details: { lots: 5, parkCodes: ['HQ01', 'HQ02', 'HQ03', 'HQ04', 'HQ05'] },
    })
  })

  it('keeps the checkpoints made before an outage in the middle of a read', async () => {
    const { sim, clock, url } = await finiteSim()
    let calls = 0
    const { ctx } = makeCtx(clock, (input, init) => {
      if (++calls === 5) sim.outage(true)
      return fetch(input, init)
    })
    const msgs: Msg[] = []
    const err = await (async () => {
      for await (const m of parkingLotsConnector.read({ baseUrl: url, pageSize: 200 }, undefined, ctx)) msgs.push(m)
    })().catch((e: unknown) => e)
    expect(isCitysyncError(err, 'CITYSYNC_ERR_CONNECTOR_HTTP')).toBe(true)
    // Calls: parks, a page of each stream, then the failing second page of entries.
    expect(cursors(msgs).at(-1)).toEqual({ in: 200, out: 200, space: 200 })
  })

  it('sends the app key and fails clearly with a wrong one', async () => {
    const { clock, url } = await finiteSim({ appKey: 'secret-key' })
    const { ctx } = makeCtx(clock)
    const err = await collect(parkingLotsConnector.read({ baseUrl: url, appKey: 'wrong' }, undefined, ctx)).catch((e: unknown) => e)
    expect(isCitysyncError(err, 'CITYSYNC_ERR_CONNECTOR_HTTP')).toBe(true)
    expect((err as Error).message).toMatch(/code 401 \(invalid app key\)/)
    const msgs = await collect(parkingLotsConnector.read({ baseUrl: url, appKey: 'secret-key', streams: ['entries'] }, undefined, ctx))
    expect(passages(msgs).length).toBeGreaterThan(0)
  })

  it('stops promptly when aborted between pages', async () => {
    const { clock, url } = await finiteSim({ faults: { slowMs: 20 } })
    const { ctx, abort } = makeCtx(clock)
    const msgs: Msg[] = []
    for await (const m of parkingLotsConnector.read({ baseUrl: url, pageSize: 50 }, undefined, ctx)) {
      msgs.push(m)
      if (m.type === 'checkpoint' && m.cursor.in >= 100) abort()
    }
    // A page of each stream in turn: entries' second page comes after the others' first.
    expect(cursors(msgs).at(-1)).toEqual({ in: 100, out: 50, space: 50 })
  })

  it('stops promptly, without throwing, when aborted during a request', async () => {
    const { clock, url } = await finiteSim({ faults: { slowMs: 5000 } })
    const { ctx, abort } = makeCtx(clock)
    const t0 = Date.now()
    setTimeout(abort, 100)
    const msgs = await collect(parkingLotsConnector.read({ baseUrl: url }, undefined, ctx))
    expect(msgs).toEqual([])
    expect(Date.now() - t0).toBeLessThan(2000)
  })
})

describe('parkingLotsConnector.read against canned responses', () => {
  const clock = new ManualClock(START)
  const PARKS = { code: 0, msg: 'success', data: [{ parkCode: 'HQ01', parkName: 'P1', totalSpace: 100, lng: 113.5, lat: 22.1 }] }
  const entry = (seq: number) => ({
    seq,
    recordNo: `HQ01-IN-20261121-${String(seq).padStart(6, '0')}`,
    parkCode: 'HQ01',
    gateNo: 'E1',
    plateNo: '粤C12345',
    plateColor: 'blue',
    inTime: '2026-11-21 07:00:00',
    isReupload: 0,
  })
  const page = (list: unknown[], hasMore: boolean) => JSON.stringify({ code: 0, msg: 'success', data: { list, hasMore } })

  /** Answers /parks with PARKS and records with `records(afterSeq, limit, call)`. */
  function canned(records: (afterSeq: number, limit: number, call: number) => string | Response) {
    const calls: string[] = []
    const impl = (input: string | URL | Request): Promise<Response> => {
      const url = new URL(input instanceof Request ? input.url : input)
      calls.push(`${url.pathname}${url.search}`)
      if (url.pathname.endsWith('/parks')) return Promise.resolve(new Response(JSON.stringify(PARKS)))
      const out = records(Number(url.searchParams.get('afterSeq')), Number(url.searchParams.get('limit')), calls.length)
      return Promise.resolve(typeof out === 'string' ? new Response(out) : out)
    }
    return { ctx: makeCtx(clock, impl).ctx, calls }
  }
  const config: ParkingLotsConfig = { baseUrl: 'http://vendor.example/api/', pageSize: 8, streams: ['entries'] }

  it('builds URLs under a base path', async () => {
    const { ctx, calls } = canned(() => page([], false))
    await collect(parkingLotsConnector.read(config, undefined, ctx))
    expect(calls).toEqual(['/api/openapi/v1/parks', '/api/openapi/v1/records?type=in&afterSeq=0&limit=8'])
  })

  it('recovers from a transient malformed page without dead-lettering anything', async () => {
    const { ctx, calls } = canned((after, limit, call) => {
      if (call === 2) return '{"code":0,"msg":"success","data":{"list":[{"seq":1,"plateNo":"粤C12'
      const list = Array.from({ length: Math.max(0, Math.min(limit, 20 - after)) }, (_, i) => entry(after + i + 1))
      return page(list, after + list.length < 20)
    })
    const msgs = await collect(parkingLotsConnector.read(config, undefined, ctx))
    expect(errors(msgs)).toEqual([])
    expect(passages(msgs)).toHaveLength(20)
    expect(calls.slice(1)).toEqual([
      '/api/openapi/v1/records?type=in&afterSeq=0&limit=8',
      '/api/openapi/v1/records?type=in&afterSeq=0&limit=4',
      '/api/openapi/v1/records?type=in&afterSeq=4&limit=4',
      '/api/openapi/v1/records?type=in&afterSeq=8&limit=8',
      '/api/openapi/v1/records?type=in&afterSeq=16&limit=8',
    ])
  })

  it.each([
    ['a body that is not an envelope', '[1,2]', 'CITYSYNC_ERR_CONNECTOR_PAYLOAD'],
    ['an envelope without a list', JSON.stringify({ code: 0, msg: 'ok', data: {} }), 'CITYSYNC_ERR_CONNECTOR_PAYLOAD'],
    ['a list without hasMore', JSON.stringify({ code: 0, msg: 'ok', data: { list: [] } }), 'CITYSYNC_ERR_CONNECTOR_PAYLOAD'],
    ['an empty page with hasMore', page([], true), 'CITYSYNC_ERR_CONNECTOR_PAYLOAD'],
    ['a page that does not advance', page([entry(1)], true), 'CITYSYNC_ERR_CONNECTOR_PAYLOAD'],
    ['a vendor error code', JSON.stringify({ code: 5001, msg: '系统繁忙', data: null }), 'CITYSYNC_ERR_CONNECTOR_HTTP'],
  ] as const)('throws on %s', async (_name, body, code) => {
    const { ctx } = canned((after) => (after === 0 && body.includes('"seq":1') ? page([entry(1)], true) : body))
    const cursor = body.includes('"seq":1') ? { in: 1, out: 0, space: 0 } : undefined
    const err = await collect(parkingLotsConnector.read(config, cursor, ctx)).catch((e: unknown) => e)
    expect(isCitysyncError(err, code), String(err)).toBe(true)
  })

  it('throws CITYSYNC_ERR_CONNECTOR_PAYLOAD when /parks is not JSON, and HTTP on network failure', async () => {
    const bad = makeCtx(clock, () => Promise.resolve(new Response('<html>502 Bad Gateway</html>'))).ctx
    const e1 = await collect(parkingLotsConnector.read(config, undefined, bad)).catch((e: unknown) => e)
    expect(isCitysyncError(e1, 'CITYSYNC_ERR_CONNECTOR_PAYLOAD')).toBe(true)
    const down = makeCtx(clock, () => Promise.reject(new TypeError('fetch failed'))).ctx
    const e2 = await collect(parkingLotsConnector.read(config, undefined, down)).catch((e: unknown) => e)
    expect(isCitysyncError(e2, 'CITYSYNC_ERR_CONNECTOR_HTTP')).toBe(true)
    expect((e2 as Error).message).toMatch(/no response to \/openapi\/v1\/parks: fetch failed/)
  })

  it('rejects an invalid cursor', async () => {
    const { ctx } = canned(() => page([], false))
    const err = await collect(parkingLotsConnector.read(config, { in: -1, out: 0, space: 0 }, ctx)).catch((e: unknown) => e)
    expect(isCitysyncError(err, 'CITYSYNC_ERR_CONFIG_INVALID')).toBe(true)
  })
})

describe('parkingLotsConnector.configSchema', () => {
  const validate = compileConnectorSchema(parkingLotsConnector.configSchema)

  it('applies defaults', () => {
    const config: Record<string, unknown> = { baseUrl: 'http://127.0.0.1:4100' }
    expect(validate(config)).toBe(true)
    expect(config).toEqual({
      baseUrl: 'http://127.0.0.1:4100',
      pageSize: 500,
      streams: ['entries', 'exits', 'spaces'],
      futureToleranceMs: 300_000,
      lotsRefreshMs: 3_600_000,
    })
  })

  it('marks the app key secret and rejects bad values', () => {
    const props = parkingLotsConnector.configSchema.properties as Record<string, Record<string, unknown>>
    expect(props.appKey).toMatchObject({ type: 'string', 'x-secret': true })
    expect(validate({ baseUrl: 'https://vendor.example/api', appKey: 'k', pageSize: 1000, streams: ['exits'] })).toBe(true)
    for (const bad of [
      {},
      { baseUrl: 'not a url' },
      { baseUrl: 'ftp://vendor.example' },
      { baseUrl: 'http://x', pageSize: 0 },
      { baseUrl: 'http://x', pageSize: 1001 },
      { baseUrl: 'http://x', streams: ['tickets'] },
      { baseUrl: 'http://x', streams: [] },
      { baseUrl: 'http://x', futureToleranceMs: -1 },
      { baseUrl: 'http://x', extra: 1 },
    ]) {
      expect(validate(bad), JSON.stringify(bad)).toBe(false)
    }
  })
})
