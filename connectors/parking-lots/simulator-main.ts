// Runs the car-park platform simulator for manual use:
//   tsx connectors/parking-lots/simulator-main.ts --port 4100 --lots 5 --seed 1 --bad-rate 0.02

import { parseArgs } from 'node:util'
import { ParkingSimulator } from './simulator.ts'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '4100' },
    host: { type: 'string', default: '127.0.0.1' },
    lots: { type: 'string', default: '5' },
    seed: { type: 'string', default: '1' },
    timezone: { type: 'string', default: 'Asia/Shanghai' },
    'events-per-minute': { type: 'string', default: '20' },
    'max-events': { type: 'string' },
    'bad-rate': { type: 'string', default: '0' },
    'app-key': { type: 'string' },
    'slow-ms': { type: 'string', default: '0' },
    'malformed-in': { type: 'string' },
    'malformed-out': { type: 'string' },
    bulk: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
})

if (values.help) {
  process.stdout.write(
    'usage: simulator-main.ts [--port 4100] [--host 127.0.0.1] [--lots 5] [--seed 1] [--timezone Asia/Shanghai]\n' +
      '  [--events-per-minute 20] [--max-events N] [--bad-rate 0.02] [--app-key KEY] [--slow-ms 0]\n' +
      '  [--malformed-in 12,40] [--malformed-out 7] [--bulk N]\n',
  )
  process.exit(0)
}

function num(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const n = Number(text)
  if (!Number.isFinite(n)) {
    process.stderr.write(`--${name} must be a number, got ${text}\n`)
    process.exit(2)
  }
  return n
}

function seqs(text: string | undefined): number[] {
  return text === undefined ? [] : text.split(',').map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0)
}

const sim = new ParkingSimulator({
  seed: num('seed', values.seed),
  lots: num('lots', values.lots),
  timezone: values.timezone,
  eventsPerMinute: num('events-per-minute', values['events-per-minute']),
  maxEvents: num('max-events', values['max-events']),
  appKey: values['app-key'],
  faults: {
    badRate: num('bad-rate', values['bad-rate']),
    slowMs: num('slow-ms', values['slow-ms']),
    malformedSeqs: { in: seqs(values['malformed-in']), out: seqs(values['malformed-out']) },
  },
})

const bulk = num('bulk', values.bulk)
if (bulk !== undefined) {
  const r = sim.generateBulk(bulk)
  const pre = sim.prerender()
  process.stdout.write(`generated ${r.passages} passages and ${r.spaces} space reports in ${Math.round(r.ms)} ms (rendered in ${Math.round(pre.ms)} ms)\n`)
}

const url = await sim.start(num('port', values.port), values.host)
process.stdout.write(`car-park simulator: ${sim.lots.length} lots at ${url}/openapi/v1/parks (seed ${sim.seed}, zone ${sim.timezone})\n`)

const shutdown = (): void => {
  sim.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  )
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
