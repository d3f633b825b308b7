// ClickHouse SQL text for backups and restores: pure, so it is tested without an engine.

import { sqlIdent, sqlString } from '../../pipelines/warehouse/sql.ts'
import { type WarehouseColumn } from './manifest.ts'

export { sqlIdent, sqlString }

/** Row hash expression: every column cast to its backed-up type, so a restore into a newer schema hashes the same. */
export function rowHashExpr(columns: readonly WarehouseColumn[]): string {
  return `toString(sum(cityHash64(tuple(${columns.map((c) => `CAST(${sqlIdent(c.name)}, ${sqlString(c.type)})`).join(', ')}))))`
}

function structureOf(columns: readonly WarehouseColumn[]): string {
  return columns.map((c) => `${sqlIdent(c.name)} ${c.type}`).join(', ')
}

export function nativeSource(file: string, columns: readonly WarehouseColumn[]): string {
  return `file(${sqlString(file)}, 'Native', ${sqlString(structureOf(columns))})`
}
