// A ferry terminal's ticketing system ("港航客运票务系统 open API"): sailings
// (the timetable and each sailing's status changes), tickets (sold, changed,
// refunded) and gate check-ins, each read incrementally by (updateTime, id).

import { CitysyncError, errorMessage } from '../../lib/errors.ts'
import { formatLocal, parseLocal } from '../../lib/local-time.ts'
import { type Draft, type EventName } from '../../schemas/events.ts'
import {
  type CheckResult,
  type Connector,
  type Ctx,
  type JsonSchema,
  type SourceMessage,
  checkpoint,
  itemError,
  record,
} from '../sdk/connector.ts'
import { type FerryApiClient, LOOKUP_BATCH, createClient } from './client.ts'
import { type FerryCursor, FeedWindow, parseCursor } from './cursor.ts'
import {
  FEEDS,
  type Feed,
  type ItemFault,
  type MapContext,
  type Position,
  comparePositions,
  itemPosition,
  mapCheckIn,
  mapSailing,
  mapTicket,
  unknownTicket,
} from './map.ts'
import { DEFAULT_TIMETABLE, TIMETABLE_SOURCES, type TimetableConfig } from './timetable.ts'

export interface FerryTicketingConfig {
  baseUrl: string
  apiKey?: string
  /** Rows per request, 1..500 (default 200). */
  pageSize?: number
  /** Feeds to read (default all three). */
  feeds?: Feed[]
  /** How far behind the newest updateTime each read starts again, for rows that show up late (default 15 min). */
  lookbackMs?: number
  /** Where the very first read starts, back from now (default 7 days). */
  initialLookbackMs?: number
  /** How far after now an event time may be before it is rejected (default 5 min). */
  futureToleranceMs?: number
  /** Where the terminal timetable comes from, for freshness expectations (see timetable.ts). */
  timetable?: Partial<TimetableConfig>
}

export type { FerryCursor } from './cursor.ts'

const DEFAULTS = {
  pageSize: 200,
  feeds: [...FEEDS],
  lookbackMs: 15 * 60_000,
  initialLookbackMs: 7 * 86_400_000,
  futureToleranceMs: 300_000,
} as const

const configSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['baseUrl'],
  properties: {
    baseUrl: { type: 'string', format: 'uri', pattern: '^https?://', description: 'Base URL of the open API, without /ferry/open/v1' },
    apiKey: { type: 'string', minLength: 1, 'x-secret': true, description: 'Sent as X-Api-Key' },
    pageSize: { type: 'integer', minimum: 1, maximum: 500, default: DEFAULTS.pageSize },
    feeds: { type: 'array', items: { enum: [...FEEDS] }, uniqueItems: true, minItems: 1, default: [...FEEDS] },
    lookbackMs: {
      type: 'integer',
      minimum: 0,
      maximum: 86_400_000,
      default: DEFAULTS.lookbackMs,
      description: 'Each read starts this far behind the newest updateTime read, to catch rows that appear after their updateTime',
    },
    initialLookbackMs: { type: 'integer', minimum: 0, default: DEFAULTS.initialLookbackMs, description: 'How far back the first read starts' },
    futureToleranceMs: { type: 'integer', minimum: 0, default: DEFAULTS.futureToleranceMs },
    timetable: {
      type: 'object',
      additionalProperties: false,
      description:
        'The terminal timetable: scheduled sailings from the /sailings feed, landed as FerrySailing (ferry_sailing.scheduledDeparture). ' +
        'After the last sailing of a day plus graceMs, silence is expected.',
      properties: {
        source: { enum: [...TIMETABLE_SOURCES], default: DEFAULT_TIMETABLE.source },
        graceMs: { type: 'integer', minimum: 0, maximum: 86_400_000, default: DEFAULT_TIMETABLE.graceMs },
      },
      default: { ...DEFAULT_TIMETABLE },
    },
  },
}

interface Resolved {
  baseUrl: string
  apiKey: string | undefined
  pageSize: number
  feeds: readonly Feed[]
  lookbackMs: number
  initialLookbackMs: number
  futureToleranceMs: number
}

// The runtime validates config against configSchema; defaults are applied
// again here so that direct callers (tests, scripts) get the same behaviour.
function resolve(config: FerryTicketingConfig): Resolved {
  return {
    baseUrl: config.baseUrl,
    apiKey: config.apiKey,
    pageSize: config.pageSize ?? DEFAULTS.pageSize,
    feeds: config.feeds ?? DEFAULTS.feeds,
    lookbackMs: config.lookbackMs ?? DEFAULTS.lookbackMs,
    initialLookbackMs: config.initialLookbackMs ?? DEFAULTS.initialLookbackMs,
    futureToleranceMs: config.futureToleranceMs ?? DEFAULTS.futureToleranceMs,
  }
}

const FEED_INFO: Record<Feed, { event: EventName; label: string }> = {
  sailings: { event: 'FerrySailing', label: 'sailing' },
  tickets: { event: 'FerryTicket', label: 'ticket' },
  checkins: { event: 'FerryCheckIn', label: 'check-in' },
}

function terminalCodes(items: unknown[]): string[] {
  return items
    .map((t) => (t as { terminalCode?: unknown } | null)?.terminalCode)
    .filter((c): c is string => typeof c === 'string' && c.trim() !== '')
    .map((c) => c.trim())
}

/** What one read shares across feeds. */
interface ReadState {
  client: FerryApiClient
  cfg: Resolved
  ctx: Ctx
  cursor: FerryCursor
  terminals: ReadonlySet<string>
  /** Tickets known to exist upstream: read from the ticket feed or found by lookup in this read. */
  tickets: Set<string>
}

/** A mapped check-in waiting for its ticket to be confirmed, or a message ready to go. */
type Pending = { type: 'checkin'; draft: Draft<'FerryCheckIn'>; raw: unknown; updated: string } | SourceMessage<FerryCursor>

/**
 * Pages through one feed from its window start until hasMore is false, with a
 * checkpoint after every page. Rows already seen (repeated across pages, or
 * re-read inside the look-back window) are skipped.
 */
async function* readFeed(feed: Feed, st: ReadState): AsyncGenerator<SourceMessage<FerryCursor>, boolean> {
  const { client, cfg, ctx } = st
  const { event, label } = FEED_INFO[feed]
  const window = new FeedWindow(st.cursor[feed], cfg.lookbackMs, ctx.timezone)
  let request = window.start(ctx.clock.now() - cfg.initialLookbackMs)
  let pages = 0
  let repeats = 0
  for (;;) {
    if (ctx.signal.aborted) return false
    const page = await client.page(feed, { ...request, pageSize: cfg.pageSize })
    pages++
    const mapCtx: MapContext = {
      timezone: ctx.timezone,
      now: ctx.clock.now(),
      futureToleranceMs: cfg.futureToleranceMs,
      knownTerminals: st.terminals,
    }
    let last: Position | null = null
    let admitted = 0
    const out: Pending[] = []
    for (const raw of page.records) {
      const pos = itemPosition(raw, feed, ctx.timezone)
      if (!pos.ok) {
        out.push(itemError(event, pos.fault.code, `${label} row: ${pos.fault.reason}`, JSON.stringify(raw) ?? 'null'))
        continue
      }
      if (last === null || comparePositions(pos.draft, last) > 0) last = pos.draft
      if (feed === 'tickets') st.tickets.add(pos.draft.id)
      if (!window.admit(pos.draft)) {
        repeats++
        continue
      }
      admitted++
      const fail = (fault: ItemFault) =>
        itemError(event, fault.code, `${label} ${pos.draft.id} (updated ${pos.draft.local}): ${fault.reason}`, JSON.stringify(raw))
      if (feed === 'sailings') {
        const m = mapSailing(raw, mapCtx)
        out.push(m.ok ? record('FerrySailing', m.draft) : fail(m.fault))
      } else if (feed === 'tickets') {
        const m = mapTicket(raw, mapCtx)
        if (m.ok) for (const d of m.draft) out.push(record('FerryTicket', d))
        else out.push(fail(m.fault))
      } else {
        const m = mapCheckIn(raw, mapCtx)
        out.push(m.ok ? { type: 'checkin', draft: m.draft, raw, updated: pos.draft.local } : fail(m.fault))
      }
    }
    if (feed === 'checkins') yield* resolveCheckIns(out, st, label)
    else yield* out as SourceMessage<FerryCursor>[]

    if (last === null) {
      if (page.records.length === 0 && page.hasMore) throw payloadError(`${label} page after ${describe(request)} is empty but hasMore is true`)
      if (page.hasMore) throw payloadError(`${label} page after ${describe(request)} has no row with an id and updateTime`)
      break
    }
    // A last page may hold only repeats of rows before the position: caught up.
    if (page.hasMore && comparePositions(last, { ts: parseLocal(request.updatedAfter, ctx.timezone)!, id: request.afterId }) <= 0) {
      throw payloadError(`${label} page after ${describe(request)} does not advance`)
    }
    // Nothing new (a re-read of the window): no checkpoint, the saved cursor stands.
    if (window.advance(last) || admitted > 0) {
      st.cursor[feed] = window.cursor()
      yield checkpoint(structuredClone(st.cursor))
    }
    if (!page.hasMore) break
    request = { updatedAfter: last.local, afterId: last.id }
  }
  ctx.log.debug({ feed, pages, repeats, position: window.position?.local }, 'feed read')
  return true
}

/**
 * Check-ins whose ticket was not read in this run are looked up by ticket
 * number (in batches); those the system does not know are dead-lettered.
 * Yields in the order of the page.
 */
async function* resolveCheckIns(out: Pending[], st: ReadState, label: string): AsyncGenerator<SourceMessage<FerryCursor>> {
  const missing = new Set<string>()
  for (const m of out) if (m.type === 'checkin' && !st.tickets.has(m.draft.ticketId)) missing.add(m.draft.ticketId)
  const ids = [...missing]
  for (let i = 0; i < ids.length; i += LOOKUP_BATCH) {
    for (const row of await st.client.lookupTickets(ids.slice(i, i + LOOKUP_BATCH))) {
      const no = (row as { ticketNo?: unknown } | null)?.ticketNo
      if (typeof no === 'string') st.tickets.add(no.trim())
    }
  }
  for (const m of out) {
    if (m.type !== 'checkin') {
      yield m
      continue
    }
    const d = m.draft
    if (st.tickets.has(d.ticketId)) {
      yield record('FerryCheckIn', d)
      continue
    }
    const fault = unknownTicket(d.ticketId)
    yield itemError('FerryCheckIn', fault.code, `${label} ${d.checkInId} (updated ${m.updated}): ${fault.reason}`, JSON.stringify(m.raw))
  }
}

function describe(request: { updatedAfter: string; afterId: string }): string {
  return request.afterId === '' ? request.updatedAfter : `${request.updatedAfter} / ${request.afterId}`
}

function payloadError(what: string): CitysyncError {
  return new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [what])
}

export const ferryTicketingConnector: Connector<FerryTicketingConfig, FerryCursor> = {
  kind: 'ferry-ticketing',
  title: 'Ferry terminal ticketing (港航客运票务系统 open API)',
  configSchema,

  async check(config: FerryTicketingConfig, ctx: Ctx): Promise<CheckResult> {
    const cfg = resolve(config)
    try {
      const client = createClient(cfg, ctx)
      const terminals = terminalCodes(await client.terminals())
      const now = ctx.clock.now()
      const page = await client.page('sailings', { updatedAfter: formatLocal(now - 86_400_000, ctx.timezone), afterId: '', pageSize: 500 })
      const today = formatLocal(now, ctx.timezone).slice(0, 10)
      const sailings = new Set<string>()
      const lastToday: Record<string, string> = {}
      for (const raw of page.records) {
        const r = raw as { sailingId?: unknown; terminalCode?: unknown; sailDate?: unknown; sailTime?: unknown; sailStatus?: unknown } | null
        if (typeof r?.sailingId !== 'string') continue
        sailings.add(r.sailingId)
        if (r.sailDate !== today || typeof r.sailTime !== 'string' || typeof r.terminalCode !== 'string' || String(r.sailStatus) === '5') continue
        const prev = lastToday[r.terminalCode]
        if (prev === undefined || r.sailTime > prev) lastToday[r.terminalCode] = r.sailTime
      }
      const more = page.hasMore ? '+' : ''
      return {
        ok: true,
        message: `${terminals.length} terminal${terminals.length === 1 ? '' : 's'} (${terminals.join(', ')}), ${sailings.size}${more} sailing${sailings.size === 1 ? '' : 's'} updated in the last 24 h`,
        details: { terminals, sailings: sailings.size, moreSailings: page.hasMore, lastSailingToday: lastToday },
      }
    } catch (err) {
      return { ok: false, message: errorMessage(err) }
    }
  },

  async *read(config: FerryTicketingConfig, cursor: FerryCursor | undefined, ctx: Ctx) {
    const cfg = resolve(config)
    const st: ReadState = {
      client: createClient(cfg, ctx),
      cfg,
      ctx,
      cursor: parseCursor(cursor, ctx.timezone),
      terminals: new Set(),
      tickets: new Set(),
    }
    try {
      st.terminals = new Set(terminalCodes(await st.client.terminals()))
      for (const feed of FEEDS) {
        if (!cfg.feeds.includes(feed)) continue
        const finished = yield* readFeed(feed, st)
        if (!finished) return
      }
    } catch (err) {
      // Stopped from outside (pause, shutdown): end quietly, the last checkpoint stands.
      if (ctx.signal.aborted) return
      throw err
    }
  },
}
