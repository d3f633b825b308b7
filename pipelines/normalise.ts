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
    const content = `${x.lotId}\x1f${x.recordNo}\x1f${x.direction}\x1f${x.gateId}\x1f${x.plateType}\x1f${x.isBackfill}\x1f${x.feeCents}\x1f${x.entryAt}\x1f${x.occurredAt}\x1f${p.plateKey}`
    return { event: e, contentHash: hashContent(content) }
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
