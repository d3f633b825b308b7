import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { type Clock, ManualClock } from '../../lib/clock.ts'
import { type CitysyncError, isCitysyncError } from '../../lib/errors.ts'
import { parseLocal } from '../../lib/local-time.ts'
import { compileConnectorSchema, loadSourceFile } from '../../lib/source-config.ts'
import { type Draft } from '../../schemas/events.ts'
import { configSchemaFor, connectorFor } from '../registry.ts'
import { type Ctx, type ItemErrorMessage, type RecordMessage, type SourceMessage } from '../sdk/connector.ts'
import { type FerryCursor, type FerryTicketingConfig, ferryTicketingConnector } from './connector.ts'
import { FerrySimulator, type FerrySimulatorOptions } from './simulator.ts'

const TZ = 'Asia/Shanghai'
const MIN = 60_000
const START = '2026-11-20T10:00:00Z' // 18:00 in Shanghai
const local = (text: string) => parseLocal(text, TZ)!
type Msg = SourceMessage<FerryCursor>

const running: FerrySimulator[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()))
})

function makeCtx(clock: Clock, fetchImpl: typeof fetch = fetch): { ctx: Ctx; abort: () => void } {
  const ac = new AbortController()
  const ctx: Ctx = {
    sourceId: 'test-ferry',
    timezone: TZ,
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

async function startSim(options: FerrySimulatorOptions = {}) {
  const clock = new ManualClock(START)
  const sim = new FerrySimulator({ seed: 3, clock, serviceDays: 2, scale: 0.3, ...options })
  running.push(sim)
  const url = await sim.start()
  return { sim, clock, url }
}

const records = (ms: Msg[]) => ms.filter((m): m is RecordMessage => m.type === 'record')
const errors = (ms: Msg[]) => ms.filter((m): m is ItemErrorMessage => m.type === 'itemError')
const cursors = (ms: Msg[]) => ms.flatMap((m) => (m.type === 'checkpoint' ? [m.cursor] : []))

/** The identity event ids are derived from (EVENT_ROUTES[*].key). */
function keyOf(m: RecordMessage): string {
  const d = m.draft as unknown as Record<string, unknown>
  if (m.event === 'FerrySailing') return `sailing|${String(d.sailingId)}|${String(d.status)}|${String(d.occurredAt)}`
  if (m.event === 'FerryTicket') return `ticket|${String(d.ticketId)}|${String(d.status)}`
  return `checkin|${String(d.checkInId)}`
}

/**
 * Polls like a scheduled source: one full read every `everyMs` of simulated
 * time, each from the last checkpoint. Returns the poll instants and what the
 * reads yielded.
 */
async function pollUntil(until: number, everyMs: number, clock: ManualClock, read: (cursor: FerryCursor | undefined) => AsyncIterable<Msg>) {
  const polls: number[] = []
  const msgs: Msg[] = []
  let cursor: FerryCursor | undefined
  for (; clock.now() <= until; clock.advance(everyMs)) {
    polls.push(clock.now())
    for await (const m of read(cursor)) {
      msgs.push(m)
      if (m.type === 'checkpoint') cursor = m.cursor
    }
  }
  return { polls, msgs, cursor }
}

// Simulated days take a few seconds to generate and read on a busy machine.
describe('ferryTicketingConnector.read against the simulator', { timeout: 60_000 }, () => {
  it('polled every 15 min for a day and a half, yields every event of the ground truth and every defect as its item error', async () => {
    const { sim, clock, url } = await startSim({ faults: { badRate: 0.03 } })
    const { ctx } = makeCtx(clock)
    const { polls, msgs } = await pollUntil(local('2026-11-22 02:00:00'), 15 * MIN, clock, (c) => ferryTicketingConnector.read({ baseUrl: url }, c, ctx))
    const truth = sim.expected(polls)

    // Each event id once, with the content of the truth; a ticket's sold event
    // read again from its refunded row is the same record (same id, same content).
    const got = new Map<string, Draft<'FerrySailing'> | Draft<'FerryTicket'> | Draft<'FerryCheckIn'>>()
    for (const m of records(msgs)) {
      const k = keyOf(m)
      if (got.has(k)) expect(m.draft, k).toEqual(got.get(k))
      got.set(k, m.draft as Draft<'FerrySailing'>)
    }
    const want = new Map<string, unknown>([
      ...truth.sailings.map((d) => [`sailing|${d.sailingId}|${d.status}|${d.occurredAt}`, d] as const),
      ...truth.tickets.map((d) => [`ticket|${d.ticketId}|${d.status}`, d] as const),
      ...truth.checkIns.map((d) => [`checkin|${d.checkInId}`, d] as const),
    ])
    expect(got.size).toBe(want.size)
    for (const [k, d] of want) expect(got.get(k), k).toEqual(d)
    // Status changes are versions of one sailing.
    const versions = truth.sailings.filter((d) => d.sailingId === 'JZG-HKM-20261121-1100').map((d) => d.status)
    expect(versions).toEqual(expect.arrayContaining(['scheduled', 'boarding', 'departed', 'arrived']))

    // One item error per defective row version served, none repeated across polls.
    const errs = errors(msgs)
    expect(errs).toHaveLength(truth.rejected.length)
    expect(new Set(errs.map((e) => e.reason)).size).toBe(errs.length)
    const tally = (codes: string[]) => codes.reduce<Record<string, number>>((a, c) => ({ ...a, [c]: (a[c] ?? 0) + 1 }), {})
    expect(tally(errs.map((e) => e.code))).toEqual(tally(truth.rejected.map((r) => r.code)))
    expect(Object.keys(tally(errs.map((e) => e.code))).sort()).toEqual(['future_timestamp', 'invalid_value', 'missing_field', 'unknown_terminal', 'unknown_ticket'])
    for (const r of truth.rejected) {
      const label = { sailings: 'sailing', tickets: 'ticket', checkins: 'check-in' }[r.endpoint]
      expect(errs.some((e) => e.code === r.code && e.reason.startsWith(`${label} ${r.id}`)), `${r.endpoint} ${r.id} ${r.defect}`).toBe(true)
    }
    for (const e of errs) expect(() => JSON.parse(e.raw) as unknown).not.toThrow()

    // The quirks really were in what was read.
    const served = sim.served(polls)
    expect(served.filter((v) => v.late).length).toBeGreaterThan(20)
    expect(served.filter((v) => v.backfill).length).toBeGreaterThan(5)
    expect(records(msgs).some((m) => m.event === 'FerryTicket' && (m.draft as Draft<'FerryTicket'>).priceCents === null)).toBe(true)
  })

  it('loses late rows without the look-back window, which is why it exists', async () => {
    const { sim, clock, url } = await startSim()
    const { ctx } = makeCtx(clock)
    const { polls, msgs } = await pollUntil(local('2026-11-21 14:00:00'), 30 * MIN, clock, (c) =>
      ferryTicketingConnector.read({ baseUrl: url, lookbackMs: 0 }, c, ctx),
    )
    const truth = sim.expected(polls)
    const got = new Set(records(msgs).filter((m) => m.event === 'FerryCheckIn').map((m) => (m.draft as Draft<'FerryCheckIn'>).checkInId))
    const lost = truth.checkIns.filter((d) => !got.has(d.checkInId))
    expect(lost.length).toBeGreaterThan(0)
    const late = new Set(sim.served(polls).filter((v) => v.late).map((v) => v.id))
    for (const d of lost) expect(late.has(d.checkInId)).toBe(true)
  })

  it('resumes from a checkpoint taken mid-read with exactly what was not yet read', async () => {
    const { sim, clock, url } = await startSim()
    clock.set(local('2026-11-21 12:00:00'))
    const { ctx } = makeCtx(clock)
    const config: FerryTicketingConfig = { baseUrl: url, pageSize: 100 }
    const all = await collect(ferryTicketingConnector.read(config, undefined, ctx))
    const mid = cursors(all)[6]!
    expect(mid.tickets).toBeDefined()
    const at = all.findIndex((m) => m.type === 'checkpoint' && m.cursor === mid)
    const resumed = await collect(ferryTicketingConnector.read(config, mid, ctx))
    const before = new Set(records(all.slice(0, at)).map(keyOf))
    const after = new Set(records(resumed).map(keyOf))
    expect(new Set([...before, ...after])).toEqual(new Set(records(all).map(keyOf)))
    // The look-back re-reads nothing it remembers: no record is yielded twice.
    for (const k of after) expect(before.has(k)).toBe(false)
    expect(cursors(resumed).at(-1)).toEqual(cursors(all).at(-1))
    expect(sim.expected([clock.now()]).tickets.length).toBe(records(all).filter((m) => m.event === 'FerryTicket').length)
  })

  it('when caught up, reads only the terminals and ends without a checkpoint', async () => {
    const { clock, url } = await startSim()
    clock.set(local('2026-11-21 03:00:00')) // night: nothing new
    const { ctx } = makeCtx(clock)
    const first = await collect(ferryTicketingConnector.read({ baseUrl: url }, undefined, ctx))
    const again = await collect(ferryTicketingConnector.read({ baseUrl: url }, cursors(first).at(-1), ctx))
    expect(again).toEqual([])
  })

  it('reads only the configured feeds, and counts unknown tickets with lookups in batches', async () => {
    const { sim, clock, url } = await startSim({ faults: { badRate: 0.05 } })
    clock.set(local('2026-11-21 12:00:00'))
    const { ctx } = makeCtx(clock)
    const msgs = await collect(ferryTicketingConnector.read({ baseUrl: url, feeds: ['checkins'] }, undefined, ctx))
    expect(new Set(records(msgs).map((m) => m.event))).toEqual(new Set(['FerryCheckIn']))
    expect(sim.requests('/ferry/open/v1/tickets')).toBe(0)
    expect(sim.requests('/ferry/open/v1/tickets/query')).toBeGreaterThan(0)
    const truth = sim.expected([clock.now()])
    expect(errors(msgs).filter((e) => e.code === 'unknown_ticket')).toHaveLength(truth.rejected.filter((r) => r.code === 'unknown_ticket').length)
    expect(records(msgs)).toHaveLength(truth.checkIns.length)
  })

  it('throws CITYSYNC_ERR_CONNECTOR_HTTP during an outage, and check() reports it', async () => {
    const { sim, clock, url } = await startSim()
    clock.set(local('2026-11-21 12:00:00'))
    const { ctx } = makeCtx(clock)
    sim.outage(true)
    const err = await collect(ferryTicketingConnector.read({ baseUrl: url }, undefined, ctx)).catch((e: unknown) => e)
    expect(isCitysyncError(err, 'CITYSYNC_ERR_CONNECTOR_HTTP')).toBe(true)
    expect((err as CitysyncError).message).toMatch(/HTTP 503 \(系统维护中，请稍后再试\) to \/terminals/)
    expect((err as CitysyncError).cause).toEqual({ status: 503, vendorCode: '9503' })
    const down = await ferryTicketingConnector.check({ baseUrl: url }, ctx)
    expect(down).toMatchObject({ ok: false })
    expect(down.message).toMatch(/503/)
    sim.outage(false)
    const recent = new Set(sim.served([clock.now()]).filter((v) => v.endpoint === 'sailings' && v.updateTs >= clock.now() - 86_400_000).map((v) => v.id))
    expect(recent.size).toBe(53) // 22 of yesterday's sailings (updated since noon) and all 31 of today's
    expect(await ferryTicketingConnector.check({ baseUrl: url }, ctx)).toEqual({
      ok: true,
      message: '2 terminals (HQT, JZG), 53 sailings updated in the last 24 h',
      details: { terminals: ['HQT', 'JZG'], sailings: 53, moreSailings: false, lastSailingToday: { HQT: '19:30', JZG: '21:30' } },
    })
  })

  it('keeps the checkpoints made before an outage in the middle of a read, and the next read loses nothing', async () => {
    const { sim, clock, url } = await startSim()
    clock.set(local('2026-11-21 12:00:00'))
    const { ctx } = makeCtx(clock)
    const config = { baseUrl: url, pageSize: 100 }
    sim.outageAfter(6)
    const msgs: Msg[] = []
    const err = await (async () => {
      for await (const m of ferryTicketingConnector.read(config, undefined, ctx)) msgs.push(m)
    })().catch((e: unknown) => e)
    expect(isCitysyncError(err, 'CITYSYNC_ERR_CONNECTOR_HTTP')).toBe(true)
    const saved = cursors(msgs).at(-1)!
    expect(saved.sailings).toBeDefined()
    expect(saved.tickets).toBeDefined()
    sim.outage(false)
    const rest = await collect(ferryTicketingConnector.read(config, saved, ctx))
    const keys = new Set([...records(msgs), ...records(rest)].map(keyOf))
    const truth = sim.expected([clock.now()])
    expect(keys.size).toBe(truth.sailings.length + truth.tickets.length + truth.checkIns.length)
  })

  it('times out on a slow system (the runtime retries)', async () => {
    const { sim, clock, url } = await startSim()
    const { ctx } = makeCtx(clock, (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(100) }))
    sim.setSlowMs(400)
    const err = await collect(ferryTicketingConnector.read({ baseUrl: url }, undefined, ctx)).catch((e: unknown) => e)
    expect(isCitysyncError(err, 'CITYSYNC_ERR_CONNECTOR_HTTP')).toBe(true)
    expect((err as Error).message).toMatch(/no response to \/terminals/)
  })

  it('sends the API key and fails clearly with a wrong one', async () => {
    const { clock, url } = await startSim({ apiKey: 'secret-key' })
    clock.set(local('2026-11-21 08:00:00'))
    const { ctx } = makeCtx(clock)
    const err = await collect(ferryTicketingConnector.read({ baseUrl: url, apiKey: 'wrong' }, undefined, ctx)).catch((e: unknown) => e)
    expect((err as Error).message).toMatch(/HTTP 401 \(无效的接口密钥\)/)
    const msgs = await collect(ferryTicketingConnector.read({ baseUrl: url, apiKey: 'secret-key', feeds: ['sailings'] }, undefined, ctx))
    expect(records(msgs).length).toBeGreaterThan(0)
  })

  it('stops promptly, without throwing, when aborted during a request', async () => {
    const { url } = await startSim({ faults: { slowMs: 5000 } })
    const { ctx, abort } = makeCtx(new ManualClock(START))
    const t0 = Date.now()
    setTimeout(abort, 100)
    expect(await collect(ferryTicketingConnector.read({ baseUrl: url }, undefined, ctx))).toEqual([])
    expect(Date.now() - t0).toBeLessThan(2000)
  })

  it('is registered under its kind', () => {
    expect(connectorFor('ferry-ticketing')).toBe(ferryTicketingConnector)
  })
})

describe('ferryTicketingConnector.read against canned responses', () => {
  const clock = new ManualClock('2026-11-21T04:00:00Z')
  const ok = (data: unknown) => JSON.stringify({ code: '0000', message: 'success', data })
  const TERMINALS = ok([{ terminalCode: 'HQT', terminalName: '横琴码头' }])
  const sailing = (n: number, updateTime: string) => ({
    sailingId: `HQT-HKK-20261121-${String(800 + n)}`,
    terminalCode: 'HQT',
    routeCode: 'HQT-HKK',
    sailDate: '2026-11-21',
    sailTime: '08:30',
    vesselName: null,
    seats: 'unknown',
    sailStatus: 0,
    actualDepartTime: null,
    updateTime,
  })

  function canned(feed: (url: URL, call: number) => string) {
    const calls: string[] = []
    const impl = (input: string | URL | Request): Promise<Response> => {
      const url = new URL(input instanceof Request ? input.url : input)
      calls.push(decodeURIComponent(`${url.pathname}${url.search}`).replaceAll('+', ' '))
      if (url.pathname.endsWith('/terminals')) return Promise.resolve(new Response(TERMINALS))
      return Promise.resolve(new Response(feed(url, calls.length)))
    }
    return { ctx: makeCtx(clock, impl).ctx, calls }
  }
  const config: FerryTicketingConfig = { baseUrl: 'http://vendor.example/api/', pageSize: 2, feeds: ['sailings'], initialLookbackMs: 3_600_000 }

  it('builds URLs under a base path and pages by (updateTime, id)', async () => {
    const rows = [sailing(1, '2026-11-21 11:00:00'), sailing(2, '2026-11-21 11:00:00'), sailing(3, '2026-11-21 11:05:00')]
    const { ctx, calls } = canned((url) => {
      const after = url.searchParams.get('afterId')
      const from = after === null ? 0 : rows.findIndex((r) => r.sailingId === after) + 1
      return ok({ records: rows.slice(from, from + 2), hasMore: from + 2 < rows.length })
    })
    const msgs = await collect(ferryTicketingConnector.read(config, undefined, ctx))
    expect(records(msgs)).toHaveLength(3)
    expect(calls).toEqual([
      '/api/ferry/open/v1/terminals',
      '/api/ferry/open/v1/sailings?updatedAfter=2026-11-21 11:00:00&pageSize=2',
      '/api/ferry/open/v1/sailings?updatedAfter=2026-11-21 11:00:00&afterId=HQT-HKK-20261121-802&pageSize=2',
    ])
    expect(cursors(msgs).at(-1)).toEqual({
      sailings: {
        after: '2026-11-21 11:05:00',
        id: 'HQT-HKK-20261121-803',
        seen: ['HQT-HKK-20261121-801@2026-11-21 11:00:00', 'HQT-HKK-20261121-802@2026-11-21 11:00:00', 'HQT-HKK-20261121-803@2026-11-21 11:05:00'],
      },
    })
  })

  it('dead-letters a row it cannot place and keeps going', async () => {
    const { ctx } = canned(() => ok({ records: [{ ...sailing(1, '2026-11-21 11:00:00'), updateTime: 'soon' }, sailing(2, '2026-11-21 11:01:00')], hasMore: false }))
    const msgs = await collect(ferryTicketingConnector.read(config, undefined, ctx))
    expect(errors(msgs).map((e) => [e.code, e.reason])).toEqual([['invalid_value', 'sailing row: updateTime is not a valid local time: "soon"']])
    expect(records(msgs)).toHaveLength(1)
  })

  it.each([
    ['a body that is not the envelope', '[1,2]', 'CITYSYNC_ERR_CONNECTOR_PAYLOAD'],
    ['HTML from a proxy', '<html>502 Bad Gateway</html>', 'CITYSYNC_ERR_CONNECTOR_PAYLOAD'],
    ['data without records', ok({}), 'CITYSYNC_ERR_CONNECTOR_PAYLOAD'],
    ['records without hasMore', ok({ records: [] }), 'CITYSYNC_ERR_CONNECTOR_PAYLOAD'],
    ['an empty page with hasMore', ok({ records: [], hasMore: true }), 'CITYSYNC_ERR_CONNECTOR_PAYLOAD'],
    ['a page of unplaceable rows with hasMore', ok({ records: [{ nothing: 1 }], hasMore: true }), 'CITYSYNC_ERR_CONNECTOR_PAYLOAD'],
    ['a vendor error code', JSON.stringify({ code: '5001', message: '系统繁忙', data: null }), 'CITYSYNC_ERR_CONNECTOR_HTTP'],
  ] as const)('throws on %s', async (_name, body, code) => {
    const { ctx } = canned(() => body)
    const err = await collect(ferryTicketingConnector.read(config, undefined, ctx)).catch((e: unknown) => e)
    expect(isCitysyncError(err, code), String(err)).toBe(true)
  })

  it('throws when a page does not advance (the system repeats itself)', async () => {
    const row = sailing(1, '2026-11-21 11:00:00')
    const { ctx } = canned(() => ok({ records: [row], hasMore: true }))
    const err = await collect(ferryTicketingConnector.read(config, undefined, ctx)).catch((e: unknown) => e)
    expect(isCitysyncError(err, 'CITYSYNC_ERR_CONNECTOR_PAYLOAD')).toBe(true)
    expect((err as Error).message).toMatch(/does not advance/)
  })

  it('rejects a cursor that is not one of ours', async () => {
    const { ctx } = canned(() => ok({ records: [], hasMore: false }))
    const err = await collect(ferryTicketingConnector.read(config, { in: 5 } as unknown as FerryCursor, ctx)).catch((e: unknown) => e)
    expect(isCitysyncError(err, 'CITYSYNC_ERR_CONFIG_INVALID')).toBe(true)
  })
})

describe('ferryTicketingConnector.configSchema', () => {
  const validate = compileConnectorSchema(ferryTicketingConnector.configSchema)

  it('applies defaults, including where the timetable comes from', () => {
    const config: Record<string, unknown> = { baseUrl: 'http://127.0.0.1:4200' }
    expect(validate(config)).toBe(true)
    expect(config).toEqual({
      baseUrl: 'http://127.0.0.1:4200',
      pageSize: 200,
      feeds: ['sailings', 'tickets', 'checkins'],
      lookbackMs: 900_000,
      initialLookbackMs: 604_800_000,
      futureToleranceMs: 300_000,
      timetable: { source: 'sailings', graceMs: 5_400_000 },
    })
    const partial: Record<string, unknown> = { baseUrl: 'http://x', timetable: { graceMs: 0 } }
    expect(validate(partial)).toBe(true)
    expect(partial.timetable).toEqual({ source: 'sailings', graceMs: 0 })
  })

  it('accepts the example source file', () => {
    const source = loadSourceFile(new URL('../../examples/sources/hengqin-ferry.yaml', import.meta.url).pathname, configSchemaFor)
    expect(source).toMatchObject({ id: 'hengqin-ferry', kind: 'ferry-ticketing', timezone: 'Asia/Shanghai' })
    expect(source.config).toMatchObject({ baseUrl: 'http://127.0.0.1:4200/', timetable: { source: 'sailings', graceMs: 5_400_000 } })
  })

  it('marks the API key secret and rejects bad values', () => {
    const props = ferryTicketingConnector.configSchema.properties as Record<string, Record<string, unknown>>
    expect(props.apiKey).toMatchObject({ type: 'string', 'x-secret': true })
    for (const bad of [
      {},
      { baseUrl: 'ftp://vendor.example' },
      { baseUrl: 'http://x', pageSize: 501 },
      { baseUrl: 'http://x', feeds: ['entries'] },
      { baseUrl: 'http://x', feeds: [] },
      { baseUrl: 'http://x', lookbackMs: -1 },
      { baseUrl: 'http://x', timetable: { source: 'manual' } },
      { baseUrl: 'http://x', extra: 1 },
    ]) {
      expect(validate(bad), JSON.stringify(bad)).toBe(false)
    }
  })
})
