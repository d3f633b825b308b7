// Car parks that push: the vendor platform POSTs batches of the very items its
// open API serves (see map.ts) to POST /api/v1/ingest/:sourceId, signed with a
// secret shared with this one source. Nothing is pulled, so read() has nothing
// to do; the ingest route publishes pushed records through the same pipeline
// (publisher, bus, warehouse sink) as pulled ones.
//
// Body contract (JSON, at most maxItems records):
//   { "records": [ { "type": "in" | "out" | "space" | "park", ...vendor item } ] }
// `in` and `out` are entry and exit records, `space` a free-space report and
// `park` a car park's static data, each in the vendor shape documented in map.ts.

import { CitysyncError } from '../../lib/errors.ts'
import { type Draft, type EventName } from '../../schemas/events.ts'
import { type CheckResult, type Connector, type Ctx, type JsonSchema, type SourceMessage } from '../sdk/connector.ts'
import { type ItemFault, type MapContext, itemSeq, mapLot, mapOccupancy, mapPassage, redactPlates } from './map.ts'

export const PUSH_ALGORITHMS = ['hmac-sha256', 'hmac-sm3'] as const
export type PushAlgorithm = (typeof PUSH_ALGORITHMS)[number]

export const PUSH_ITEM_TYPES = ['in', 'out', 'space', 'park'] as const
export type PushItemType = (typeof PUSH_ITEM_TYPES)[number]

export interface ParkingPushConfig {
  /** Shared with the vendor; signs every push. */
  secret: string
  /** Still accepted while the vendor moves to a new secret. */
  previousSecret?: string
  algorithm?: PushAlgorithm
  /** Pushes whose signed timestamp is further than this from now are refused (default 300 s). */
  replayWindowSeconds?: number
  /** parkCodes this source may report; absent: any car park. */
  lots?: string[]
  /** Records per push (default 1000). */
  maxItems?: number
  /** How far after now an event time may be before it is rejected (default 5 min). */
  futureToleranceMs?: number
  /** Lot records carry occurredAt rounded down to this, so they dedupe within it (default 1 h). */
  lotsRefreshMs?: number
}

/** The last push acknowledged; saved by the ingest route after the pipeline took it. */
export interface ParkingPushCursor {
  lastPushAt: string
}

export const PUSH_DEFAULTS = {
  algorithm: 'hmac-sha256',
  replayWindowSeconds: 300,
  maxItems: 1000,
  futureToleranceMs: 300_000,
  lotsRefreshMs: 3_600_000,
} as const

/** Hard ceiling on records per push, whatever the config says. */
export const MAX_PUSH_ITEMS = 5000

// Dead-letter payloads are capped like the pulling connector's.
const MAX_RAW_CHARS = 64 * 1024

const configSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['secret'],
  properties: {
    secret: { type: 'string', minLength: 16, 'x-secret': true, description: 'Shared secret for the push signature (at least 16 characters)' },
    previousSecret: { type: 'string', minLength: 16, 'x-secret': true, description: 'Accepted as well while the vendor rotates its secret' },
    algorithm: { enum: [...PUSH_ALGORITHMS], default: PUSH_DEFAULTS.algorithm },
    replayWindowSeconds: { type: 'integer', minimum: 30, maximum: 3600, default: PUSH_DEFAULTS.replayWindowSeconds },
    lots: { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true, minItems: 1 },
    maxItems: { type: 'integer', minimum: 1, maximum: MAX_PUSH_ITEMS, default: PUSH_DEFAULTS.maxItems },
    futureToleranceMs: { type: 'integer', minimum: 0, default: PUSH_DEFAULTS.futureToleranceMs },
    lotsRefreshMs: { type: 'integer', minimum: 1000, default: PUSH_DEFAULTS.lotsRefreshMs },
  },
}

const cursorSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['lastPushAt'],
  properties: { lastPushAt: { type: 'string', format: 'date-time' } },
}

// ---------------------------------------------------------------------------
// What the ingest route needs from a connector that accepts pushes. It lives
// here while parking-push is the only such kind.

export interface PushAuth {
  /** Every secret a valid signature may be made with (current first). */
  secrets: string[]
  algorithm: PushAlgorithm
  replayWindowMs: number
}

export interface PushMapOptions {
  timezone: string
  now: number
}

export type PushItem =
  | { ok: true; event: EventName; draft: Draft<EventName> }
  | { ok: false; event: EventName | null; code: string; reason: string; raw: string }

export interface PushReceiver<Config> {
  auth(config: Config): PushAuth
  /**
   * One result per record of an already authenticated body, in order. Throws
   * CITYSYNC_ERR_INGEST_BODY when the body as a whole is unusable, and
   * CITYSYNC_ERR_INGEST_TOO_LARGE above the record limit.
   */
  items(body: unknown, config: Config, options: PushMapOptions): PushItem[]
}

export interface PushConnector<Config, Cursor> extends Connector<Config, Cursor> {
  readonly push: PushReceiver<Config>
}

export function isPushConnector(connector: Connector<unknown, unknown> | undefined): connector is PushConnector<unknown, unknown> {
  const push = (connector as { push?: Partial<PushReceiver<unknown>> } | undefined)?.push
  return typeof push?.auth === 'function' && typeof push.items === 'function'
}

// ---------------------------------------------------------------------------

const TYPE_INFO: Record<PushItemType, { event: EventName; label: string }> = {
  in: { event: 'ParkingPassage', label: 'entry' },
  out: { event: 'ParkingPassage', label: 'exit' },
  space: { event: 'ParkingOccupancy', label: 'space' },
  park: { event: 'ParkingLot', label: 'lot' },
}

function isPushItemType(value: unknown): value is PushItemType {
  return typeof value === 'string' && (PUSH_ITEM_TYPES as readonly string[]).includes(value)
}

function rawOf(item: unknown): string {
  const text = redactPlates(JSON.stringify(item) ?? 'null')
  return text.length <= MAX_RAW_CHARS ? text : text.slice(0, MAX_RAW_CHARS)
}

function parkCodeOf(item: unknown): string | null {
  const code = (item as { parkCode?: unknown } | null)?.parkCode
  return typeof code === 'string' && code.trim() !== '' ? code.trim() : null
}

/** Pure: authenticated body → one result per record. */
export function mapPushBatch(body: unknown, config: ParkingPushConfig, options: PushMapOptions): PushItem[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new CitysyncError('CITYSYNC_ERR_INGEST_BODY', ['expected an object {"records": [...]}'])
  }
  const records = (body as { records?: unknown }).records
  if (!Array.isArray(records)) throw new CitysyncError('CITYSYNC_ERR_INGEST_BODY', ['records must be an array'])
  if (records.length === 0) throw new CitysyncError('CITYSYNC_ERR_INGEST_BODY', ['records is empty'])
  const maxItems = Math.min(config.maxItems ?? PUSH_DEFAULTS.maxItems, MAX_PUSH_ITEMS)
  if (records.length > maxItems) {
    throw new CitysyncError('CITYSYNC_ERR_INGEST_TOO_LARGE', [`${records.length} records, at most ${maxItems} per push`])
  }

  // Without a configured list, every car park the vendor names is its own:
  // there is no /parks call to learn them from.
  const allowed = config.lots === undefined ? null : new Set(config.lots)
  const known = allowed ?? new Set(records.map(parkCodeOf).filter((c): c is string => c !== null))
  const ctx: MapContext = {
    timezone: options.timezone,
    now: options.now,
    futureToleranceMs: config.futureToleranceMs ?? PUSH_DEFAULTS.futureToleranceMs,
    knownLots: known,
  }
  const lotsRefreshMs = config.lotsRefreshMs ?? PUSH_DEFAULTS.lotsRefreshMs
  const lotTime = Math.floor(options.now / lotsRefreshMs) * lotsRefreshMs

  return records.map((raw, index): PushItem => {
    const type = (raw as { type?: unknown } | null)?.type
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      return { ok: false, event: null, code: 'wrong_type', reason: `record ${index}: must be an object`, raw: rawOf(raw) }
    }
    if (!isPushItemType(type)) {
      const reason = type === undefined ? 'missing field type' : `type must be one of ${PUSH_ITEM_TYPES.join(', ')}`
      return { ok: false, event: null, code: type === undefined ? 'missing_field' : 'invalid_value', reason: `record ${index}: ${reason}`, raw: rawOf(raw) }
    }
    const { event, label } = TYPE_INFO[type]
    const seq = itemSeq(raw)
    const fail = (fault: ItemFault): PushItem => ({
      ok: false,
      event,
      code: fault.code,
      reason: `record ${index} (${label}${seq === null ? '' : ` seq ${seq}`}): ${fault.reason}`,
      raw: rawOf(raw),
    })
    if (type === 'park') {
      const code = parkCodeOf(raw)
      if (allowed !== null && code !== null && !allowed.has(code)) {
        return fail({ code: 'unknown_lot', field: 'parkCode', reason: `parkCode ${JSON.stringify(code)} is not among the lots of this source` })
      }
      const mapped = mapLot(raw, lotTime)
      return mapped.ok ? { ok: true, event, draft: mapped.draft } : fail(mapped.fault)
    }
    if (type === 'space') {
      const mapped = mapOccupancy(raw, ctx)
      return mapped.ok ? { ok: true, event, draft: mapped.draft } : fail(mapped.fault)
    }
    const mapped = mapPassage(raw, type === 'in' ? 'entry' : 'exit', ctx)
    return mapped.ok ? { ok: true, event, draft: mapped.draft } : fail(mapped.fault)
  })
}

function pushAuth(config: ParkingPushConfig): PushAuth {
  return {
    secrets: config.previousSecret === undefined ? [config.secret] : [config.secret, config.previousSecret],
    algorithm: config.algorithm ?? PUSH_DEFAULTS.algorithm,
    replayWindowMs: (config.replayWindowSeconds ?? PUSH_DEFAULTS.replayWindowSeconds) * 1000,
  }
}

const NOTHING_TO_READ: AsyncIterable<SourceMessage<ParkingPushCursor>> = {
  [Symbol.asyncIterator]: () => ({ next: () => Promise.resolve({ done: true, value: undefined }) }),
}

export const parkingPushConnector: PushConnector<ParkingPushConfig, ParkingPushCursor> & { readonly cursorSchema: JsonSchema } = {
  kind: 'parking-push',
  title: 'Car parks that push signed batches (停车场平台推送)',
  configSchema,
  cursorSchema,

  check(config: ParkingPushConfig, ctx: Ctx): Promise<CheckResult> {
    const auth = pushAuth(config)
    const lots = config.lots ?? null
    return Promise.resolve({
      ok: true,
      message:
        `accepts signed pushes at POST /api/v1/ingest/${ctx.sourceId} (${auth.algorithm}, replay window ${auth.replayWindowMs / 1000} s, ` +
        `${lots === null ? 'any car park' : `${lots.length} car park${lots.length === 1 ? '' : 's'}`})`,
      details: { algorithm: auth.algorithm, replayWindowSeconds: auth.replayWindowMs / 1000, lots, secrets: auth.secrets.length },
    })
  },

  // Pushed records never pass through the runner: it only keeps the source's run state and heartbeat.
  read: () => NOTHING_TO_READ,

  push: {
    auth: pushAuth,
    items: mapPushBatch,
  },
}
