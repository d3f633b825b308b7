// HTTP calls to the ticketing system's open API. I/O only: no mapping, no cursor logic.
//
// Envelope contract: { code: string, message: string, data: ... }, code "0000" = success.
// Feeds answer data: { records: [...], hasMore: boolean }. Anything that makes a
// whole call unusable (no answer, HTTP error, vendor error code, a body that is
// not the envelope) throws CitysyncError: the runtime retries the read.

import { CitysyncError, errorMessage, isCitysyncError } from '../../lib/errors.ts'
import { type Ctx } from '../sdk/connector.ts'
import { type Feed } from './map.ts'

export const API_PREFIX = '/ferry/open/v1'
/** Most ticket numbers /tickets/query takes in one call. */
export const LOOKUP_BATCH = 100

export interface FeedPage {
  records: unknown[]
  hasMore: boolean
}

export interface FeedRequest {
  /** Naive local `YYYY-MM-DD HH:mm:ss`; null reads from the beginning. */
  updatedAfter: string | null
  afterId: string
  pageSize: number
}

export interface FerryApiClient {
  /** GET /terminals: the raw terminal items. */
  terminals(): Promise<unknown[]>
  /** GET /sailings, /tickets or /checkins after a position. */
  page(feed: Feed, request: FeedRequest): Promise<FeedPage>
  /** GET /tickets/query: the rows of those tickets that exist (at most LOOKUP_BATCH asked). */
  lookupTickets(ticketNos: readonly string[]): Promise<unknown[]>
}

export interface ClientOptions {
  baseUrl: string
  apiKey?: string | undefined
}

/** Attached as `cause` to CITYSYNC_ERR_CONNECTOR_HTTP so callers can see what upstream said. */
export interface UpstreamStatus {
  status: number | null
  vendorCode: string | null
}

interface Envelope {
  code: string
  message: string
  data: unknown
}

export function createClient(options: ClientOptions, ctx: Pick<Ctx, 'fetch' | 'signal'>): FerryApiClient {
  const base = options.baseUrl.replace(/\/+$/, '') + API_PREFIX
  const headers: Record<string, string> = { accept: 'application/json' }
  if (options.apiKey !== undefined && options.apiKey !== '') headers['x-api-key'] = options.apiKey

  async function call(path: string, query: Record<string, string | number | null>): Promise<unknown> {
    const url = new URL(base + path)
    for (const [k, v] of Object.entries(query)) if (v !== null) url.searchParams.set(k, String(v))
    const what = `${path}${url.search}`
    let res: Response
    let text: string
    try {
      res = await ctx.fetch(url, { headers })
      text = await res.text()
    } catch (err) {
      // Timeouts arrive as CitysyncError from the runtime; aborts pass through untouched.
      if (isCitysyncError(err) || ctx.signal.aborted) throw err
      throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_HTTP', [`no response to ${what}: ${errorMessage(err)}`], { cause: err })
    }
    const env = parseEnvelope(text)
    if (!res.ok) {
      const detail = env !== null && env.message !== '' ? ` (${env.message})` : ''
      throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_HTTP', [`HTTP ${res.status}${detail} to ${what}`], {
        cause: { status: res.status, vendorCode: env?.code ?? null } satisfies UpstreamStatus,
      })
    }
    if (env === null) throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${path} answered with a body that is not the {code, message, data} envelope`])
    if (env.code !== '0000') {
      throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_HTTP', [`code ${env.code} (${env.message}) to ${what}`], {
        cause: { status: res.status, vendorCode: env.code } satisfies UpstreamStatus,
      })
    }
    return env.data
  }

  return {
    async terminals() {
      const data = await call('/terminals', {})
      if (!Array.isArray(data)) throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', ['/terminals: data is not a list'])
      return data as unknown[]
    },

    async page(feed, request) {
      const path = `/${feed}`
      const data = await call(path, { updatedAfter: request.updatedAfter, afterId: request.afterId === '' ? null : request.afterId, pageSize: request.pageSize })
      if (typeof data !== 'object' || data === null || !Array.isArray((data as { records?: unknown }).records)) {
        throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${path}: data.records is not a list`])
      }
      const { records, hasMore } = data as { records: unknown[]; hasMore?: unknown }
      if (typeof hasMore !== 'boolean') throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${path}: data.hasMore is not a boolean`])
      return { records, hasMore }
    },

    async lookupTickets(ticketNos) {
      if (ticketNos.length === 0) return []
      if (ticketNos.length > LOOKUP_BATCH) throw new RangeError(`at most ${LOOKUP_BATCH} tickets per lookup`)
      const data = await call('/tickets/query', { ticketNos: ticketNos.join(',') })
      if (!Array.isArray(data)) throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', ['/tickets/query: data is not a list'])
      return data as unknown[]
    },
  }
}

function parseEnvelope(text: string): Envelope | null {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return null
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return null
  const { code, message, data } = json as { code?: unknown; message?: unknown; data?: unknown }
  if (typeof code !== 'string') return null
  return { code, message: typeof message === 'string' ? message : '', data }
}
