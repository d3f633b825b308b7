import { type Logger } from 'pino'
import { type Clock } from '../../lib/clock.ts'
import { type Draft, type EventName } from '../../schemas/events.ts'

/** A JSON Schema (draft 2020-12 subset understood by ajv). */
export type JsonSchema = Record<string, unknown>

/** What a connector may use from the runtime while it runs. */
export interface Ctx {
  readonly sourceId: string
  /** IANA zone in which the source writes naive local times. */
  readonly timezone: string
  readonly clock: Clock
  readonly log: Logger
  /** Aborted when the source is paused, removed or the process stops. */
  readonly signal: AbortSignal
  /** fetch with the runtime's timeout and abort signal applied. */
  fetch(url: string | URL, init?: RequestInit & { timeoutMs?: number }): Promise<Response>
}

export interface CheckResult {
  ok: boolean
  message: string
  /** Whatever the check learned: lots found, API version, row counts. */
  details?: Record<string, unknown>
}

/** One canonical record in draft form: the runtime completes and publishes it. */
export interface RecordMessage {
  type: 'record'
  event: EventName
  draft: Draft<EventName>
}

/**
 * The position up to which everything yielded before it is complete. The
 * runtime persists it only after all those records have landed.
 */
export interface CheckpointMessage<Cursor> {
  type: 'checkpoint'
  cursor: Cursor
}

/** An upstream item that could not be turned into a record; goes to the dead-letter store. */
export interface ItemErrorMessage {
  type: 'itemError'
  event: EventName | null
  code: string
  reason: string
  raw: string
}

/** Progress or health the connector wants operators to see. */
export interface StatusMessage {
  type: 'status'
  level: 'info' | 'warn'
  message: string
}

export type SourceMessage<Cursor> = RecordMessage | CheckpointMessage<Cursor> | ItemErrorMessage | StatusMessage

export interface Connector<Config, Cursor> {
  readonly kind: string
  readonly title: string
  /** Validated once, when a source is added or changed. */
  readonly configSchema: JsonSchema
  check(config: Config, ctx: Ctx): Promise<CheckResult>
  /**
   * Reads everything new since `cursor` and returns when caught up; the
   * runtime calls it again on the source's schedule. Errors that concern one
   * item are yielded as itemError; errors that stop the read are thrown (the
   * runtime retries with backoff).
   */
  read(config: Config, cursor: Cursor | undefined, ctx: Ctx): AsyncIterable<SourceMessage<Cursor>>
}

export function record<N extends EventName>(event: N, draft: Draft<N>): RecordMessage {
  return { type: 'record', event, draft: draft }
}

export function checkpoint<Cursor>(cursor: Cursor): CheckpointMessage<Cursor> {
  return { type: 'checkpoint', cursor }
}

export function itemError(event: EventName | null, code: string, reason: string, raw: unknown): ItemErrorMessage {
  return { type: 'itemError', event, code, reason, raw: typeof raw === 'string' ? raw : JSON.stringify(raw) }
}
