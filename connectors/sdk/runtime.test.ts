import PQueue from 'p-queue'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { systemClock } from '../../lib/clock.ts'
import { MemoryBus } from '../../pipelines/bus/memory-bus.ts'
import { Publisher } from '../../pipelines/publisher.ts'
import { SchemaCatalogue } from '../../schemas/catalogue.ts'
import { type Connector, checkpoint, itemError, record, type SourceMessage } from './connector.ts'
import { backoffDelay, DEFAULT_RETRY, nextRunDelay, SourceRunner, type StateStore } from './runtime.ts'

const catalogue = SchemaCatalogue.load()
const log = pino({ level: 'silent' })
const protect = (plate: string | null) => ({ plateKey: plate ? 'k' + plate : null, plateCipher: null, plateMasked: plate ? '***' : null })

type Cursor = { n: number }

/** Yields `pages` pages of `perPage` occupancy records, a checkpoint after each. */
function pagedConnector(pages: number, perPage: number, opts: { failAtPage?: number; badEvery?: number } = {}): Connector<unknown, Cursor> {
  return {
    kind: 'test',
    title: 'test',
    configSchema: {},
    check: () => Promise.resolve({ ok: true, message: 'ok' }),
    async *read(_config, cursor): AsyncIterable<SourceMessage<Cursor>> {
      for (let page = (cursor?.n ?? 0) + 1; page <= pages; page++) {
        if (page === opts.failAtPage) throw new Error('upstream 503')
        for (let i = 0; i < perPage; i++) {
          const n = (page - 1) * perPage + i
          if (opts.badEvery && n % opts.badEvery === 0) yield itemError('ParkingOccupancy', 'wrong_type', 'free is not a number', { free: 'unknown' })
          else yield record('ParkingOccupancy', { lotId: 'L1', occurredAt: 1_700_000_000_000 + n * 1000, free: n % 100, capacity: 100, status: 'open' })
        }
        yield checkpoint({ n: page })
        await Promise.resolve()
      }
    },
  }
}

function memoryState() {
  const saved: { cursor: unknown; landedAtSave: number }[] = []
  let cursor: unknown
  let landed = 0
  const store: StateStore = {
    getCursor: () => Promise.resolve(cursor),
    saveCheckpoint: (_id, c) => {
      cursor = c
      saved.push({ cursor: c, landedAtSave: landed })
      return Promise.resolve()
    },
    setRunState: () => Promise.resolve(),
    recordFailure: () => Promise.resolve(),
    recordSuccess: () => Promise.resolve(),
  }
  return { store, saved, onLanded: (n: number) => (landed += n), get cursor() { return cursor } }
}

function setup(connector: Connector<unknown, Cursor>, sinkDelayMs = 0) {
  const bus = new MemoryBus()
  const state = memoryState()
  const ctl = new AbortController()
  const landedEvents: string[] = []
  const sub = bus.subscribe(
    { group: 'sink', topics: ['citysync.parking.occupancy', 'citysync.ingest-error', 'citysync.heartbeat'], maxBatchSize: 50, maxWaitMs: 5, signal: ctl.signal },
    async (batch) => {
      await new Promise((r) => setTimeout(r, sinkDelayMs))
      for (const m of batch.messages) landedEvents.push(catalogue.decode(m.value).name)
      state.onLanded(batch.messages.length)
    },
  )
  const runner = new SourceRunner({
    source: { id: 'src-1', timezone: 'Asia/Shanghai', schedule: { everyMs: 60_000 }, config: {} },
    connector: connector,
    state: state.store,
    publisher: new Publisher({ sourceId: 'src-1', bus, catalogue, clock: systemClock, protectPlate: protect }),
    clock: systemClock,
    log,
    queue: new PQueue({ concurrency: 1 }),
    retry: { baseMs: 10, maxMs: 50, failAfter: 3 },
    flushEvery: 20,
  })
  return { runner, state, landedEvents, stop: async () => { ctl.abort(); await sub.done } }
}

describe('SourceRunner', () => {
  it('saves each checkpoint only after every record before it has landed', async () => {
    const t = setup(pagedConnector(5, 40), 15)
    const outcome = await t.runner.runOnce()
    expect(outcome).toEqual({ records: 200, rejected: 0, checkpoints: 5 })
    expect(t.state.saved.map((s) => s.cursor)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }, { n: 5 }])
    t.state.saved.forEach((s, i) => expect(s.landedAtSave).toBeGreaterThanOrEqual((i + 1) * 40))
    await t.stop()
  })

  it('turns item errors into dead-letter events that land like records', async () => {
    const t = setup(pagedConnector(2, 10, { badEvery: 5 }))
    const outcome = await t.runner.runOnce()
    expect(outcome.records).toBe(16)
    expect(outcome.rejected).toBe(4)
    expect(t.landedEvents.filter((n) => n === 'IngestError')).toHaveLength(4)
    expect(t.landedEvents.filter((n) => n === 'ParkingOccupancy')).toHaveLength(16)
    // The heartbeat travels on its own topic: landed once, in no fixed order with the data topics.
    expect(t.landedEvents.filter((n) => n === 'SourceHeartbeat')).toHaveLength(1)
    await t.stop()
  })

  it('keeps the checkpoints of pages before a failure and resumes after them', async () => {
    const failing = setup(pagedConnector(4, 10, { failAtPage: 3 }))
    await expect(failing.runner.runOnce()).rejects.toThrow('upstream 503')
    expect(failing.state.cursor).toEqual({ n: 2 })
    expect(failing.landedEvents.filter((n) => n === 'ParkingOccupancy')).toHaveLength(20)
    await failing.stop()
  })

  it('stops reading promptly when stopped', async () => {
    const endless: Connector<unknown, Cursor> = {
      ...pagedConnector(0, 0),
      async *read(_c, _cursor, ctx) {
        for (let n = 1; ; n++) {
          yield record('ParkingOccupancy', { lotId: 'L1', occurredAt: 1_700_000_000_000 + n, free: 1, capacity: 2, status: 'open' })
          if (n % 10 === 0) yield checkpoint({ n })
          await new Promise((r) => setTimeout(r, 1))
          if (ctx.signal.aborted) return
        }
      },
    }
    const t = setup(endless)
    t.runner.start()
    await new Promise((r) => setTimeout(r, 200))
    const t0 = Date.now()
    await t.runner.stop()
    expect(Date.now() - t0).toBeLessThan(2_000)
    const last = t.state.cursor as Cursor
    expect(last.n).toBeGreaterThan(0)
    // Everything up to the saved cursor landed.
    expect(t.landedEvents.filter((n) => n === 'ParkingOccupancy').length).toBeGreaterThanOrEqual(last.n)
    await t.stop()
  })

  it('returns from stop only after the interrupted run has landed its records, its heartbeat and its checkpoint', async () => {
    const endless: Connector<unknown, Cursor> = {
      ...pagedConnector(0, 0),
      async *read(_c, _cursor, ctx) {
        for (let n = 1; !ctx.signal.aborted; n++) {
          yield record('ParkingOccupancy', { lotId: 'L1', occurredAt: 1_700_000_000_000 + n, free: 1, capacity: 2, status: 'open' })
          if (n % 10 === 0) yield checkpoint({ n })
          await new Promise((r) => setTimeout(r, 1))
        }
      },
    }
    // A slow sink: the interrupted run's last sends take a while to land.
    const t = setup(endless, 150)
    const runStates: string[] = []
    const setRunState = t.state.store.setRunState.bind(t.state.store)
    t.state.store.setRunState = (id, s, m) => (runStates.push(s), setRunState(id, s, m))
    t.runner.start()
    await new Promise((r) => setTimeout(r, 300))
    await t.runner.stop()
    const atStop = { landed: t.landedEvents.length, saves: t.state.saved.length, states: runStates.length }
    expect(t.landedEvents.filter((n) => n === 'SourceHeartbeat')).toHaveLength(1)
    expect(runStates.at(-1)).toBe('stopped')
    // Nothing of that run happens after stop has returned.
    await new Promise((r) => setTimeout(r, 500))
    expect({ landed: t.landedEvents.length, saves: t.state.saved.length, states: runStates.length }).toEqual(atStop)
    await t.stop()
  })
})

describe('SourceRunner with a warehouse that never lands', () => {
  it('stops within the grace period and saves no checkpoint past unlanded records', async () => {
    const bus = new MemoryBus()
    const state = memoryState()
    const ctl = new AbortController()
    const sub = bus.subscribe(
      { group: 'sink', topics: ['citysync.parking.occupancy'], maxBatchSize: 50, maxWaitMs: 5, signal: ctl.signal },
      () => Promise.reject(new Error('warehouse down')),
    )
    const runner = new SourceRunner({
      source: { id: 'src-1', timezone: 'UTC', schedule: { everyMs: 60_000 }, config: {} },
      connector: pagedConnector(3, 10),
      state: state.store,
      publisher: new Publisher({ sourceId: 'src-1', bus, catalogue, clock: systemClock, protectPlate: protect }),
      clock: systemClock,
      log,
      queue: new PQueue({ concurrency: 1 }),
    })
    runner.start()
    await new Promise((r) => setTimeout(r, 100))
    const t0 = Date.now()
    await runner.stop(300)
    expect(Date.now() - t0).toBeLessThan(1_500)
    expect(state.saved).toEqual([])
    ctl.abort()
    await sub.done
  })
})

describe('scheduling and backoff', () => {
  it('backs off exponentially with jitter, capped', () => {
    const p = { ...DEFAULT_RETRY, baseMs: 1000, maxMs: 60_000 }
    expect(backoffDelay(1, p, () => 1)).toBe(1000)
    expect(backoffDelay(4, p, () => 1)).toBe(8000)
    expect(backoffDelay(20, p, () => 1)).toBe(60_000)
    expect(backoffDelay(4, p, () => 0)).toBe(500)
  })

  it('computes the next cron run in the source time zone', () => {
    // 08:00 Asia/Shanghai is 00:00 UTC.
    const now = Date.parse('2026-11-20T23:30:00Z')
    expect(nextRunDelay({ cron: '0 8 * * *' }, now, 'Asia/Shanghai')).toBe(30 * 60_000)
    expect(nextRunDelay({ everyMs: 5000 }, now, 'UTC')).toBe(5000)
  })
})
