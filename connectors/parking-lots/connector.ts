// Car parks behind a vendor "停车场管理平台 open API": lots, entries, exits and
// free-space reports, read incrementally by per-stream sequence number.

import { errorMessage, CitysyncError } from '../../lib/errors.ts'
import { type EventName } from '../../schemas/events.ts'
import {
  type CheckResult,
  type Connector,
  type Ctx,
  type ItemErrorMessage,
  type JsonSchema,
  type SourceMessage,
  checkpoint,
  itemError,
  record,
} from '../sdk/connector.ts'
import { type ApiStream, type ParkingApiClient, createClient } from './client.ts'
import { type ItemFault, type MapContext, itemSeq, mapLot, mapOccupancy, mapPassage, redactPlates } from './map.ts'

export const PARKING_STREAMS = ['entries', 'exits', 'spaces'] as const
export type ParkingStream = (typeof PARKING_STREAMS)[number]

export interface ParkingLotsConfig {
  baseUrl: string
  appKey?: string
  /** Items per request, 1..1000 (default 500). */
  pageSize?: number
  /** Streams to read (default all three). */
  streams?: ParkingStream[]
  /** How far after now an event time may be before it is rejected (default 5 min). */
  futureToleranceMs?: number
  /** Lot records carry occurredAt rounded down to this, so they dedupe within it (default 1 h). */
  lotsRefreshMs?: number
}

/** Last seq consumed per vendor stream; 0 = nothing yet. */
export interface ParkingLotsCursor {
  in: number
  out: number
  space: number
}

const DEFAULTS = {
  pageSize: 500,
  streams: [...PARKING_STREAMS],
  futureToleranceMs: 300_000,
  lotsRefreshMs: 3_600_000,
} as const

// Dead-letter payloads are capped: a malformed page can be large.
const MAX_RAW_CHARS = 64 * 1024

const configSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['baseUrl'],
  properties: {
    baseUrl: { type: 'string', format: 'uri', pattern: '^https?://', description: 'Base URL of the open API, without /openapi/v1' },
    appKey: { type: 'string', minLength: 1, 'x-secret': true, description: 'Sent as X-App-Key' },
    pageSize: { type: 'integer', minimum: 1, maximum: 1000, default: DEFAULTS.pageSize },
    streams: {
      type: 'array',
      items: { enum: [...PARKING_STREAMS] },
      uniqueItems: true,
      minItems: 1,
      default: [...PARKING_STREAMS],
    },
    futureToleranceMs: { type: 'integer', minimum: 0, default: DEFAULTS.futureToleranceMs },
    lotsRefreshMs: { type: 'integer', minimum: 1000, default: DEFAULTS.lotsRefreshMs },
  },
}

interface Resolved {
  baseUrl: string
  appKey: string | undefined
  pageSize: number
  streams: readonly ParkingStream[]
  futureToleranceMs: number
  lotsRefreshMs: number
}

// The runtime validates config against configSchema; defaults are applied
// again here so that direct callers (tests, scripts) get the same behaviour.
function resolve(config: ParkingLotsConfig): Resolved {
  return {
    baseUrl: config.baseUrl,
    appKey: config.appKey,
    pageSize: config.pageSize ?? DEFAULTS.pageSize,
    streams: config.streams ?? DEFAULTS.streams,
    futureToleranceMs: config.futureToleranceMs ?? DEFAULTS.futureToleranceMs,
    lotsRefreshMs: config.lotsRefreshMs ?? DEFAULTS.lotsRefreshMs,
  }
}

function startCursor(cursor: ParkingLotsCursor | undefined): ParkingLotsCursor {
  const out: ParkingLotsCursor = { in: 0, out: 0, space: 0 }
  if (cursor === undefined || cursor === null) return out
  for (const key of ['in', 'out', 'space'] as const) {
    const v = (cursor as Partial<ParkingLotsCursor>)[key]
    if (v === undefined) continue
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`cursor.${key} must be a non-negative integer, got ${String(v)}`])
    }
    out[key] = v
  }
  return out
}

const STREAM_INFO: Record<ParkingStream, { api: ApiStream; event: EventName; label: string }> = {
  entries: { api: 'in', event: 'ParkingPassage', label: 'entry' },
  exits: { api: 'out', event: 'ParkingPassage', label: 'exit' },
  spaces: { api: 'space', event: 'ParkingOccupancy', label: 'space' },
}

function truncate(text: string): string {
  return text.length <= MAX_RAW_CHARS ? text : text.slice(0, MAX_RAW_CHARS)
}

async function* readLots(
  client: ParkingApiClient,
  cfg: Resolved,
  ctx: Ctx,
  known: Set<string>,
): AsyncGenerator<SourceMessage<ParkingLotsCursor>> {
  const items = await client.parks()
  const occurredAt = Math.floor(ctx.clock.now() / cfg.lotsRefreshMs) * cfg.lotsRefreshMs
  for (const raw of items) {
    // A lot with a bad attribute still exists: its passages are not unknown_lot.
    const code = (raw as { parkCode?: unknown } | null)?.parkCode
    if (typeof code === 'string' && code.trim() !== '') known.add(code.trim())
    const mapped = mapLot(raw, occurredAt)
    if (mapped.ok) yield record('ParkingLot', mapped.draft)
    else yield itemError('ParkingLot', mapped.fault.code, `lot: ${mapped.fault.reason}`, redactPlates(JSON.stringify(raw) ?? 'null'))
  }
}

/**
 * Pages through one stream from cursor[api] until hasMore is false, with a
 * checkpoint after every page. A page that is not JSON is bisected: the same
 * afterSeq is asked again with half the limit until the bad item is alone
 * (limit 1); that item is dead-lettered and skipped, since seq is dense per
 * stream by the API contract, so a corrupt item cannot block the source.
 */
async function* readStream(
  stream: ParkingStream,
  client: ParkingApiClient,
  cfg: Resolved,
  ctx: Ctx,
  cursor: ParkingLotsCursor,
  known: ReadonlySet<string>,
): AsyncGenerator<SourceMessage<ParkingLotsCursor>, boolean> {
  const { api, event, label } = STREAM_INFO[stream]
  let limit = cfg.pageSize
  // While > cursor[api], a malformed item is known to lie at or before this seq.
  let suspectUntil = 0
  let retriedSingle = false
  for (;;) {
    if (ctx.signal.aborted) return false
    const afterSeq = cursor[api]
    const page = await client.page(api, afterSeq, limit)
    if (page.kind === 'malformed') {
      suspectUntil = afterSeq + limit
      if (limit > 1) {
        limit = Math.max(1, Math.floor(limit / 2))
        ctx.log.warn({ stream, afterSeq, limit }, 'page is not valid JSON; asking again with a smaller limit')
        continue
      }
      // One more try at limit 1, in case the corruption was in transit.
      if (!retriedSingle) {
        retriedSingle = true
        continue
      }
      retriedSingle = false
      const seq = afterSeq + 1
      ctx.log.warn({ stream, seq }, 'item is not valid JSON on its own; dead-lettered and skipped')
      yield itemError(event, 'malformed_json', `${label} seq ${seq}: page afterSeq=${afterSeq} limit=1 is not valid JSON (${page.error})`, truncate(redactPlates(page.raw)))
      yield { type: 'status', level: 'warn', message: `${label} seq ${seq} skipped: upstream serves it as malformed JSON` }
      cursor[api] = seq
      yield checkpoint({ ...cursor })
      limit = cfg.pageSize
      continue
    }
    retriedSingle = false
    const mapCtx: MapContext = {
      timezone: ctx.timezone,
      now: ctx.clock.now(),
      futureToleranceMs: cfg.futureToleranceMs,
      knownLots: known,
    }
    let lastSeq = afterSeq
    for (const raw of page.list) {
      const seq = itemSeq(raw)
      if (seq !== null && seq > lastSeq) lastSeq = seq
      const fail = (fault: ItemFault): ItemErrorMessage =>
        itemError(event, fault.code, `${label} seq ${seq ?? '?'}: ${fault.reason}`, redactPlates(JSON.stringify(raw) ?? 'null'))
      if (api === 'space') {
        const mapped = mapOccupancy(raw, mapCtx)
        yield mapped.ok ? record('ParkingOccupancy', mapped.draft) : fail(mapped.fault)
      } else {
        const mapped = mapPassage(raw, api === 'in' ? 'entry' : 'exit', mapCtx)
        yield mapped.ok ? record('ParkingPassage', mapped.draft) : fail(mapped.fault)
      }
    }
    if (page.list.length === 0) {
      if (page.hasMore) throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${label} page after seq ${afterSeq} is empty but hasMore is true`])
      return true
    }
    if (lastSeq <= afterSeq) {
      throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${label} page after seq ${afterSeq} has no item with a higher seq`])
    }
    cursor[api] = lastSeq
    yield checkpoint({ ...cursor })
    ctx.log.debug({ stream, afterSeq, lastSeq, items: page.list.length }, 'page read')
    if (!page.hasMore) return true
    // Past the stretch that held a malformed item: back to full pages.
    if (lastSeq >= suspectUntil) limit = cfg.pageSize
  }
}

export const parkingLotsConnector: Connector<ParkingLotsConfig, ParkingLotsCursor> = {
  kind: 'parking-lots',
  title: 'Car parks (停车场管理平台 open API)',
  configSchema,

  async check(config: ParkingLotsConfig, ctx: Ctx): Promise<CheckResult> {
    const cfg = resolve(config)
    try {
      const parks = await createClient(cfg, ctx).parks()
      const codes = parks
        .map((p) => (p as { parkCode?: unknown } | null)?.parkCode)
        .filter((c): c is string => typeof c === 'string')
      return {
        ok: true,
        message: `${parks.length} car park${parks.length === 1 ? '' : 's'} found`,
        details: { lots: parks.length, parkCodes: codes },
      }
    } catch (err) {
      return { ok: false, message: errorMessage(err) }
    }
  },

  async *read(config: ParkingLotsConfig, cursor: ParkingLotsCursor | undefined, ctx: Ctx) {
    const cfg = resolve(config)
    const cur = startCursor(cursor)
    const client = createClient(cfg, ctx)
    const known = new Set<string>()
    try {
      yield* readLots(client, cfg, ctx, known)
      // A page of each stream in turn: a vehicle's exit follows its entry
      // closely, as it did upstream, which keeps its plate's protection in
      // the encoder's cache when a long backlog is read. Each stream's
      // checkpoint comes after its page's items, so the shared cursor never
      // passes an item not yet yielded.
      let active = cfg.streams.map((stream) => readStream(stream, client, cfg, ctx, cur, known))
      while (active.length > 0) {
        const next: typeof active = []
        for (const it of active) {
          for (;;) {
            const step = await it.next()
            if (step.done) {
              if (!step.value) return
              break
            }
            yield step.value
            if (step.value.type === 'checkpoint') {
              next.push(it)
              break
            }
          }
        }
        active = next
      }
    } catch (err) {
      // Stopped from outside (pause, shutdown): end quietly, the last checkpoint stands.
      if (ctx.signal.aborted) return
      throw err
    }
  },
}
