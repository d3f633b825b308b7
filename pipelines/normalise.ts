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
  return base36(a >>> 0) + '.' + base36(b >>> 0)
}

// Fields are fed to the two FNV-1a lanes one by one, without building a
// string of them first (which cost five times the hashing: numbers printed,
// then the joined string flattened). Each field starts with a type mark that
// no UTF-16 unit equals, so '' and null, or 12 and '12', differ. The lanes
// differ only in their offset basis, so each is run on its own, in locals.
const FNV_PRIME = 0x01000193
const LANE_A = 0x811c9dc5 | 0
const LANE_B = (0x01000193 ^ 0x5bd1e995) | 0
const MARK_STRING = 0x10000
const MARK_NUMBER = 0x10001
const MARK_NULL = 0x10002
const MARK_TRUE = 0x10003
const MARK_FALSE = 0x10004

function laneField(h: number, v: string | number | boolean | null): number {
  if (v === null) return Math.imul(h ^ MARK_NULL, FNV_PRIME)
  if (typeof v === 'string') {
    h = Math.imul(h ^ MARK_STRING, FNV_PRIME)
    for (let i = 0; i < v.length; i++) h = Math.imul(h ^ v.charCodeAt(i), FNV_PRIME)
    return h
  }
  if (typeof v === 'boolean') return Math.imul(h ^ (v ? MARK_TRUE : MARK_FALSE), FNV_PRIME)
  if (Number.isSafeInteger(v)) {
    h = Math.imul(h ^ MARK_NUMBER, FNV_PRIME)
    h = Math.imul(h ^ (v >>> 0), FNV_PRIME)
    return Math.imul(h ^ Math.floor(v / 2 ** 32), FNV_PRIME)
  }
  return laneField(h, String(v))
}

function passageLane(h: number, x: Draft<'ParkingPassage'>, plateKey: string | null): number {
  h = laneField(h, x.lotId)
  h = laneField(h, x.recordNo)
  h = laneField(h, x.direction)
  h = laneField(h, x.gateId)
  h = laneField(h, x.plateType)
  h = laneField(h, x.isBackfill)
  h = laneField(h, x.feeCents)
  h = laneField(h, x.entryAt)
  h = laneField(h, x.occurredAt)
  return laneField(h, plateKey)
}

/**
 * The passage's fingerprint: every field but the clear plate and arrival
 * time, plus the plate's key. Written `a:b`, where hashContent writes `a.b`:
 * a sink that meets both forms for one id (connectors of two releases) cannot
 * compare them, and knows it (sameContentForm).
 */
export function passageContentHash(x: Draft<'ParkingPassage'>, plateKey: string | null): string {
  return base36(passageLane(LANE_A, x, plateKey) >>> 0) + ':' + base36(passageLane(LANE_B, x, plateKey) >>> 0)
}

/** The digits base36 writes, in order. */
export const BASE36_DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'
const DIGIT_PAIRS = Array.from({ length: 36 * 36 }, (_, i) => BASE36_DIGITS[Math.floor(i / 36)]! + BASE36_DIGITS[i % 36]!)

/** `n.toString(36)` for a uint32, two digits a step (Number#toString(36) cost a quarter of a fingerprint). */
export function base36(n: number): string {
  let s = ''
  while (n >= 1296) {
    s = DIGIT_PAIRS[n % 1296]! + s
    n = Math.floor(n / 1296)
  }
  return (n < 36 ? BASE36_DIGITS[n]! : DIGIT_PAIRS[n]!) + s
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
