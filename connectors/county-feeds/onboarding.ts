// The automatic step of county onboarding: a car park that is 'connecting'
// and whose source has landed good data for it (a passage or an occupancy
// report in ClickHouse, received on or after its connected date) moves to
// 'onboarded', dated the day that first row arrived, by actor 'citysync'.
//
// Why from the warehouse: only rows that landed are good data (rejected rows
// are in dead_letter, not in the event tables), and the warehouse is the one
// place every process sees. It runs whenever the onboarding list is read
// (GET /api/v1/county/onboarding, and so the quarterly list), so the list is
// current whenever someone looks; the move is idempotent and happens once.
// Car parks in any other status are never moved automatically.

import { formatLocal, parseLocal } from '../../lib/local-time.ts'
import { type Metadata } from '../../lib/metadata/db.ts'
import { DEFAULT_TIMEZONE } from '../../lib/source-config.ts'
import { type Warehouse } from '../../pipelines/warehouse/warehouse.ts'

export const PROMOTION_ACTOR = 'citysync'

export interface Promotion {
  lotId: string
  sourceId: string
  firstDataAt: number
  onboardedDate: string
}

export async function promoteOnFirstData(
  metadata: Metadata,
  warehouse: Warehouse,
  opts: { county?: string | undefined; zone?: string } = {},
): Promise<Promotion[]> {
  const zone = opts.zone ?? DEFAULT_TIMEZONE
  const connecting = await metadata.onboarding.list({ county: opts.county, status: 'connecting' })
  const done: Promotion[] = []
  for (const lot of connecting) {
    if (lot.sourceId === null) continue
    const since = lot.connectedDate === null ? 0 : (parseLocal(`${lot.connectedDate} 00:00:00`, zone) ?? 0)
    const [row] = await warehouse.query<{ n: number; first: number }>(
      `SELECT count() AS n, toUnixTimestamp64Milli(min(receivedAt)) AS first FROM (
         SELECT receivedAt FROM parking_passage
         WHERE sourceId = {source:String} AND lotId = {lot:String} AND receivedAt >= fromUnixTimestamp64Milli({since:Int64})
         UNION ALL
         SELECT receivedAt FROM parking_occupancy
         WHERE sourceId = {source:String} AND lotId = {lot:String} AND receivedAt >= fromUnixTimestamp64Milli({since:Int64})
       )`,
      { source: lot.sourceId, lot: lot.lotId, since },
    )
    if (row === undefined || Number(row.n) === 0) continue
    const firstDataAt = Number(row.first)
    const onboardedDate = formatLocal(firstDataAt, zone).slice(0, 10)
    const note = `first good data from source ${lot.sourceId} landed at ${new Date(firstDataAt).toISOString()}`
    if (await metadata.onboarding.promote(lot.lotId, onboardedDate, PROMOTION_ACTOR, note)) {
      done.push({ lotId: lot.lotId, sourceId: lot.sourceId, firstDataAt, onboardedDate })
    }
  }
  return done
}
