// Where the integration tests find the vendor databases that DB-pull
// connectors read: MariaDB (MARIADB_URL, default root without a password on
// 127.0.0.1:3306, database test) and PostgreSQL (DATABASE_URL or the test
// database). Test support only.

import { POSTGRES_URL, requireService, tcpReachable } from '../../infra/test/services.ts'
import { type DbConnectionConfig } from './db-pull.ts'

export const MARIADB_URL = process.env.MARIADB_URL ?? 'mysql://root@127.0.0.1:3306/test'

function fromUrl(dialect: DbConnectionConfig['dialect'], text: string, defaultPort: number): DbConnectionConfig {
  const u = new URL(text)
  return {
    dialect,
    host: u.hostname,
    port: Number(u.port || defaultPort),
    database: u.pathname.slice(1),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
  }
}

export const VENDOR_MYSQL = fromUrl('mysql', MARIADB_URL, 3306)
export const VENDOR_POSTGRES = fromUrl('postgres', POSTGRES_URL, 5432)

/** Whether each vendor database is there; outside CI a missing one skips loudly, in CI it fails. */
export async function vendorDbsAvailable(): Promise<{ mysql: boolean; postgres: boolean }> {
  const [m, p] = await Promise.all([tcpReachable(VENDOR_MYSQL.host, VENDOR_MYSQL.port!), tcpReachable(VENDOR_POSTGRES.host, VENDOR_POSTGRES.port!)])
  return {
    mysql: requireService('MariaDB', m, `${VENDOR_MYSQL.host}:${VENDOR_MYSQL.port} (MARIADB_URL)`),
    postgres: requireService('PostgreSQL', p, POSTGRES_URL),
  }
}
