import { EVENT_ROUTES, EVENT_NAMES } from '../schemas/events.ts'
import { type Warehouse } from './warehouse/warehouse.ts'

/** Marks an id loaded from the warehouse, whose content fingerprint is not known. */
export const UNKNOWN_CONTENT = ''

/**
 * Recently landed event ids with their content fingerprints, bounded in size
 * (oldest forgotten first). The warehouse's ReplacingMergeTree remains the
 * backstop for duplicates older than what this remembers.
 */
export class DedupeCache {
  private readonly seen = new Map<string, string>()
  readonly capacity: number

  constructor(capacity = 500_000) {
    this.capacity = capacity
  }

  get size(): number {
    return this.seen.size
  }

  get(eventId: string): string | undefined {
    return this.seen.get(eventId)
  }

  add(eventId: string, contentHash: string): void {
    this.seen.set(eventId, contentHash)
    if (this.seen.size > this.capacity) {
      // Map iterates in insertion order: drop the oldest tenth in one go.
      let drop = Math.ceil(this.capacity / 10)
      for (const k of this.seen.keys()) {
        this.seen.delete(k)
        if (--drop === 0) break
      }
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
