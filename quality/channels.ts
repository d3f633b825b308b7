// Notification channels. Each has a pure payload builder (tested against the
// exact wire shape) and a sender; a sender throws CITYSYNC_ERR_CHANNEL_DELIVERY
// when the platform does not accept the message, and the notifier retries.
//
// Wire contracts:
// - Alertmanager v4 webhook: POST JSON {version:"4", groupKey, truncatedAlerts,
//   status, receiver, groupLabels, commonLabels, commonAnnotations, externalURL,
//   alerts:[{status, labels, annotations, startsAt, endsAt, generatorURL, fingerprint}]};
//   a firing alert's endsAt is "0001-01-01T00:00:00Z".
// - DingTalk robot: POST {msgtype:"markdown", markdown:{title, text}, at:{atMobiles, isAtAll}}
//   to the robot URL; signed robots get &timestamp=<ms>&sign=<urlencoded base64
//   HMAC-SHA256(key=secret, "timestamp\nsecret")>. Success is {errcode:0}.
// - WeCom robot: POST {msgtype:"markdown", markdown:{content}} to .../send?key=KEY
//   (content at most 4096 bytes). Success is {errcode:0}.
// - Feishu bot: POST {timestamp:"<s>", sign, msg_type:"interactive", card}; sign is
//   base64 HMAC-SHA256 keyed by "timestamp\nsecret" over an empty message.
//   Success is {code:0} (older deployments answer {StatusCode:0}).
// - Email: SMTP via nodemailer, plain text and HTML.

import { createHmac } from 'node:crypto'
import nodemailer, { type Transporter } from 'nodemailer'
import { CitysyncError, errorMessage } from '../lib/errors.ts'
import { formatLocal } from '../lib/local-time.ts'
import { type ChannelConfig, type DingTalkChannel, type EmailChannel, type FeishuChannel, type WeComChannel, type WebhookChannel } from './alerting-config.ts'

export interface NotificationAlert {
  id: number
  fingerprint: string
  status: 'firing' | 'resolved'
  labels: Record<string, string>
  annotations: Record<string, string>
  startsAt: number
  endsAt: number | null
  generatorURL: string
}

export interface Notification {
  receiver: string
  groupKey: string
  groupLabels: Record<string, string>
  status: 'firing' | 'resolved'
  alerts: NotificationAlert[]
  externalUrl: string
  kind: 'notify' | 'repeat' | 'escalation'
  /** Zone for the times written in messages. */
  timezone: string
}

export interface SendOptions {
  timeoutMs: number
  /** Seconds/milliseconds for signatures; injectable for tests. */
  now?: () => number
}

const ZERO_TIME = '0001-01-01T00:00:00Z'
const MAX_LISTED = 20

function iso(ms: number): string {
  return new Date(ms).toISOString()
}

function common<K extends 'labels' | 'annotations'>(alerts: readonly NotificationAlert[], key: K): Record<string, string> {
  if (alerts.length === 0) return {}
  const out: Record<string, string> = { ...alerts[0]![key] }
  for (const a of alerts.slice(1)) for (const k of Object.keys(out)) if (a[key][k] !== out[k]) delete out[k]
  return out
}

// ---------------------------------------------------------------------------
// Payloads (pure)

export function alertmanagerPayload(n: Notification): Record<string, unknown> {
  return {
    version: '4',
    groupKey: n.groupKey,
    truncatedAlerts: 0,
    status: n.status,
    receiver: n.receiver,
    groupLabels: n.groupLabels,
    commonLabels: common(n.alerts, 'labels'),
    commonAnnotations: common(n.alerts, 'annotations'),
    externalURL: n.externalUrl,
    alerts: n.alerts.map((a) => ({
      status: a.status,
      labels: a.labels,
      annotations: a.annotations,
      startsAt: iso(a.startsAt),
      endsAt: a.endsAt === null ? ZERO_TIME : iso(a.endsAt),
      generatorURL: a.generatorURL,
      fingerprint: a.fingerprint,
    })),
  }
}

const STATE_TEXT: Record<string, string> = {
  LATE: '数据延迟',
  STALLED: '数据停滞',
  STOPPED: '采集中断',
  SKEWED: '时间戳超前',
  ACCUMULATION: '车辆淤积',
  SHORTAGE: '车辆短缺',
}

/** Title and markdown body shared by the robots and email. */
export function renderMessage(n: Notification): { title: string; markdown: string; text: string } {
  const firing = n.alerts.filter((a) => a.status === 'firing')
  const resolved = n.alerts.filter((a) => a.status === 'resolved')
  const first = n.alerts[0]
  const who = first?.annotations.source ?? first?.labels.sourceId ?? n.groupKey
  const head =
    n.kind === 'escalation' ? '【升级】' : n.status === 'resolved' ? '【已恢复】' : n.kind === 'repeat' ? '【仍未恢复】' : '【告警】'
  const title = `${head}${who} ${firing.length > 0 ? `${firing.length} 项异常` : `${resolved.length} 项已恢复`}`
  const local = (ms: number): string => formatLocal(ms, n.timezone)
  const lines: string[] = [`### ${title}`, '']
  const describe = (a: NotificationAlert): string[] => {
    const where = a.labels.entityId ? `${a.labels.sourceId} / ${a.labels.entityId}` : a.labels.sourceId
    const state = a.labels.state ?? ''
    const out = [`- **${state}** ${STATE_TEXT[state] ?? ''} · ${where}${a.labels.operator ? ` · ${a.labels.operator}` : ''}${a.labels.district ? ` · ${a.labels.district}` : ''}`]
    if (a.annotations.summary) out.push(`  - ${a.annotations.summary}`)
    out.push(`  - 开始 ${local(a.startsAt)}${a.endsAt !== null && a.status === 'resolved' ? `，恢复 ${local(a.endsAt)}` : ''}`)
    if (a.annotations.lastEventAt) out.push(`  - 最新数据 ${local(Date.parse(a.annotations.lastEventAt))}`)
    if (a.annotations.incident) out.push(`  - 事件 #${a.annotations.incident}`)
    return out
  }
  if (firing.length > 0) {
    lines.push(`**异常（${firing.length}）**`)
    for (const a of firing.slice(0, MAX_LISTED)) lines.push(...describe(a))
    if (firing.length > MAX_LISTED) lines.push(`- … 另有 ${firing.length - MAX_LISTED} 项`)
    lines.push('')
  }
  if (resolved.length > 0) {
    lines.push(`**已恢复（${resolved.length}）**`)
    for (const a of resolved.slice(0, MAX_LISTED)) lines.push(...describe(a))
    if (resolved.length > MAX_LISTED) lines.push(`- … 另有 ${resolved.length - MAX_LISTED} 项`)
    lines.push('')
  }
  // Bike-share areas out of balance are the operator's to rebalance; everything else is a data fault.
  const balance = n.alerts.length > 0 && n.alerts.every((a) => a.labels.entityKind === 'area')
  if (balance) {
    if (firing.length > 0) lines.push('请通知运营企业调度车辆；区域恢复到阈值内后告警自动解除。')
    lines.push(`[查看区域车辆分布](${n.externalUrl}/api/v1/analytics/bike/balance${first ? `?source=${encodeURIComponent(first.labels.sourceId ?? '')}` : ''})`)
  } else {
    if (firing.length > 0) lines.push('请联系数据源负责方核实；处理后在事件台账中记录处置过程与原因。')
    lines.push(`[查看数据新鲜度](${n.externalUrl}/api/v1/freshness${first ? `/${first.labels.sourceId}` : ''})`)
  }
  const markdown = lines.join('\n')
  const text = markdown.replace(/^### /gm, '').replace(/\*\*/g, '').replace(/\[([^\]]+)\]\(([^)]+)\)/g, '$1: $2')
  return { title, markdown, text }
}

/** DingTalk's robot signature: base64 HMAC-SHA256 keyed by the secret over "timestamp\nsecret". */
export function dingTalkSign(timestampMs: number, secret: string): string {
  return createHmac('sha256', secret).update(`${timestampMs}\n${secret}`, 'utf8').digest('base64')
}

export function dingTalkRequest(c: DingTalkChannel, n: Notification, nowMs: number): { url: string; body: Record<string, unknown> } {
  const { title, markdown } = renderMessage(n)
  let url = c.url
  if (c.secret !== undefined && c.secret !== '') {
    const u = new URL(c.url)
    u.searchParams.set('timestamp', String(nowMs))
    u.searchParams.set('sign', dingTalkSign(nowMs, c.secret))
    url = u.toString()
  }
  return {
    url,
    body: { msgtype: 'markdown', markdown: { title, text: markdown }, at: { atMobiles: c.atMobiles ?? [], isAtAll: c.atAll === true } },
  }
}

function truncateBytes(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text
  let cut = text
  while (Buffer.byteLength(cut) > max - 4) cut = cut.slice(0, Math.floor(cut.length * 0.9))
  return `${cut}\n…`
}

export function weComRequest(c: WeComChannel, n: Notification): { url: string; body: Record<string, unknown> } {
  return { url: c.url, body: { msgtype: 'markdown', markdown: { content: truncateBytes(renderMessage(n).markdown, 4096) } } }
}

/** Feishu's bot signature: base64 HMAC-SHA256 keyed by "timestamp\nsecret" over an empty message. */
export function feishuSign(timestampSeconds: number, secret: string): string {
  return createHmac('sha256', `${timestampSeconds}\n${secret}`).update('').digest('base64')
}

export function feishuRequest(c: FeishuChannel, n: Notification, nowMs: number): { url: string; body: Record<string, unknown> } {
  const { title, markdown } = renderMessage(n)
  const body: Record<string, unknown> = {}
  if (c.secret !== undefined && c.secret !== '') {
    const ts = Math.floor(nowMs / 1000)
    body.timestamp = String(ts)
    body.sign = feishuSign(ts, c.secret)
  }
  body.msg_type = 'interactive'
  body.card = {
    header: { title: { tag: 'plain_text', content: title }, template: n.status === 'resolved' ? 'green' : n.kind === 'escalation' ? 'red' : 'orange' },
    elements: [{ tag: 'div', text: { tag: 'lark_md', content: markdown.replace(/^### .*\n\n?/, '') } }],
  }
  return { url: c.url, body }
}

// ---------------------------------------------------------------------------
// Senders

async function postJson(channel: string, url: string, body: unknown, timeoutMs: number, headers: Record<string, string> = {}): Promise<unknown> {
  let res: Response
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    })
  } catch (err) {
    throw new CitysyncError('CITYSYNC_ERR_CHANNEL_DELIVERY', [channel, errorMessage(err)], { cause: err })
  }
  const text = await res.text()
  if (!res.ok) throw new CitysyncError('CITYSYNC_ERR_CHANNEL_DELIVERY', [channel, `HTTP ${res.status} ${text.slice(0, 200)}`])
  try {
    return text === '' ? {} : (JSON.parse(text) as unknown)
  } catch {
    return {}
  }
}

function checkCode(channel: string, answer: unknown, ...fields: string[]): void {
  const a = (answer ?? {}) as Record<string, unknown>
  for (const f of fields) {
    if (a[f] === undefined) continue
    if (Number(a[f]) !== 0) {
      const message = a.errmsg ?? a.msg ?? a.StatusMessage ?? ''
      throw new CitysyncError('CITYSYNC_ERR_CHANNEL_DELIVERY', [channel, `${f} ${JSON.stringify(a[f])}: ${typeof message === 'string' ? message : JSON.stringify(message)}`])
    }
    return
  }
}

const transports = new Map<string, Transporter>()

function transportFor(c: EmailChannel, timeoutMs: number): Transporter {
  const key = JSON.stringify([c.smtp, timeoutMs])
  let t = transports.get(key)
  if (t === undefined) {
    t = nodemailer.createTransport({
      host: c.smtp.host,
      port: c.smtp.port,
      secure: c.smtp.secure === true,
      requireTLS: c.smtp.requireTLS === true,
      ...(c.smtp.user !== undefined ? { auth: { user: c.smtp.user, pass: c.smtp.pass ?? '' } } : {}),
      tls: { rejectUnauthorized: c.smtp.rejectUnauthorized !== false },
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
    })
    transports.set(key, t)
  }
  return t
}

export function emailMessage(c: EmailChannel, n: Notification): { from: string; to: string[]; subject: string; text: string; html: string } {
  const { title, markdown, text } = renderMessage(n)
  const escape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  return { from: c.from, to: c.to, subject: `[citysync] ${title}`, text, html: `<pre style="font-family:sans-serif;white-space:pre-wrap">${escape(markdown)}</pre>` }
}

/** Sends one notification through one channel; throws CITYSYNC_ERR_CHANNEL_DELIVERY. */
export async function send(c: ChannelConfig, n: Notification, o: SendOptions): Promise<void> {
  const now = o.now ?? Date.now
  switch (c.type) {
    case 'webhook': {
      const w: WebhookChannel = c
      await postJson(c.name, w.url, alertmanagerPayload(n), o.timeoutMs, w.headers)
      return
    }
    case 'dingtalk': {
      const r = dingTalkRequest(c, n, now())
      checkCode(c.name, await postJson(c.name, r.url, r.body, o.timeoutMs), 'errcode')
      return
    }
    case 'wecom': {
      const r = weComRequest(c, n)
      checkCode(c.name, await postJson(c.name, r.url, r.body, o.timeoutMs), 'errcode')
      return
    }
    case 'feishu': {
      const r = feishuRequest(c, n, now())
      checkCode(c.name, await postJson(c.name, r.url, r.body, o.timeoutMs), 'code', 'StatusCode')
      return
    }
    case 'email': {
      try {
        await transportFor(c, o.timeoutMs).sendMail(emailMessage(c, n))
      } catch (err) {
        throw new CitysyncError('CITYSYNC_ERR_CHANNEL_DELIVERY', [c.name, errorMessage(err)], { cause: err })
      }
      return
    }
  }
}

/** Closes pooled SMTP connections. */
export function closeTransports(): void {
  for (const t of transports.values()) t.close()
  transports.clear()
}
