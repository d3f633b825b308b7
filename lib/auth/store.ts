import { type Knex } from 'knex'
import { type Clock, systemClock } from '../clock.ts'
import { sm4Decrypt, sm4Encrypt } from '../crypto.ts'
import { CitysyncError } from '../errors.ts'
import { type Dialect, isUniqueViolation, requiredTimestamp, timestampFromDb, timestampToDb } from '../metadata/columns.ts'
import { AuditLog } from './audit.ts'
import { burnPasswordCheck, checkPasswordPolicy, hashPassword, needsRehash, verifyPassword } from './passwords.ts'
import { isPermission, isRole, type Permission, type Role, scopesBeyondRole } from './permissions.ts'
import { issueCredential, type ParsedCredential, sameHash } from './tokens.ts'
import { generateTotpSecret, otpauthUri, verifyTotp } from './totp.ts'

// Users, login sessions and API tokens in the metadata store (tables from
// infra/db/migrations/005-auth.ts). Passwords are scrypt hashes, session and
// API tokens SHA-256 hashes, TOTP secrets sealed with the master key's
// encryption key (SM4, the same sealing as source secrets).

export interface SessionLimits {
  /** A session unused this long ends (30 min). */
  idleMs: number
  /** A session ends this long after login, used or not (12 h). */
  absoluteMs: number
}

export interface LockoutPolicy {
  /** Failed logins within `windowMs` that lock the account (5). */
  maxFailures: number
  windowMs: number
  /** How long the lock lasts (15 min); an admin may lift it sooner. */
  lockMs: number
}

export const SESSION_DEFAULTS: SessionLimits = { idleMs: 30 * 60_000, absoluteMs: 12 * 3_600_000 }
export const LOCKOUT_DEFAULTS: LockoutPolicy = { maxFailures: 5, windowMs: 15 * 60_000, lockMs: 15 * 60_000 }
/** Longest life of an API token. */
export const TOKEN_MAX_LIFE_MS = 730 * 86_400_000
/** An admin's lock lasts until lifted. */
export const LOCKED_UNTIL_LIFTED = Date.parse('9999-12-31T00:00:00.000Z')

const USERNAME = /^[a-z0-9][a-z0-9._@-]{2,63}$/
const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
// Names the system itself appears under in histories and timelines.
const RESERVED_USERNAMES = new Set(['api', 'bootstrap', 'citysync', 'system', 'admin-cli'])
// Writing last_seen_at on every request would turn every read into a write.
const TOUCH_EVERY_MS = 60_000

export interface User {
  id: number
  username: string
  role: Role
  disabled: boolean
  totpEnabled: boolean
  /** Set while the account is locked (LOCKED_UNTIL_LIFTED for an admin's lock). */
  lockedUntil: number | null
  lockReason: string | null
  failedLogins: number
  lastLoginAt: number | null
  lastLoginIp: string | null
  passwordChangedAt: number
  createdAt: number
  createdBy: string
  updatedAt: number
}

export interface ApiToken {
  id: string
  name: string
  role: Role
  /** Narrows the role; null: all of the role's permissions. */
  scopes: Permission[] | null
  expiresAt: number
  createdAt: number
  createdBy: string
  lastUsedAt: number | null
  revokedAt: number | null
  revokedBy: string | null
}

export interface Session {
  id: string
  userId: number
  username: string
  role: Role
  totpEnabled: boolean
  createdAt: number
  lastSeenAt: number
  expiresAt: number
}

export type LoginOutcome =
  | { outcome: 'ok'; user: User; session: { token: string; id: string; expiresAt: number } }
  | { outcome: 'invalid'; reason: 'unknown user' | 'disabled' | 'wrong password' | 'wrong code'; user?: User; lockedUntil?: number }
  | { outcome: 'locked'; user: User; lockedUntil: number }
  | { outcome: 'totp-required'; user: User }

export interface LoginAttempt {
  username: string
  password: string
  totp?: string | undefined
  ip?: string | undefined
  userAgent?: string | undefined
}

export interface UserPatch {
  role?: Role | undefined
  disabled?: boolean | undefined
  /** true: locked until an admin unlocks; false: unlocked (failed-login count cleared). */
  locked?: boolean | undefined
  resetTotp?: boolean | undefined
  password?: string | undefined
}

interface UserRow {
  id: number
  username: string
  password_hash: string
  role: string
  disabled: boolean | number
  totp_secret: string | null
  totp_pending: string | null
  totp_enabled: boolean | number
  totp_last_step: number | string | null
  failed_logins: number
  failed_window_start: unknown
  locked_until: unknown
  lock_reason: string | null
  last_login_at: unknown
  last_login_ip: string | null
  password_changed_at: unknown
  created_at: unknown
  created_by: string
  updated_at: unknown
}

interface TokenRow {
  id: string
  name: string
  token_hash: string
  role: string
  scopes: string | null
  expires_at: unknown
  created_at: unknown
  created_by: string
  last_used_at: unknown
  revoked_at: unknown
  revoked_by: string | null
}

function userFrom(r: UserRow, now: number): User {
  const lockedUntil = timestampFromDb(r.locked_until)
  return {
    id: Number(r.id),
    username: r.username,
    role: r.role as Role,
    disabled: Boolean(r.disabled),
    totpEnabled: Boolean(r.totp_enabled),
    lockedUntil: lockedUntil !== null && lockedUntil > now ? lockedUntil : null,
    lockReason: lockedUntil !== null && lockedUntil > now ? r.lock_reason : null,
    failedLogins: Number(r.failed_logins),
    lastLoginAt: timestampFromDb(r.last_login_at),
    lastLoginIp: r.last_login_ip,
    passwordChangedAt: requiredTimestamp(r.password_changed_at),
    createdAt: requiredTimestamp(r.created_at),
    createdBy: r.created_by,
    updatedAt: requiredTimestamp(r.updated_at),
  }
}

function tokenFrom(r: TokenRow): ApiToken {
  return {
    id: r.id,
    name: r.name,
    role: r.role as Role,
    scopes: r.scopes === null ? null : (JSON.parse(r.scopes) as Permission[]),
    expiresAt: requiredTimestamp(r.expires_at),
    createdAt: requiredTimestamp(r.created_at),
    createdBy: r.created_by,
    lastUsedAt: timestampFromDb(r.last_used_at),
    revokedAt: timestampFromDb(r.revoked_at),
    revokedBy: r.revoked_by,
  }
}

export function checkUsername(username: string): void {
  if (!USERNAME.test(username)) {
    throw new CitysyncError('CITYSYNC_ERR_USER_INVALID', [JSON.stringify(username), 'a username is 3 to 64 characters: lower-case letters, digits and . _ @ -, starting with a letter or digit'])
  }
  if (RESERVED_USERNAMES.has(username)) throw new CitysyncError('CITYSYNC_ERR_USER_INVALID', [username, 'this name is reserved'])
}

export interface AuthStoreOptions {
  knex: Knex
  dialect: Dialect
  clock?: Clock | undefined
  /** The master key's encryption key (DerivedKeys.encKey): seals TOTP secrets. Without it, TOTP cannot be used. */
  encKey?: Buffer | undefined
  sessions?: Partial<SessionLimits> | undefined
  lockout?: Partial<LockoutPolicy> | undefined
}

export class AuthStore {
  readonly knex: Knex
  readonly dialect: Dialect
  readonly clock: Clock
  readonly sessions: SessionLimits
  readonly lockout: LockoutPolicy
  readonly audit: AuditLog
  readonly #encKey: Buffer | undefined

  constructor(o: AuthStoreOptions) {
    this.knex = o.knex
    this.dialect = o.dialect
    this.clock = o.clock ?? systemClock
    this.#encKey = o.encKey
    this.sessions = { ...SESSION_DEFAULTS, ...o.sessions }
    this.lockout = { ...LOCKOUT_DEFAULTS, ...o.lockout }
    this.audit = new AuditLog({ knex: o.knex, dialect: o.dialect, clock: this.clock })
  }

  #ts(ms: number): Date | string {
    return timestampToDb(this.dialect, ms)
  }

  #key(): Buffer {
    if (this.#encKey === undefined) throw new CitysyncError('CITYSYNC_ERR_CONFIG_MISSING', ['the master key (one-time code secrets are sealed with it)'])
    return this.#encKey
  }

  // ---- users ----------------------------------------------------------------

  async #row(username: string): Promise<UserRow | undefined> {
    return (await this.knex('users').where({ username }).first()) as UserRow | undefined
  }

  async #mustRow(username: string): Promise<UserRow> {
    const row = await this.#row(username)
    if (row === undefined) throw new CitysyncError('CITYSYNC_ERR_USER_NOT_FOUND', [username])
    return row
  }

  async createUser(input: { username: string; password: string; role: Role; createdBy: string }): Promise<User> {
    checkUsername(input.username)
    if (!isRole(input.role)) throw new CitysyncError('CITYSYNC_ERR_USER_INVALID', [input.username, `unknown role ${JSON.stringify(input.role)}`])
    checkPasswordPolicy(input.password, input.username)
    const now = this.clock.now()
    try {
      await this.knex('users').insert({
        username: input.username,
        password_hash: await hashPassword(input.password),
        role: input.role,
        disabled: false,
        totp_enabled: false,
        failed_logins: 0,
        password_changed_at: this.#ts(now),
        created_at: this.#ts(now),
        created_by: input.createdBy,
        updated_at: this.#ts(now),
      })
    } catch (err) {
      if (isUniqueViolation(err)) throw new CitysyncError('CITYSYNC_ERR_USER_EXISTS', [input.username], { cause: err })
      throw err
    }
    return this.getUser(input.username)
  }

  async getUser(username: string): Promise<User> {
    return userFrom(await this.#mustRow(username), this.clock.now())
  }

  async listUsers(): Promise<User[]> {
    const now = this.clock.now()
    return ((await this.knex('users').select('*').orderBy('username')) as UserRow[]).map((r) => userFrom(r, now))
  }

  async countUsers(): Promise<number> {
    const r = (await this.knex('users').count({ n: '*' }).first()) as { n: number | string } | undefined
    return Number(r?.n ?? 0)
  }

  /** An admin who can log in now or once a lock runs out (not disabled). */
  async hasEnabledAdmin(): Promise<boolean> {
    return (await this.knex('users').where({ role: 'admin', disabled: false }).first('id')) !== undefined
  }

  async #otherEnabledAdmins(username: string): Promise<number> {
    const r = (await this.knex('users').where({ role: 'admin', disabled: false }).whereNot({ username }).count({ n: '*' }).first()) as { n: number | string } | undefined
    return Number(r?.n ?? 0)
  }

  /** Changes role, disabled, lock, TOTP or password; returns the user before and after. */
  async updateUser(username: string, patch: UserPatch): Promise<{ before: User; after: User }> {
    const row = await this.#mustRow(username)
    const now = this.clock.now()
    const before = userFrom(row, now)
    if (patch.role !== undefined && !isRole(patch.role)) throw new CitysyncError('CITYSYNC_ERR_USER_INVALID', [username, `unknown role ${JSON.stringify(patch.role)}`])
    const losesAdmin = before.role === 'admin' && !before.disabled && ((patch.role !== undefined && patch.role !== 'admin') || patch.disabled === true || patch.locked === true)
    if (losesAdmin && (await this.#otherEnabledAdmins(username)) === 0) {
      throw new CitysyncError('CITYSYNC_ERR_USER_LAST_ADMIN', [patch.disabled === true ? 'disable' : patch.locked === true ? 'lock' : 'demote', username])
    }
    const set: Record<string, unknown> = { updated_at: this.#ts(now) }
    if (patch.role !== undefined) set.role = patch.role
    if (patch.disabled !== undefined) set.disabled = patch.disabled
    if (patch.locked === true) Object.assign(set, { locked_until: this.#ts(LOCKED_UNTIL_LIFTED), lock_reason: 'locked by an admin' })
    if (patch.locked === false) Object.assign(set, { locked_until: null, lock_reason: null, failed_logins: 0, failed_window_start: null })
    if (patch.resetTotp === true) Object.assign(set, { totp_secret: null, totp_pending: null, totp_enabled: false, totp_last_step: null })
    if (patch.password !== undefined) {
      checkPasswordPolicy(patch.password, username)
      Object.assign(set, { password_hash: await hashPassword(patch.password), password_changed_at: this.#ts(now) })
    }
    await this.knex('users').where({ id: row.id }).update(set)
    // Whoever loses access, or whose credentials change, is signed out everywhere.
    if (patch.disabled === true || patch.locked === true || patch.password !== undefined || patch.resetTotp === true || (patch.role !== undefined && patch.role !== before.role)) {
      await this.revokeUserSessions(row.id)
    }
    return { before, after: await this.getUser(username) }
  }

  async deleteUser(username: string): Promise<User> {
    const row = await this.#mustRow(username)
    const user = userFrom(row, this.clock.now())
    if (user.role === 'admin' && !user.disabled && (await this.#otherEnabledAdmins(username)) === 0) {
      throw new CitysyncError('CITYSYNC_ERR_USER_LAST_ADMIN', ['delete', username])
    }
    // Sessions go with the user (ON DELETE CASCADE); the audit log keeps the name.
    await this.knex('users').where({ id: row.id }).delete()
    return user
  }

  /** A user changing their own password: the current one must be right. Other sessions end. */
  async changePassword(username: string, current: string, next: string, keepSessionId?: string): Promise<void> {
    const row = await this.#mustRow(username)
    if (!(await verifyPassword(current, row.password_hash))) throw new CitysyncError('CITYSYNC_ERR_AUTH_INVALID')
    checkPasswordPolicy(next, username)
    if (await verifyPassword(next, row.password_hash)) throw new CitysyncError('CITYSYNC_ERR_AUTH_PASSWORD_POLICY', ['the new password is the current one'])
    const now = this.clock.now()
    await this.knex('users').where({ id: row.id }).update({ password_hash: await hashPassword(next), password_changed_at: this.#ts(now), updated_at: this.#ts(now) })
    await this.revokeUserSessions(row.id, keepSessionId)
  }

  // ---- login ------------------------------------------------------------------

  async login(a: LoginAttempt): Promise<LoginOutcome> {
    const row = await this.#row(a.username)
    const now = this.clock.now()
    if (row === undefined) {
      await burnPasswordCheck(a.password)
      return { outcome: 'invalid', reason: 'unknown user' }
    }
    const user = userFrom(row, now)
    if (user.lockedUntil !== null) return { outcome: 'locked', user, lockedUntil: user.lockedUntil }
    if (user.disabled) {
      await burnPasswordCheck(a.password)
      return { outcome: 'invalid', reason: 'disabled', user }
    }
    if (!(await verifyPassword(a.password, row.password_hash))) return this.#failed(row, user, 'wrong password', now)
    let step: number | undefined
    if (user.totpEnabled) {
      if (a.totp === undefined || a.totp.trim() === '') return { outcome: 'totp-required', user }
      const secret = sm4Decrypt(this.#key(), row.totp_secret!)
      step = verifyTotp(secret, a.totp, now, { lastUsedStep: row.totp_last_step === null ? null : Number(row.totp_last_step) })
      if (step === undefined) return this.#failed(row, user, 'wrong code', now)
    }
    const set: Record<string, unknown> = {
      failed_logins: 0,
      failed_window_start: null,
      locked_until: null,
      lock_reason: null,
      last_login_at: this.#ts(now),
      last_login_ip: a.ip ?? null,
    }
    if (step !== undefined) set.totp_last_step = step
    if (needsRehash(row.password_hash)) set.password_hash = await hashPassword(a.password)
    await this.knex('users').where({ id: row.id }).update(set)
    const session = await this.#openSession(row.id, now, a)
    return { outcome: 'ok', user: await this.getUser(a.username), session }
  }

  async #failed(row: UserRow, user: User, reason: 'wrong password' | 'wrong code', now: number): Promise<LoginOutcome> {
    const { maxFailures, windowMs, lockMs } = this.lockout
    const start = timestampFromDb(row.failed_window_start)
    const fresh = start === null || now - start >= windowMs
    const count = fresh ? 1 : Number(row.failed_logins) + 1
    if (count >= maxFailures) {
      const lockedUntil = now + lockMs
      await this.knex('users').where({ id: row.id }).update({
        failed_logins: count,
        failed_window_start: null,
        locked_until: this.#ts(lockedUntil),
        lock_reason: `${count} failed logins within ${Math.round(windowMs / 60_000)} min`,
      })
      await this.revokeUserSessions(row.id)
      return { outcome: 'invalid', reason, user: { ...user, failedLogins: count }, lockedUntil }
    }
    await this.knex('users').where({ id: row.id }).update({ failed_logins: count, ...(fresh ? { failed_window_start: this.#ts(now) } : {}) })
    return { outcome: 'invalid', reason, user: { ...user, failedLogins: count } }
  }

  // ---- sessions ------------------------------------------------------------

  async #openSession(userId: number, now: number, a: LoginAttempt): Promise<{ token: string; id: string; expiresAt: number }> {
    const c = issueCredential('session')
    const expiresAt = now + this.sessions.absoluteMs
    await this.knex('sessions').insert({
      id: c.id,
      token_hash: c.hash,
      user_id: userId,
      created_at: this.#ts(now),
      last_seen_at: this.#ts(now),
      expires_at: this.#ts(expiresAt),
      ip: a.ip ?? null,
      user_agent: a.userAgent?.slice(0, 500) ?? null,
    })
    return { token: c.token, id: c.id, expiresAt }
  }

  /** The live session a credential names, or undefined (unknown, wrong secret, revoked, expired, user locked out). */
  async resolveSession(c: ParsedCredential): Promise<Session | undefined> {
    if (c.kind !== 'session') return undefined
    const row: unknown = await this.knex('sessions')
      .join('users', 'users.id', 'sessions.user_id')
      .where('sessions.id', c.id)
      .first(
        'sessions.id', 'sessions.token_hash', 'sessions.user_id', 'sessions.created_at', 'sessions.last_seen_at', 'sessions.expires_at', 'sessions.revoked_at',
        'users.username', 'users.role', 'users.disabled', 'users.locked_until', 'users.totp_enabled',
      )
    const r = row as
      | { id: string; token_hash: string; user_id: number; created_at: unknown; last_seen_at: unknown; expires_at: unknown; revoked_at: unknown; username: string; role: string; disabled: boolean | number; locked_until: unknown; totp_enabled: boolean | number }
      | undefined
    if (r === undefined || !sameHash(r.token_hash, c.hash)) return undefined
    const now = this.clock.now()
    const lastSeenAt = requiredTimestamp(r.last_seen_at)
    const expiresAt = requiredTimestamp(r.expires_at)
    const lockedUntil = timestampFromDb(r.locked_until)
    if (timestampFromDb(r.revoked_at) !== null || now >= expiresAt || now - lastSeenAt >= this.sessions.idleMs) return undefined
    if (Boolean(r.disabled) || (lockedUntil !== null && lockedUntil > now)) return undefined
    if (now - lastSeenAt >= TOUCH_EVERY_MS) await this.knex('sessions').where({ id: r.id }).update({ last_seen_at: this.#ts(now) })
    return {
      id: r.id,
      userId: Number(r.user_id),
      username: r.username,
      role: r.role as Role,
      totpEnabled: Boolean(r.totp_enabled),
      createdAt: requiredTimestamp(r.created_at),
      lastSeenAt: now - lastSeenAt >= TOUCH_EVERY_MS ? now : lastSeenAt,
      expiresAt,
    }
  }

  async revokeSession(id: string): Promise<void> {
    await this.knex('sessions').where({ id }).whereNull('revoked_at').update({ revoked_at: this.#ts(this.clock.now()) })
  }

  async revokeUserSessions(userId: number, exceptId?: string): Promise<void> {
    const q = this.knex('sessions').where({ user_id: userId }).whereNull('revoked_at')
    if (exceptId !== undefined) void q.whereNot({ id: exceptId })
    await q.update({ revoked_at: this.#ts(this.clock.now()) })
  }

  /** Drops sessions that ended more than a day ago (they can never be used again). */
  async pruneSessions(): Promise<number> {
    const cutoff = this.#ts(this.clock.now() - 86_400_000)
    return this.knex('sessions').where('expires_at', '<', cutoff).orWhere('revoked_at', '<', cutoff).delete()
  }

  // ---- API tokens -------------------------------------------------------------

  async createToken(input: { name: string; role: Role; scopes?: readonly string[] | null | undefined; expiresAt: number; createdBy: string }): Promise<{ token: string; record: ApiToken }> {
    if (!TOKEN_NAME.test(input.name)) throw new CitysyncError('CITYSYNC_ERR_TOKEN_INVALID', [`name ${JSON.stringify(input.name)}: 1 to 64 letters, digits and . _ -`])
    if (!isRole(input.role)) throw new CitysyncError('CITYSYNC_ERR_TOKEN_INVALID', [`unknown role ${JSON.stringify(input.role)}`])
    const scopes = input.scopes === undefined || input.scopes === null ? null : [...new Set(input.scopes)]
    if (scopes !== null) {
      if (scopes.length === 0) throw new CitysyncError('CITYSYNC_ERR_TOKEN_INVALID', ['scopes: give at least one permission, or none to get all of the role'])
      const beyond = scopesBeyondRole(input.role, scopes)
      if (beyond.length > 0) throw new CitysyncError('CITYSYNC_ERR_TOKEN_INVALID', [`scopes ${beyond.join(', ')} are not permissions of role ${input.role}`])
    }
    const now = this.clock.now()
    if (!Number.isFinite(input.expiresAt) || input.expiresAt <= now) throw new CitysyncError('CITYSYNC_ERR_TOKEN_INVALID', ['expiresAt must be in the future'])
    if (input.expiresAt - now > TOKEN_MAX_LIFE_MS) throw new CitysyncError('CITYSYNC_ERR_TOKEN_INVALID', [`a token lives at most ${TOKEN_MAX_LIFE_MS / 86_400_000} days`])
    const c = issueCredential('api')
    await this.knex('api_tokens').insert({
      id: c.id,
      name: input.name,
      token_hash: c.hash,
      role: input.role,
      scopes: scopes === null ? null : JSON.stringify(scopes.filter(isPermission)),
      expires_at: this.#ts(input.expiresAt),
      created_at: this.#ts(now),
      created_by: input.createdBy,
    })
    return { token: c.token, record: await this.getToken(c.id) }
  }

  async getToken(id: string): Promise<ApiToken> {
    const r = (await this.knex('api_tokens').where({ id }).first()) as TokenRow | undefined
    if (r === undefined) throw new CitysyncError('CITYSYNC_ERR_TOKEN_NOT_FOUND', [id])
    return tokenFrom(r)
  }

  async listTokens(o: { includeRevoked?: boolean } = {}): Promise<ApiToken[]> {
    const q = this.knex('api_tokens').select('*').orderBy('created_at', 'desc').orderBy('id')
    if (o.includeRevoked !== true) void q.whereNull('revoked_at')
    return ((await q) as TokenRow[]).map(tokenFrom)
  }

  async revokeToken(id: string, by: string): Promise<ApiToken> {
    const before = await this.getToken(id)
    if (before.revokedAt === null) await this.knex('api_tokens').where({ id }).update({ revoked_at: this.#ts(this.clock.now()), revoked_by: by })
    return this.getToken(id)
  }

  /** The live token a credential names, or undefined (unknown, wrong secret, revoked, expired). */
  async resolveToken(c: ParsedCredential): Promise<ApiToken | undefined> {
    if (c.kind !== 'api') return undefined
    const r = (await this.knex('api_tokens').where({ id: c.id }).first()) as TokenRow | undefined
    if (r === undefined || !sameHash(r.token_hash, c.hash)) return undefined
    const t = tokenFrom(r)
    const now = this.clock.now()
    if (t.revokedAt !== null || now >= t.expiresAt) return undefined
    if (t.lastUsedAt === null || now - t.lastUsedAt >= TOUCH_EVERY_MS) await this.knex('api_tokens').where({ id: t.id }).update({ last_used_at: this.#ts(now) })
    return t
  }

  // ---- TOTP -----------------------------------------------------------------

  /** Starts (or restarts) enrolment: a new secret, pending until confirmTotp sees a code from it. */
  async startTotp(username: string, issuer = 'citysync'): Promise<{ secret: string; uri: string }> {
    const row = await this.#mustRow(username)
    const secret = generateTotpSecret()
    await this.knex('users').where({ id: row.id }).update({ totp_pending: sm4Encrypt(this.#key(), secret), updated_at: this.#ts(this.clock.now()) })
    return { secret, uri: otpauthUri(secret, username, issuer) }
  }

  /** Turns the second factor on once a code from the pending secret checks out. */
  async confirmTotp(username: string, code: string): Promise<User> {
    const row = await this.#mustRow(username)
    if (row.totp_pending === null) throw new CitysyncError('CITYSYNC_ERR_AUTH_TOTP', ['no enrolment is pending: start one with POST /api/v1/auth/totp'])
    const secret = sm4Decrypt(this.#key(), row.totp_pending)
    const now = this.clock.now()
    const step = verifyTotp(secret, code, now)
    if (step === undefined) throw new CitysyncError('CITYSYNC_ERR_AUTH_TOTP', ['the code does not match; check the device clock and try the next code'])
    await this.knex('users').where({ id: row.id }).update({
      totp_secret: row.totp_pending,
      totp_pending: null,
      totp_enabled: true,
      totp_last_step: step,
      updated_at: this.#ts(now),
    })
    return this.getUser(username)
  }
}

