import { createHash } from 'node:crypto'
import { type Knex } from 'knex'
import { type Clock, systemClock } from '../clock.ts'
import { maskPlate } from '../crypto.ts'
import { CitysyncError, errorMessage } from '../errors.ts'
import { type Dialect, isUniqueViolation, timestampFromDb, timestampToDb } from '../metadata/columns.ts'

// The audit log: who changed what, when, from where. Append-only (triggers in
// infra/db/migrations/005-auth.ts refuse UPDATE and DELETE) and hash-chained:
//
//   hash(n) = hex SHA-256( JSON.stringify([seq, atMs, actor, actorKind, role, action, method,
//                                          route, target, status, ip, userAgent, detail, prevHash]) )
//   prevHash(n) = hash(n − 1); prevHash(1) = 64 zeros; seq runs 1, 2, 3, … without gaps.
//
// detail is the stored JSON text itself. Anyone who edits or deletes a row
// behind the triggers (as the database owner can) breaks the chain from that
// row on, which verifyAuditChain reports. Removing rows from the end leaves a
// shorter valid chain: compare the head (seq, hash) with one kept elsewhere.

export const ACTOR_KINDS = ['user', 'token', 'bootstrap', 'cli', 'system'] as const
export type ActorKind = (typeof ACTOR_KINDS)[number]

export interface AuditEntry {
  actor: string | null
  actorKind: ActorKind | null
  role: string | null
  action: string
  method?: string | null
  route?: string | null
  target?: string | null
  status?: number | null
  ip?: string | null
  userAgent?: string | null
  /** Redacted before it is stored (see redact). */
  detail?: Record<string, unknown> | null
  /** Defaults to the clock's now. */
  at?: number
}

export interface AuditRecord {
  seq: number
  at: number
  actor: string | null
  actorKind: ActorKind | null
  role: string | null
  action: string
  method: string | null
  route: string | null
  target: string | null
  status: number | null
  ip: string | null
  userAgent: string | null
  detail: unknown
  prevHash: string
  hash: string
}

export interface AuditFilter {
  actor?: string | undefined
  /** Exact, or a prefix when it ends with '*'. */
  action?: string | undefined
  target?: string | undefined
  /** At or after (epoch ms). */
  from?: number | undefined
  /** Before (epoch ms). */
  to?: number | undefined
  limit?: number | undefined
  offset?: number | undefined
}

export interface ChainVerdict {
  ok: boolean
  rows: number
  /** The newest row checked: keep it elsewhere to notice rows cut off the end. */
  head: { seq: number; hash: string } | null
  /** The first row that does not fit the chain. */
  broken?: { seq: number; problem: string }
}

export const GENESIS_HASH = '0'.repeat(64)
const MAX_DETAIL_CHARS = 32_000
export const REDACTED = '******'

// Keys whose values never reach the log, whatever they hold.
const SECRET_KEY = /(pass|password|passphrase|secret|token|totp|otp|authorization|cookie|app_?key|api_?key|signature|clearplate)$|^code$|^plate(no|number|_no)?$/i
// Credentials and clear plates inside free text.
const CREDENTIAL_TEXT = /\b(cst|css)_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\b/g
const PLATE_TEXT = /[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领][A-Z][\s·•-]?[A-Z0-9]{4,5}[A-Z0-9挂学警港澳领试超]?/gu

function redactText(text: string): string {
  return text.replace(CREDENTIAL_TEXT, (_m, kind: string) => `${kind}_${REDACTED}`).replace(PLATE_TEXT, (plate) => maskPlate(plate))
}

/** A copy fit for the audit log: secret-looking keys emptied, credentials and plates in text masked. */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactText(value)
  if (value === null || typeof value !== 'object') return value
  if (depth > 12) return '…'
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = SECRET_KEY.test(k) && v !== null && v !== undefined && typeof v !== 'boolean' ? REDACTED : redact(v, depth + 1)
  }
  return out
}

function detailText(detail: Record<string, unknown> | null | undefined): string | null {
  if (detail === null || detail === undefined) return null
  const text = JSON.stringify(redact(detail))
  if (text.length <= MAX_DETAIL_CHARS) return text
  return JSON.stringify({ omitted: `${text.length} characters`, keys: Object.keys(detail) })
}

function chainHash(r: Omit<AuditRecord, 'detail' | 'hash'> & { detail: string | null }): string {
  const fields = [r.seq, r.at, r.actor, r.actorKind, r.role, r.action, r.method, r.route, r.target, r.status, r.ip, r.userAgent, r.detail, r.prevHash]
  return createHash('sha256').update(JSON.stringify(fields)).digest('hex')
}

interface Row {
  seq: number | string
  at: unknown
  actor: string | null
  actor_kind: string | null
  role: string | null
  action: string
  method: string | null
  route: string | null
  target: string | null
  status: number | null
  ip: string | null
  user_agent: string | null
  detail: string | null
  prev_hash: string
  hash: string
}

function fromRow(r: Row): Omit<AuditRecord, 'detail'> & { detail: string | null } {
  return {
    seq: Number(r.seq),
    at: timestampFromDb(r.at)!,
    actor: r.actor,
    actorKind: r.actor_kind as ActorKind | null,
    role: r.role,
    action: r.action,
    method: r.method,
    route: r.route,
    target: r.target,
    status: r.status === null ? null : Number(r.status),
    ip: r.ip,
    userAgent: r.user_agent,
    detail: r.detail,
    prevHash: r.prev_hash,
    hash: r.hash,
  }
}

export class AuditLog {
  readonly #knex: Knex
  readonly #dialect: Dialect
  readonly #clock: Clock
  // Appends from this process go one at a time; other processes are kept off
  // the same seq by its uniqueness (the loser reads the new head and retries).
  #tail: Promise<unknown> = Promise.resolve()

  constructor(o: { knex: Knex; dialect: Dialect; clock?: Clock | undefined }) {
    this.#knex = o.knex
    this.#dialect = o.dialect
    this.#clock = o.clock ?? systemClock
  }

  append(entry: AuditEntry): Promise<AuditRecord> {
    const next = this.#tail.then(() => this.#appendNow(entry))
    this.#tail = next.catch(() => undefined)
    return next
  }

  async #appendNow(entry: AuditEntry): Promise<AuditRecord> {
    const detail = detailText(entry.detail)
    for (let attempt = 1; ; attempt++) {
      const head = (await this.#knex('audit_log').select('seq', 'hash').orderBy('seq', 'desc').first()) as { seq: number | string; hash: string } | undefined
      const base = {
        seq: head === undefined ? 1 : Number(head.seq) + 1,
        at: entry.at ?? this.#clock.now(),
        actor: entry.actor,
        actorKind: entry.actorKind,
        role: entry.role,
        action: entry.action,
        method: entry.method ?? null,
        route: entry.route ?? null,
        target: entry.target ?? null,
        status: entry.status ?? null,
        ip: entry.ip ?? null,
        userAgent: entry.userAgent === undefined || entry.userAgent === null ? null : entry.userAgent.slice(0, 500),
        detail,
        prevHash: head?.hash ?? GENESIS_HASH,
      }
      const hash = chainHash(base)
      try {
        await this.#knex('audit_log').insert({
          seq: base.seq,
          at: timestampToDb(this.#dialect, base.at),
          actor: base.actor,
          actor_kind: base.actorKind,
          role: base.role,
          action: base.action,
          method: base.method,
          route: base.route,
          target: base.target,
          status: base.status,
          ip: base.ip,
          user_agent: base.userAgent,
          detail: base.detail,
          prev_hash: base.prevHash,
          hash,
        })
        return { ...base, detail: detail === null ? null : (JSON.parse(detail) as unknown), hash }
      } catch (err) {
        if (isUniqueViolation(err) && attempt < 20) continue
        throw new CitysyncError('CITYSYNC_ERR_AUDIT_WRITE', [errorMessage(err)], { cause: err })
      }
    }
  }

  async list(filter: AuditFilter = {}): Promise<{ items: AuditRecord[]; total: number }> {
    const where = (q: Knex.QueryBuilder): Knex.QueryBuilder => {
      if (filter.actor !== undefined) void q.where('actor', filter.actor)
      if (filter.action !== undefined) {
        if (filter.action.endsWith('*')) {
          const prefix = filter.action.slice(0, -1)
          // substr rather than LIKE: no wildcard escaping, and the same case rules in both stores.
          void q.whereRaw('substr(action, 1, ?) = ?', [[...prefix].length, prefix])
        } else void q.where('action', filter.action)
      }
      if (filter.target !== undefined) void q.where('target', filter.target)
      if (filter.from !== undefined) void q.where('at', '>=', timestampToDb(this.#dialect, filter.from))
      if (filter.to !== undefined) void q.where('at', '<', timestampToDb(this.#dialect, filter.to))
      return q
    }
    const counted = (await where(this.#knex('audit_log')).count({ n: '*' }).first()) as { n: number | string } | undefined
    const rows = (await where(this.#knex('audit_log').select('*'))
      .orderBy('seq', 'desc')
      .limit(filter.limit ?? 100)
      .offset(filter.offset ?? 0)) as Row[]
    return { items: rows.map((r) => this.#record(r)), total: Number(counted?.n ?? 0) }
  }

  #record(r: Row): AuditRecord {
    const x = fromRow(r)
    let detail: unknown = x.detail
    if (x.detail !== null) {
      try {
        detail = JSON.parse(x.detail) as unknown
      } catch {
        // Left as text: verification reports the row if it was tampered with.
      }
    }
    return { ...x, detail }
  }

  verify(): Promise<ChainVerdict> {
    return verifyAuditChain(this.#knex)
  }
}

/** Walks the whole log in seq order and checks every link. */
export async function verifyAuditChain(knex: Knex, batch = 1000): Promise<ChainVerdict> {
  let prev = GENESIS_HASH
  let expectedSeq = 1
  let rows = 0
  let head: ChainVerdict['head'] = null
  for (;;) {
    const page = (await knex('audit_log').select('*').where('seq', '>=', expectedSeq).orderBy('seq', 'asc').limit(batch)) as Row[]
    if (page.length === 0) return { ok: true, rows, head }
    for (const raw of page) {
      const r = fromRow(raw)
      const fail = (problem: string): ChainVerdict => ({ ok: false, rows, head, broken: { seq: r.seq, problem } })
      if (r.seq !== expectedSeq) return fail(`row ${expectedSeq} is missing (next is ${r.seq})`)
      if (r.prevHash !== prev) return fail('prev_hash does not match the hash of the row before')
      if (chainHash(r) !== r.hash) return fail('content does not match its hash (changed after it was written)')
      prev = r.hash
      head = { seq: r.seq, hash: r.hash }
      rows++
      expectedSeq++
    }
  }
}
