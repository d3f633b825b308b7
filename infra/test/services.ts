import { Socket } from 'node:net'

/** Whether the integration suite runs in CI, where a missing service is a failure, not a skip. */
export const IN_CI = process.env.CI === 'true' || process.env.CI === '1'

export const POSTGRES_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

export function tcpReachable(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket()
    const done = (ok: boolean): void => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(timeoutMs)
    s.once('connect', () => done(true))
    s.once('timeout', () => done(false))
    s.once('error', () => done(false))
    s.connect(port, host)
  })
}

export async function postgresReachable(): Promise<boolean> {
  const u = new URL(POSTGRES_URL)
  return tcpReachable(u.hostname, Number(u.port || 5432))
}

/**
 * Outside CI a missing service skips the tests that need it, loudly; in CI it
 * fails them. Returns true when the tests should run.
 */
export function requireService(name: string, available: boolean, how: string): boolean {
  if (available) return true
  const msg = `${name} is not reachable (${how})`
  if (IN_CI) throw new Error(`${msg}: integration tests must not skip in CI`)
  console.warn(`\n*** SKIPPING ${name} integration tests: ${msg} ***\n`)
  return false
}

/** The broker the Kafka tests use: KAFKA_BROKERS, else the one `npm run kafka:up` starts. */
export const KAFKA_BROKERS = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',').map((s) => s.trim())

export async function kafkaReachable(): Promise<boolean> {
  const [host, port] = KAFKA_BROKERS[0]!.split(':')
  return tcpReachable(host ?? '127.0.0.1', Number(port ?? 9092))
}
