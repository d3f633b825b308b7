import { formatLocal } from '../local-time.ts'
import { parseQuarter } from '../../quality/report/period.ts'
import { type AuditRecord } from './audit.ts'
import { PRIVILEGED_ROLES, type Role } from './permissions.ts'
import { type ApiToken, type AuthStore, LOCKED_UNTIL_LIFTED, type User } from './store.ts'

// The quarterly account review (账号定期审查): who has access, who holds
// privileged roles, who has not logged in for 90 days, which accounts are
// locked or disabled, which privileged accounts log in without a second
// factor, which API tokens run out within 30 days or already have, and the
// account changes made during the quarter (from the audit log).
//
// The users and tokens are read as they are when the review runs; ages are
// measured at `asOf`: the end of the quarter, or now for the current one.

export const INACTIVE_DAYS = 90
export const EXPIRING_DAYS = 30
const DAY = 86_400_000

export interface ReviewUser {
  username: string
  role: Role
  disabled: boolean
  locked: boolean
  lockedUntil: string | null
  lockReason: string | null
  totpEnabled: boolean
  lastLoginAt: string | null
  /** Days from the last login (or, never logged in, from creation) to asOf. */
  daysInactive: number
  createdAt: string
  createdBy: string
}

export interface ReviewToken {
  id: string
  name: string
  role: Role
  scopes: string[] | null
  expiresAt: string
  /** Negative once expired. */
  daysLeft: number
  lastUsedAt: string | null
  createdBy: string
}

export interface AccountChange {
  at: string
  actor: string | null
  action: string
  target: string | null
  status: number | null
}

export interface AccountReview {
  quarter: string
  zone: string
  from: string
  to: string
  asOf: string
  summary: {
    users: number
    enabledUsers: number
    privileged: number
    inactive: number
    locked: number
    disabled: number
    totpMissing: number
    tokens: number
    tokensExpiring: number
    tokensExpired: number
    accountChanges: number
  }
  privileged: ReviewUser[]
  inactive: ReviewUser[]
  locked: ReviewUser[]
  disabled: ReviewUser[]
  totpMissing: ReviewUser[]
  tokensExpiring: ReviewToken[]
  tokensExpired: ReviewToken[]
  accountChanges: AccountChange[]
}

// Audit actions that change accounts or credentials.
const ACCOUNT_ACTIONS = [
  'POST /api/v1/users',
  'PATCH /api/v1/users/:username',
  'DELETE /api/v1/users/:username',
  'POST /api/v1/tokens',
  'DELETE /api/v1/tokens/:id',
  'cli users',
  'cli tokens',
]

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString()
}

function reviewUser(u: User, asOf: number): ReviewUser {
  return {
    username: u.username,
    role: u.role,
    disabled: u.disabled,
    locked: u.lockedUntil !== null,
    lockedUntil: u.lockedUntil === null ? null : u.lockedUntil >= LOCKED_UNTIL_LIFTED ? 'until unlocked' : iso(u.lockedUntil),
    lockReason: u.lockReason,
    totpEnabled: u.totpEnabled,
    lastLoginAt: iso(u.lastLoginAt),
    daysInactive: Math.max(0, Math.floor((asOf - (u.lastLoginAt ?? u.createdAt)) / DAY)),
    createdAt: iso(u.createdAt)!,
    createdBy: u.createdBy,
  }
}

function reviewToken(t: ApiToken, asOf: number): ReviewToken {
  return {
    id: t.id,
    name: t.name,
    role: t.role,
    scopes: t.scopes,
    expiresAt: iso(t.expiresAt)!,
    daysLeft: Math.floor((t.expiresAt - asOf) / DAY),
    lastUsedAt: iso(t.lastUsedAt),
    createdBy: t.createdBy,
  }
}

export async function accountReview(store: AuthStore, o: { quarter: string; zone?: string; now?: number }): Promise<AccountReview> {
  const zone = o.zone ?? 'Asia/Shanghai'
  const period = parseQuarter(o.quarter, zone)
  const now = o.now ?? store.clock.now()
  const asOf = Math.min(now, period.to)
  const users = await store.listUsers()
  const tokens = await store.listTokens()
  const enabled = users.filter((u) => !u.disabled)
  const byName = (a: { username: string }, b: { username: string }): number => a.username.localeCompare(b.username)

  const privileged = enabled.filter((u) => PRIVILEGED_ROLES.includes(u.role)).sort(byName)
  const inactive = enabled.filter((u) => asOf - (u.lastLoginAt ?? u.createdAt) >= INACTIVE_DAYS * DAY).sort(byName)
  const locked = users.filter((u) => u.lockedUntil !== null).sort(byName)
  const disabled = users.filter((u) => u.disabled).sort(byName)
  const totpMissing = privileged.filter((u) => !u.totpEnabled)
  const tokensExpired = tokens.filter((t) => t.expiresAt <= asOf).sort((a, b) => a.expiresAt - b.expiresAt)
  const tokensExpiring = tokens.filter((t) => t.expiresAt > asOf && t.expiresAt - asOf <= EXPIRING_DAYS * DAY).sort((a, b) => a.expiresAt - b.expiresAt)

  const changes: AuditRecord[] = []
  for (const action of ACCOUNT_ACTIONS) {
    const { items } = await store.audit.list({ action: action.startsWith('cli ') ? `${action}*` : action, from: period.from, to: period.to, limit: 10_000 })
    changes.push(...items)
  }
  changes.sort((a, b) => a.seq - b.seq)
  const accountChanges = changes.map((c) => ({ at: iso(c.at)!, actor: c.actor, action: c.action, target: c.target, status: c.status }))

  const u = (list: User[]): ReviewUser[] => list.map((x) => reviewUser(x, asOf))
  const t = (list: ApiToken[]): ReviewToken[] => list.map((x) => reviewToken(x, asOf))
  return {
    quarter: period.id,
    zone,
    from: formatLocal(period.from, zone),
    to: formatLocal(period.to, zone),
    asOf: iso(asOf)!,
    summary: {
      users: users.length,
      enabledUsers: enabled.length,
      privileged: privileged.length,
      inactive: inactive.length,
      locked: locked.length,
      disabled: disabled.length,
      totpMissing: totpMissing.length,
      tokens: tokens.length,
      tokensExpiring: tokensExpiring.length,
      tokensExpired: tokensExpired.length,
      accountChanges: accountChanges.length,
    },
    privileged: u(privileged),
    inactive: u(inactive),
    locked: u(locked),
    disabled: u(disabled),
    totpMissing: u(totpMissing),
    tokensExpiring: t(tokensExpiring),
    tokensExpired: t(tokensExpired),
    accountChanges,
  }
}

export const REVIEW_CSV_COLUMNS = ['finding', 'kind', 'name', 'role', 'lastLoginOrUse', 'daysInactive', 'expiresAt', 'daysLeft', 'detail'] as const

function cell(v: string | number | null | undefined): string {
  const s = v === null || v === undefined ? '' : String(v)
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

/** One row per finding (an account may appear under several), UTF-8 with BOM for spreadsheet programs. */
export function accountReviewCsv(r: AccountReview): string {
  const rows: (string | number | null)[][] = []
  const users = (finding: string, list: ReviewUser[], detail: (x: ReviewUser) => string): void => {
    for (const x of list) rows.push([finding, 'user', x.username, x.role, x.lastLoginAt, x.daysInactive, '', '', detail(x)])
  }
  const tokens = (finding: string, list: ReviewToken[]): void => {
    for (const x of list) rows.push([finding, 'token', `${x.name} (${x.id})`, x.role, x.lastUsedAt, '', x.expiresAt, x.daysLeft, x.scopes === null ? 'all permissions of the role' : `scopes: ${x.scopes.join(' ')}`])
  }
  users('privileged', r.privileged, (x) => (x.totpEnabled ? 'one-time code on' : 'one-time code OFF'))
  users('inactive', r.inactive, (x) => (x.lastLoginAt === null ? `never logged in (created ${x.createdAt})` : `no login for ${x.daysInactive} days`))
  users('locked', r.locked, (x) => `${x.lockReason ?? ''} until ${x.lockedUntil ?? ''}`.trim())
  users('disabled', r.disabled, () => '')
  users('totp-missing', r.totpMissing, () => 'privileged account without a second factor')
  tokens('token-expiring', r.tokensExpiring)
  tokens('token-expired', r.tokensExpired)
  return '\uFEFF' + [REVIEW_CSV_COLUMNS.join(','), ...rows.map((row) => row.map(cell).join(','))].join('\r\n') + '\r\n'
}
