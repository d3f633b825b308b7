import { type Metadata } from '../../lib/metadata/db.ts'
import { type QueryParams } from '../../pipelines/warehouse/warehouse.ts'

// Which lots (or operators, terminals) a query covers. Events do not carry a
// district or an operator; sources do (metadata store), and a car park's
// description may name its own district (parking_lot.district). So:
// - district D: the lots whose latest description says D, plus the lots whose
//   description names no district (null or empty) and whose source's district is D;
// - operator O: the lots (stations, sailings) of the sources whose operator is O;
// - source S: that source's.
// The source lists come from the metadata store and reach the SQL as Array
// parameters.

export interface ScopeFilter {
  lot?: string | undefined
  source?: string | undefined
  district?: string | undefined
  operator?: string | undefined
}

export interface ResolvedScope {
  lot?: string
  /** Sources allowed (operator and source filters together); undefined: any. */
  sources?: string[]
  district?: string
  /** Sources whose own district is the one asked for. */
  districtSources?: string[]
}

export async function resolveScope(metadata: Metadata, f: ScopeFilter): Promise<ResolvedScope> {
  const out: ResolvedScope = {}
  if (f.lot !== undefined) out.lot = f.lot
  let sources: string[] | undefined
  if (f.operator !== undefined) sources = (await metadata.sources.list({ operator: f.operator })).map((s) => s.id)
  if (f.source !== undefined) sources = sources === undefined ? [f.source] : sources.filter((id) => id === f.source)
  if (sources !== undefined) out.sources = sources
  if (f.district !== undefined) {
    out.district = f.district
    out.districtSources = (await metadata.sources.list({ district: f.district })).map((s) => s.id)
  }
  return out
}

/** Conditions on (sourceId, lotId) of a parking fact table, and their parameters. */
export function lotConditions(s: ResolvedScope): { conditions: string[]; params: QueryParams } {
  const conditions: string[] = []
  const params: QueryParams = {}
  if (s.lot !== undefined) {
    conditions.push('lotId = {lot:String}')
    params.lot = s.lot
  }
  if (s.sources !== undefined) {
    conditions.push('sourceId IN {sources:Array(String)}')
    params.sources = s.sources
  }
  if (s.district !== undefined) {
    conditions.push(
      `(sourceId, lotId) IN (SELECT sourceId, lotId FROM analytics_parking_lot
         WHERE district = {district:String} OR (ifNull(district, '') = '' AND sourceId IN {districtSources:Array(String)}))`,
    )
    params.district = s.district
    params.districtSources = s.districtSources ?? []
  }
  return { conditions, params }
}
