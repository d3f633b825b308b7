import { describe, expect, it } from 'vitest'
import { type IncomingBatch } from './bus.ts'
import { MemoryBus } from './memory-bus.ts'

const msg = (i: number) => ({ key: 'src', value: Buffer.from(String(i)), headers: {} })

function collect(bus: MemoryBus, opts: { group?: string; maxBatchSize?: number; maxWaitMs?: number; failFirst?: number } = {}) {
  const batches: IncomingBatch[] = []
  const ctl = new AbortController()
  let failures = opts.failFirst ?? 0
  const sub = bus.subscribe(
    { group: opts.group ?? 'g', topics: ['t'], maxBatchSize: opts.maxBatchSize ?? 100, maxWaitMs: opts.maxWaitMs ?? 10, signal: ctl.signal },
    (batch) => {
      if (failures-- > 0) return Promise.reject(new Error('warehouse down'))
      batches.push(batch)
      return Promise.resolve()
    },
  )
  return { batches, stop: async () => { ctl.abort(); await sub.done } }
}

describe('MemoryBus', () => {
  it('resolves a publish only once the group has committed it', async () => {
    const bus = new MemoryBus()
    let landed = false
    const p = bus.publish('t', [msg(1), msg(2)]).then(() => (landed = true))
    await new Promise((r) => setTimeout(r, 30))
    expect(landed).toBe(false) // nobody consumed it yet
    const c = collect(bus)
    await p
    expect(landed).toBe(true)
    expect(c.batches.flatMap((b) => b.messages.map((m) => m.value.toString()))).toEqual(['1', '2'])
    await c.stop()
  })

  it('cuts batches at maxBatchSize with consecutive offsets', async () => {
    const bus = new MemoryBus()
    const c = collect(bus, { maxBatchSize: 3, maxWaitMs: 1000 })
    await bus.publish('t', Array.from({ length: 7 }, (_, i) => msg(i)))
    expect(c.batches.map((b) => [b.firstOffset, b.lastOffset])).toEqual([[0, 2], [3, 5], [6, 6]])
    await c.stop()
  })

  it('delivers a partial batch after maxWaitMs', async () => {
    const bus = new MemoryBus()
    const c = collect(bus, { maxBatchSize: 1000, maxWaitMs: 50 })
    const t0 = Date.now()
    await bus.publish('t', [msg(1)])
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45)
    expect(c.batches).toHaveLength(1)
    await c.stop()
  })

  it('redelivers the same batch after the handler fails, and drops committed messages', async () => {
    const bus = new MemoryBus()
    const c = collect(bus, { failFirst: 2 })
    await bus.publish('t', [msg(1), msg(2), msg(3)])
    expect(c.batches).toHaveLength(1)
    expect(c.batches[0]!.messages.map((m) => m.offset)).toEqual([0, 1, 2])
    expect(bus.backlog()).toEqual({ t: 0 })
    await c.stop()
  }, 10_000)

  it('waits for every group before releasing a publish', async () => {
    const bus = new MemoryBus()
    const a = collect(bus, { group: 'a' })
    const b = collect(bus, { group: 'b', failFirst: 1 })
    await bus.publish('t', [msg(1)])
    expect(a.batches).toHaveLength(1)
    expect(b.batches).toHaveLength(1)
    await a.stop()
    await b.stop()
  })

  it('refuses publishes after close', async () => {
    const bus = new MemoryBus()
    await bus.close()
    await expect(bus.publish('t', [msg(1)])).rejects.toMatchObject({ code: 'CITYSYNC_ERR_BUS_CLOSED' })
  })
})
