// A source's `freshness` block, resolved into numbers and compiled calendars:
// per source, and per entity (car park, station, terminal) where overridden.
//
//   freshness:
//     maxDelay: 2h            # late after this much expected time without new live data
//     openAfter: 0s           # a bad state must hold this long before an alert opens
//     closeAfter: 15m         # recovery must hold this long before the alert resolves
//     stoppedAfter: 15m       # connector silent or failing this long: STOPPED (default max(3 runs, 15m))
//     skewTolerance: 5m       # event times further ahead of arrival than this: SKEWED
//     lotHours: true          # car parks follow their own opening hours (parking_lot.openingHours)
//     calendar: { ... }       # see calendar.ts
//     entities:
//       P003: { maxDelay: 4h, calendar: { openingHours: 'Mo-Fr 07:00-19:00' } }
//       P009: { ignore: true }

import { Cron } from 'croner'
import { parseDuration } from '../lib/duration.ts'
import type { Freshness, Schedule, SourceConfig } from '../lib/source-config.ts'
import { Calendar, type CalendarSpec, CalendarError } from './calendar.ts'

export const DEFAULTS = {
  maxDelay: '2h',
  openAfter: '0s',
  closeAfter: '15m',
  minStoppedAfter: '15m',
  skewTolerance: '5m',
} as const

export interface EntitySettings {
  maxDelayMs: number
  calendar: Calendar
  ignore: boolean
}

export interface FreshnessSettings {
  maxDelayMs: number
  openAfterMs: number
  closeAfterMs: number
  stoppedAfterMs: number
  skewToleranceMs: number
  lotHours: boolean
  calendar: Calendar
  /** Overrides by entity id. */
  entities: ReadonlyMap<string, EntitySettings>
}

const DURATION = { type: 'string', format: 'citysync-duration' } as const
const LOCAL_TIME = { type: 'string', pattern: '^\\d{4}-\\d\\d-\\d\\d[ T]\\d\\d:\\d\\d(?::\\d\\d)?(?:Z|[+-]\\d\\d:\\d\\d)?$' } as const

/** JSON schema of `freshness.calendar` (also used for entity calendars). */
export const CALENDAR_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    timezone: { type: 'string', format: 'timezone' },
    openingHours: { type: 'string', format: 'citysync-hours' },
    quietHours: { type: 'string', format: 'citysync-hours' },
    holidays: { type: 'array', items: { type: 'string', format: 'date' } },
    workdays: { type: 'array', items: { type: 'string', format: 'date' } },
    timetable: {
      type: 'object',
      additionalProperties: false,
      required: ['departures'],
      properties: { departures: { type: 'string', format: 'citysync-departures' }, lead: DURATION, grace: DURATION },
    },
    maintenance: {
      type: 'array',
      items: {
        oneOf: [
          {
            type: 'object',
            additionalProperties: false,
            required: ['from', 'to'],
            properties: { from: LOCAL_TIME, to: LOCAL_TIME, reason: { type: 'string' } },
          },
          {
            type: 'object',
            additionalProperties: false,
            required: ['hours'],
            properties: { hours: { type: 'string', format: 'citysync-hours' }, reason: { type: 'string' } },
          },
        ],
      },
    },
  },
} as const

/** The properties of `freshness` besides maxDelay (lib/source-config.ts validates them). */
export const FRESHNESS_PROPERTIES = {
  openAfter: DURATION,
  closeAfter: DURATION,
  stoppedAfter: DURATION,
  skewTolerance: DURATION,
  lotHours: { type: 'boolean' },
  calendar: CALENDAR_SCHEMA,
  entities: {
    type: 'object',
    propertyNames: { minLength: 1, maxLength: 128 },
    additionalProperties: {
      type: 'object',
      additionalProperties: false,
      properties: { maxDelay: DURATION, calendar: CALENDAR_SCHEMA, ignore: { type: 'boolean' } },
    },
  },
} as const

/**
 * Checks what the JSON schema cannot (a maintenance window that ends before
 * it starts, a local time that does not exist). Returns "path: problem" lines.
 */
export function calendarProblems(freshness: Freshness, zone: string): string[] {
  const problems: string[] = []
  const check = (spec: unknown, path: string): void => {
    if (spec === undefined) return
    try {
      new Calendar(spec as CalendarSpec, zone)
    } catch (err) {
      if (err instanceof CalendarError) problems.push(`${path}: ${err.message}`)
      else throw err
    }
  }
  check(freshness.calendar, 'freshness.calendar')
  for (const [id, e] of Object.entries(freshness.entities ?? {})) check(e.calendar, `freshness.entities.${id}.calendar`)
  return problems
}

/** Milliseconds between two runs of a schedule (the shortest gap of the next few for cron). */
export function scheduleIntervalMs(schedule: Schedule, zone: string): number {
  if ('every' in schedule) return parseDuration(schedule.every)
  // The shortest gap among the next runs after a fixed instant (a day's worth for sparse schedules).
  const runs = new Cron(schedule.cron, { timezone: zone, paused: true }).nextRuns(25, new Date(Date.UTC(2026, 0, 5)))
  let gap = Number.POSITIVE_INFINITY
  for (let i = 1; i < runs.length; i++) gap = Math.min(gap, runs[i]!.getTime() - runs[i - 1]!.getTime())
  return Number.isFinite(gap) ? gap : 86_400_000
}

const compiled = new Map<string, Calendar>()

/** Calendars are immutable: identical specs in the same zone share one (and its day cache). */
export function calendarFor(spec: CalendarSpec | undefined, zone: string): Calendar {
  const key = `${zone}\x1f${JSON.stringify(spec ?? {})}`
  let cal = compiled.get(key)
  if (cal === undefined) {
    if (compiled.size > 10_000) compiled.clear()
    cal = new Calendar(spec ?? {}, zone)
    compiled.set(key, cal)
  }
  return cal
}

/**
 * The settings of one source. Ferry sources whose connector config names a
 * timetable and whose calendar has none expect data around their landed
 * sailings (connectors/ferry-ticketing/timetable.ts).
 */
export function resolveSettings(source: Pick<SourceConfig, 'freshness' | 'schedule' | 'timezone' | 'config'>): FreshnessSettings {
  const f = source.freshness
  let spec = f.calendar as CalendarSpec | undefined
  const tt = (source.config as { timetable?: { source?: string; graceMs?: number } }).timetable
  if (spec?.timetable === undefined && tt?.source === 'sailings') {
    spec = { ...(spec ?? {}), timetable: { departures: 'sailings', grace: `${tt.graceMs ?? 90 * 60_000}ms` } }
  }
  const calendar = calendarFor(spec, source.timezone)
  const entities = new Map<string, EntitySettings>()
  const maxDelayMs = parseDuration(f.maxDelay ?? DEFAULTS.maxDelay)
  for (const [id, e] of Object.entries(f.entities ?? {})) {
    entities.set(id, {
      maxDelayMs: e.maxDelay === undefined ? maxDelayMs : parseDuration(e.maxDelay),
      calendar: e.calendar === undefined ? calendar : calendarFor(e.calendar, calendar.zone),
      ignore: e.ignore === true,
    })
  }
  const runs = 3 * scheduleIntervalMs(source.schedule, source.timezone)
  return {
    maxDelayMs,
    openAfterMs: parseDuration(f.openAfter ?? DEFAULTS.openAfter),
    closeAfterMs: parseDuration(f.closeAfter ?? DEFAULTS.closeAfter),
    stoppedAfterMs: f.stoppedAfter !== undefined ? parseDuration(f.stoppedAfter) : Math.max(runs, parseDuration(DEFAULTS.minStoppedAfter)),
    skewToleranceMs: parseDuration(f.skewTolerance ?? DEFAULTS.skewTolerance),
    lotHours: f.lotHours !== false,
    calendar,
    entities,
  }
}
