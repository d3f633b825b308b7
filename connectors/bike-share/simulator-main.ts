// Runs the bike-share operator simulator for manual use:
//   tsx connectors/bike-share/simulator-main.ts --port 4200 --stations 8 --fleet 60 --quirks-every 7
// Outages on command while it runs:
//   curl -X POST 'http://127.0.0.1:4200/_sim/outage?on=1&feeds=station_status'   (no feeds: everything)
//   curl -X POST 'http://127.0.0.1:4200/_sim/outage?on=0'

import { parseArgs } from 'node:util'
import { BikeShareSimulator } from './simulator.ts'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '4200' },
    host: { type: 'string', default: '127.0.0.1' },
    seed: { type: 'string', default: '1' },
    stations: { type: 'string', default: '8' },
    fleet: { type: 'string', default: '60' },
    'period-s': { type: 'string', default: '60' },
    timezone: { type: 'string', default: 'Asia/Shanghai' },
    'history-min': { type: 'string', default: '30' },
    'quirks-every': { type: 'string', default: '0' },
    'late-trip-rate': { type: 'string', default: '0.05' },
    'bad-trip-rate': { type: 'string', default: '0' },
    'duplicate-trip-rate': { type: 'string', default: '0' },
    'app-key': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
})

if (values.help) {
  process.stdout.write(
    'usage: simulator-main.ts [--port 4200] [--host 127.0.0.1] [--seed 1] [--stations 8] [--fleet 60] [--period-s 60]\n' +
      '  [--timezone Asia/Shanghai] [--history-min 30] [--quirks-every N] [--late-trip-rate 0.05]\n' +
      '  [--bad-trip-rate 0] [--duplicate-trip-rate 0] [--app-key KEY]\n',
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

const sim = new BikeShareSimulator({
  seed: num('seed', values.seed),
  stations: num('stations', values.stations),
  fleet: num('fleet', values.fleet),
  periodS: num('period-s', values['period-s']),
  timezone: values.timezone,
  startAt: Date.now() - (num('history-min', values['history-min']) ?? 0) * 60_000,
  appKey: values['app-key'],
  quirks: {
    every: num('quirks-every', values['quirks-every']),
    lateTripRate: num('late-trip-rate', values['late-trip-rate']),
    badTripRate: num('bad-trip-rate', values['bad-trip-rate']),
    duplicateTripRate: num('duplicate-trip-rate', values['duplicate-trip-rate']),
  },
})

const url = await sim.start(num('port', values.port), values.host)
process.stdout.write(
  `bike-share simulator: ${sim.stations.length > 0 ? sim.stationCount(0) : 0} stations, ${sim.fleetSize} vehicles (seed ${sim.seed})\n` +
    `  GBFS 2.3  ${sim.gbfsUrl('2.3')}\n  GBFS 3.0  ${sim.gbfsUrl('3.0')}\n  trips     ${url}/openapi/v1/bike/orders (times in ${sim.timezone})\n`,
)

const shutdown = (): void => {
  sim.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  )
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
