// The incremental position in each feed, and the look-back window that catches
// rows appearing after their updateTime. Pure.
//
// A feed is read in (updateTime, id) order. Rows can show up minutes after the
// updateTime they carry (a device writes the row with its own transaction
// time; the system makes it visible later), so behind the newest position read
// there may still be rows never seen. Each read therefore starts `lookbackMs`
// before the newest updateTime read so far, and the cursor remembers the
// (id, updateTime) of every row inside that window: rows seen before are
// skipped, not emitted again, so neither records nor dead letters repeat.
// Positions are the ticketing system's own clock, never ours, so a skewed
// vendor clock cannot open a gap.

import { CitysyncError } from '../../lib/errors.ts'
import { formatLocal, parseLocal } from '../../lib/local-time.ts'
import { FEEDS, type Feed, type Position, comparePositions } from './map.ts'

/** Saved per feed: the newest position read and the row versions seen within the window behind it. */
export interface FeedCursor {
  /** updateTime of the newest row read, `YYYY-MM-DD HH:mm:ss` in the source's zone. */
  after: string
  /** Its id (the tie-breaker within one second). */
  id: string
  /** `${id}@${updateTime}` of the rows read within lookbackMs before `after`. */
  seen: string[]
}

export type FerryCursor = Partial<Record<Feed, FeedCursor>>

/** Checks a stored cursor's shape; throws CITYSYNC_ERR_CONFIG_INVALID when it is not one of ours. */
export function parseCursor(cursor: unknown, zone: string): FerryCursor {
  if (cursor === undefined || cursor === null) return {}
  if (typeof cursor !== 'object' || Array.isArray(cursor)) throw invalid('cursor must be an object')
  const out: FerryCursor = {}
  for (const [key, value] of Object.entries(cursor)) {
    if (!(FEEDS as readonly string[]).includes(key)) throw invalid(`cursor has an unknown feed ${JSON.stringify(key)}`)
    if (value === undefined || value === null) continue
    const v = value as Partial<FeedCursor>
    if (typeof v.after !== 'string' || parseLocal(v.after, zone) === null) throw invalid(`cursor.${key}.after must be a local time YYYY-MM-DD HH:mm:ss`)
    if (typeof v.id !== 'string') throw invalid(`cursor.${key}.id must be a string`)
    if (!Array.isArray(v.seen) || !v.seen.every((s) => typeof s === 'string' && s.lastIndexOf('@') > 0)) {
      throw invalid(`cursor.${key}.seen must be a list of "id@updateTime"`)
    }
    out[key as Feed] = { after: v.after, id: v.id, seen: [...v.seen] }
  }
  return out
}

function invalid(what: string): CitysyncError {
  return new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [what])
}

export function seenKey(pos: Pick<Position, 'id' | 'local'>): string {
  return `${pos.id}@${pos.local}`
}

/** One feed's read state while a read runs. */
export class FeedWindow {
  private readonly zone: string
  private readonly lookbackMs: number
  private newest: Position | null
  /** seenKey -> updateTime ms */
  private readonly seen = new Map<string, number>()

  constructor(start: FeedCursor | undefined, lookbackMs: number, zone: string) {
    this.zone = zone
    this.lookbackMs = lookbackMs
    this.newest = null
    if (start !== undefined) {
      const ts = parseLocal(start.after, zone)!
      this.newest = { id: start.id, ts, local: formatLocal(ts, zone) }
      for (const key of start.seen) {
        const t = parseLocal(key.slice(key.lastIndexOf('@') + 1), zone)
        if (t !== null) this.seen.set(key, t)
      }
    }
  }

  /**
   * Where the read starts: `lookbackMs` before the newest position (or right
   * after it when there is no look-back), or `firstFrom` when nothing was read yet.
   */
  start(firstFrom: number): { updatedAfter: string; afterId: string } {
    if (this.newest === null) return { updatedAfter: formatLocal(firstFrom, this.zone), afterId: '' }
    if (this.lookbackMs === 0) return { updatedAfter: this.newest.local, afterId: this.newest.id }
    return { updatedAfter: formatLocal(this.newest.ts - this.lookbackMs, this.zone), afterId: '' }
  }

  /**
   * Whether a row version is new to this source, remembering it if so. False
   * for a row seen before (a repeat across pages, or a re-read of the window)
   * and for a row older than the window, which a read never asks for: only a
   * page that repeats earlier rows serves it.
   */
  admit(pos: Position): boolean {
    if (this.newest !== null && pos.ts < this.newest.ts - this.lookbackMs) return false
    if (this.newest !== null && this.lookbackMs === 0 && comparePositions(pos, this.newest) <= 0) return false
    const key = seenKey(pos)
    if (this.seen.has(key)) return false
    this.seen.set(key, pos.ts)
    return true
  }

  /** Moves the newest position forward (never back) and forgets what fell out of the window; true if it moved. */
  advance(pos: Position): boolean {
    if (this.newest !== null && comparePositions(pos, this.newest) <= 0) return false
    this.newest = pos
    const floor = pos.ts - this.lookbackMs
    for (const [key, ts] of this.seen) if (ts < floor) this.seen.delete(key)
    return true
  }

  get position(): Position | null {
    return this.newest
  }

  cursor(): FeedCursor | undefined {
    if (this.newest === null) return undefined
    return { after: this.newest.local, id: this.newest.id, seen: [...this.seen.keys()] }
  }
}
