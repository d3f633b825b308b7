import { randomBytes } from 'node:crypto'
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type Logger } from 'pino'
import { CitysyncError } from '../errors.ts'
import { type AuthStore } from './store.ts'

// The first admin: `citysync users add NAME --role admin`, or a bootstrap
// token that acts as an admin credential until an enabled admin user exists.
// Distributed processes take it from CITYSYNC_BOOTSTRAP_TOKEN. The embedded
// process (`citysync start`) on a store without users and without that
// variable makes one and leaves it, readable by its owner only, in
// <dataDir>/bootstrap-token.

export const BOOTSTRAP_FILE = 'bootstrap-token'
export const BOOTSTRAP_MIN_CHARS = 24

export function checkBootstrapToken(token: string | undefined): string | undefined {
  if (token === undefined) return undefined
  if ([...token].length < BOOTSTRAP_MIN_CHARS) {
    throw new CitysyncError('CITYSYNC_ERR_CONFIG_INVALID', [`CITYSYNC_BOOTSTRAP_TOKEN must be at least ${BOOTSTRAP_MIN_CHARS} characters`])
  }
  return token
}

export async function embeddedBootstrapToken(o: { dataDir: string; env: NodeJS.ProcessEnv; store: AuthStore; log: Logger }): Promise<string | undefined> {
  const fromEnv = o.env.CITYSYNC_BOOTSTRAP_TOKEN?.trim()
  if (fromEnv !== undefined && fromEnv !== '') return checkBootstrapToken(fromEnv)
  if ((await o.store.countUsers()) > 0) return undefined
  const file = join(o.dataDir, BOOTSTRAP_FILE)
  let token: string | undefined
  try {
    token = (await readFile(file, 'utf8')).trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (token === undefined || token.length < BOOTSTRAP_MIN_CHARS) {
    token = randomBytes(24).toString('base64url')
    await writeFile(file, `${token}\n`, { mode: 0o600 })
    // The umask may have widened it.
    await chmod(file, 0o600)
  }
  o.log.warn(
    { file },
    'no users yet: the bootstrap token in this file is an admin credential (Authorization: Bearer <token>) until an admin user exists; create one with `citysync users add NAME --role admin`',
  )
  return token
}
