// Writes one day of realistic county files (every encoding, both delimiters,
// XLSX, with bad rows) into a folder, e.g. a county-files source's drop folder:
//   npx tsx connectors/county-feeds/simulator-main.ts --out ./data/drops/nantong-rudong [--day 2026-11-21]

import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { formatLocal } from '../../lib/local-time.ts'
import { countyDrop, dropTotals } from './simulator.ts'

const { values } = parseArgs({
  options: {
    out: { type: 'string' },
    day: { type: 'string', default: formatLocal(Date.now() - 86_400_000, 'Asia/Shanghai').slice(0, 10) },
    seed: { type: 'string', default: '11' },
  },
})
if (values.out === undefined || !/^\d{4}-\d{2}-\d{2}$/.test(values.day)) {
  process.stderr.write('usage: simulator-main.ts --out DIR [--day YYYY-MM-DD] [--seed N]\n')
  process.exit(2)
}
const files = await countyDrop({ day: values.day, seed: Number(values.seed) })
mkdirSync(values.out, { recursive: true })
for (const f of files) writeFileSync(join(values.out, f.name), f.bytes)
const t = dropTotals(files)
process.stdout.write(
  `${files.length} files for ${values.day} in ${values.out}: ${t.lots} car parks, ${t.occupancy} reports, ${t.entries} entries, ${t.exits} exits, ${t.bad} bad rows\n`,
)
