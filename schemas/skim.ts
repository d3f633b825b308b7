import { type Type } from 'avsc'

/** The fields a sink needs of every event: what it checks, dedupes and logs by. */
export interface SkimmedEvent {
  sourceId: string
  eventId: string
  occurredAt: number
  receivedAt: number
  /** False for events without the field. */
  isBackfill: boolean
}

export type Skimmer = (buf: Buffer, offset: number) => SkimmedEvent

// One step per field of the writer schema. Only the flat shapes the event
// schemas use are compiled; a schema with anything else gets no skimmer and
// its messages are decoded in full.
const NULL = 0
const BOOLEAN = 1
const VARINT = 2
const FLOAT = 3
const DOUBLE = 4
const LENGTH_PREFIXED = 5
const ENUM = 6
const FIXED = 7
const UNION = 8

interface Step {
  code: number
  /** Enum: number of symbols; fixed: size. */
  arg: number
  branches: Step[]
}

function stepOf(type: Type, inUnion: boolean): Step | undefined {
  const t = type as Type & { symbols?: string[]; size?: number; types?: Type[] }
  switch (type.typeName) {
    case 'null':
      return { code: NULL, arg: 0, branches: [] }
    case 'boolean':
      return { code: BOOLEAN, arg: 0, branches: [] }
    case 'int':
    case 'long':
      return { code: VARINT, arg: 0, branches: [] }
    case 'float':
      return { code: FLOAT, arg: 0, branches: [] }
    case 'double':
      return { code: DOUBLE, arg: 0, branches: [] }
    case 'string':
    case 'bytes':
      return { code: LENGTH_PREFIXED, arg: 0, branches: [] }
    case 'enum':
      return { code: ENUM, arg: t.symbols!.length, branches: [] }
    case 'fixed':
      return { code: FIXED, arg: t.size!, branches: [] }
    case 'union:unwrapped':
    case 'union:wrapped': {
      if (inUnion) return undefined
      const branches = t.types!.map((b) => stepOf(b, true))
      return branches.every((b) => b !== undefined) ? { code: UNION, arg: 0, branches: branches } : undefined
    }
    default:
      return undefined
  }
}

/**
 * A reader of the sink's fields for one writer schema, or undefined when the
 * schema is not one it can walk. It walks the whole body, as a full decode
 * would, so a message that a decode rejects (truncated, trailing bytes, a
 * union branch or enum symbol out of range) is rejected here too, but it
 * builds only five values instead of the whole event.
 */
export function compileSkimmer(type: Type): Skimmer | undefined {
  const fields = (type as Type & { fields?: { name: string; type: Type }[] }).fields
  if (type.typeName !== 'record' || fields === undefined || fields.length < 4) return undefined
  const head = fields.slice(0, 4).map((f) => `${f.name}:${f.type.typeName}`).join(',')
  if (head !== 'sourceId:string,eventId:string,occurredAt:long,receivedAt:long') return undefined
  const steps: Step[] = []
  for (const f of fields.slice(4)) {
    const s = stepOf(f.type, false)
    if (s === undefined) return undefined
    steps.push(s)
  }
  const backfillAt = fields.findIndex((f) => f.name === 'isBackfill' && f.type.typeName === 'boolean') - 4

  return (buf, offset) => {
    const r = new Reader(buf, offset)
    const sourceId = r.string()
    const eventId = r.string()
    const occurredAt = r.long()
    const receivedAt = r.long()
    let isBackfill = false
    for (let i = 0; i < steps.length; i++) {
      if (i === backfillAt) isBackfill = r.boolean()
      else r.pass(steps[i]!)
    }
    if (r.pos > buf.length) throw new Error(`body truncated (${buf.length} bytes in all)`)
    if (r.pos < buf.length) throw new Error(`${buf.length - r.pos} trailing bytes after the body`)
    return { sourceId, eventId, occurredAt, receivedAt, isBackfill }
  }
}

class Reader {
  pos: number
  private readonly buf: Buffer

  constructor(buf: Buffer, pos: number) {
    this.buf = buf
    this.pos = pos
  }

  /** Zigzag varint, as a double: exact up to 2^53, as avsc reads longs. */
  long(): number {
    const buf = this.buf
    let n = 0
    let scale = 1
    for (let i = 0; i < 10; i++) {
      const b = buf[this.pos++]
      if (b === undefined) throw new Error('body truncated in a number')
      n += (b & 0x7f) * scale
      if ((b & 0x80) === 0) return n % 2 === 0 ? n / 2 : -(n + 1) / 2
      scale *= 128
    }
    throw new Error('number longer than 10 bytes')
  }

  boolean(): boolean {
    const b = this.buf[this.pos++]
    if (b === undefined) throw new Error('body truncated in a boolean')
    return b !== 0
  }

  private length(): number {
    const n = this.long()
    if (n < 0) throw new Error(`negative length ${n}`)
    if (this.pos + n > this.buf.length) throw new Error('body truncated in a string')
    return n
  }

  string(): string {
    const n = this.length()
    const s = this.buf.toString('utf8', this.pos, this.pos + n)
    this.pos += n
    return s
  }

  /** Reads past one value of `step`'s shape, checking it as a decode would. */
  pass(step: Step): void {
    switch (step.code) {
      case NULL:
        return
      case BOOLEAN:
        this.pos += 1
        return
      case VARINT:
        this.long()
        return
      case FLOAT:
        this.pos += 4
        return
      case DOUBLE:
        this.pos += 8
        return
      case LENGTH_PREFIXED: {
        // Not `pos += length()`: that would add to pos as it was before the length was read.
        const n = this.length()
        this.pos += n
        return
      }
      case ENUM: {
        const i = this.long()
        if (i < 0 || i >= step.arg) throw new Error(`enum index ${i} out of range`)
        return
      }
      case FIXED:
        this.pos += step.arg
        return
      case UNION: {
        const i = this.long()
        const branch = step.branches[i]
        if (branch === undefined) throw new Error(`union branch ${i} out of range`)
        this.pass(branch)
        return
      }
    }
  }
}
