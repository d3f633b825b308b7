// Alerts, silences, the incident ledger and the notification log in the
// metadata store (SQLite or PostgreSQL, infra/db/migrations/003-sync-health.ts).

import { type Knex } from 'knex'
import { type Clock } from '../lib/clock.ts'
import { CitysyncError } from '../lib/errors.ts'
import { jsonFromDb, jsonToDb, requiredTimestamp, timestampFromDb, timestampToDb, type Dialect } from '../lib/metadata/columns.ts'
import { type EntityKind, type FreshnessState } from './evaluate.ts'

export const ALERT_STATUSES = ['firing', 'resolved'] as const
export type AlertStatus = (typeof ALERT_STATUSES)[number]
export const INCIDENT_STATUSES = ['open', 'recovered', 'closed'] as const
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number]
export const SILENCE_MATCHERS = ['alertname', 'sourceId', 'entityId', 'state', 'operator', 'district', 'severity'] as const
/** Bike-share areas out of balance (quality/bike-balance.ts), beside the freshness states. */
export const BALANCE_STATES = ['ACCUMULATION', 'SHORTAGE'] as const
export type BalanceState = (typeof BALANCE_STATES)[number]
/** Every state an alert is raised for: the alerting freshness states and the balance states. */
export const ALERT_STATES = ['LATE', 'STALLED', 'STOPPED', 'SKEWED', ...BALANCE_STATES] as const
export type AlertState = FreshnessState | BalanceState

/** An alert of the freshness state machine (not a bike-share balance alert). */
export function isFreshnessAlert<T extends Pick<Alert, 'state'>>(a: T): a is T & { state: FreshnessState } {
  return !(BALANCE_STATES as readonly string[]).includes(a.state)
}
export type SilenceMatcher = (typeof SILENCE_MATCHERS)[number]

export interface Alert {
  id: number
  fingerprint: string
  sourceId: string
  entityId: string | null
  /** A car park, station or terminal (freshness), or an `area` of a bike-share operator (balance). */
  entityKind: EntityKind | 'area' | null
  state: AlertState
  status: AlertStatus
  operator: string | null
  district: string | null
  labels: Record<string, string>
  annotations: Record<string, string>
  startsAt: number
  endsAt: number | null
  updatedAt: number
  ackedAt: number | null
  ackedBy: string | null
  ackComment: string | null
  escalationLevel: number
  incidentId: number | null
}

export interface IncidentScope {
  /** Entities affected (car parks, stations, terminals); the whole source when empty. */
  entities: string[]
  /** All entities affected; `entities` lists at most MAX_SCOPE_ENTITIES of them. */
  entityCount: number
  /** States seen during the incident, in order. */
  states: FreshnessState[]
  /** Estimated records that should have arrived but did not (rate of the day before × time missing). */
  expectedMissing: number | null
}

export const MAX_SCOPE_ENTITIES = 200

export interface Incident {
  id: number
  sourceId: string
  sourceName: string | null
  operator: string | null
  district: string | null
  status: IncidentStatus
  title: string
  occurredAt: number
  recoveredAt: number | null
  closedAt: number | null
  scope: IncidentScope
  rootCause: string | null
  assignee: string | null
  updatedAt: number
  version: number
}

export interface IncidentEvent {
  id: number
  incidentId: number
  at: number
  actor: string
  kind: string
  message: string
  detail: Record<string, unknown> | null
}

export interface Silence {
  id: number
  matchers: Partial<Record<SilenceMatcher, string>>
  startsAt: number
  endsAt: number
  reason: string
  createdBy: string
  createdAt: number
}

export interface Delivery {
  id: number
  at: number
  receiver: string
  channel: string
  groupKey: string
  kind: 'notify' | 'repeat' | 'escalation'
  status: AlertStatus
  outcome: 'delivered' | 'failed'
  attempts: number
  alerts: number
  error: string | null
}

export interface StoreContext {
  knex: Knex
  dialect: Dialect
  clock: Clock
}

type Row = Record<string, unknown>

function str(v: unknown): string | null {
  if (v === null || v === undefined) return null
  return typeof v === 'string' ? v : JSON.stringify(v)
}

export class SyncHealthStore {
  readonly #ctx: StoreContext

  constructor(ctx: StoreContext) {
    this.#ctx = ctx
  }

  get clock(): Clock {
    return this.#ctx.clock
  }

  #ts(ms: number): Date | string {
    return timestampToDb(this.#ctx.dialect, ms)
  }

  #alert = (r: Row): Alert => ({
    id: Number(r.id),
    fingerprint: String(r.fingerprint),
    sourceId: String(r.source_id),
    entityId: str(r.entity_id),
    entityKind: str(r.entity_kind) as Alert['entityKind'],
    state: r.state as AlertState,
    status: r.status as AlertStatus,
    operator: str(r.operator),
    district: str(r.district),
    labels: (jsonFromDb(this.#ctx.dialect, r.labels) ?? {}) as Record<string, string>,
    annotations: (jsonFromDb(this.#ctx.dialect, r.annotations) ?? {}) as Record<string, string>,
    startsAt: requiredTimestamp(r.starts_at),
    endsAt: timestampFromDb(r.ends_at),
    updatedAt: requiredTimestamp(r.updated_at),
    ackedAt: timestampFromDb(r.acked_at),
    ackedBy: str(r.acked_by),
    ackComment: str(r.ack_comment),
    escalationLevel: Number(r.escalation_level ?? 0),
    incidentId: r.incident_id === null || r.incident_id === undefined ? null : Number(r.incident_id),
  })

  #incident = (r: Row): Incident => ({
    id: Number(r.id),
    sourceId: String(r.source_id),
    sourceName: str(r.source_name),
    operator: str(r.operator),
    district: str(r.district),
    status: r.status as IncidentStatus,
    title: String(r.title),
    occurredAt: requiredTimestamp(r.occurred_at),
    recoveredAt: timestampFromDb(r.recovered_at),
    closedAt: timestampFromDb(r.closed_at),
    scope: (jsonFromDb(this.#ctx.dialect, r.scope) ?? { entities: [], entityCount: 0, states: [], expectedMissing: null }) as IncidentScope,
    rootCause: str(r.root_cause),
    assignee: str(r.assignee),
    updatedAt: requiredTimestamp(r.updated_at),
    version: Number(r.version),
  })

  // -------------------------------------------------------------------------
  // Alerts

  async openAlert(
    a: Omit<Alert, 'id' | 'status' | 'endsAt' | 'updatedAt' | 'ackedAt' | 'ackedBy' | 'ackComment' | 'escalationLevel'>,
    db: Knex | Knex.Transaction = this.#ctx.knex,
  ): Promise<Alert> {
    const now = this.#ctx.clock.now()
    const [row] = (await db('alerts')
      .insert({
        fingerprint: a.fingerprint,
        source_id: a.sourceId,
        entity_id: a.entityId,
        entity_kind: a.entityKind,
        state: a.state,
        status: 'firing',
        operator: a.operator,
        district: a.district,
        labels: jsonToDb(a.labels),
        annotations: jsonToDb(a.annotations),
        starts_at: this.#ts(a.startsAt),
        updated_at: this.#ts(now),
        incident_id: a.incidentId,
      })
      .returning('*')) as Row[]
    return this.#alert(row!)
  }

  async resolveAlert(id: number, endsAt: number, annotations: Record<string, string> | undefined, db: Knex | Knex.Transaction = this.#ctx.knex): Promise<void> {
    const set: Row = { status: 'resolved', ends_at: this.#ts(endsAt), updated_at: this.#ts(this.#ctx.clock.now()) }
    if (annotations !== undefined) set.annotations = jsonToDb(annotations)
    await db('alerts').where({ id, status: 'firing' }).update(set)
  }

  async updateAnnotations(id: number, annotations: Record<string, string>): Promise<void> {
    await this.#ctx.knex('alerts').where({ id }).update({ annotations: jsonToDb(annotations) })
  }

  async firingAlerts(): Promise<Alert[]> {
    return ((await this.#ctx.knex('alerts').where({ status: 'firing' }).orderBy('id')) as Row[]).map(this.#alert)
  }

  async alertsByIds(ids: readonly number[]): Promise<Alert[]> {
    if (ids.length === 0) return []
    const out: Alert[] = []
    for (let i = 0; i < ids.length; i += 500) {
      out.push(...((await this.#ctx.knex('alerts').whereIn('id', ids.slice(i, i + 500))) as Row[]).map(this.#alert))
    }
    return out.sort((a, b) => a.id - b.id)
  }

  async listAlerts(filter: { status?: AlertStatus; sourceId?: string; state?: AlertState; incidentId?: number; limit?: number; offset?: number } = {}): Promise<{ items: Alert[]; total: number }> {
    const q = this.#ctx.knex('alerts')
    if (filter.status !== undefined) q.where('status', filter.status)
    if (filter.sourceId !== undefined) q.where('source_id', filter.sourceId)
    if (filter.state !== undefined) q.where('state', filter.state)
    if (filter.incidentId !== undefined) q.where('incident_id', filter.incidentId)
    const [{ n }] = (await q.clone().count({ n: '*' })) as unknown as [{ n: number | string }]
    const rows = (await q.orderBy('id', 'desc').limit(filter.limit ?? 100).offset(filter.offset ?? 0)) as Row[]
    return { items: rows.map(this.#alert), total: Number(n) }
  }

  async getAlert(id: number): Promise<Alert> {
    const row = (await this.#ctx.knex('alerts').where({ id }).first()) as Row | undefined
    if (row === undefined) throw new CitysyncError('CITYSYNC_ERR_ALERT_NOT_FOUND', [id])
    return this.#alert(row)
  }

  /** Acknowledges an alert (stops its escalation and repeats); the incident's timeline records who and when. */
  async ackAlert(id: number, by: string, comment: string | null): Promise<Alert> {
    const now = this.#ctx.clock.now()
    const alert = await this.getAlert(id)
    if (alert.ackedAt !== null) return alert
    await this.#ctx.knex.transaction(async (trx) => {
      await trx('alerts').where({ id }).update({ acked_at: this.#ts(now), acked_by: by, ack_comment: comment, updated_at: this.#ts(now) })
      if (alert.incidentId !== null) {
        await this.addEvent(alert.incidentId, 'acknowledged', by, `alert #${id} (${alertLabel(alert)}) acknowledged${comment ? `: ${comment}` : ''}`, { alertId: id }, trx)
      }
    })
    return this.getAlert(id)
  }

  async setEscalation(id: number, level: number): Promise<void> {
    await this.#ctx.knex('alerts').where({ id }).update({ escalation_level: level })
  }

  // -------------------------------------------------------------------------
  // Silences

  async createSilence(s: Omit<Silence, 'id' | 'createdAt'>): Promise<Silence> {
    const now = this.#ctx.clock.now()
    const [row] = (await this.#ctx.knex('silences')
      .insert({
        matchers: jsonToDb(s.matchers),
        starts_at: this.#ts(s.startsAt),
        ends_at: this.#ts(s.endsAt),
        reason: s.reason,
        created_by: s.createdBy,
        created_at: this.#ts(now),
      })
      .returning('*')) as Row[]
    return this.#silence(row!)
  }

  #silence = (r: Row): Silence => ({
    id: Number(r.id),
    matchers: jsonFromDb(this.#ctx.dialect, r.matchers) ?? {},
    startsAt: requiredTimestamp(r.starts_at),
    endsAt: requiredTimestamp(r.ends_at),
    reason: String(r.reason),
    createdBy: String(r.created_by),
    createdAt: requiredTimestamp(r.created_at),
  })

  async listSilences(activeAt?: number): Promise<Silence[]> {
    const q = this.#ctx.knex('silences').orderBy('id', 'desc')
    if (activeAt !== undefined) q.where('ends_at', '>', this.#ts(activeAt)).andWhere('starts_at', '<=', this.#ts(activeAt))
    return ((await q) as Row[]).map(this.#silence)
  }

  /** Ends a silence now. */
  async expireSilence(id: number): Promise<Silence> {
    const now = this.#ctx.clock.now()
    const count = await this.#ctx.knex('silences').where({ id }).where('ends_at', '>', this.#ts(now)).update({ ends_at: this.#ts(now) })
    const row = (await this.#ctx.knex('silences').where({ id }).first()) as Row | undefined
    if (row === undefined) throw new CitysyncError('CITYSYNC_ERR_SILENCE_NOT_FOUND', [id])
    void count
    return this.#silence(row)
  }

  // -------------------------------------------------------------------------
  // Incidents

  async createIncident(
    i: Pick<Incident, 'sourceId' | 'sourceName' | 'operator' | 'district' | 'title' | 'occurredAt' | 'scope'>,
    db: Knex | Knex.Transaction,
  ): Promise<Incident> {
    const now = this.#ctx.clock.now()
    const [row] = (await db('incidents')
      .insert({
        source_id: i.sourceId,
        source_name: i.sourceName,
        operator: i.operator,
        district: i.district,
        status: 'open',
        title: i.title,
        occurred_at: this.#ts(i.occurredAt),
        scope: jsonToDb(i.scope),
        updated_at: this.#ts(now),
        version: 1,
      })
      .returning('*')) as Row[]
    return this.#incident(row!)
  }

  async updateIncident(id: number, set: Partial<Pick<Incident, 'status' | 'scope' | 'recoveredAt' | 'title'>>, db: Knex | Knex.Transaction = this.#ctx.knex): Promise<void> {
    const row: Row = { updated_at: this.#ts(this.#ctx.clock.now()), version: db.raw('version + 1') }
    if (set.status !== undefined) row.status = set.status
    if (set.scope !== undefined) row.scope = jsonToDb(set.scope)
    if (set.title !== undefined) row.title = set.title
    if (set.recoveredAt !== undefined) row.recovered_at = set.recoveredAt === null ? null : this.#ts(set.recoveredAt)
    await db('incidents').where({ id }).update(row)
  }

  async addEvent(incidentId: number, kind: string, actor: string, message: string, detail: Record<string, unknown> | null = null, db: Knex | Knex.Transaction = this.#ctx.knex, at?: number): Promise<void> {
    await db('incident_events').insert({
      incident_id: incidentId,
      at: this.#ts(at ?? this.#ctx.clock.now()),
      actor,
      kind,
      message,
      detail: jsonToDb(detail),
    })
  }

  /** The open incident of a source, else its latest one recovered at or after `reopenAfter`. */
  async currentIncident(sourceId: string, reopenAfter: number, db: Knex | Knex.Transaction = this.#ctx.knex): Promise<Incident | undefined> {
    const open = (await db('incidents').where({ source_id: sourceId, status: 'open' }).orderBy('id', 'desc').first()) as Row | undefined
    if (open !== undefined) return this.#incident(open)
    const recent = (await db('incidents')
      .where({ source_id: sourceId, status: 'recovered' })
      .where('recovered_at', '>=', this.#ts(reopenAfter))
      .orderBy('id', 'desc')
      .first()) as Row | undefined
    return recent === undefined ? undefined : this.#incident(recent)
  }

  async findIncident(id: number): Promise<Incident | undefined> {
    const row = (await this.#ctx.knex('incidents').where({ id }).first()) as Row | undefined
    return row === undefined ? undefined : this.#incident(row)
  }

  async getIncident(id: number): Promise<Incident> {
    const found = await this.findIncident(id)
    if (found === undefined) throw new CitysyncError('CITYSYNC_ERR_INCIDENT_NOT_FOUND', [id])
    return found
  }

  async listIncidents(filter: { status?: IncidentStatus; sourceId?: string; operator?: string; district?: string; from?: number; to?: number; limit?: number; offset?: number } = {}): Promise<{ items: Incident[]; total: number }> {
    const q = this.#ctx.knex('incidents')
    if (filter.status !== undefined) q.where('status', filter.status)
    if (filter.sourceId !== undefined) q.where('source_id', filter.sourceId)
    if (filter.operator !== undefined) q.where('operator', filter.operator)
    if (filter.district !== undefined) q.where('district', filter.district)
    if (filter.from !== undefined) q.where('occurred_at', '>=', this.#ts(filter.from))
    if (filter.to !== undefined) q.where('occurred_at', '<', this.#ts(filter.to))
    const [{ n }] = (await q.clone().count({ n: '*' })) as unknown as [{ n: number | string }]
    const rows = (await q.orderBy('id', 'desc').limit(filter.limit ?? 100).offset(filter.offset ?? 0)) as Row[]
    return { items: rows.map(this.#incident), total: Number(n) }
  }

  /** Oldest first. */
  async incidentEvents(incidentId: number): Promise<IncidentEvent[]> {
    const rows = (await this.#ctx.knex('incident_events').where({ incident_id: incidentId }).orderBy('id')) as Row[]
    return rows.map((r) => ({
      id: Number(r.id),
      incidentId: Number(r.incident_id),
      at: requiredTimestamp(r.at),
      actor: String(r.actor),
      kind: String(r.kind),
      message: String(r.message),
      detail: jsonFromDb(this.#ctx.dialect, r.detail) as Record<string, unknown> | null,
    }))
  }

  async eventsOf(ids: readonly number[]): Promise<Map<number, IncidentEvent[]>> {
    const out = new Map<number, IncidentEvent[]>()
    for (let i = 0; i < ids.length; i += 500) {
      const rows = (await this.#ctx.knex('incident_events').whereIn('incident_id', ids.slice(i, i + 500)).orderBy('id')) as Row[]
      for (const r of rows) {
        const id = Number(r.incident_id)
        let list = out.get(id)
        if (list === undefined) out.set(id, (list = []))
        list.push({ id: Number(r.id), incidentId: id, at: requiredTimestamp(r.at), actor: String(r.actor), kind: String(r.kind), message: String(r.message), detail: jsonFromDb(this.#ctx.dialect, r.detail) as Record<string, unknown> | null })
      }
    }
    return out
  }

  /**
   * Handling by people: a note on the timeline, an assignee, the root cause,
   * closing (which needs a root cause, given now or before). With
   * `version`, refused when the incident changed meanwhile.
   */
  async patchIncident(id: number, p: { by: string; note?: string; rootCause?: string; assignee?: string | null; status?: 'closed'; version?: number }): Promise<Incident> {
    const current = await this.getIncident(id)
    if (p.version !== undefined && p.version !== current.version) throw new CitysyncError('CITYSYNC_ERR_INCIDENT_CONFLICT', [id, p.version, current.version])
    const rootCause = p.rootCause !== undefined ? p.rootCause.trim() : current.rootCause
    if (p.status === 'closed') {
      if (current.status === 'closed') throw new CitysyncError('CITYSYNC_ERR_INCIDENT_STATE', [id, 'it is already closed'])
      if (rootCause === null || rootCause === '') throw new CitysyncError('CITYSYNC_ERR_INCIDENT_ROOT_CAUSE', [id])
    }
    const now = this.#ctx.clock.now()
    await this.#ctx.knex.transaction(async (trx) => {
      const set: Row = { updated_at: this.#ts(now), version: current.version + 1 }
      if (p.rootCause !== undefined) set.root_cause = rootCause
      if (p.assignee !== undefined) set.assignee = p.assignee
      if (p.status === 'closed') {
        set.status = 'closed'
        set.closed_at = this.#ts(now)
      }
      const count = await trx('incidents').where({ id, version: current.version }).update(set)
      if (count === 0) throw new CitysyncError('CITYSYNC_ERR_INCIDENT_CONFLICT', [id, current.version, 'a newer one'])
      if (p.note !== undefined && p.note.trim() !== '') await this.addEvent(id, 'note', p.by, p.note.trim(), null, trx, now)
      if (p.assignee !== undefined && p.assignee !== current.assignee) await this.addEvent(id, 'assigned', p.by, p.assignee === null ? 'unassigned' : `assigned to ${p.assignee}`, null, trx, now)
      if (p.rootCause !== undefined && rootCause !== current.rootCause) await this.addEvent(id, 'root_cause', p.by, `root cause: ${rootCause}`, null, trx, now)
      if (p.status === 'closed') await this.addEvent(id, 'closed', p.by, 'closed', { recoveredAt: current.recoveredAt }, trx, now)
    })
    return this.getIncident(id)
  }

  // -------------------------------------------------------------------------
  // Notification groups and deliveries

  async group(receiver: string, groupKey: string): Promise<{ alertIds: number[]; lastSentAt: number | null } | undefined> {
    const row = (await this.#ctx.knex('notification_groups').where({ receiver, group_key: groupKey }).first()) as Row | undefined
    if (row === undefined) return undefined
    return { alertIds: (jsonFromDb(this.#ctx.dialect, row.alert_ids) ?? []) as number[], lastSentAt: timestampFromDb(row.last_sent_at) }
  }

  async groups(): Promise<{ receiver: string; groupKey: string; alertIds: number[]; lastSentAt: number | null }[]> {
    const rows: Row[] = await this.#ctx.knex('notification_groups')
    return rows.map((r) => ({
      receiver: String(r.receiver),
      groupKey: String(r.group_key),
      alertIds: (jsonFromDb(this.#ctx.dialect, r.alert_ids) ?? []) as number[],
      lastSentAt: timestampFromDb(r.last_sent_at),
    }))
  }

  async saveGroup(receiver: string, groupKey: string, alertIds: readonly number[], lastSentAt: number): Promise<void> {
    const { knex } = this.#ctx
    if (alertIds.length === 0) {
      await knex('notification_groups').where({ receiver, group_key: groupKey }).delete()
      return
    }
    await knex('notification_groups')
      .insert({ receiver, group_key: groupKey, alert_ids: jsonToDb(alertIds), last_sent_at: this.#ts(lastSentAt) })
      .onConflict(['receiver', 'group_key'])
      .merge()
  }

  async logDelivery(d: Omit<Delivery, 'id'>): Promise<void> {
    await this.#ctx.knex('alert_deliveries').insert({
      at: this.#ts(d.at),
      receiver: d.receiver,
      channel: d.channel,
      group_key: d.groupKey,
      kind: d.kind,
      status: d.status,
      outcome: d.outcome,
      attempts: d.attempts,
      alerts: d.alerts,
      error: d.error,
    })
  }

  async deliveries(limit = 100): Promise<Delivery[]> {
    const rows = (await this.#ctx.knex('alert_deliveries').orderBy('id', 'desc').limit(limit)) as Row[]
    return rows.map((r) => ({
      id: Number(r.id),
      at: requiredTimestamp(r.at),
      receiver: String(r.receiver),
      channel: String(r.channel),
      groupKey: String(r.group_key),
      kind: r.kind as Delivery['kind'],
      status: r.status as AlertStatus,
      outcome: r.outcome as Delivery['outcome'],
      attempts: Number(r.attempts),
      alerts: Number(r.alerts),
      error: str(r.error),
    }))
  }
}

export function alertLabel(a: Pick<Alert, 'sourceId' | 'entityId' | 'state'>): string {
  return `${a.sourceId}${a.entityId === null ? '' : `/${a.entityId}`} ${a.state}`
}
