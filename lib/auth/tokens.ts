import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

// Bearer credentials. Two kinds, told apart by their prefix:
//
//   cst_<id>_<secret>   API token, for machines (scripts, exporters, the CI)
//   css_<id>_<secret>   login session, also carried by the citysync_session cookie
//
// <id> is 16 hex digits, public: it names the credential in listings and the
// audit log. <secret> is 32 random bytes, base64url. Only SHA-256 of the whole
// text is stored, so a copy of the metadata store holds no usable credential;
// a 256-bit random secret needs no slow hash.

export const API_TOKEN_PREFIX = 'cst'
export const SESSION_PREFIX = 'css'
export type CredentialKind = 'api' | 'session'

const SHAPE = /^(cst|css)_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/

export interface IssuedCredential {
  kind: CredentialKind
  id: string
  /** The text handed out once; never stored. */
  token: string
  /** What is stored: hex SHA-256 of `token`. */
  hash: string
}

export interface ParsedCredential {
  kind: CredentialKind
  id: string
  hash: string
}

export function hashCredential(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex')
}

export function issueCredential(kind: CredentialKind): IssuedCredential {
  const id = randomBytes(8).toString('hex')
  const token = `${kind === 'api' ? API_TOKEN_PREFIX : SESSION_PREFIX}_${id}_${randomBytes(32).toString('base64url')}`
  return { kind, id, token, hash: hashCredential(token) }
}

/** Undefined for anything that is not shaped like one of ours. */
export function parseCredential(text: string): ParsedCredential | undefined {
  const m = SHAPE.exec(text.trim())
  if (m === null) return undefined
  return { kind: m[1] === API_TOKEN_PREFIX ? 'api' : 'session', id: m[2]!, hash: hashCredential(text.trim()) }
}

/** Constant-time comparison of two hex digests. */
export function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex')
  const y = Buffer.from(b, 'hex')
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y)
}

/** Constant-time comparison of a presented secret with a configured one (e.g. the bootstrap token). */
export function sameSecret(given: string, expected: string): boolean {
  // Comparing digests keeps the time independent of where, and whether, the lengths differ.
  return sameHash(hashCredential(given), hashCredential(expected))
}
