import { describe, expect, it } from 'vitest'
import { deriveKeys } from '../lib/crypto.ts'
import { SchemaCatalogue } from '../schemas/catalogue.ts'
import { cachedProtector, type DraftItem, encodePage, InlineEncoder, WorkerEncoder } from './draft-encoder.ts'

const catalogue = SchemaCatalogue.load()
const keys = deriveKeys('draft-encoder-test-master-key')
const items: DraftItem[] = [
  { event: 'ParkingOccupancy', draft: { lotId: 'L1', occurredAt: 1_795_300_000_000, free: 3, capacity: 10, status: 'open' }, receivedAt: 1_795_300_000_500 },
  // free must be an int: rejected, the rest of the page goes on
  { event: 'ParkingOccupancy', draft: { lotId: 'L1', occurredAt: 1_795_300_060_000, free: 'many', capacity: 10, status: 'open' } as never, receivedAt: 1_795_300_060_500 },
  {
    event: 'ParkingPassage',
    draft: { lotId: 'L1', recordNo: 'R1', direction: 'entry', gateId: null, plate: '粤C12345', plateType: 'blue', isBackfill: false, feeCents: null, entryAt: null, occurredAt: 1_795_300_000_000 },
    receivedAt: 1_795_300_000_700,
  },
]

describe.each([
  ['inline', () => new InlineEncoder(catalogue, keys)],
  ['worker thread', () => new WorkerEncoder(keys)],
])('%s encoder', (_name, make) => {
  it('encodes a page, reports the items it rejects, and keeps plates out of the bytes', async () => {
    const enc = make()
    try {
      const page = await enc.encode('src-1', items)
      expect(page.topics).toEqual(['citysync.parking.occupancy', null, 'citysync.parking.passage'])
      expect(page.errors[1]).toMatch(/free/)
      const body = Buffer.from(page.body)
      const first = catalogue.decode(body.subarray(page.starts[0], page.starts[1]))
      expect(first).toMatchObject({ name: 'ParkingOccupancy', value: { sourceId: 'src-1', free: 3, receivedAt: 1_795_300_000_500 } })
      const passage = catalogue.decode(body.subarray(page.starts[2], page.starts[3]))
      expect(passage.value).toMatchObject({ recordNo: 'R1', plateMasked: '粤C·***45' })
      expect(body.includes(Buffer.from('粤C12345'))).toBe(false)
    } finally {
      await enc.close()
    }
  })
})

describe('encodePage', () => {
  it('writes pages larger than its buffer, every message intact and in order, rejected items taking no bytes', () => {
    const protect = cachedProtector(keys)
    const page: DraftItem[] = []
    for (let i = 0; i < 6000; i++) {
      const bad = i % 1000 === 999
      page.push({
        event: 'ParkingPassage',
        draft: {
          lotId: 'L1',
          recordNo: `R${i}`,
          direction: 'exit',
          gateId: 'G'.repeat(1 + (i % 300)),
          plate: `粤C${String(i).padStart(5, '0')}`,
          plateType: 'blue',
          isBackfill: false,
          feeCents: bad ? ('x' as never) : i,
          entryAt: 1_795_299_000_000,
          occurredAt: 1_795_300_000_000 + i,
        },
        receivedAt: 1_795_300_100_000,
      })
    }
    const out = encodePage(catalogue, protect, 'src-1', page)
    expect(out.body.length).toBeGreaterThan(1 << 20)
    const body = Buffer.from(out.body)
    for (let i = 0; i < page.length; i++) {
      if (i % 1000 === 999) {
        expect(out.errors[i]).toMatch(/feeCents/)
        expect(out.starts[i + 1]).toBe(out.starts[i])
        continue
      }
      const d = catalogue.decode(body.subarray(out.starts[i], out.starts[i + 1]))
      expect(d.value).toMatchObject({ recordNo: `R${i}`, feeCents: i, gateId: 'G'.repeat(1 + (i % 300)) })
    }
    expect(out.starts[page.length]).toBe(body.length)
  })
})

describe('cachedProtector', () => {
  it('gives a vehicle the same key and cipher at entry and exit, and forgets the oldest beyond capacity', () => {
    const protect = cachedProtector(keys, 10)
    const a = protect('粤C12345')
    expect(protect('粤C12345')).toBe(a)
    for (let i = 0; i < 20; i++) protect(`粤C1${String(i).padStart(4, '0')}`)
    const again = protect('粤C12345')
    expect(again).not.toBe(a)
    expect(again.plateKey).toBe(a.plateKey) // the key is deterministic; only the cached object is gone
    expect(protect(null)).toEqual({ plateKey: null, plateCipher: null, plateMasked: null })
  })
})
