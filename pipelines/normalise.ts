import { createHash } from 'node:crypto'
import * as nodeCrypto from 'node:crypto'
import { PLATE_FIELD, scrubPlates } from '../lib/plate-redaction.ts'
import { type AnyEvent, type Draft, EVENT_ROUTES, type EventName, type ParkingPassage } from '../schemas/events.ts'

// crypto.hash arrived in Node 20.12; a named import would fail to link before that.
const oneShotHash: typeof nodeCrypto.hash | undefined = nodeCrypto.hash

/** What plate protection needs: the pipeline passes lib/crypto's protectPlate bound to its keys. */
export type PlateProtector = (plate: string | null) => Pick<ParkingPassage, 'plateKey' | 'plateCipher' | 'plateMasked'>

/**
 * The same upstream record always yields the same id: a hash of the source,
 * the event kind and the fields that identify the record upstream
 * (EVENT_ROUTES[event].key). 128 bits, hex.
 */
export function deriveEventId(sourceId: string, event: EventName, draft: Record<string, unknown>): string {
  // One string, one native call: the digest of the same bytes as hashing them
  // field by field (a hash object per event cost four times as much).
  let text = sourceId + '\x1f' + event
  for (const field of EVENT_ROUTES[event].key) text += '\x1f' + String(draft[field])
  return oneShotHash === undefined ? createHash('sha256').update(text).digest('hex').slice(0, 32) : oneShotHash('sha256', text, 'hex').slice(0, 32)
}

export interface Normalised {
  event: AnyEvent
  /**
   * Fingerprint of the record's content (without arrival time or the
   * randomised plate cipher): tells an exact re-delivery from a different
   * record that reuses an upstream id.
   */
  contentHash: string
}

/**
 * Completes a connector's draft into a canonical event: source id, event id,
 * arrival time, protected plate. Pure apart from the plate cipher's random IV.
 */
export function normalise(
  event: EventName,
  draft: Draft<EventName>,
  sourceId: string,
  receivedAt: number,
  protect: PlateProtector,
): Normalised {
  const d = draft as unknown as Record<string, unknown>
  const eventId = deriveEventId(sourceId, event, d)
  if (event === 'ParkingPassage') {
    const x = draft as Draft<'ParkingPassage'>
    const p = protect(x.plate)
    // Built field by field (the hottest event; a spread costs more here) and
    // without the clear plate. The fingerprint covers every field but the
    // plate, plus its key.
    const e: ParkingPassage = {
      sourceId,
      eventId,
      occurredAt: x.occurredAt,
      receivedAt,
      lotId: x.lotId,
      recordNo: x.recordNo,
      direction: x.direction,
      gateId: x.gateId,
      plateKey: p.plateKey,
      plateCipher: p.plateCipher,
      plateMasked: p.plateMasked,
      plateType: x.plateType,
      isBackfill: x.isBackfill,
      feeCents: x.feeCents,
      entryAt: x.entryAt,
    }
    return { event: e, contentHash: passageContentHash(x, p.plateKey) }
  }
  return { event: { sourceId, eventId, ...d, receivedAt } as unknown as AnyEvent, contentHash: hashContent(JSON.stringify(d)) }
}

/**
 * Not a security boundary, only "same record again?": two 32-bit FNV-1a
 * hashes with different offsets, cheap enough for the hot path (a SHA-1 here
 * cost three times as much).
 */
export function hashContent(text: string): string {
  let a = 0x811c9dc5
  let b = 0x01000193 ^ 0x5bd1e995
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    a = Math.imul(a ^ c, 0x01000193)
    b = Math.imul(b ^ c, 0x01000193)
  }
  return (a >>> 0).toString(36) + '.' + (b >>> 0).toString(36)
}

// Fields are fed to the two FNV-1a lanes one by one, without building a
// string of them first (which cost five times the hashing: numbers printed,
// then the joined string flattened). Each field starts with a type mark that
// no UTF-16 unit equals, so '' and null, or 12 and '12', differ.
const MARK_STRING = 0x10000
const MARK_NUMBER = 0x10001
const MARK_NULL = 0x10002
const MARK_TRUE = 0x10003
const MARK_FALSE = 0x10004
const lanes = new Int32Array(2)

function feed(c: number): void {
  lanes[0] = Math.imul(lanes[0]! ^ c, 0x01000193)
  lanes[1] = Math.imul(lanes[1]! ^ c, 0x01000193)
}

function feedField(v: string | number | boolean | null): void {
  if (v === null) feed(MARK_NULL)
  else if (typeof v === 'string') {
    feed(MARK_STRING)
    for (let i = 0; i < v.length; i++) feed(v.charCodeAt(i))
  } else if (typeof v === 'boolean') feed(v ? MARK_TRUE : MARK_FALSE)
  else if (Number.isSafeInteger(v)) {
    feed(MARK_NUMBER)
    feed(v >>> 0)
    feed(Math.floor(v / 2 ** 32))
  } else feedField(String(v))
}

/**
 * The passage's fingerprint: every field but the clear plate and arrival
 * time, plus the plate's key. Written `a:b`, where hashContent writes `a.b`:
 * a sink that meets both forms for one id (connectors of two releases) cannot
 * compare them, and knows it (sameContentForm).
 */
export function passageContentHash(x: Draft<'ParkingPassage'>, plateKey: string | null): string {
  lanes[0] = 0x811c9dc5
  lanes[1] = 0x01000193 ^ 0x5bd1e995
  feedField(x.lotId)
  feedField(x.recordNo)
  feedField(x.direction)
  feedField(x.gateId)
  feedField(x.plateType)
  feedField(x.isBackfill)
  feedField(x.feeCents)
  feedField(x.entryAt)
  feedField(x.occurredAt)
  feedField(plateKey)
  return (lanes[0] >>> 0).toString(36) + ':' + (lanes[1] >>> 0).toString(36)
}

/** Whether two content hashes were made the same way, so that unequal means different content. */
export function sameContentForm(a: string, b: string): boolean {
  return a.includes(':') === b.includes(':')
}

/**
 * Raw payloads go to the dead-letter store as received, except plate numbers:
 * any field whose name says plate is masked, and every other string (or the
 * whole text, when it is not JSON) has plate-shaped runs masked, before it is written.
 */
export function redactRaw(raw: string, protect: PlateProtector): string {
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch {
    // Cut off or malformed: plate fields found by their names, then anything plate-shaped.
    return scrubPlates(raw.replace(FIELD_IN_TEXT, (all, key: string, value: string, close: string) => (PLATE_FIELD.test(key) ? `"${key}":"${maskText(value, protect)}${close}` : all)))
  }
  return JSON.stringify(walk(parsed, protect))
}

const FIELD_IN_TEXT = /"([^"\\]{1,64})"\s*:\s*"((?:[^"\\]|\\.)*)("|$)/g

function maskText(value: string, protect: PlateProtector): string {
  let plain = value
  try {
    plain = JSON.parse(`"${value}"`) as string
  } catch {
    // keep the escaped form
  }
  return JSON.stringify(protect(plain).plateMasked ?? '').slice(1, -1)
}

function walk(value: unknown, protect: PlateProtector): unknown {
  if (typeof value === 'string') return scrubPlates(value)
  if (Array.isArray(value)) return value.map((v) => walk(v, protect))
  if (value === null || typeof value !== 'object') return value
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    const key = scrubPlates(k)
    if (PLATE_FIELD.test(k) && (typeof v === 'string' || typeof v === 'number')) out[key] = protect(String(v)).plateMasked
    else out[key] = walk(v, protect)
  }
  return out
}
