// HTTP calls to the vendor open API. I/O only: no mapping, no cursor logic.
//
// Envelope contract: { code: number, msg: string, data: ... }, code 0 = success.
// Errors that concern a whole call throw CitysyncError; a page body that is not
// JSON is returned as `malformed` (with its text) so the caller can isolate it.

import { type Ctx } from '../sdk/connector.ts'
import { CitysyncError, errorMessage, isCitysyncError } from '../../lib/errors.ts'
import { jsonErrorText } from '../../lib/plate-redaction.ts'

export type ApiStream = 'in' | 'out' | 'space'

export type PageResult =
  | { kind: 'page'; list: unknown[]; hasMore: boolean; raw: string }
  | { kind: 'malformed'; raw: string; error: string }

export interface ParkingApiClient {
  /** GET /openapi/v1/parks: the raw park items. */
  parks(): Promise<unknown[]>
  /** GET /openapi/v1/records (in, out) or /openapi/v1/space, items after `afterSeq`. */
  page(stream: ApiStream, afterSeq: number, limit: number): Promise<PageResult>
}

export interface ClientOptions {
  baseUrl: string
  appKey?: string
  /** Per-call timeout; the runtime's default applies when absent. */
  timeoutMs?: number
}

/** Attached as `cause` to CITYSYNC_ERR_CONNECTOR_HTTP so callers can see what upstream said. */
export interface UpstreamStatus {
  status: number | null
  vendorCode: number | null
}

type Envelope = { code: number; msg: string; data: unknown }

export function createClient(options: ClientOptions, ctx: Pick<Ctx, 'fetch' | 'signal'>): ParkingApiClient {
  const base = options.baseUrl.replace(/\/+$/, '')
  const headers: Record<string, string> = { accept: 'application/json' }
  if (options.appKey !== undefined && options.appKey !== '') headers['x-app-key'] = options.appKey

  async function get(path: string, query: Record<string, string | number>): Promise<string> {
    const url = new URL(base + path)
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, String(v))
    const what = `${path}${url.search}`
    let res: Response
    let text: string
    try {
      res = await ctx.fetch(url, { headers, ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }) })
      text = await res.text()
    } catch (err) {
      // Timeouts arrive as CitysyncError from the runtime; aborts pass through untouched.
      if (isCitysyncError(err) || ctx.signal.aborted) throw err
      throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_HTTP', [`no response to ${what}: ${errorMessage(err)}`], {
        cause: err,
      })
    }
    if (!res.ok) {
      const env = tryEnvelope(text)
      const detail = env !== null && env.msg !== '' ? ` (${env.msg})` : ''
      throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_HTTP', [`HTTP ${res.status}${detail} to ${what}`], {
        cause: { status: res.status, vendorCode: env?.code ?? null } satisfies UpstreamStatus,
      })
    }
    return text
  }

  function vendorError(env: Envelope, what: string): CitysyncError {
    return new CitysyncError('CITYSYNC_ERR_CONNECTOR_HTTP', [`code ${env.code} (${env.msg}) to ${what}`], {
      cause: { status: 200, vendorCode: env.code } satisfies UpstreamStatus,
    })
  }

  return {
    async parks() {
      const path = '/openapi/v1/parks'
      const text = await get(path, {})
      const env = parseEnvelope(text, path)
      if (env === null) throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${path} answered with a body that is not JSON`])
      if (env.code !== 0) throw vendorError(env, path)
      if (!Array.isArray(env.data)) throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${path}: data is not a list`])
      return env.data as unknown[]
    },

    async page(stream, afterSeq, limit) {
      const path = stream === 'space' ? '/openapi/v1/space' : '/openapi/v1/records'
      const query: Record<string, string | number> = stream === 'space' ? { afterSeq, limit } : { type: stream, afterSeq, limit }
      const text = await get(path, query)
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch (err) {
        // Without V8's excerpt of the page: it may hold part of a plate.
        return { kind: 'malformed', raw: text, error: jsonErrorText(err) }
      }
      const env = asEnvelope(json, path)
      if (env.code !== 0) throw vendorError(env, path)
      const data = env.data
      if (typeof data !== 'object' || data === null || !Array.isArray((data as { list?: unknown }).list)) {
        throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${path}: data.list is not a list`])
      }
      const { list, hasMore } = data as { list: unknown[]; hasMore?: unknown }
      if (typeof hasMore !== 'boolean') throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${path}: data.hasMore is not a boolean`])
      return { kind: 'page', list, hasMore, raw: text }
    },
  }
}

function tryEnvelope(text: string): Envelope | null {
  try {
    const json: unknown = JSON.parse(text)
    if (typeof json === 'object' && json !== null && typeof (json as { code?: unknown }).code === 'number') {
      const msg = (json as { msg?: unknown }).msg
      return { code: (json as { code: number }).code, msg: typeof msg === 'string' ? msg : '', data: (json as { data?: unknown }).data }
    }
  } catch {
    // not JSON: no detail to add
  }
  return null
}

function parseEnvelope(text: string, path: string): Envelope | null {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return null
  }
  return asEnvelope(json, path)
}

function asEnvelope(json: unknown, path: string): Envelope {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${path}: body is not an envelope object`])
  }
  const { code, msg, data } = json as { code?: unknown; msg?: unknown; data?: unknown }
  if (typeof code !== 'number') throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${path}: envelope has no numeric code`])
  return { code, msg: typeof msg === 'string' ? msg : '', data }
}
