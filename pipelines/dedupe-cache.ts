import { EVENT_ROUTES, EVENT_NAMES } from '../schemas/events.ts'
import { base36, BASE36_DIGITS } from './normalise.ts'
import { type Warehouse } from './warehouse/warehouse.ts'

/** Marks an id loaded from the warehouse, whose content fingerprint is not known. */
export const UNKNOWN_CONTENT = ''

// Entry kinds (kind[slot]): the low two bits say how the fingerprint is held,
// bit 2 that the id is held as a string.
const CONTENT_UNKNOWN = 0 // ''
const CONTENT_DOT = 1 // base36(a) + '.' + base36(b), as hashContent writes it
const CONTENT_COLON = 2 // base36(a) + ':' + base36(b), as passageContentHash writes it
const CONTENT_TEXT = 3 // anything else, kept as is in contentText[slot]
const CONTENT_MASK = 3
const ID_TEXT = 4 // an id that is not 32 lowercase hex digits, kept in idText[slot]

const HEX = new Int8Array(128).fill(-1)
for (let i = 0; i < 16; i++) HEX['0123456789abcdef'.charCodeAt(i)] = i
const B36 = new Int8Array(128).fill(-1)
for (let i = 0; i < 36; i++) B36[BASE36_DIGITS.charCodeAt(i)] = i

/**
 * Recently landed event ids with their content fingerprints, bounded in size
 * (oldest forgotten first). The warehouse's ReplacingMergeTree remains the
 * backstop for duplicates older than what this remembers.
 *
 * Ids as deriveEventId writes them (32 hex digits) and fingerprints as
 * normalise writes them are packed into typed arrays: 500k entries take about
 * 20 MB outside the garbage-collected heap, where a Map held a million small
 * strings that every major collection walked. Any other id or fingerprint is
 * kept as the string it is, so a lookup is always exact.
 *
 * Layout: entries live in a ring in insertion order (the oldest at `head`);
 * an open-addressing table with linear probing maps an id's hash to its slot.
 */
export class DedupeCache {
  readonly capacity: number
  private readonly ids: Uint32Array // 4 words per slot
  private readonly laneA: Uint32Array
  private readonly laneB: Uint32Array
  private readonly kind: Uint8Array
  private readonly hashes: Uint32Array
  // Entries of another form, by slot: rare, so kept sparse.
  private readonly idText = new Map<number, string>()
  private readonly contentText = new Map<number, string>()
  /** slot + 1, or 0 for an empty cell. */
  private readonly table: Int32Array
  private readonly mask: number
  private head = 0
  private count = 0
  // The id being looked up, parsed once (w[0..3]) and its hash.
  private readonly w = new Uint32Array(4)

  constructor(capacity = 500_000) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`dedupe capacity must be a positive integer, got ${capacity}`)
    this.capacity = capacity
    this.ids = new Uint32Array(capacity * 4)
    this.laneA = new Uint32Array(capacity)
    this.laneB = new Uint32Array(capacity)
    this.kind = new Uint8Array(capacity)
    this.hashes = new Uint32Array(capacity)
    // At most half full, so probe runs stay short.
    let cells = 2
    while (cells < capacity * 2) cells *= 2
    this.table = new Int32Array(cells)
    this.mask = cells - 1
  }

  get size(): number {
    return this.count
  }

  get(eventId: string): string | undefined {
    const packed = this.prepare(eventId)
    const slot = this.find(eventId, packed, this.hashOf(eventId, packed))
    return slot < 0 ? undefined : this.contentOf(slot)
  }

  add(eventId: string, contentHash: string): void {
    const packed = this.prepare(eventId)
    const h = this.hashOf(eventId, packed)
    let slot = this.find(eventId, packed, h)
    if (slot < 0) {
      if (this.count === this.capacity) {
        slot = this.head
        this.unlink(slot)
        this.head = (this.head + 1) % this.capacity
      } else {
        slot = (this.head + this.count) % this.capacity
        this.count++
      }
      this.hashes[slot] = h
      if (packed) this.ids.set(this.w, slot * 4)
      else this.idText.set(slot, eventId)
      this.kind[slot] = packed ? 0 : ID_TEXT
      let cell = h & this.mask
      while (this.table[cell] !== 0) cell = (cell + 1) & this.mask
      this.table[cell] = slot + 1
    }
    // A known id keeps its place in the order and takes the new fingerprint, as Map.set does.
    this.setContent(slot, contentHash)
  }

  /** Parses a 32-hex-digit id into this.w; false when the id has another form. */
  private prepare(id: string): boolean {
    if (id.length !== 32) return false
    const w = this.w
    for (let word = 0; word < 4; word++) {
      let v = 0
      for (let i = word * 8, end = i + 8; i < end; i++) {
        const c = id.charCodeAt(i)
        const d = c < 128 ? HEX[c]! : -1
        if (d < 0) return false
        v = (v << 4) | d
      }
      w[word] = v
    }
    return true
  }

  private hashOf(id: string, packed: boolean): number {
    let h: number
    if (packed) {
      // Derived ids are uniform already; mixing keeps ids made some other way
      // (sequential, say) from piling up in one probe run.
      const w = this.w
      h = Math.imul(w[0]! ^ Math.imul(w[1]!, 0x9e3779b1) ^ Math.imul(w[2]!, 0x85ebca77) ^ Math.imul(w[3]!, 0xc2b2ae3d), 0x27d4eb2f)
    } else {
      h = 0x811c9dc5
      for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193)
    }
    return (h ^ (h >>> 15)) >>> 0
  }

  private find(id: string, packed: boolean, h: number): number {
    const w = this.w
    for (let cell = h & this.mask; ; cell = (cell + 1) & this.mask) {
      const entry = this.table[cell]!
      if (entry === 0) return -1
      const slot = entry - 1
      if (this.hashes[slot] !== h) continue
      if (packed) {
        const at = slot * 4
        if ((this.kind[slot]! & ID_TEXT) === 0 && this.ids[at] === w[0] && this.ids[at + 1] === w[1] && this.ids[at + 2] === w[2] && this.ids[at + 3] === w[3]) return slot
      } else if (this.idText.get(slot) === id) return slot
    }
  }

  /** Takes a slot out of the table, moving later cells of its probe run back so every lookup still finds them. */
  private unlink(slot: number): void {
    const mask = this.mask
    let hole = this.hashes[slot]! & mask
    while (this.table[hole] !== slot + 1) hole = (hole + 1) & mask
    for (let cell = (hole + 1) & mask; this.table[cell] !== 0; cell = (cell + 1) & mask) {
      const home = this.hashes[this.table[cell]! - 1]! & mask
      // The entry at `cell` may fill the hole unless its home lies cyclically in (hole, cell].
      const stays = hole <= cell ? hole < home && home <= cell : hole < home || home <= cell
      if (!stays) {
        this.table[hole] = this.table[cell]!
        hole = cell
      }
    }
    this.table[hole] = 0
    if ((this.kind[slot]! & ID_TEXT) !== 0) this.idText.delete(slot)
    if ((this.kind[slot]! & CONTENT_MASK) === CONTENT_TEXT) this.contentText.delete(slot)
  }

  private setContent(slot: number, content: string): void {
    const idBits = this.kind[slot]! & ID_TEXT
    if ((this.kind[slot]! & CONTENT_MASK) === CONTENT_TEXT) this.contentText.delete(slot)
    if (content === UNKNOWN_CONTENT) {
      this.kind[slot] = idBits | CONTENT_UNKNOWN
      return
    }
    const dot = content.indexOf('.')
    const colon = content.indexOf(':')
    const sep = dot >= 0 && colon < 0 ? dot : colon >= 0 && dot < 0 ? colon : -1
    const a = sep < 0 ? -1 : lane(content, 0, sep)
    const b = a < 0 ? -1 : lane(content, sep + 1, content.length)
    if (b < 0) {
      this.kind[slot] = idBits | CONTENT_TEXT
      this.contentText.set(slot, content)
      return
    }
    this.kind[slot] = idBits | (dot >= 0 ? CONTENT_DOT : CONTENT_COLON)
    this.laneA[slot] = a
    this.laneB[slot] = b
  }

  private contentOf(slot: number): string {
    switch (this.kind[slot]! & CONTENT_MASK) {
      case CONTENT_UNKNOWN:
        return UNKNOWN_CONTENT
      case CONTENT_DOT:
        return base36(this.laneA[slot]!) + '.' + base36(this.laneB[slot]!)
      case CONTENT_COLON:
        return base36(this.laneA[slot]!) + ':' + base36(this.laneB[slot]!)
      default:
        return this.contentText.get(slot)!
    }
  }

  /**
   * After a restart, remember what landed during the last `windowMs`: a
   * connector resumes from its last saved checkpoint and re-reads records that
   * had landed after it.
   */
  async warm(wh: Warehouse, windowMs: number, now: number): Promise<number> {
    let loaded = 0
    const perTable = Math.floor(this.capacity / EVENT_NAMES.length)
    for (const name of EVENT_NAMES) {
      const table = EVENT_ROUTES[name].table
      const rows = await wh.query<{ eventId: string }>(
        `SELECT eventId FROM ${table} WHERE receivedAt >= fromUnixTimestamp64Milli({since:Int64}) ORDER BY receivedAt DESC LIMIT {limit:UInt32}`,
        { since: now - windowMs, limit: perTable },
      )
      for (let i = rows.length - 1; i >= 0; i--) this.add(rows[i]!.eventId, UNKNOWN_CONTENT)
      loaded += rows.length
    }
    return loaded
  }
}

/**
 * A uint32 written as base36 does (no leading zero, lowercase), or -1 when
 * text[from..to) is not exactly that: only then does base36 give the text back.
 */
function lane(text: string, from: number, to: number): number {
  const n = to - from
  if (n < 1 || n > 7 || (n > 1 && text.charCodeAt(from) === 48)) return -1
  let v = 0
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i)
    const d = c < 128 ? B36[c]! : -1
    if (d < 0) return -1
    v = v * 36 + d
  }
  return v > 0xffff_ffff ? -1 : v
}
