// After `tsc`, copies what the compiled code reads at run time from beside
// its sources: the Avro schemas and their catalogue, the ClickHouse
// migrations, and the console's static files.
import { cpSync } from 'node:fs'

const root = new URL('../../', import.meta.url)
for (const [from, filter] of [
  ['schemas/', (p) => !p.endsWith('.ts')],
  ['infra/clickhouse/migrations/', () => true],
  ['api/console/', () => true],
]) {
  cpSync(new URL(from, root), new URL(`dist/${from}`, root), { recursive: true, filter })
}
