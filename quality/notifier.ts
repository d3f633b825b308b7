// From firing alerts to notifications, the Alertmanager way: alerts are routed
// to receivers, grouped by labels (one message per group), sent when the
// group changes (new alerts, resolved ones) at most once per group interval,
// repeated while they keep firing, and escalated when nobody acknowledges
// them. Silences and maintenance mute alerts without ending them.
//
// Delivery runs on its own queue: evaluation never waits for a channel, and a
// failing channel is retried with backoff, every attempt logged.

import PQueue from 'p-queue'
import { type Logger } from 'pino'
import { errorMessage } from '../lib/errors.ts'
import { type AlertingConfig, matchRoutes, type Receiver, type Route } from './alerting-config.ts'
import { type Notification, type NotificationAlert, send } from './channels.ts'
import { type QualityMetrics } from './metrics.ts'
import { type Alert, type Silence, type SyncHealthStore } from './store.ts'

export function silenced(a: Pick<Alert, 'labels'>, silences: readonly Silence[]): Silence | undefined {
  return silences.find((s) => Object.entries(s.matchers).every(([k, v]) => a.labels[k] === v))
}

/** `{}/<route>:{label="value",…}`, after Alertmanager's group keys. */
export function groupKeyOf(routeIndex: number, route: Route, labels: Record<string, string>): { key: string; groupLabels: Record<string, string> } {
  const groupLabels: Record<string, string> = {}
  for (const l of route.groupBy) if (labels[l] !== undefined) groupLabels[l] = labels[l]
  const body = Object.entries(groupLabels)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(',')
  return { key: `{}/${routeIndex}:{${body}}`, groupLabels }
}

function parseGroupKey(key: string): { routeIndex: number; groupLabels: Record<string, string> } | undefined {
  const m = /^\{\}\/(\d+):\{(.*)\}$/.exec(key)
  if (m === null) return undefined
  const groupLabels: Record<string, string> = {}
  for (const part of m[2]!.matchAll(/([A-Za-z_]\w*)=("(?:[^"\\]|\\.)*")/g)) groupLabels[part[1]!] = JSON.parse(part[2]!) as string
  return { routeIndex: Number(m[1]), groupLabels }
}

export interface DeliveryOptions {
  attempts: number
  backoffMs: number
  timeoutMs: number
  concurrency: number
}

/** Sends notifications to every channel of a receiver, retrying each on its own. */
export class DeliveryQueue {
  readonly #queue: PQueue
  readonly #store: SyncHealthStore
  readonly #log: Logger
  readonly #o: DeliveryOptions
  readonly #metrics: QualityMetrics | undefined
  readonly #stop = new AbortController()

  constructor(store: SyncHealthStore, log: Logger, o: DeliveryOptions, metrics?: QualityMetrics) {
    this.#store = store
    this.#log = log
    this.#o = o
    this.#metrics = metrics
    this.#queue = new PQueue({ concurrency: o.concurrency })
  }

  enqueue(receiver: Receiver, n: Notification): void {
    for (const channel of receiver.channels) {
      void this.#queue.add(async () => {
        let attempt = 0
        let error: string | null = null
        for (;;) {
          attempt++
          try {
            await send(channel, n, { timeoutMs: this.#o.timeoutMs })
            error = null
            break
          } catch (err) {
            error = errorMessage(err)
            this.#log.warn({ channel: channel.name, receiver: receiver.name, groupKey: n.groupKey, attempt, of: this.#o.attempts, err: error }, 'alert delivery failed')
            if (attempt >= this.#o.attempts || this.#stop.signal.aborted) break
            await sleep(Math.min(this.#o.backoffMs * 2 ** (attempt - 1), 300_000), this.#stop.signal)
          }
        }
        const outcome = error === null ? 'delivered' : 'failed'
        this.#metrics?.deliveries.inc({ channel: channel.type, outcome })
        if (error === null) this.#log.info({ channel: channel.name, receiver: receiver.name, groupKey: n.groupKey, kind: n.kind, status: n.status, alerts: n.alerts.length, attempts: attempt }, 'alert delivered')
        else this.#log.error({ channel: channel.name, receiver: receiver.name, groupKey: n.groupKey, attempts: attempt, err: error }, 'alert delivery gave up')
        const now = this.#store.clock.now()
        try {
          await this.#store.logDelivery({ at: now, receiver: receiver.name, channel: channel.name, groupKey: n.groupKey, kind: n.kind, status: n.status, outcome, attempts: attempt, alerts: n.alerts.length, error })
          const incidents = new Set(n.alerts.map((a) => Number(a.annotations.incident)).filter((i) => Number.isInteger(i) && i > 0))
          for (const id of incidents) {
            const what = n.kind === 'escalation' ? 'escalation' : n.status === 'resolved' ? 'resolved notice' : n.kind === 'repeat' ? 'reminder' : 'alert'
            await this.#store.addEvent(id, 'notified', 'citysync', `${what} to ${receiver.name} via ${channel.name}: ${outcome}${attempt > 1 ? ` after ${attempt} attempts` : ''}${error ? ` (${error})` : ''}`, { channel: channel.name, receiver: receiver.name, outcome, attempts: attempt }, undefined, now)
          }
        } catch (err) {
          this.#log.warn({ err: errorMessage(err) }, 'could not record an alert delivery')
        }
      })
    }
  }

  get pending(): number {
    return this.#queue.size + this.#queue.pending
  }

  idle(): Promise<void> {
    return this.#queue.onIdle()
  }

  /** Stops retrying; waits at most `graceMs` for deliveries under way. */
  async close(graceMs = 5_000): Promise<void> {
    this.#stop.abort()
    this.#queue.clear()
    await Promise.race([this.#queue.onIdle(), new Promise((r) => setTimeout(r, graceMs).unref())])
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const t = setTimeout(done, ms)
    function done(): void {
      clearTimeout(t)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}

export function toNotificationAlert(a: Alert, externalUrl: string): NotificationAlert {
  return {
    id: a.id,
    fingerprint: a.fingerprint,
    status: a.status,
    labels: a.labels,
    annotations: a.annotations,
    startsAt: a.startsAt,
    endsAt: a.status === 'resolved' ? a.endsAt : null,
    generatorURL:
      a.entityKind === 'area'
        ? `${externalUrl}/api/v1/analytics/bike/balance?source=${encodeURIComponent(a.sourceId)}`
        : `${externalUrl}/api/v1/freshness/${encodeURIComponent(a.sourceId)}`,
  }
}

export interface DispatchSummary {
  notifications: number
  escalations: number
  muted: number
}

export class Notifier {
  readonly #store: SyncHealthStore
  readonly #config: AlertingConfig
  readonly #queue: DeliveryQueue
  readonly #log: Logger

  constructor(store: SyncHealthStore, config: AlertingConfig, queue: DeliveryQueue, log: Logger) {
    this.#store = store
    this.#config = config
    this.#queue = queue
    this.#log = log
  }

  /**
   * Decides what to send after an evaluation cycle. `firing` are all firing
   * alerts; `mutedSources` are sources in maintenance (their alerts stand but
   * are not sent). Enqueues deliveries and returns without waiting for them.
   */
  async dispatch(now: number, firing: readonly Alert[], mutedSources: ReadonlySet<string>): Promise<DispatchSummary> {
    const cfg = this.#config
    const silences = await this.#store.listSilences(now)
    const eligible: Alert[] = []
    let muted = 0
    for (const a of firing) {
      if (mutedSources.has(a.sourceId) || silenced(a, silences) !== undefined) muted++
      else eligible.push(a)
    }

    interface Group {
      receiver: string
      routeIndex: number
      route: Route
      groupLabels: Record<string, string>
      alerts: Alert[]
    }
    const current = new Map<string, Group>()
    const routeIndex = new Map(cfg.routes.map((r, i) => [r, i]))
    for (const a of eligible) {
      for (const route of matchRoutes(cfg, a.labels)) {
        const i = routeIndex.get(route)!
        const { key, groupLabels } = groupKeyOf(i, route, a.labels)
        for (const receiver of route.receivers) {
          const gk = `${receiver}\x1f${key}`
          let g = current.get(gk)
          if (g === undefined) current.set(gk, (g = { receiver, routeIndex: i, route, groupLabels, alerts: [] }))
          g.alerts.push(a)
        }
      }
    }

    let notifications = 0
    const previous = new Map((await this.#store.groups()).map((g) => [`${g.receiver}\x1f${g.groupKey}`, g]))
    for (const gk of new Set([...current.keys(), ...previous.keys()])) {
      const [receiverName, groupKey] = gk.split('\x1f') as [string, string]
      const receiver = cfg.receivers.get(receiverName)
      const cur = current.get(gk)
      const prev = previous.get(gk)
      const parsed = parseGroupKey(groupKey)
      const route = cur?.route ?? (parsed ? cfg.routes[parsed.routeIndex] : undefined)
      if (receiver === undefined || route === undefined) {
        await this.#store.saveGroup(receiverName, groupKey, [], now)
        continue
      }
      const curIds = new Set((cur?.alerts ?? []).map((a) => a.id))
      const prevIds = new Set(prev?.alertIds ?? [])
      const added = [...curIds].filter((id) => !prevIds.has(id))
      const gone = [...prevIds].filter((id) => !curIds.has(id))
      const lastSent = prev?.lastSentAt ?? null
      const resolved = gone.length > 0 ? (await this.#store.alertsByIds(gone)).filter((a) => a.status === 'resolved') : []
      const changed = added.length > 0 || (resolved.length > 0 && route.sendResolved)
      let kind: Notification['kind'] | null = null
      if (changed && (lastSent === null || now - lastSent >= route.groupIntervalMs)) kind = 'notify'
      else if (!changed && curIds.size > 0 && lastSent !== null && now - lastSent >= route.repeatIntervalMs && cur!.alerts.some((a) => a.ackedAt === null)) kind = 'repeat'
      if (kind === null) {
        // Alerts that left the group without a notice due (silenced, or resolved without send_resolved) are forgotten.
        if (!changed && gone.length > 0) await this.#store.saveGroup(receiverName, groupKey, [...curIds], lastSent ?? now)
        continue
      }
      const alerts = [...(cur?.alerts ?? []), ...(route.sendResolved ? resolved : [])]
      const n: Notification = {
        receiver: receiverName,
        groupKey,
        groupLabels: cur?.groupLabels ?? parsed?.groupLabels ?? {},
        status: curIds.size > 0 ? 'firing' : 'resolved',
        alerts: alerts.map((a) => toNotificationAlert(a, cfg.externalUrl)),
        externalUrl: cfg.externalUrl,
        kind,
        timezone: cfg.timezone,
      }
      this.#queue.enqueue(receiver, n)
      notifications++
      await this.#store.saveGroup(receiverName, groupKey, [...curIds], now)
    }

    const escalations = await this.#escalate(now, eligible)
    if (notifications + escalations > 0) this.#log.debug({ notifications, escalations, muted }, 'notifications queued')
    return { notifications, escalations, muted }
  }

  async #escalate(now: number, eligible: readonly Alert[]): Promise<number> {
    const cfg = this.#config
    const byReceiver = new Map<string, Alert[]>()
    for (const a of eligible) {
      if (a.ackedAt !== null) continue
      for (const route of matchRoutes(cfg, a.labels)) {
        let level = 0
        route.escalate.forEach((e, i) => {
          if (now - a.startsAt >= e.afterMs) level = i + 1
        })
        if (level <= a.escalationLevel) continue
        for (let l = a.escalationLevel; l < level; l++) {
          for (const r of route.escalate[l]!.receivers) {
            let list = byReceiver.get(r)
            if (list === undefined) byReceiver.set(r, (list = []))
            if (!list.includes(a)) list.push(a)
          }
        }
        await this.#store.setEscalation(a.id, level)
        if (a.incidentId !== null) {
          const to = route.escalate.slice(a.escalationLevel, level).flatMap((e) => e.receivers)
          await this.#store.addEvent(a.incidentId, 'escalated', 'citysync', `alert #${a.id} unacknowledged for ${Math.round((now - a.startsAt) / 60_000)} min: escalated to ${to.join(', ')}`, { alertId: a.id, level }, undefined, now)
        }
        a.escalationLevel = level
      }
    }
    let count = 0
    for (const [name, alerts] of byReceiver) {
      const receiver = cfg.receivers.get(name)
      if (receiver === undefined) continue
      const groupLabels: Record<string, string> = alerts.every((a) => a.sourceId === alerts[0]!.sourceId) ? { sourceId: alerts[0]!.sourceId } : {}
      this.#queue.enqueue(receiver, {
        receiver: name,
        groupKey: `{}/escalation:{${Object.entries(groupLabels).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`,
        groupLabels,
        status: 'firing',
        alerts: alerts.map((a) => toNotificationAlert(a, cfg.externalUrl)),
        externalUrl: cfg.externalUrl,
        kind: 'escalation',
        timezone: cfg.timezone,
      })
      count++
    }
    return count
  }
}
