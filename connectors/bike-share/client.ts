// HTTP calls of the bike-share connector. I/O only: no mapping, no cursor logic.
//
// GBFS files are plain JSON documents. The operator trips API is wrapped as
// { code, msg, data }, code 0 = success:
//   GET <baseUrl>/openapi/v1/bike/orders?cursor=<opaque>&limit=N   (X-App-Key header)
//   data: { list: Order[], nextCursor: string, hasMore: boolean }
// `nextCursor` is the position after the last order returned, in the order the
// operator's platform received them (so trips uploaded late come after
// earlier-received ones, whatever their own times); without `cursor` the API
// starts from its oldest order.
//
// Errors that concern a whole call throw CitysyncError.

import { CitysyncError, errorMessage, isCitysyncError } from '../../lib/errors.ts'
import { type Ctx } from '../sdk/connector.ts'

export interface BikeShareClient {
  /** GETs a GBFS file and parses it. */
  gbfsFile(url: string, feed: string): Promise<unknown>
  /** One page of the operator trips API. */
  tripsPage(cursor: string | null, limit: number): Promise<TripsPage>
}

export interface TripsPage {
  list: unknown[]
  nextCursor: string
  hasMore: boolean
}

export interface ClientOptions {
  /** Extra headers for GBFS requests (e.g. an operator's API token). */
  headers?: Record<string, string>
  trips?: { baseUrl: string; appKey?: string }
}

/** Attached as `cause` to CITYSYNC_ERR_CONNECTOR_HTTP so callers can see what upstream said. */
export interface UpstreamStatus {
  status: number | null
  vendorCode: number | null
}

export const TRIPS_PATH = '/openapi/v1/bike/orders'

export function createClient(options: ClientOptions, ctx: Pick<Ctx, 'fetch' | 'signal'>): BikeShareClient {
  async function get(url: URL, headers: Record<string, string>, what: string): Promise<string> {
    let res: Response
    let text: string
    try {
      res = await ctx.fetch(url, { headers: { accept: 'application/json', ...headers } })
      text = await res.text()
    } catch (err) {
      // Timeouts arrive as CitysyncError from the runtime; aborts pass through untouched.
      if (isCitysyncError(err) || ctx.signal.aborted) throw err
      throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_HTTP', [`no response to ${what}: ${errorMessage(err)}`], { cause: err })
    }
    if (!res.ok) {
      throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_HTTP', [`HTTP ${res.status} to ${what}`], {
        cause: { status: res.status, vendorCode: null } satisfies UpstreamStatus,
      })
    }
    return text
  }

  function parse(text: string, what: string): unknown {
    try {
      return JSON.parse(text) as unknown
    } catch (err) {
      throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${what} is not JSON: ${errorMessage(err)}`])
    }
  }

  return {
    async gbfsFile(url, feed) {
      const u = new URL(url)
      return parse(await get(u, options.headers ?? {}, `${feed} (${u.href})`), feed)
    },

    async tripsPage(cursor, limit) {
      const trips = options.trips
      if (trips === undefined) throw new CitysyncError('CITYSYNC_ERR_CONFIG_MISSING', ['trips.baseUrl'])
      const url = new URL(trips.baseUrl.replace(/\/+$/, '') + TRIPS_PATH)
      if (cursor !== null) url.searchParams.set('cursor', cursor)
      url.searchParams.set('limit', String(limit))
      const what = `${TRIPS_PATH}${url.search}`
      const headers: Record<string, string> = trips.appKey !== undefined && trips.appKey !== '' ? { 'x-app-key': trips.appKey } : {}
      const json = parse(await get(url, headers, what), what)
      if (typeof json !== 'object' || json === null || Array.isArray(json)) {
        throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${what}: body is not an envelope object`])
      }
      const { code, msg, data } = json as { code?: unknown; msg?: unknown; data?: unknown }
      if (typeof code !== 'number') throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${what}: envelope has no numeric code`])
      if (code !== 0) {
        throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_HTTP', [`code ${code} (${typeof msg === 'string' ? msg : ''}) to ${what}`], {
          cause: { status: 200, vendorCode: code } satisfies UpstreamStatus,
        })
      }
      const d = data as { list?: unknown; nextCursor?: unknown; hasMore?: unknown } | null
      if (typeof d !== 'object' || d === null || !Array.isArray(d.list)) {
        throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${what}: data.list is not a list`])
      }
      if (typeof d.nextCursor !== 'string' || d.nextCursor === '') {
        throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${what}: data.nextCursor is not a non-empty string`])
      }
      if (typeof d.hasMore !== 'boolean') throw new CitysyncError('CITYSYNC_ERR_CONNECTOR_PAYLOAD', [`${what}: data.hasMore is not a boolean`])
      return { list: d.list as unknown[], nextCursor: d.nextCursor, hasMore: d.hasMore }
    },
  }
}
