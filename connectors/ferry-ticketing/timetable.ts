// Where a ferry source's timetable lives, for whoever must know when data is
// expected: after a terminal's last sailing of the day (plus a grace period for
// its check-ins and arrival), silence is normal, not a stalled feed.
//
// The timetable is not configured by hand: the scheduled sailings the source
// reads land as FerrySailing events (ferry_sailing.scheduledDeparture per
// terminalId), published the evening before each service day.

import { type FerrySailing } from '../../schemas/events.ts'

export const TIMETABLE_SOURCES = ['sailings'] as const
export type TimetableSource = (typeof TIMETABLE_SOURCES)[number]

export interface TimetableConfig {
  /** 'sailings': the scheduled sailings of the source's own /sailings feed. */
  source: TimetableSource
  /** How long after the last scheduled departure of a day data may still arrive. */
  graceMs: number
}

export const DEFAULT_TIMETABLE: TimetableConfig = { source: 'sailings', graceMs: 90 * 60_000 }

/** Where to read a source's timetable in the warehouse. */
export interface TimetableRef {
  event: 'FerrySailing'
  table: 'ferry_sailing'
  terminalColumn: 'terminalId'
  departureColumn: 'scheduledDeparture'
  statusColumn: 'status'
  graceMs: number
}

export function timetableRef(config: Partial<TimetableConfig> | undefined): TimetableRef {
  return {
    event: 'FerrySailing',
    table: 'ferry_sailing',
    terminalColumn: 'terminalId',
    departureColumn: 'scheduledDeparture',
    statusColumn: 'status',
    graceMs: config?.graceMs ?? DEFAULT_TIMETABLE.graceMs,
  }
}

type SailingVersion = Pick<FerrySailing, 'sailingId' | 'terminalId' | 'scheduledDeparture' | 'status' | 'occurredAt'>

/**
 * The moment from which a terminal is expected to be quiet on a service day
 * [dayStart, dayEnd): its last scheduled departure that day that was not
 * cancelled, plus `graceMs`. Each sailing counts in its latest version.
 * Null when the terminal has no sailing that day (quiet all day).
 */
export function quietFrom(sailings: Iterable<SailingVersion>, terminalId: string, dayStart: number, dayEnd: number, graceMs: number): number | null {
  const latest = new Map<string, SailingVersion>()
  for (const s of sailings) {
    if (s.terminalId !== terminalId || s.scheduledDeparture < dayStart || s.scheduledDeparture >= dayEnd) continue
    const seen = latest.get(s.sailingId)
    if (seen === undefined || s.occurredAt > seen.occurredAt) latest.set(s.sailingId, s)
  }
  let last: number | null = null
  for (const s of latest.values()) {
    if (s.status === 'cancelled') continue
    if (last === null || s.scheduledDeparture > last) last = s.scheduledDeparture
  }
  return last === null ? null : last + graceMs
}
