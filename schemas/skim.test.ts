import avro from 'avsc'
import { describe, expect, it } from 'vitest'
import { SchemaCatalogue, WIRE_HEADER_SIZE } from './catalogue.ts'
import { compileSkimmer } from './skim.ts'

const catalogue = SchemaCatalogue.load()

function wire(id: number, body: Buffer): Buffer {
  const head = Buffer.alloc(WIRE_HEADER_SIZE)
  head.writeUInt32BE(id, 1)
  return Buffer.concat([head, body])
}

describe('skim', () => {
  it('reads the same ids, times and backfill flag as a full decode, for every schema version', () => {
    for (const entry of catalogue.entries) {
      expect(compileSkimmer(entry.type), `${entry.name}@${entry.version}`).toBeDefined()
      for (let i = 0; i < 50; i++) {
        const value = entry.type.random() as unknown as Record<string, unknown>
        const buf = wire(entry.id, entry.type.toBuffer(value))
        const full = catalogue.decode(buf).value as unknown as Record<string, unknown>
        const { name, schemaId, event } = catalogue.skim(buf)
        expect({ name, schemaId }).toEqual({ name: entry.name, schemaId: entry.id })
        expect(event).toEqual({
          sourceId: full.sourceId,
          eventId: full.eventId,
          occurredAt: full.occurredAt,
          receivedAt: full.receivedAt,
          isBackfill: full.isBackfill === true,
        })
      }
    }
  })

  it('rejects what a full decode rejects: every truncation, trailing bytes, an unknown schema id', () => {
    const entry = catalogue.latest('ParkingPassage')
    const buf = wire(entry.id, entry.type.toBuffer(entry.type.random()))
    for (let cut = WIRE_HEADER_SIZE; cut < buf.length; cut++) {
      const short = buf.subarray(0, cut)
      expect(() => catalogue.decode(short), `cut at ${cut}`).toThrow()
      expect(() => catalogue.skim(short), `cut at ${cut}`).toThrow(/undecodable|truncated/)
    }
    expect(() => catalogue.skim(Buffer.concat([buf, Buffer.from([0])]))).toThrow(/1 trailing bytes/)
    const unknown = Buffer.from(buf)
    unknown.writeUInt32BE(0x7fff_fff0, 1)
    expect(() => catalogue.skim(unknown)).toThrow(/unknown schema id/)
  })

  it('rejects a union branch or enum symbol out of range', () => {
    const type = avro.Type.forSchema(
      {
        type: 'record',
        name: 'T',
        fields: [
          { name: 'sourceId', type: 'string' },
          { name: 'eventId', type: 'string' },
          { name: 'occurredAt', type: 'long' },
          { name: 'receivedAt', type: 'long' },
          { name: 'kind', type: { type: 'enum', name: 'K', symbols: ['a', 'b'] } },
          { name: 'note', type: ['null', 'string'] },
        ],
      },
      { wrapUnions: 'never' },
    )
    const skim = compileSkimmer(type)!
    const good = type.toBuffer({ sourceId: 's', eventId: 'e', occurredAt: 1, receivedAt: 2, kind: 'b', note: null })
    expect(skim(good, 0)).toEqual({ sourceId: 's', eventId: 'e', occurredAt: 1, receivedAt: 2, isBackfill: false })
    const badEnum = Buffer.from(good)
    badEnum[badEnum.length - 2] = 4 // zigzag 2: a third symbol
    expect(() => skim(badEnum, 0)).toThrow(/enum index 2/)
    const badUnion = Buffer.from(good)
    badUnion[badUnion.length - 1] = 6 // zigzag 3: a fourth branch
    expect(() => skim(badUnion, 0)).toThrow(/union branch 3/)
  })

  it('reads large and negative times exactly', () => {
    const entry = catalogue.latest('SourceHeartbeat')
    for (const t of [0, -1, 1_796_637_482_561, 2 ** 52, -(2 ** 52)]) {
      const value = { ...(entry.type.random() as unknown as Record<string, unknown>), occurredAt: t, receivedAt: -t || 0 }
      expect(catalogue.skim(wire(entry.id, entry.type.toBuffer(value))).event).toMatchObject({ occurredAt: t, receivedAt: -t || 0 })
    }
  })

  it('leaves schemas it cannot walk to a full decode', () => {
    const nested = avro.Type.forSchema({
      type: 'record',
      name: 'N',
      fields: [
        { name: 'sourceId', type: 'string' },
        { name: 'eventId', type: 'string' },
        { name: 'occurredAt', type: 'long' },
        { name: 'receivedAt', type: 'long' },
        { name: 'tags', type: { type: 'array', items: 'string' } },
      ],
    })
    expect(compileSkimmer(nested)).toBeUndefined()
    const otherHead = avro.Type.forSchema({ type: 'record', name: 'O', fields: [{ name: 'id', type: 'string' }] })
    expect(compileSkimmer(otherHead)).toBeUndefined()
  })
})
