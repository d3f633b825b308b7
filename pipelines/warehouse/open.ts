import { join } from 'node:path'
import { ChdbWarehouse } from './chdb-warehouse.ts'
import { migrateWarehouse } from './migrate.ts'
import { ServerWarehouse } from './server-warehouse.ts'
import { type Warehouse } from './warehouse.ts'

export interface WarehouseOptions {
  /** A ClickHouse server; without it, chDB in process under `<dataDir>/clickhouse`. */
  clickhouseUrl?: string | undefined
  dataDir: string
  migrate?: boolean
}

export async function openWarehouse(opts: WarehouseOptions): Promise<Warehouse> {
  const wh = opts.clickhouseUrl ? new ServerWarehouse(opts.clickhouseUrl) : new ChdbWarehouse(join(opts.dataDir, 'clickhouse'))
  if (opts.migrate !== false) await migrateWarehouse(wh)
  return wh
}
