import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { DedupeCache, UNKNOWN_CONTENT } from './dedupe-cache.ts'
import { deriveEventId, hashContent, passageContentHash } from './normalise.ts'

const hexId = (): string => randomBytes(16).toString('hex')

/** What the cache must behave like: a Map in insertion order, the oldest entry dropped when one more would not fit. */
class Reference {
  readonly m = new Map<string, string>()
  readonly capacity: number
  constructor(capacity: number) {
    this.capacity = capacity
  }
  add(id: string, content: string): void {
    if (!this.m.has(id) && this.m.size === this.capacity) this.m.delete(this.m.keys().next().value!)
    this.m.set(id, content)
  }
}

describe('DedupeCache', () => {
  it('gives back every fingerprint form exactly, packed or not', () => {
    const c = new DedupeCache(100)
    const passage = passageContentHash(
      { lotId: 'L1', recordNo: 'R1', direction: 'exit', gateId: 'X1', plateType: 'blue', isBackfill: false, feeCents: 500, entryAt: 1, occurredAt: 2, plate: 'P' },
      'k',
    )
    const contents = [UNKNOWN_CONTENT, hashContent('{"x":1}'), hashContent(''), passage, '0.0', '0:0', '1z141z3.1z141z3', '00a.b', 'A.b', 'a.b.c', 'a:b.c', 'xyz', '1z141z4.0', '横琴.1', '.1', '1:']
    const ids = [hexId(), deriveEventId('s', 'ParkingPassage', { lotId: 'L', recordNo: 'R' }), 'ABCDEF0123456789abcdef0123456789', 'not-hex', '', '0'.repeat(33), 'g'.repeat(32)]
    for (const id of ids) {
      for (const content of contents) {
        c.add(id, content)
        expect(c.get(id)).toBe(content)
      }
    }
    expect(c.size).toBe(ids.length)
    expect(c.get(hexId())).toBeUndefined()
    // Case matters: an upper-case id is not its lower-case twin.
    expect(c.get('abcdef0123456789abcdef0123456789')).toBeUndefined()
  })

  it('forgets the oldest first and keeps an updated id in its place', () => {
    const c = new DedupeCache(1000)
    const ids = Array.from({ length: 1500 }, (_, i) => (i % 7 === 0 ? `id-${i}` : hexId()))
    for (const [i, id] of ids.entries()) {
      c.add(id, `${i}.0`)
      if (i === 400) c.add(ids[0]!, 'updated')
    }
    expect(c.size).toBe(1000)
    expect(ids.slice(0, 500).filter((id) => c.get(id) !== undefined)).toEqual([])
    expect(ids.slice(500).map((id) => c.get(id))).toEqual(ids.slice(500).map((_, i) => `${i + 500}.0`))
  })

  it('matches a Map under random adds and lookups, including long probe runs', () => {
    // A small table and sequential ids: removals must keep every later cell reachable.
    for (const capacity of [1, 2, 3, 17, 64]) {
      const c = new DedupeCache(capacity)
      const ref = new Reference(capacity)
      let seed = capacity
      const rand = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n
      const pool = Array.from({ length: capacity * 3 + 5 }, (_, i) =>
        i % 5 === 0 ? `text-${i}` : (i % 5 === 1 ? '0'.repeat(24) + i.toString(16).padStart(8, '0') : hexId()),
      )
      for (let step = 0; step < 20_000; step++) {
        const id = pool[rand(pool.length)]!
        if (rand(3) === 0) expect(c.get(id)).toBe(ref.m.get(id))
        else {
          const content = rand(4) === 0 ? UNKNOWN_CONTENT : rand(2) === 0 ? hashContent(String(step)) : `odd-${step}`
          c.add(id, content)
          ref.add(id, content)
        }
      }
      expect(c.size).toBe(ref.m.size)
      for (const id of pool) expect(c.get(id)).toBe(ref.m.get(id))
    }
  })

  it('rejects a capacity that is not a positive integer', () => {
    expect(() => new DedupeCache(0)).toThrow(/positive integer/)
    expect(() => new DedupeCache(1.5)).toThrow(/positive integer/)
  })
})
