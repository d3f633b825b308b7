import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import { CitysyncError } from '../errors.ts'

// Password hashes: scrypt, stored as one self-describing string so the cost
// can be raised later without losing older hashes:
//
//   $scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt, base64 unpadded>$<key, base64 unpadded>
//
// Salt 16 random bytes, key 32 bytes.

export interface ScryptParams {
  /** log2 of the CPU/memory cost N. */
  ln: number
  r: number
  p: number
}

/** N = 2^15, r = 8: 32 MiB and about 0.1 s per hash on a server core. */
export const DEFAULT_SCRYPT: ScryptParams = { ln: 15, r: 8, p: 1 }

const SALT_BYTES = 16
const KEY_BYTES = 32
const FORMAT = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/

export const PASSWORD_MIN_CHARS = 10
export const PASSWORD_MAX_CHARS = 256

function derive(password: string, salt: Buffer, params: ScryptParams, keyBytes: number): Promise<Buffer> {
  const N = 2 ** params.ln
  // scrypt needs 128·N·r bytes; node refuses above maxmem (32 MiB by default).
  const maxmem = 128 * N * params.r * 2
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFKC'), salt, keyBytes, { N, r: params.r, p: params.p, maxmem }, (err, key) => (err ? reject(err) : resolve(key)))
  })
}

function b64(buf: Buffer): string {
  return buf.toString('base64').replace(/=+$/, '')
}

export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const key = await derive(password, salt, params, KEY_BYTES)
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${b64(salt)}$${b64(key)}`
}

export function parseHash(hash: string): { params: ScryptParams; salt: Buffer; key: Buffer } | undefined {
  const m = FORMAT.exec(hash)
  if (m === null) return undefined
  const params = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) }
  if (params.ln < 1 || params.ln > 22 || params.r < 1 || params.p < 1) return undefined
  return { params, salt: Buffer.from(m[4]!, 'base64'), key: Buffer.from(m[5]!, 'base64') }
}

/** False for a wrong password and for a hash this code cannot read. Takes the same time wherever the keys differ. */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const parsed = parseHash(hash)
  if (parsed === undefined || parsed.key.length === 0) return false
  const key = await derive(password, parsed.salt, parsed.params, parsed.key.length)
  return timingSafeEqual(key, parsed.key)
}

/** True when the hash was made with a lower cost than `params` (rehash it at the next login). */
export function needsRehash(hash: string, params: ScryptParams = DEFAULT_SCRYPT): boolean {
  const parsed = parseHash(hash)
  return parsed === undefined || parsed.params.ln < params.ln || parsed.params.r < params.r || parsed.params.p < params.p
}

// Verified against when the username is unknown, so that a wrong username
// takes as long as a wrong password.
let dummy: Promise<string> | undefined
export async function burnPasswordCheck(password: string): Promise<false> {
  dummy ??= hashPassword('citysync: no such user, the check only takes the time')
  await verifyPassword(password, await dummy)
  return false
}

/** Why a password is refused, or undefined when it passes the policy. */
export function passwordProblem(password: string, username?: string): string | undefined {
  const chars = [...password].length
  if (chars < PASSWORD_MIN_CHARS) return `at least ${PASSWORD_MIN_CHARS} characters`
  if (chars > PASSWORD_MAX_CHARS) return `at most ${PASSWORD_MAX_CHARS} characters`
  if (password.trim() === '') return 'not only spaces'
  if (new Set(password).size < 4) return 'at least 4 different characters'
  if (username !== undefined && username.length >= 3 && password.toLowerCase().includes(username.toLowerCase())) return 'must not contain the username'
  return undefined
}

export function checkPasswordPolicy(password: string, username?: string): void {
  const problem = passwordProblem(password, username)
  if (problem !== undefined) throw new CitysyncError('CITYSYNC_ERR_AUTH_PASSWORD_POLICY', [problem])
}
