import { afterEach, describe, expect, it } from 'vitest'
import { ManualClock } from '../../lib/clock.ts'
import { formatLocal, parseLocal } from '../../lib/local-time.ts'
import { FerrySimulator, type FerrySimulatorOptions, MAX_PAGE_SIZE, type SimEndpoint } from './simulator.ts'

const TZ = 'Asia/Shanghai'
const MIN = 60_000
const HOUR = 3_600_000
const START = '2026-11-20T10:00:00Z' // 18:00 in Shanghai: the 21st's timetable is published
const local = (text: string) => parseLocal(text, TZ)!

type Row = Record<string, unknown>

const running: FerrySimulator[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()))
})

function sim(options: FerrySimulatorOptions = {}): { sim: FerrySimulator; clock: ManualClock } {
  const clock = new ManualClock(START)
  const s = new FerrySimulator({ seed: 1, clock, serviceDays: 2, ...options })
  running.push(s)
  return { sim: s, clock }
}

/** Every row a full read at clock.now() gets, following the paging contract. */
function readAll(s: FerrySimulator, endpoint: SimEndpoint, pageSize = MAX_PAGE_SIZE): Row[] {
  const out: Row[] = []
  let after: number | null = null
  let afterId = ''
  for (;;) {
    const page = s.page(endpoint, after, afterId, pageSize)
    out.push(...page.records)
    if (!page.hasMore) return out
    const last = page.records.at(-1)!
    after = local(last.updateTime as string)
    afterId = String(last[endpoint === 'sailings' ? 'sailingId' : endpoint === 'tickets' ? 'ticketNo' : 'checkinId'])
  }
}

const idOf = (r: Row) => String(r.ticketNo ?? r.sailingId)

describe('FerrySimulator data', { timeout: 30_000 }, () => {
  it('publishes a realistic timetable the evening before, ending with an evening sailing', () => {
    const { sim: s, clock } = sim()
    clock.set(local('2026-11-21 06:00:00'))
    s.advance()
    const day = s.plannedSailings().filter((p) => p.sailDate === '2026-11-21')
    expect(day).toHaveLength(31)
    const last = (code: string) => day.filter((p) => p.terminal.terminalCode === code).map((p) => p.sailTime).sort().at(-1)
    expect(last('HQT')).toBe('19:30')
    expect(last('JZG')).toBe('21:30')
    expect(day.map((p) => p.sailingId)).toContain('HQT-HKK-20261121-0830')
    // The 21st's rows appear at 18:00 on the 20th, through the system's lagging clock.
    const first = s.allVersions('sailings').find((v) => v.id === 'HQT-HKK-20261121-0830')!
    expect(first.visibleAt).toBe(local('2026-11-20 18:00:00') + 0)
    expect(first.item).toMatchObject({ sailDate: '2026-11-21', sailTime: '08:30', sailStatus: 0, updateTime: '2026-11-20 17:59:15' })
  })

  it('takes each sailing through its statuses, with delays and cancellations', () => {
    const { sim: s, clock } = sim({ serviceDays: 4 })
    clock.set(local('2026-11-24 06:00:00'))
    s.advance()
    const statuses = (id: string) => s.allVersions('sailings').filter((v) => v.id === id).map((v) => (v.outcome.kind === 'sailing' ? v.outcome.draft.status : 'bad'))
    const plans = s.plannedSailings().filter((p) => p.sailDate < '2026-11-23')
    const plain = plans.find((p) => p.cancelledAt === null && p.delayMs === 0 && p.vesselAssignedAt === null)!
    expect(statuses(plain.sailingId)).toEqual(['scheduled', 'boarding', 'departed', 'arrived'])
    const delayed = plans.find((p) => p.delayMs > 0)!
    expect(statuses(delayed.sailingId)).toEqual(expect.arrayContaining(['delayed', 'boarding', 'departed', 'arrived']))
    const cancelled = plans.find((p) => p.cancelledAt !== null)!
    expect(statuses(cancelled.sailingId).at(-1)).toBe('cancelled')
    // Its tickets are refunded or moved to a later sailing, and nobody checks in for it.
    const onCancelled = s.allVersions('tickets').filter((v) => v.item.origSailingId === cancelled.sailingId || v.item.sailingId === cancelled.sailingId)
    expect(onCancelled.length).toBeGreaterThan(0)
    expect(s.allVersions('checkins').some((v) => v.item.sailingId === cancelled.sailingId)).toBe(false)
  })

  it('is deterministic from the seed, however time is stepped', () => {
    const a = sim()
    const b = sim()
    a.clock.set(local('2026-11-21 14:00:00'))
    for (let t = local('2026-11-20 18:00:00'); t <= local('2026-11-21 14:00:00'); t += 37 * MIN) {
      b.clock.set(t)
      b.sim.advance()
    }
    b.clock.set(local('2026-11-21 14:00:00'))
    for (const e of ['sailings', 'tickets', 'checkins'] as const) expect(readAll(b.sim, e)).toEqual(readAll(a.sim, e))
    expect(readAll(a.sim, 'tickets').length).toBeGreaterThan(1000)
  })

  it('goes quiet after the last arrival: no check-ins and no sailing updates until the next morning', () => {
    const { sim: s, clock } = sim()
    clock.set(local('2026-11-22 12:00:00'))
    s.advance()
    const night = (v: { visibleAt: number }) => v.visibleAt > local('2026-11-21 23:30:00') && v.visibleAt < local('2026-11-22 06:00:00')
    expect(s.allVersions('checkins').filter((v) => !v.backfill).some(night)).toBe(false)
    expect(s.allVersions('sailings').some(night)).toBe(false)
  })
})

describe('FerrySimulator quirks', { timeout: 30_000 }, () => {
  const { sim: s, clock } = sim({ faults: { badRate: 0.03 } })
  clock.set(local('2026-11-22 01:00:00'))
  s.advance()
  const sailings = s.allVersions('sailings')
  const tickets = s.allVersions('tickets')
  const checkins = s.allVersions('checkins')

  it('writes epoch seconds from old turnstiles and one dispatch system, milliseconds elsewhere', () => {
    const departed = sailings.filter((v) => v.item.actualDepartTime !== null)
    expect(departed.filter((v) => v.item.terminalCode === 'JZG').every((v) => (v.item.actualDepartTime as number) < 1e11)).toBe(true)
    expect(departed.filter((v) => v.item.terminalCode === 'HQT').every((v) => (v.item.actualDepartTime as number) > 1e12)).toBe(true)
    const byGate = (g: string) => checkins.filter((v) => v.item.gateNo === g && typeof v.item.checkTime === 'number').map((v) => v.item.checkTime as number)
    expect(byGate('A1').every((t) => t < 1e11)).toBe(true)
    expect(byGate('B1').every((t) => t > 1e12)).toBe(true)
  })

  it('has a gate clock 3 minutes fast and a system clock that lags', () => {
    const g3 = checkins.find((v) => v.item.gateNo === 'G3' && v.outcome.kind === 'checkin' && !v.backfill && !v.late)!
    expect(g3.outcome.kind === 'checkin' && g3.outcome.draft.occurredAt - g3.visibleAt).toBe(3 * MIN)
    const g1 = checkins.find((v) => v.item.gateNo === 'G1' && v.outcome.kind === 'checkin' && !v.backfill && !v.late)!
    expect(g1.visibleAt - g1.updateTs).toBe(45_000)
  })

  it('sends "unknown" seats and prices, and prices as numbers from the app channel', () => {
    expect(sailings.some((v) => v.item.seats === 'unknown' && v.item.vesselName === null)).toBe(true)
    expect(tickets.some((v) => v.item.ticketPrice === 'unknown')).toBe(true)
    const valid = tickets.filter((v) => v.outcome.kind === 'ticket')
    expect(valid.filter((v) => v.item.saleChannel === 'APP').every((v) => typeof v.item.ticketPrice === 'number')).toBe(true)
    expect(valid.filter((v) => v.item.saleChannel === 'WINDOW').every((v) => typeof v.item.ticketPrice === 'string')).toBe(true)
  })

  it('serves some rows minutes after their updateTime, and uploads offline rows later (补传)', () => {
    const late = [...tickets, ...checkins].filter((v) => v.late)
    expect(late.length).toBeGreaterThan(50)
    for (const v of late) {
      expect(v.visibleAt - v.updateTs).toBeGreaterThan(45_000)
      expect(v.visibleAt - v.updateTs).toBeLessThanOrEqual(10 * MIN + 45_000)
    }
    const backfilled = tickets.filter((v) => v.backfill)
    expect(backfilled.length).toBeGreaterThan(5)
    for (const v of backfilled) {
      expect(v.item.isResend).toBe(1)
      expect(local(v.item.updateTime as string) - local(v.item.saleTime as string)).toBeGreaterThanOrEqual(HOUR)
    }
    expect(checkins.filter((v) => v.backfill).every((v) => v.item.isResend === 1)).toBe(true)
  })

  it('never serves a check-in before its ticket exists, except scans of unknown tickets', () => {
    const firstSeen = new Map<string, number>()
    for (const v of tickets) if (!firstSeen.has(v.id)) firstSeen.set(v.id, v.visibleAt)
    for (const v of checkins) {
      const t = firstSeen.get(v.item.ticketNo as string)
      if (v.outcome.kind === 'rejected' && v.outcome.defect === 'checkin_unknown_ticket') expect(t).toBeUndefined()
      else if (v.outcome.kind === 'checkin') expect(v.visibleAt).toBeGreaterThanOrEqual(t!)
    }
  })

  it('injects every defect kind', () => {
    const defects = new Set([...sailings, ...tickets, ...checkins].flatMap((v) => (v.outcome.kind === 'rejected' ? [v.outcome.defect] : [])))
    expect([...defects].sort()).toEqual([
      'checkin_future_time',
      'checkin_missing_ticket',
      'checkin_unknown_ticket',
      'checkin_unknown_time',
      'sailing_bad_status',
      'sailing_missing_date',
      'ticket_future_sale',
      'ticket_missing_sailing',
      'ticket_negative_price',
      'ticket_unknown_terminal',
    ])
  })
})

describe('FerrySimulator paging', { timeout: 30_000 }, () => {
  it('serves rows in (updateTime, id) order after the position, repeating the tail of the previous page now and then', () => {
    const { sim: s, clock } = sim()
    clock.set(local('2026-11-21 12:00:00'))
    const rows = readAll(s, 'tickets', 50)
    const distinct = new Map(rows.map((r) => [`${idOf(r)}@${String(r.updateTime)}`, r]))
    expect(rows.length).toBeGreaterThan(distinct.size) // repeats across pages
    expect(rows.length - distinct.size).toBe(s.repeatedRows)
    const keys = [...distinct.values()].map((r) => [local(r.updateTime as string), idOf(r)] as const)
    for (let i = 1; i < keys.length; i++) {
      const [t0, id0] = keys[i - 1]!
      const [t1, id1] = keys[i]!
      expect(t1 > t0 || (t1 === t0 && id1 > id0)).toBe(true)
    }
    // A read with a large page sees the same rows, once each.
    const once = readAll(s, 'tickets', 500)
    expect(new Set(once.map((r) => `${idOf(r)}@${String(r.updateTime)}`)).size).toBe(distinct.size)
    // Each ticket appears in its current version only.
    expect(new Set([...distinct.values()].map(idOf)).size).toBe(distinct.size)
  })

  it('answers lookups with the tickets that exist', () => {
    const { sim: s, clock } = sim()
    clock.set(local('2026-11-21 12:00:00'))
    const [a, b] = readAll(s, 'tickets').map(idOf)
    expect(s.lookupTickets([a!, 'HQT2611219999', b!]).map(idOf)).toEqual([a, b])
  })
})

describe('FerrySimulator over HTTP', { timeout: 30_000 }, () => {
  const api = (url: string, path: string, init?: RequestInit) => fetch(`${url}/ferry/open/v1${path}`, init)

  it('serves the terminals, feeds and lookups in the envelope', async () => {
    const { sim: s, clock } = sim()
    clock.set(local('2026-11-21 09:00:00'))
    const url = await s.start()
    const terminals = (await (await api(url, '/terminals')).json()) as { code: string; data: { terminalCode: string; routes: unknown[] }[] }
    expect(terminals.code).toBe('0000')
    expect(terminals.data.map((t) => t.terminalCode)).toEqual(['HQT', 'JZG'])
    expect(terminals.data[1]!.routes).toHaveLength(3)
    const q = new URLSearchParams({ updatedAfter: formatLocal(local('2026-11-21 08:00:00'), TZ), pageSize: '5' })
    const page = (await (await api(url, `/sailings?${q.toString()}`)).json()) as { code: string; data: { records: Row[]; hasMore: boolean } }
    expect(page.data.records).toHaveLength(5)
    expect(page.data.hasMore).toBe(true)
    expect(local(page.data.records[0]!.updateTime as string)).toBeGreaterThan(local('2026-11-21 08:00:00'))
    const no = readAll(s, 'tickets')[0]!.ticketNo as string
    const found = (await (await api(url, `/tickets/query?ticketNos=${no},NOPE`)).json()) as { data: Row[] }
    expect(found.data.map((r) => r.ticketNo)).toEqual([no])
  })

  it('rejects bad parameters with 400', async () => {
    const { sim: s } = sim()
    const url = await s.start()
    for (const path of ['/tickets?pageSize=0', `/tickets?pageSize=${MAX_PAGE_SIZE + 1}`, '/checkins?updatedAfter=yesterday', '/tickets/query?ticketNos=']) {
      const res = await api(url, path)
      expect(res.status, path).toBe(400)
      expect(((await res.json()) as { code: string }).code).toBe('4001')
    }
    expect((await api(url, '/nothing')).status).toBe(404)
  })

  it('goes down on command, also after a number of requests, and can be slow', async () => {
    const { sim: s } = sim()
    const url = await s.start()
    s.outage(true)
    const down = await api(url, '/terminals')
    expect(down.status).toBe(503)
    expect(await down.json()).toMatchObject({ code: '9503' })
    s.outage(false)
    s.outageAfter(2)
    expect((await api(url, '/terminals')).status).toBe(200)
    expect((await api(url, '/sailings')).status).toBe(200)
    expect((await api(url, '/tickets')).status).toBe(503)
    s.outage(false)
    s.setSlowMs(150)
    const t0 = Date.now()
    expect((await api(url, '/terminals')).status).toBe(200)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140)
    expect(s.requests('/ferry/open/v1/terminals')).toBe(3)
  })

  it('checks the API key', async () => {
    const { sim: s } = sim({ apiKey: 'k-123' })
    const url = await s.start()
    expect((await api(url, '/terminals')).status).toBe(401)
    expect((await api(url, '/terminals', { headers: { 'x-api-key': 'k-123' } })).status).toBe(200)
  })
})
