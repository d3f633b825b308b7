import { afterEach, describe, expect, it } from 'vitest'
import { ManualClock } from '../../lib/clock.ts'
import { parseLocal } from '../../lib/local-time.ts'
import { DEFECT_EXPECTATIONS, ParkingSimulator, type ParkingSimulatorOptions, type SimStream } from './simulator.ts'

const START = '2026-11-21T00:00:00Z' // 08:00 in Shanghai
const TZ = 'Asia/Shanghai'
const HOUR = 3_600_000

type Item = Record<string, unknown>

function parse(text: string): void {
  JSON.parse(text)
}

const running: ParkingSimulator[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()))
})

function sim(options: ParkingSimulatorOptions = {}): { sim: ParkingSimulator; clock: ManualClock } {
  const clock = new ManualClock(START)
  return { sim: new ParkingSimulator({ seed: 1, clock, ...options }), clock }
}

function items(s: ParkingSimulator, stream: SimStream): Item[] {
  const out: Item[] = []
  for (let after = 0; ; after += 1000) {
    const body = JSON.parse(s.page(stream, after, 1000)) as { data: { list: Item[]; hasMore: boolean } }
    out.push(...body.data.list)
    if (!body.data.hasMore) return out
  }
}

describe('ParkingSimulator data', () => {
  it('serves realistic lots around the centre', () => {
    const { sim: s } = sim({ lots: 6, center: { lng: 113.54, lat: 22.13 } })
    const parks = s.parks()
    expect(parks).toHaveLength(6)
    expect(parks[0]).toMatchObject({ parkCode: 'HQ01', parkName: '横琴口岸P1停车场', coordType: 'GCJ02' })
    for (const p of parks) {
      expect(p.totalSpace).toBeGreaterThanOrEqual(80)
      expect(p.totalSpace).toBeLessThanOrEqual(1200)
      expect(Math.abs(p.lng - 113.54)).toBeLessThan(0.05)
      expect(Math.abs(p.lat - 22.13)).toBeLessThan(0.05)
      expect(['00:00-24:00', '07:00-22:00']).toContain(p.openTime)
      expect(p.address).toMatch(/省|市/)
    }
    expect(parks.map((p) => p.openTime)).toContain('07:00-22:00')
    expect(new Set(parks.map((p) => p.parkCode)).size).toBe(6)
  })

  it('is deterministic from the seed, however time is stepped', () => {
    const a = sim({ eventsPerMinute: 30 })
    const b = sim({ eventsPerMinute: 30 })
    a.clock.advance(6 * HOUR)
    for (let i = 0; i < 36; i++) {
      b.clock.advance(HOUR / 6)
      b.sim.advance()
    }
    for (const stream of ['in', 'out', 'space'] as const) {
      expect(b.sim.page(stream, 0, 1000)).toBe(a.sim.page(stream, 0, 1000))
    }
    expect(a.sim.truth()).toEqual(b.sim.truth())
    const c = sim({ seed: 2, eventsPerMinute: 30 })
    c.clock.advance(6 * HOUR)
    expect(c.sim.page('in', 0, 50)).not.toBe(a.sim.page('in', 0, 50))
  })

  it('generates only for the time that has passed', () => {
    const { sim: s, clock } = sim({ eventsPerMinute: 60 })
    expect(s.page('in', 0, 10)).toBe('{"code":0,"msg":"success","data":{"list":[],"hasMore":false}}')
    let seen = 0
    for (let step = 0; step < 12; step++) {
      clock.advance(10 * 60_000)
      const list = items(s, 'in')
      expect(list.length).toBeGreaterThanOrEqual(seen)
      seen = list.length
      for (const it of list) expect(parseLocal(it.inTime as string, TZ)! <= clock.now()).toBe(true)
    }
    // 30 arrivals a minute on average, ~1.6 times that in the morning peak.
    expect(seen).toBeGreaterThan(3000)
    expect(seen).toBeLessThan(9000)
  })

  it('serves dense ascending seqs, plausible plates, exits only for vehicles that entered', () => {
    const { sim: s, clock } = sim({ eventsPerMinute: 20 })
    clock.advance(30 * HOUR)
    const entries = items(s, 'in')
    const exits = items(s, 'out')
    expect(entries.length).toBeGreaterThan(5000)
    expect(entries.map((e) => e.seq)).toEqual(entries.map((_, i) => i + 1))
    expect(exits.map((e) => e.seq)).toEqual(exits.map((_, i) => i + 1))
    // Checked in plain code and asserted once: 10k+ expect() calls are slow.
    const plate = /^(粤[A-Z]([A-HJ-NP-Z0-9]{5}|[DF]\d{5})|[湘赣桂川鄂闽][A-Z][A-HJ-NP-Z0-9]{5}|澳M[A-Z]\d{4})$/
    const problems: string[] = []
    const byVehicle = new Set<string>()
    for (const e of entries) {
      if (!/^HQ0\d-IN-2026112[12]-\d{6}$/.test(String(e.recordNo))) problems.push(`recordNo ${String(e.recordNo)}`)
      if (!plate.test(String(e.plateNo))) problems.push(`plate of entry ${String(e.seq)}`)
      if (!['blue', 'green', 'yellow', 'black'].includes(String(e.plateColor))) problems.push(`colour ${String(e.plateColor)}`)
      if (e.isReupload !== 0) problems.push(`isReupload ${String(e.seq)}`)
      byVehicle.add(`${String(e.parkCode)}|${String(e.plateNo)}|${String(e.inTime)}`)
    }
    let overnight = 0
    for (const x of exits) {
      if (!byVehicle.has(`${String(x.parkCode)}|${String(x.plateNo)}|${String(x.inTime)}`)) problems.push(`exit ${String(x.seq)} without entry`)
      const stay = parseLocal(x.outTime as string, TZ)! - parseLocal(x.inTime as string, TZ)!
      if (stay < 10 * 60_000 - 1000) problems.push(`exit ${String(x.seq)} stay ${stay}`)
      if (stay > 10 * HOUR) overnight++
      if (!/^\d+\.\d{2}$/.test(String(x.fee))) problems.push(`fee ${String(x.fee)}`)
      if (!/^HQ0\d-OUT-\d{8}-\d{6}$/.test(String(x.recordNo))) problems.push(`recordNo ${String(x.recordNo)}`)
    }
    expect(problems).toEqual([])
    expect(new Set(entries.map((e) => e.recordNo)).size).toBe(entries.length)
    expect(entries.some((e) => String(e.plateNo).startsWith('澳M'))).toBe(true)
    expect(entries.some((e) => e.plateColor === 'green' && /^粤C[DF]\d{5}$/.test(String(e.plateNo)))).toBe(true)
    expect(overnight).toBeGreaterThan(0)
    expect(exits.some((x) => x.fee !== '0.00')).toBe(true)
  })

  it('keeps restricted lots within their opening hours', () => {
    const { sim: s, clock } = sim({ eventsPerMinute: 20, lots: 4 })
    clock.advance(48 * HOUR)
    const limited = s.parks().find((p) => p.openTime === '07:00-22:00')!.parkCode
    for (const e of items(s, 'in').filter((e) => e.parkCode === limited)) {
      const hour = Number(String(e.inTime).slice(11, 13))
      expect(hour >= 7 && hour < 22).toBe(true)
    }
    for (const x of items(s, 'out').filter((e) => e.parkCode === limited)) {
      expect(String(x.outTime).slice(11) <= '22:10:00').toBe(true)
    }
  })

  it('reports free space consistent with the passages served', () => {
    const { sim: s, clock } = sim({ eventsPerMinute: 40 })
    clock.advance(26 * HOUR)
    const entries = items(s, 'in').map((e) => ({ lot: e.parkCode, t: parseLocal(e.inTime as string, TZ)! }))
    const exits = items(s, 'out').map((e) => ({ lot: e.parkCode, t: parseLocal(e.outTime as string, TZ)! }))
    const spaces = items(s, 'space')
    expect(spaces.length).toBe(5 * (26 * 12 + 1))
    for (const r of spaces.filter((_, i) => i % 7 === 0)) {
      const t = parseLocal(r.reportTime as string, TZ)!
      // Events in the same second as a report happened after it.
      const inside =
        entries.filter((e) => e.lot === r.parkCode && e.t < t).length - exits.filter((e) => e.lot === r.parkCode && e.t < t).length
      expect(r.freeSpace).toBe((r.totalSpace as number) - inside)
      expect(r.freeSpace as number).toBeGreaterThanOrEqual(0)
    }
  })

  it('stops after maxEvents passage records', () => {
    const { sim: s, clock } = sim({ eventsPerMinute: 60, maxEvents: 500 })
    clock.advance(48 * HOUR)
    s.advance()
    const c = s.counts()
    expect(c.in + c.out).toBe(500)
    expect(s.done).toBe(true)
    const spaces = s.counts().space
    clock.advance(48 * HOUR)
    s.advance()
    expect(s.counts()).toEqual({ ...c, space: spaces })
    expect(s.truth()).toHaveLength(500)
  })
})

describe('ParkingSimulator faults', () => {
  function faulty() {
    const { sim: s, clock } = sim({ eventsPerMinute: 10, maxEvents: 6000, faults: { badRate: 0.1 } })
    clock.advance(3 * 24 * HOUR)
    return { s, clock }
  }

  it('injects every defect kind, listed in badRecords and left out of truth', () => {
    const { s } = faulty()
    const bad = s.badRecords()
    const kinds = new Set(bad.map((b) => `${b.type}:${b.defect}`))
    for (const k of [
      'in:missing_field',
      'in:wrong_type',
      'in:unknown_lot',
      'in:future_timestamp',
      'in:duplicate_conflict',
      'in:exact_duplicate',
      'out:unknown_value',
      'out:missing_field',
      'space:free_above_capacity',
      'space:unknown_value',
      'space:missing_field',
      'space:wrong_type',
      'space:unknown_lot',
      'space:future_timestamp',
    ]) {
      expect(kinds, k).toContain(k)
    }
    for (const b of bad) expect(b).toMatchObject(DEFECT_EXPECTATIONS[b.defect])
    const truth = new Set(s.truth().map((t) => `${t.type}:${t.seq}`))
    for (const b of bad) expect(truth.has(`${b.type}:${b.seq}`)).toBe(false)
    const c = s.counts()
    const passageBad = bad.filter((b) => b.type !== 'space').length
    expect(truth.size + passageBad).toBe(c.in + c.out)
  })

  it('renders each defect as described', () => {
    const { s } = faulty()
    const entries = items(s, 'in')
    const exits = items(s, 'out')
    const spaces = items(s, 'space')
    const lots = new Set(s.parks().map((p) => p.parkCode))
    const list = { in: entries, out: exits, space: spaces }
    for (const b of s.badRecords()) {
      const item = list[b.type][b.seq - 1]!
      const time = b.type === 'in' ? 'inTime' : b.type === 'out' ? 'outTime' : 'reportTime'
      switch (b.defect) {
        case 'missing_field':
          expect(['recordNo', 'parkCode', 'freeSpace', time].some((f) => !(f in item))).toBe(true)
          break
        case 'wrong_type':
          expect(item.parkCode === null || item[time] === 12345).toBe(true)
          break
        case 'unknown_value':
          expect(b.type === 'out' ? item.fee : item.freeSpace).toBe('unknown')
          break
        case 'unknown_lot':
          expect(lots.has(item.parkCode as string)).toBe(false)
          break
        case 'future_timestamp':
          expect(parseLocal(item[time] as string, TZ)!).toBeGreaterThan(Date.parse(START) + 3 * 24 * HOUR + 12 * HOUR)
          break
        case 'free_above_capacity':
          expect(item.freeSpace as number).toBeGreaterThan(item.totalSpace as number)
          break
        case 'exact_duplicate': {
          const orig = list[b.type].find((o) => o.recordNo === item.recordNo && o !== item)!
          expect({ ...orig, seq: 0 }).toEqual({ ...item, seq: 0 })
          expect(orig.seq as number).toBeLessThanOrEqual(b.seq - 1000)
          break
        }
        case 'duplicate_conflict': {
          const orig = list[b.type].find((o) => o.recordNo === item.recordNo && o !== item)!
          expect({ ...orig, seq: 0 }).not.toEqual({ ...item, seq: 0 })
          expect(b.recordNo).toBe(item.recordNo)
          break
        }
        case 'malformed_json':
          break
      }
    }
  })

  it('serves backfilled (补传) stays as valid data with an old inTime', () => {
    const { s } = faulty()
    const entries = items(s, 'in').filter((e) => e.isReupload === 1)
    expect(entries.length).toBeGreaterThan(0)
    const truth = s.truth()
    for (const e of entries) {
      expect(truth.find((t) => t.type === 'in' && t.seq === e.seq)?.isReupload).toBe(true)
    }
    const exits = items(s, 'out').filter((e) => e.isReupload === 1)
    expect(exits.length).toBe(entries.length)
  })

  it('serves pages with a malformed seq as invalid JSON, persistently', () => {
    const { sim: s, clock } = sim({ eventsPerMinute: 30, faults: { malformedSeqs: { in: [37] } } })
    clock.advance(6 * HOUR)
    expect(() => parse(s.page('in', 0, 100))).toThrow()
    expect(() => parse(s.page('in', 0, 100))).toThrow()
    expect(() => parse(s.page('in', 36, 1))).toThrow()
    expect(() => parse(s.page('in', 0, 36))).not.toThrow()
    expect(() => parse(s.page('in', 37, 100))).not.toThrow()
    expect(() => parse(s.page('out', 0, 100))).not.toThrow()
    expect(s.badRecords()).toEqual([expect.objectContaining({ type: 'in', seq: 37, defect: 'malformed_json', code: 'malformed_json' })])
    expect(s.truth().some((t) => t.type === 'in' && t.seq === 37)).toBe(false)
  })
})

describe('ParkingSimulator HTTP', () => {
  async function started(options: ParkingSimulatorOptions = {}) {
    const made = sim({ eventsPerMinute: 30, ...options })
    running.push(made.sim)
    made.clock.advance(2 * HOUR)
    const url = await made.sim.start()
    return { ...made, url }
  }

  it('serves the open API with the vendor envelope', async () => {
    const { sim: s, url } = await started()
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    const parks = (await (await fetch(`${url}/openapi/v1/parks`)).json()) as { code: number; msg: string; data: unknown[] }
    expect(parks).toMatchObject({ code: 0, msg: 'success' })
    expect(parks.data).toEqual(s.parks())
    const res = await fetch(`${url}/openapi/v1/records?type=in&afterSeq=5&limit=10`)
    expect(res.headers.get('content-type')).toMatch(/application\/json/)
    expect(await res.text()).toBe(s.page('in', 5, 10))
    const space = (await (await fetch(`${url}/openapi/v1/space?afterSeq=0&limit=3`)).json()) as { data: { list: Item[] } }
    expect(space.data.list.map((x) => x.seq)).toEqual([1, 2, 3])
    expect(s.requests('/openapi/v1/parks')).toBe(1)
  })

  it('validates parameters', async () => {
    const { url } = await started()
    const bad = async (path: string) => {
      const res = await fetch(url + path)
      return { status: res.status, body: (await res.json()) as { code: number; msg: string } }
    }
    expect(await bad('/openapi/v1/records?type=x')).toMatchObject({ status: 400, body: { code: 400 } })
    expect(await bad('/openapi/v1/records?type=in&limit=1001')).toMatchObject({ status: 400, body: { msg: 'limit must be an integer 1..1000' } })
    expect(await bad('/openapi/v1/records?type=in&limit=0')).toMatchObject({ status: 400 })
    expect(await bad('/openapi/v1/space?afterSeq=-1')).toMatchObject({ status: 400 })
    expect(await bad('/openapi/v2/nothing')).toMatchObject({ status: 404, body: { code: 404 } })
  })

  it('checks the app key when configured', async () => {
    const { url } = await started({ appKey: 'k-123' })
    const denied = (await (await fetch(`${url}/openapi/v1/parks`)).json()) as { code: number; msg: string }
    expect(denied).toMatchObject({ code: 401, msg: 'invalid app key' })
    const ok = (await (await fetch(`${url}/openapi/v1/parks`, { headers: { 'X-App-Key': 'k-123' } })).json()) as { code: number }
    expect(ok.code).toBe(0)
  })

  it('answers 503 during an outage and can be slow', async () => {
    const { sim: s, url } = await started()
    s.outage(true)
    const res = await fetch(`${url}/openapi/v1/parks`)
    expect(res.status).toBe(503)
    expect(await res.json()).toMatchObject({ code: 503 })
    s.outage(false)
    s.setSlowMs(150)
    const t0 = Date.now()
    expect((await fetch(`${url}/openapi/v1/parks`)).status).toBe(200)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140)
  })
})

describe('ParkingSimulator.generateBulk', () => {
  it('generates a finite history that ends before now, quickly and compactly', () => {
    const clock = new ManualClock(START)
    const s = new ParkingSimulator({ seed: 5, clock, eventsPerMinute: 120, faults: { badRate: 0.02 } })
    const r = s.generateBulk(200_000)
    expect(r.passages).toBe(200_000)
    expect(r.ms).toBeLessThan(5000)
    expect(s.counts().in + s.counts().out).toBe(200_000)
    expect(s.done).toBe(true)
    const last = JSON.parse(s.page('out', s.counts().out - 1, 1)) as { data: { list: Item[]; hasMore: boolean } }
    const lastOut = parseLocal(last.data.list[0]!.outTime as string, TZ)!
    expect(lastOut).toBeLessThanOrEqual(clock.now())
    expect(lastOut).toBeGreaterThan(clock.now() - 24 * HOUR)
    // Future-timestamp defects stay in the future after the history is moved back.
    const future = s.badRecords().filter((b) => b.defect === 'future_timestamp' && b.type === 'in')
    expect(future.length).toBeGreaterThan(0)
    for (const b of future.slice(0, 20)) {
      const page = JSON.parse(s.page('in', b.seq - 1, 1)) as { data: { list: Item[] } }
      expect(parseLocal(page.data.list[0]!.inTime as string, TZ)!).toBeGreaterThan(clock.now() + 24 * HOUR - 1000)
    }
    clock.advance(HOUR)
    expect(s.counts().in + s.counts().out).toBe(200_000)
    expect(() => s.generateBulk(10)).toThrow(/before any record/)
  })

  it('serves the same bytes from prerendered items, defects and malformed pages included', async () => {
    const make = () => {
      const s = new ParkingSimulator({ seed: 9, clock: new ManualClock(START), eventsPerMinute: 120, faults: { badRate: 0.05, malformedSeqs: { in: [33], out: [5] } } })
      s.generateBulk(3_000)
      return s
    }
    const plain = make()
    const pre = make()
    expect(() => new ParkingSimulator({ clock: new ManualClock(START) }).prerender()).toThrow(/finished generation/)
    expect(pre.prerender().items).toBe(pre.counts().in + pre.counts().out + pre.counts().space)
    let compared = 0
    for (const stream of ['in', 'out', 'space'] as const) {
      for (const [after, limit] of [[0, 1], [0, 100], [20, 40], [32, 1], [pre.counts()[stream] - 3, 10], [pre.counts()[stream] + 5, 10]] as const) {
        expect(pre.page(stream, after, limit), `${stream} ${after} ${limit}`).toBe(plain.page(stream, after, limit))
        compared++
      }
    }
    expect(compared).toBe(18)
    // The malformed item still breaks its pages.
    expect(() => JSON.parse(pre.page('in', 30, 10)) as unknown).toThrow()
    // Over HTTP, prerendered pages go out as bytes: the same bytes, the right length.
    const url = await pre.start()
    try {
      for (const [path, stream, after, limit] of [['/openapi/v1/records?type=out&', 'out', 0, 50], ['/openapi/v1/space?', 'space', 7, 3], ['/openapi/v1/records?type=in&', 'in', 30, 10]] as const) {
        const res = await fetch(`${url}${path}afterSeq=${after}&limit=${limit}`)
        const body = await res.text()
        expect(body).toBe(plain.page(stream, after, limit))
        expect(Number(res.headers.get('content-length'))).toBe(Buffer.byteLength(body))
      }
    } finally {
      await pre.stop()
    }
  })
})
