// One pagination contract for every list route:
//   query    ?limit=N (1..1000) &offset=M (≥ 0)
//   answer   { items: [...], total: <matching items>, next: <offset of the next page> | null }
// `next` is null on the last page. Lists that used to return everything
// default to the maximum, so callers that never asked for a page still get it all.

export const MAX_PAGE = 1000

export interface PageQuery {
  limit: number
  offset: number
}

export interface Page<T> {
  items: T[]
  total: number
  next: number | null
}

/** Querystring properties `limit` and `offset` (with ajv defaults). */
export function pageQuery(defaultLimit = 100): { limit: Record<string, unknown>; offset: Record<string, unknown> } {
  return {
    limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE, default: defaultLimit, description: `items per page (at most ${MAX_PAGE})` },
    offset: { type: 'integer', minimum: 0, default: 0, description: 'items to skip' },
  }
}

/** Response properties `total` and `next`, beside `items`. */
export const PAGE_FIELDS = {
  total: { type: 'integer', description: 'items matching the filters, over all pages' },
  next: { type: ['integer', 'null'], description: 'the offset of the next page; null on the last page' },
} as const

export function nextOffset(q: PageQuery, returned: number, total: number): number | null {
  const end = q.offset + returned
  return returned > 0 && end < total ? end : null
}

/** A page of items the store returned for (limit, offset), with the total it counted. */
export function pageOf<T>(items: T[], total: number, q: PageQuery): Page<T> {
  return { items, total, next: nextOffset(q, items.length, total) }
}

/** A page cut from a list held whole in memory. */
export function slicePage<T>(all: readonly T[], q: PageQuery): Page<T> {
  return pageOf(all.slice(q.offset, q.offset + q.limit), all.length, q)
}
