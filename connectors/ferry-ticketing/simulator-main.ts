// Runs the ferry-terminal ticketing simulator for manual use:
//   tsx connectors/ferry-ticketing/simulator-main.ts --port 4200 --seed 1 --bad-rate 0.02
// Outages on command: send SIGUSR1 to toggle HTTP 503 on every call, SIGUSR2 to
// toggle slow responses (--slow-ms, default 3000 when toggled).

import { parseArgs } from 'node:util'
import { FerrySimulator } from './simulator.ts'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '4200' },
    host: { type: 'string', default: '127.0.0.1' },
    seed: { type: 'string', default: '1' },
    timezone: { type: 'string', default: 'Asia/Shanghai' },
    scale: { type: 'string', default: '1' },
    'history-days': { type: 'string', default: '1' },
    'service-days': { type: 'string' },
    'bad-rate': { type: 'string', default: '0' },
    'api-key': { type: 'string' },
    'slow-ms': { type: 'string', default: '0' },
    'no-quirks': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
})

if (values.help) {
  process.stdout.write(
    'usage: simulator-main.ts [--port 4200] [--host 127.0.0.1] [--seed 1] [--timezone Asia/Shanghai] [--scale 1]\n' +
      '  [--history-days 1] [--service-days N] [--bad-rate 0.02] [--api-key KEY] [--slow-ms 0] [--no-quirks]\n' +
      '  --history-days: service days already past at start (their rows are history the API serves)\n' +
      '  signals: SIGUSR1 toggles an outage (HTTP 503), SIGUSR2 toggles slow responses\n',
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

const slowMs = num('slow-ms', values['slow-ms']) ?? 0
const sim = new FerrySimulator({
  seed: num('seed', values.seed),
  timezone: values.timezone,
  scale: num('scale', values.scale),
  startAt: Date.now() - (num('history-days', values['history-days']) ?? 1) * 86_400_000,
  serviceDays: num('service-days', values['service-days']),
  quirks: !values['no-quirks'],
  apiKey: values['api-key'],
  faults: { badRate: num('bad-rate', values['bad-rate']), slowMs },
})

const url = await sim.start(num('port', values.port), values.host)
const codes = sim.terminals.map((t) => `${t.terminalCode} ${t.terminalName}`).join(', ')
process.stdout.write(`ferry ticketing simulator: ${codes} at ${url}/ferry/open/v1/terminals (seed ${sim.seed}, zone ${sim.timezone})\n`)

let down = false
let slow = slowMs > 0
process.on('SIGUSR1', () => {
  down = !down
  sim.outage(down)
  process.stdout.write(down ? 'outage: every call answers HTTP 503\n' : 'outage over\n')
})
process.on('SIGUSR2', () => {
  slow = !slow
  sim.setSlowMs(slow ? slowMs || 3000 : 0)
  process.stdout.write(slow ? `slow: every answer takes ${slowMs || 3000} ms\n` : 'slow spell over\n')
})

const shutdown = (): void => {
  sim.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  )
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
