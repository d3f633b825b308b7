import { describe, expect, it } from 'vitest'
import { deriveEventId, hashContent, normalise, passageContentHash, redactRaw, sameContentForm } from './normalise.ts'

const protect = (plate: string | null) => ({
  plateKey: plate ? 'key:' + hashContent(plate.replace(/\s|·/g, '')) : null,
  plateCipher: plate ? 'cipher-' + Math.random() : null,
  plateMasked: plate ? plate.slice(0, 2) + '·***' + plate.slice(-2) : null,
})
const entry = {
  lotId: 'HQ01',
  recordNo: 'HQ01-IN-1',
  direction: 'entry' as const,
  gateId: 'G1',
  plate: '粤C12345',
  plateType: 'blue',
  isBackfill: false,
  feeCents: null,
  entryAt: null,
  occurredAt: Date.parse('2026-11-21T01:00:00Z'),
}

describe('normalise', () => {
  it('derives the same event id for the same upstream record, whatever else changed', () => {
    const a = normalise('ParkingPassage', entry, 'src', 1, protect)
    const b = normalise('ParkingPassage', { ...entry, gateId: 'G2' }, 'src', 2, protect)
    expect(a.event.eventId).toBe(b.event.eventId)
    expect(a.event.eventId).toMatch(/^[0-9a-f]{32}$/)
    expect(normalise('ParkingPassage', { ...entry, recordNo: 'HQ01-IN-2' }, 'src', 1, protect).event.eventId).not.toBe(a.event.eventId)
    expect(normalise('ParkingPassage', entry, 'other-src', 1, protect).event.eventId).not.toBe(a.event.eventId)
    expect(deriveEventId('src', 'ParkingPassage', entry)).toBe(a.event.eventId)
  })

  it('keeps the ids already landed: SHA-256 of source, kind and key fields joined by 0x1f, first 128 bits', () => {
    // Pinned: a change here would land every re-read record a second time.
    expect(deriveEventId('src', 'ParkingPassage', { lotId: 'HQ01', recordNo: 'HQ01-IN-1', direction: 'entry' })).toBe('b9b4c21ffe3dcbc5e5d6e9bb30f5b567')
  })

  it('fingerprints content without arrival time or the randomised cipher', () => {
    const a = normalise('ParkingPassage', entry, 'src', 1, protect)
    const b = normalise('ParkingPassage', entry, 'src', 999, protect)
    expect(a.contentHash).toBe(b.contentHash)
    const moved = normalise('ParkingPassage', { ...entry, occurredAt: entry.occurredAt + 60_000 }, 'src', 1, protect)
    expect(moved.contentHash).not.toBe(a.contentHash)
    expect(hashContent('{"x":1}')).not.toBe(hashContent('{"x":2}'))
  })

  it('tells apart passages that differ in any one field, in type or in null against empty', () => {
    const base = passageContentHash(entry, 'k1')
    const variants = [
      { ...entry, lotId: 'HQ02' },
      { ...entry, recordNo: 'HQ01-IN-10' },
      { ...entry, direction: 'exit' as const },
      { ...entry, gateId: null },
      { ...entry, gateId: '' },
      { ...entry, plateType: 'green' },
      { ...entry, isBackfill: true },
      { ...entry, feeCents: 0 },
      { ...entry, feeCents: 2 ** 32 },
      { ...entry, entryAt: entry.occurredAt },
      { ...entry, occurredAt: entry.occurredAt + 1 },
      { ...entry, occurredAt: entry.occurredAt + 2 ** 32 },
    ]
    const hashes = new Set([base, passageContentHash(entry, null), passageContentHash(entry, 'k2'), ...variants.map((v) => passageContentHash(v, 'k1'))])
    expect(hashes.size).toBe(variants.length + 3)
    // The clear plate is not part of it: its key is.
    expect(passageContentHash({ ...entry, plate: '粤C99999' }, 'k1')).toBe(base)
    expect(passageContentHash(entry, 'k1')).toBe(base)
  })

  it('keeps the passage fingerprint stable across releases: messages still in Kafka carry the old one', () => {
    const exit = { occurredAt: 1796647193000, lotId: 'HQ01', recordNo: 'HQ01-OUT-77', direction: 'exit' as const, gateId: 'G2', plate: '粤C12345', plateType: 'blue', isBackfill: false, feeCents: 1250, entryAt: 1796640000000 }
    expect(passageContentHash(exit, 'a'.repeat(64))).toBe('39st8d:n53il0')
    expect(passageContentHash({ ...exit, gateId: null, feeCents: null, entryAt: null, isBackfill: true, plateType: null, direction: 'entry', occurredAt: -5 }, null)).toBe('w0mf7b:aha92w')
    expect(passageContentHash({ ...exit, lotId: '横琴口岸·P3', feeCents: 2 ** 40 + 3, occurredAt: 1.5 }, 'k')).toBe('tpchvr:kn43wc')
    expect(hashContent('')).toBe('ztntfp.p76ayu')
    expect(hashContent('{"lotId":"横琴","free":3}')).toBe('spxi40.g7tn9')
  })

  it('marks which hashing made a fingerprint, so a sink does not compare fingerprints of two releases', () => {
    const passage = passageContentHash(entry, 'k1')
    const older = hashContent('HQ01\x1fHQ01-IN-1')
    expect(sameContentForm(passage, passageContentHash(entry, 'k2'))).toBe(true)
    expect(sameContentForm(older, hashContent('{"x":1}'))).toBe(true)
    expect(sameContentForm(passage, older)).toBe(false)
  })

  it('replaces the clear plate with its protected forms', () => {
    const { event } = normalise('ParkingPassage', entry, 'src', 5, protect)
    expect(event).not.toHaveProperty('plate', '粤C12345')
    expect(event).toMatchObject({ sourceId: 'src', receivedAt: 5, plateKey: 'key:' + hashContent('粤C12345'), plateMasked: '粤C·***45' })
    expect(JSON.stringify(event)).not.toContain('粤C12345')
  })
})

describe('redactRaw', () => {
  it('masks plate fields in JSON payloads at any depth', () => {
    const out = redactRaw(JSON.stringify({ list: [{ plateNo: '粤C12345', fee: '3.00' }], carNo: '澳MA1234' }), protect)
    expect(out).not.toContain('12345')
    expect(out).not.toContain('MA1234')
    expect(out).toContain('"fee":"3.00"')
  })

  it('masks plate-like text in payloads that are not JSON', () => {
    const out = redactRaw('{"plateNo":"粤C12345","inTime":"2026-11-2', protect)
    expect(out).not.toContain('12345')
  })
})

describe('redactRaw on text that is not JSON', () => {
  it('masks plate fields by name, also plates without a province prefix and one cut off at the end', () => {
    const out = redactRaw('{"a":1,"plateNo":"D54321","carNo":"WJ12345","note":"粤C12345 seen", "plateNo":"沪AD12', protect)
    expect(out).not.toMatch(/D54321|WJ12345|C12345|AD12"/)
    expect(out).toContain('"a":1')
  })
})
