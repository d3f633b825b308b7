import { resolve } from 'node:path'

/** Process-wide settings, all from the environment (see the README's configuration table). */
export interface RuntimeConfig {
  dataDir: string
  clickhouseUrl: string | undefined
  databaseUrl: string | undefined
  kafkaBrokers: string[] | undefined
  logLevel: string
  port: number
  host: string
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): RuntimeConfig {
  const blank = (v: string | undefined): string | undefined => (v && v.trim() !== '' ? v.trim() : undefined)
  return {
    dataDir: resolve(blank(env.CITYSYNC_DATA_DIR) ?? './data'),
    clickhouseUrl: blank(env.CLICKHOUSE_URL),
    databaseUrl: blank(env.DATABASE_URL),
    kafkaBrokers: blank(env.KAFKA_BROKERS)?.split(',').map((s) => s.trim()),
    logLevel: blank(env.LOG_LEVEL) ?? 'info',
    port: Number(blank(env.PORT) ?? 3000),
    host: blank(env.HOST) ?? '127.0.0.1',
  }
}
